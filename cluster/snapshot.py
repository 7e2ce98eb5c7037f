"""The project's code and params as a task runs them: files as bytes, frozen when a point starts.

Ray's `runtime_env` working_dir is packed once, at `ray.init`, so a grid's later points (and any
edit made while a run goes on) would never reach the tasks. Instead each point's files travel as
a task argument (one object in Ray's store per point), with their SHA-256, which the worker
checks before running anything. `dvc.lock` is not part of it: it grows as stages are placed and
goes with each task.
"""

import fnmatch
import hashlib
import os
import subprocess
from pathlib import Path

# Never shipped, besides what git ignores (DVC's outputs among them): data and caches (they come
# from the DVC remote), local secrets, tooling. Patterns without a '/' match a name at any depth
# (as in .gitignore); with one, a path from the root.
EXCLUDES = (
    ".git", ".venv", "node_modules", "data", "models", ".dvc/cache", ".dvc/tmp", ".dvc/config.local",
    "dvc_plots", "__pycache__", "*.pyc", ".pytest_cache",
)  # fmt: skip
# Not in a point's snapshot: each task gets the coordinator's dvc.lock of the moment it is submitted.
PER_TASK = ("dvc.lock",)


def excluded(relative: str, patterns=EXCLUDES) -> bool:
    """Whether a path relative to the project (with '/') matches one of `patterns`."""
    parts = relative.split("/")
    for pattern in patterns:
        if "/" in pattern:
            if relative == pattern or relative.startswith(pattern + "/"):
                return True
        elif any(fnmatch.fnmatchcase(part, pattern) for part in parts):
            return True
    return False


def candidates(project: Path) -> list[str]:
    """The project's files that git does not ignore (DVC's outputs are ignored), as Ray's working_dir picks them.

    Outside git, every file.
    """
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=project, capture_output=True,
        check=False,
    )  # fmt: skip
    if listed.returncode == 0:
        return sorted(name for name in listed.stdout.decode().split("\0") if name)
    return sorted(str(path.relative_to(project)).replace(os.sep, "/") for path in project.rglob("*") if path.is_file())


def collect(project: Path) -> dict[str, bytes]:
    """Every shipped file of the project, keyed by its path relative to the project."""
    files = {}
    for relative in candidates(project):
        path = project / relative
        if not excluded(relative, EXCLUDES + PER_TASK) and path.is_file():
            files[relative] = path.read_bytes()
    return files


def digest(files: dict[str, bytes]) -> str:
    """A SHA-256 over the paths and contents of `files`."""
    hasher = hashlib.sha256()
    for relative in sorted(files):
        hasher.update(relative.encode() + b"\0" + hashlib.sha256(files[relative]).digest())
    return hasher.hexdigest()


def materialize(files: dict[str, bytes], root: Path) -> None:
    """Writes `files` under `root`."""
    for relative, content in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
