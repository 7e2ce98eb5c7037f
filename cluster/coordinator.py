"""Connects to Ray and runs the planned stages: remote ones as tasks once their upstream is placed, the rest here."""

import contextlib
import os
import socket
import sys
import time
from pathlib import Path

from cluster import snapshot, worker
from cluster.checkpoint_store import CheckpointStore
from cluster.dvc_command import StageFailedError, dvc, stage_error
from cluster.placement import place
from cluster.plan import plan
from stages.errors import ParamsError, SourceError

CONNECT_TIMEOUT_SECONDS = 10


def default_remote(project: Path) -> tuple[str, str]:
    """The default DVC remote's name and URL, a local path made absolute (relative ones are relative to .dvc/).

    Raises:
        SourceError: none is set; workers have no other way to get inputs or return models.
    """
    from dvc.repo import Repo

    with Repo(str(project)) as repo:
        config = repo.config
    name = config["core"].get("remote")
    if not name:
        raise SourceError(
            "DVC remote: none is the default; expected one every node can reach: `dvc remote add -d storage <url>`"
        )
    url = config["remote"][name]["url"]
    if "://" in url or os.path.isabs(url):
        return name, url
    return name, str((project / ".dvc" / url).resolve())


def check_reachable(address: str) -> None:
    """Fails in seconds, in one line, when nothing listens at the address (Ray itself retries for minutes)."""
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=CONNECT_TIMEOUT_SECONDS):
            pass
    except (OSError, ValueError) as error:
        raise SourceError(
            f"--address {address}: cannot reach a Ray cluster ({error}); expected HOST:PORT of a head started "
            "with `ray start --head --port PORT`, or no --address for a local one"
        ) from None


@contextlib.contextmanager
def connected(project: Path, address: str | None):
    """Ray, connected to `address` or started here.

    The working_dir carries only the code of the task function itself (cluster/worker.py): it is
    packed once, here, and never what a stage runs, which travels per point (cluster/snapshot.py).
    """
    import ray

    runtime_env = {"working_dir": str(project), "excludes": list(snapshot.EXCLUDES)}
    if address:
        check_reachable(address)
        ray.init(address=address, runtime_env=runtime_env, log_to_driver=False, logging_level="ERROR")
    else:
        ray.init(
            runtime_env=runtime_env, include_dashboard=False, _node_ip_address="127.0.0.1",
            log_to_driver=False, logging_level="ERROR",
        )  # fmt: skip
    try:
        yield ray
    finally:
        ray.shutdown()


def run_locally(project: Path, stage: str, push: bool) -> float:
    started = time.monotonic()
    completed = dvc("repro", "-s", stage, cwd=project, check=False)
    if completed.returncode != 0:
        raise StageFailedError(f"{stage} failed on the coordinator: {stage_error(completed)}")
    if push:
        dvc("push", stage, cwd=project)
    return time.monotonic() - started


def require_gpus(ray, gpus_per_task: float) -> None:
    """Refuses GPUs per task that no node has: a task runs on one node, and Ray would wait forever for it."""
    if gpus_per_task <= 0:
        return
    most = max((float(node["Resources"].get("GPU", 0)) for node in ray.nodes() if node.get("Alive")), default=0.0)
    if most < gpus_per_task:
        raise ParamsError(
            f"--gpus-per-task {gpus_per_task:g}: the Ray cluster's nodes have at most {most:g} GPUs each; "
            f"expected at most {most:g} per task (leave the option out to train on CPUs)"
        )


def reproduce(project: Path, targets: list[str], ray, cpus_per_task: float, threads: int, summary: list[dict],
              gpus_per_task: float = 0) -> None:  # fmt: skip
    """Runs the planned stages: remote ones as Ray tasks when their upstream is done, the rest here."""
    planned = plan(project, targets)
    if not planned:
        print("cluster: nothing to run; every stage is up to date")
        return
    remote, url = default_remote(project)
    store = CheckpointStore.for_remote(project, remote)
    # This point's code and params, frozen now: every task of the point runs exactly these.
    files = snapshot.collect(project)
    files_digest = snapshot.digest(files)
    files_reference = ray.put(files)
    task = ray.remote(worker.run_stage).options(
        num_cpus=cpus_per_task, num_gpus=gpus_per_task, max_retries=3, retry_exceptions=False
    )
    needed_remotely = {name for stage in planned if stage.remote for name in stage.inputs_from}
    # Inputs made earlier (stages not planned) must be on the remote before any worker pulls them.
    made_earlier = sorted(needed_remotely - {stage.name for stage in planned})
    if made_earlier:
        dvc("push", *made_earlier, cwd=project)
    waiting = {stage.name: stage for stage in planned}
    done: set[str] = set()
    running: dict = {}
    began = time.monotonic()

    def progress(event: str) -> None:
        print(f"cluster [{len(done)}/{len(planned)}] {time.monotonic() - began:6.0f} s  {event}", flush=True)

    try:
        while waiting or running:
            for stage in [stage for stage in waiting.values() if set(stage.upstream) <= done]:
                del waiting[stage.name]
                if stage.remote:
                    lock_file = project / "dvc.lock"
                    lock = lock_file.read_text() if lock_file.exists() else "schema: '2.0'\n"
                    reference = task.remote(stage.name, stage.uncached, stage.checkpoint_dir, files_reference,
                                            files_digest, lock, remote, url, threads)  # fmt: skip
                    running[reference] = (stage, time.monotonic(), lock)
                    progress(f"submitted {stage.name}")
                else:
                    seconds = run_locally(project, stage.name, push=stage.name in needed_remotely)
                    done.add(stage.name)
                    summary.append({"stage": stage.name, "node": "coordinator", "seconds": round(seconds, 1)})
                    progress(f"{stage.name} done here in {seconds:.0f} s")
            if not running:
                continue
            ready, _ = ray.wait(list(running), num_returns=1, timeout=30)
            if not ready:
                now = time.monotonic()
                ages = (f"{stage.name} ({now - since:.0f} s)" for stage, since, _ in running.values())
                progress("running: " + ", ".join(ages))
                continue
            reference = ready[0]
            stage, _, lock = running.pop(reference)
            result = ray.get(reference)
            if "error" in result:
                raise StageFailedError(f"{stage.name} failed on node {result['node'][:8]}: {result['error']}")
            for line in result["lines"]:
                print(f"cluster: {stage.name} on node {result['node'][:8]}: {line}", flush=True)
            try:
                place(project, result)
            finally:  # placed or refused, the task is over: its checkpoints would only be litter on the remote
                if stage.checkpoint_dir:
                    store.remove(worker.task_key(files_digest, lock, stage.name))
            done.add(stage.name)
            summary.append({"stage": stage.name, "node": result["node"], "seconds": round(result["seconds"], 1),
                            "shipped_files": result["shipped_files"]})  # fmt: skip
            progress(f"{stage.name} done on node {result['node'][:8]} in {result['seconds']:.0f} s")
    finally:
        for reference in running:
            ray.cancel(reference, force=True)  # a failure or Ctrl-C: nothing else may run on
        if running:
            print(f"cluster: cancelled {', '.join(stage.name for stage, _, _ in running.values())}", file=sys.stderr)
