"""A grid's points, one after another: each set in params.yaml, reproduced, checked and saved as an experiment."""

import contextlib
from pathlib import Path

from cluster import grid
from cluster.dvc_command import dvc
from stages.errors import StudyError


class UnsavedPointError(StudyError):
    """A point's workspace is not what its stages recorded, so saving it would record wrong lineage."""


def require_up_to_date(project: Path, name: str) -> None:
    """`dvc exp save` commits every stage with force (and so writes the run cache): only a workspace whose
    every stage matches its recorded inputs may be saved.

    Raises:
        UnsavedPointError: `dvc status` lists a changed stage.
    """
    from dvc.repo import Repo

    with contextlib.chdir(project), Repo(str(project)) as repo:  # stage names relative to the project
        changed = sorted(repo.status())
    if changed:
        raise UnsavedPointError(
            f"experiment {name}: not saved: {', '.join(changed[:3])} changed since it ran; expected every stage "
            "up to date (`dvc status`)"
        )


def run_points(project: Path, points: list[dict], reproduce_point) -> None:
    """Runs `reproduce_point()` for each point; with parameters, saves each as an experiment named after them."""
    for point in points:
        if not point:
            reproduce_point()
            continue
        name = grid.point_name(point)
        try:
            grid.apply_params(project, point)
            print(f"cluster: point {', '.join(f'{key}={value}' for key, value in point.items())}", flush=True)
            reproduce_point()
            require_up_to_date(project, name)
            dvc("exp", "save", "-f", "-n", name, cwd=project)
            print(f"cluster: saved experiment {name} (`dvc exp show`)")
        finally:
            grid.restore_workspace(project)
