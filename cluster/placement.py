"""Records a worker's stage here, only once its inputs are shown to be this workspace's.

`dvc commit -f` would record the returned outputs with whatever this workspace holds at that
moment, and it also writes DVC's run cache (`Stage.save(run_cache=True)`), which `dvc push
--run-cache` spreads. So the stage is recorded here through DVC's own `Stage` in one process:
its dependencies and params are hashed once, compared with the worker's entry
(cluster/lineage.py), and those same hashes are what the lock entry and the run-cache entry
record. A mismatch, or any failure on the way (a pull, Ctrl-C), raises and puts `dvc.lock`, the
returned files and the outputs back as they were; the run cache is written only at the very end.
"""

import contextlib
import json
from pathlib import Path

import yaml

from cluster import lineage
from cluster.dvc_command import dvc
from stages.errors import StudyError


class LineageError(StudyError):
    """A result's recorded inputs would not be the inputs that made it."""


def _plain(entry: dict) -> dict:
    return json.loads(json.dumps(entry))


def _check(repo, name: str, worker_entry: dict):
    """The stage, its dependencies hashed now; raises LineageError if they differ from the worker's."""
    from dvc.stage.serialize import to_single_stage_lockfile

    (stage,) = repo.stage.collect(name)
    stage.save_deps()
    ours = _plain(to_single_stage_lockfile(stage))
    difference = lineage.first_difference(worker_entry, ours)
    if difference:
        raise LineageError(lineage.refusal(name, difference))
    return stage


def check(project: Path, name: str, worker_entry: dict) -> None:
    """Raises LineageError when this workspace would record other inputs for `name` than the worker's."""
    from dvc.repo import Repo

    with contextlib.chdir(project), Repo(str(project)) as repo, repo.lock:
        _check(repo, name, worker_entry)


def _put_back(project: Path, name: str, lock_before: str | None, files_before: dict[str, bytes | None],
              worker_entry: dict) -> None:  # fmt: skip
    """Undoes a placement that did not finish: dvc.lock, the returned files and the cached outputs as they were."""
    import shutil

    lock_path = project / "dvc.lock"
    if lock_before is None:
        lock_path.unlink(missing_ok=True)
    else:
        lock_path.write_text(lock_before)
    for relative, content in files_before.items():
        path = project / relative
        if content is None:
            path.unlink(missing_ok=True)
        else:
            path.write_bytes(content)
    previous = (yaml.safe_load(lock_before) or {}).get("stages", {}) if lock_before else {}
    if name in previous:
        dvc("checkout", "--force", name, cwd=project, check=False)  # the earlier result, from the cache
    else:
        for output in worker_entry.get("outs") or []:
            path = project / output["path"]
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)


def place(project: Path, result: dict) -> None:
    """Checks, then records a worker's stage here: its cached outputs from the remote, its files, its lock entry.

    Raises:
        LineageError: the stage's command, a dependency or a parameter here differs from the worker's.
    """
    from dvc.repo import Repo
    from dvc.stage.serialize import to_single_stage_lockfile

    name, entry = result["stage"], _plain(result["entry"])
    check(project, name, entry)  # before anything is written
    lock_path = project / "dvc.lock"
    before = lock_path.read_text() if lock_path.exists() else None
    lock = yaml.safe_load(before) if before else {"schema": "2.0", "stages": {}}
    lock.setdefault("stages", {})[name] = entry
    lock_path.write_text(yaml.safe_dump(lock, sort_keys=False))  # `dvc pull` finds the outputs' hashes here
    files_before = {
        relative: (project / relative).read_bytes() if (project / relative).is_file() else None
        for relative in result["files"]
    }
    for relative, content in result["files"].items():
        path = project / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    try:
        dvc("pull", name, cwd=project)
        with contextlib.chdir(project), Repo(str(project)) as repo, repo.lock:
            # Hashed once more, under DVC's lock, and these very hashes are recorded: an edit made since the
            # check above is caught here, not written.
            stage = _check(repo, name, entry)
            stage.save_outs()
            recorded = _plain(to_single_stage_lockfile(stage))
            if recorded.get("outs") != entry.get("outs"):
                raise LineageError(f"{name}: result refused, the outputs pulled from the remote are not the worker's")
            stage.md5 = stage.compute_md5()
            repo.stage_cache.save(stage)
            stage.commit()
            stage.dvcfile.dump_stages([stage], update_pipeline=False)
    except BaseException:
        _put_back(project, name, before, files_before, entry)
        raise
