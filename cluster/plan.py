"""What `dvc repro TARGETS` would run, in DAG order, asked of DVC itself.

DVC has no public API for this, so `plan()` calls `dvc.repo.reproduce.plan_repro` and
`collect_stages` (pinned: requirements.txt). If an upgrade changes them, `plan()` fails with one
line naming the DVC version, and tests/test_cluster_parts.py `test_plan_is_what_dvc_repro_would_run`
says so too.
"""

import contextlib
import dataclasses
import shlex
from pathlib import Path

from stages.errors import SourceError

# Stages that are worth a machine; the others are seconds and run on the coordinator.
REMOTE_STAGE_PREFIXES = ("train@", "evaluate@")


@dataclasses.dataclass
class Planned:
    name: str
    upstream: list[str]  # planned stages it waits for
    inputs_from: list[str]  # every stage whose outputs it reads, planned or not
    uncached: list[str]  # its git-tracked outputs (cache: false), which travel back through Ray
    checkpoint_dir: str | None = None  # the command's --checkpoint-dir, relative to the project

    @property
    def remote(self) -> bool:
        return self.name.startswith(REMOTE_STAGE_PREFIXES)


def checkpoint_dir_of(command: str) -> str | None:
    """The value of `--checkpoint-dir` in a stage's command, if it has one."""
    words = shlex.split(command)
    for index, word in enumerate(words[:-1]):
        if word == "--checkpoint-dir":
            return words[index + 1]
    return None


def plan(project: Path, targets: list[str]) -> list[Planned]:
    """The stages `dvc repro TARGETS` would run, in DAG order, each with the planned stages it waits for.

    A stage runs when it changed (its command, code, params or inputs, or an output is missing)
    or when a stage it depends on runs.

    Raises:
        SourceError: the installed DVC's private planning API is not the one this was written for.
    """
    import dvc
    from dvc.repo import Repo

    try:
        from dvc.repo.reproduce import collect_stages, plan_repro
    except ImportError as error:
        raise SourceError(f"DVC {dvc.__version__}: {error}; cluster/plan.py was written for DVC 3.67") from None
    # DVC names stages relative to the working directory (dvc.yaml's own stages by name only from its root).
    with contextlib.chdir(project), Repo(str(project)) as repo, repo.lock:
        graph = repo.index.graph
        chosen = collect_stages(repo, targets) if targets else None
        planned: dict[str, Planned] = {}
        for stage in plan_repro(graph, chosen):
            if not hasattr(stage, "addressing") or not hasattr(stage, "changed"):
                raise SourceError(
                    f"DVC {dvc.__version__}: plan_repro returned {type(stage).__name__}, not stages; "
                    "cluster/plan.py was written for DVC 3.67"
                )
            upstream = [dependency.addressing for dependency in graph.successors(stage)]
            waits_for = [name for name in upstream if name in planned]
            if waits_for or stage.changed():
                uncached = [output.def_path for output in stage.outs if not output.use_cache]
                planned[stage.addressing] = Planned(
                    stage.addressing, waits_for, upstream, uncached, checkpoint_dir_of(stage.cmd or "")
                )
    return list(planned.values())
