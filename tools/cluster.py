"""Runs the pipeline's stages on a Ray cluster; DVC keeps all the bookkeeping, Ray only schedules.

    python -m tools.cluster repro [TARGETS ...] [-S key=value ...] [--address HOST:PORT] [--cpus-per-task N]

What `dvc repro` would run is asked of DVC (the changed stages and everything downstream, in
DAG order). Each training and evaluation runs as a Ray task as soon as the stages it depends on
are done; the cheap stages (download, prepare, compare, report) run here, on the coordinator.

A task gets the project's code and params (Ray's `runtime_env` working_dir: never data, caches,
the venv or `.dvc/config.local`), copies it to a scratch directory, runs its one stage with
`dvc repro --pull -s` (which pulls the inputs from the shared DVC remote), pushes its cached
outputs (the model) to the remote, and returns its `dvc.lock` entry and its small git-tracked
outputs (metrics, plot data). The coordinator then places them: it pulls the cached outputs,
writes the returned files and records the stage with `dvc commit -f`, in DAG order as stages
finish. Afterwards `dvc status` is clean and `dvc.lock` is what a local `dvc repro` writes.

With -S (DVC's syntax, including grids: -S 'arch.kernel=2,3,5'), each point's stages run on the
cluster and the point is saved as a DVC experiment (`dvc exp save`), so `dvc exp show` lists it.

Without --address a Ray is started on this machine (loopback only, no dashboard). Ray has no
authentication: a cluster belongs on a private network (docs/scaling.md).
"""

import argparse
import contextlib
import dataclasses
import itertools
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from stages import cli
from stages.errors import ParamsError, SourceError, StudyError

# Stages that are worth a machine; the others are seconds and run on the coordinator.
REMOTE_STAGE_PREFIXES = ("train@", "evaluate@")
# Never shipped to workers: data and caches (they come from the remote), local secrets, tooling.
SHIPPING_EXCLUDES = [
    ".git", ".venv", "node_modules", "data", "models", ".dvc/cache", ".dvc/tmp", ".dvc/config.local",
    "dvc_plots", "__pycache__", "*.pyc", ".pytest_cache",
]  # fmt: skip
CONNECT_TIMEOUT_SECONDS = 10


class StageFailedError(StudyError):
    """A stage's command failed, on a worker or here (its one-line error is the message)."""


def dvc(*arguments: str, cwd: Path, check: bool = True, environment: dict | None = None):
    """Runs DVC (this interpreter's) in `cwd`; on failure raises SourceError with its last line."""
    completed = subprocess.run(
        [sys.executable, "-m", "dvc", *arguments], cwd=cwd, capture_output=True, text=True, env=environment
    )
    if check and completed.returncode != 0:
        lines = (completed.stderr.strip() or completed.stdout.strip() or "no output").splitlines()
        raise SourceError(f"dvc {' '.join(arguments)}: {lines[-1]}")
    return completed


# ---- What to run -------------------------------------------------------------------------------


@dataclasses.dataclass
class Planned:
    name: str
    upstream: list[str]  # planned stages it waits for
    inputs_from: list[str]  # every stage whose outputs it reads, planned or not
    uncached: list[str]  # its git-tracked outputs (cache: false), which travel back through Ray

    @property
    def remote(self) -> bool:
        return self.name.startswith(REMOTE_STAGE_PREFIXES)


def plan(project: Path, targets: list[str]) -> list[Planned]:
    """The stages `dvc repro TARGETS` would run, in DAG order, each with the planned stages it waits for.

    A stage runs when it changed (its command, code, params or inputs, or an output is missing)
    or when a stage it depends on runs.
    """
    from dvc.repo import Repo
    from dvc.repo.reproduce import collect_stages, plan_repro

    # DVC names stages relative to the working directory (dvc.yaml's own stages by name only from its root).
    with contextlib.chdir(project), Repo(str(project)) as repo, repo.lock:
        graph = repo.index.graph
        chosen = collect_stages(repo, targets) if targets else None
        planned: dict[str, Planned] = {}
        for stage in plan_repro(graph, chosen):
            upstream = [dependency.addressing for dependency in graph.successors(stage)]
            waits_for = [name for name in upstream if name in planned]
            if waits_for or stage.changed():
                uncached = [output.def_path for output in stage.outs if not output.use_cache]
                planned[stage.addressing] = Planned(stage.addressing, waits_for, upstream, uncached)
    return list(planned.values())


# ---- Parameters (-S) -----------------------------------------------------------------------------


def parse_overrides(overrides: list[str]) -> list[dict[str, object]]:
    """-S arguments as the points of their grid: 'a=1,2' and 'b=x' give [{a: 1, b: x}, {a: 2, b: x}].

    Raises:
        ParamsError: an argument is not key=value.
    """
    axes = []
    for override in overrides:
        key, separator, values = override.partition("=")
        if not separator or not key:
            raise ParamsError(f"-S {override!r}: expected key=value or key=v1,v2 (DVC's syntax)")
        axes.append([(key, yaml.safe_load(value)) for value in values.split(",")])
    return [dict(point) for point in itertools.product(*axes)]


def apply_params(project: Path, point: dict[str, object]) -> None:
    """Sets each dotted key in params.yaml, keeping its comments (DVC's own YAML round trip).

    Raises:
        ParamsError: a key is not in params.yaml (as `dvc exp run -S` edits existing keys only).
    """
    from dvc.utils.serialize import modify_yaml

    with modify_yaml(project / "params.yaml") as content:
        for dotted, value in point.items():
            *parents, last = dotted.split(".")
            node = content
            for part in parents:
                node = node.get(part) if isinstance(node, dict) else None
            if not isinstance(node, dict) or last not in node:
                raise ParamsError(f"-S {dotted}: no such key in params.yaml; expected an existing key")
            node[last] = value


# ---- The task a worker runs -------------------------------------------------------------------------


def read_outputs(paths: list[str], root: Path) -> dict[str, bytes]:
    """The files at `paths` (files, or every file under a directory), keyed by path relative to `root`."""
    files = {}
    for relative in paths:
        path = root / relative
        for file in sorted(path.rglob("*")) if path.is_dir() else [path]:
            if file.is_file():
                files[str(file.relative_to(root))] = file.read_bytes()
    return files


def run_stage_here(stage: str, uncached: list[str], lock_text: str, remote: str, remote_url: str, threads: int) -> dict:
    """On a worker: one stage in a private copy of the shipped project; returns what the coordinator needs."""
    import ray

    started = time.monotonic()
    node = ray.get_runtime_context().get_node_id()
    shipped = Path.cwd()
    with tempfile.TemporaryDirectory(prefix="stage-") as scratch:
        root = Path(scratch) / "project"
        shutil.copytree(shipped, root)
        (root / "dvc.lock").write_text(lock_text)
        # No git here (nothing is committed on a worker), and the remote at the coordinator's absolute URL.
        (root / ".dvc/config.local").write_text(
            f"[core]\n    no_scm = true\n['remote \"{remote}\"']\n    url = {remote_url}\n"
        )
        # TensorFlow's thread count changes a trained model's last bits (measured: 1 and 2 threads give other
        # bytes on the same machine), so it is set, not left to each node's core count.
        environment = dict(os.environ, TF_NUM_INTRAOP_THREADS=str(threads), TF_NUM_INTEROP_THREADS="1")
        completed = dvc("repro", "--pull", "-s", stage, cwd=root, check=False, environment=environment)
        if completed.returncode != 0:
            # Returned, not raised: the coordinator shows the stage's own one-line error, not a Ray traceback.
            return {"stage": stage, "node": node, "error": stage_error(completed)}
        dvc("push", stage, cwd=root, environment=environment)
        entry = yaml.safe_load((root / "dvc.lock").read_text())["stages"][stage]
        files = read_outputs(uncached, root)
        shipped_files = sorted(str(path.relative_to(shipped)) for path in shipped.rglob("*") if path.is_file())
    return {
        "stage": stage, "node": node, "seconds": time.monotonic() - started, "entry": entry, "files": files,
        "shipped_files": shipped_files,
    }  # fmt: skip


def stage_error(completed: subprocess.CompletedProcess) -> str:
    """The stage's own one-line error (stages print `<stage>: <what>`), else DVC's last line."""
    lines = [line.strip() for line in completed.stderr.splitlines() if line.strip()]
    own = [line for line in lines if not line.startswith(("ERROR", "WARNING", "+", "|")) and ": " in line]
    return (own or lines or ["failed with no output"])[-1]


# ---- The coordinator ------------------------------------------------------------------------------


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
    """Ray, connected to `address` or started here, shipping the project as each task's working directory."""
    import ray

    runtime_env = {"working_dir": str(project), "excludes": SHIPPING_EXCLUDES}
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


def place(project: Path, result: dict) -> None:
    """Records a worker's stage here: its lock entry, its cached outputs from the remote, its files, `dvc commit`."""
    lock_path = project / "dvc.lock"
    lock = yaml.safe_load(lock_path.read_text()) if lock_path.exists() else {"schema": "2.0", "stages": {}}
    lock.setdefault("stages", {})[result["stage"]] = result["entry"]
    lock_path.write_text(yaml.safe_dump(lock, sort_keys=False))
    for relative, content in result["files"].items():
        path = project / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    dvc("pull", result["stage"], cwd=project)
    dvc("commit", "-f", result["stage"], cwd=project)


def run_locally(project: Path, stage: str, push: bool) -> float:
    started = time.monotonic()
    completed = dvc("repro", "-s", stage, cwd=project, check=False)
    if completed.returncode != 0:
        raise StageFailedError(f"{stage} failed on the coordinator: {stage_error(completed)}")
    if push:
        dvc("push", stage, cwd=project)
    return time.monotonic() - started


def reproduce(project: Path, targets: list[str], ray, cpus_per_task: float, threads: int, summary: list[dict]) -> None:
    """Runs the planned stages: remote ones as Ray tasks when their upstream is done, the rest here."""
    planned = plan(project, targets)
    if not planned:
        print("cluster: nothing to run; every stage is up to date")
        return
    remote, url = default_remote(project)
    task = ray.remote(run_stage_here).options(num_cpus=cpus_per_task, max_retries=3, retry_exceptions=False)
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
                    reference = task.remote(stage.name, stage.uncached, lock, remote, url, threads)
                    running[reference] = (stage.name, time.monotonic())
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
                progress("running: " + ", ".join(f"{name} ({now - since:.0f} s)" for name, since in running.values()))
                continue
            reference = ready[0]
            name, _ = running.pop(reference)
            result = ray.get(reference)
            if "error" in result:
                raise StageFailedError(f"{name} failed on node {result['node'][:8]}: {result['error']}")
            place(project, result)
            done.add(name)
            summary.append({"stage": name, "node": result["node"], "seconds": round(result["seconds"], 1),
                            "shipped_files": result["shipped_files"]})  # fmt: skip
            progress(f"{name} done on node {result['node'][:8]} in {result['seconds']:.0f} s")
    finally:
        for reference in running:
            ray.cancel(reference, force=True)  # a failure or Ctrl-C: nothing else may run on
        if running:
            print(f"cluster: cancelled {', '.join(name for name, _ in running.values())}", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    repro = commands.add_parser("repro", help="what `dvc repro` would run, spread over a Ray cluster")
    repro.add_argument("targets", nargs="*", help="stages, as for dvc repro (default: all)")
    repro.add_argument("-S", "--set-param", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    repro.add_argument("--address", help="HOST:PORT of a Ray cluster's head (default: start Ray here)")
    repro.add_argument("--cpus-per-task", type=float, default=1.0, help="CPUs Ray reserves for each task")
    repro.add_argument(
        "--threads", type=int, default=os.cpu_count(),
        help="TensorFlow threads per task (default: this machine's cores, so results match a local dvc repro here)",
    )  # fmt: skip
    repro.add_argument("--summary", type=Path, help="also write the per-stage summary here (JSON)")
    arguments = parser.parse_args()
    if arguments.cpus_per_task <= 0:
        raise ParamsError(f"--cpus-per-task: got {arguments.cpus_per_task}; expected a positive number")
    if arguments.threads < 1:
        raise ParamsError(f"--threads: got {arguments.threads}; expected a positive integer")
    project = Path.cwd()
    points = parse_overrides(arguments.overrides) if arguments.overrides else [{}]
    if arguments.overrides:
        # Each point is saved as an experiment and the workspace restored with git: uncommitted edits would go.
        changed = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=project,
                                 capture_output=True, text=True, check=False).stdout.split("\n")  # fmt: skip
        changed = [line[3:] for line in changed if line.strip()]
        if changed:
            raise ParamsError(
                f"-S: the workspace has uncommitted changes ({', '.join(changed[:3])}); expected a clean "
                "workspace (commit or stash first): each point is saved as an experiment, then the workspace restored"
            )
    summary: list[dict] = []
    began = time.monotonic()
    with connected(project, arguments.address) as ray:
        for point in points:
            if point:
                apply_params(project, point)
                print(f"cluster: point {', '.join(f'{key}={value}' for key, value in point.items())}", flush=True)
            reproduce(project, arguments.targets, ray, arguments.cpus_per_task, arguments.threads, summary)
            if point:
                name = "-".join(f"{key.split('.')[-1]}-{value}" for key, value in point.items())
                dvc("exp", "save", "-f", "-n", name, cwd=project)
                print(f"cluster: saved experiment {name} (`dvc exp show`)")
                subprocess.run(["git", "checkout", "--", "."], cwd=project, check=True)
                dvc("checkout", "--force", cwd=project)
    for row in summary:
        print(f"  {row['stage']:<28} {row['node'][:12]:<12} {row['seconds']:8.1f} s")
    print(f"cluster: {len(summary)} stages in {time.monotonic() - began:.0f} s")
    if arguments.summary:
        arguments.summary.write_text(json.dumps(summary, indent=2))


def main_interruptible() -> None:
    try:
        main()
    except KeyboardInterrupt:
        print("cluster: interrupted; the running tasks were cancelled and the stages finished before stay in "
              "dvc.lock: run the same command to go on", file=sys.stderr)  # fmt: skip
        sys.exit(cli.INTERRUPTED_EXIT_STATUS)


if __name__ == "__main__":
    cli.run("cluster", main_interruptible)
