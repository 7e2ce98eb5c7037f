"""DVC's command line, run as a child process, with its last line as the error."""

import subprocess
import sys
from pathlib import Path

from stages.errors import SourceError, StudyError


class StageFailedError(StudyError):
    """A stage's command failed, on a worker or here (its one-line error is the message)."""


def dvc(*arguments: str, cwd: Path, check: bool = True, environment: dict | None = None, pass_fds=()):
    """Runs DVC (this interpreter's) in `cwd`; on failure raises SourceError with its last line."""
    completed = subprocess.run(
        [sys.executable, "-m", "dvc", *arguments], cwd=cwd, capture_output=True, text=True, env=environment,
        pass_fds=pass_fds,
    )  # fmt: skip
    if check and completed.returncode != 0:
        lines = (completed.stderr.strip() or completed.stdout.strip() or "no output").splitlines()
        raise SourceError(f"dvc {' '.join(arguments)}: {lines[-1]}")
    return completed


def stage_error(completed: subprocess.CompletedProcess) -> str:
    """The stage's own one-line error (stages print `<stage>: <what>`), else DVC's last line."""
    lines = [line.strip() for line in completed.stderr.splitlines() if line.strip()]
    own = [line for line in lines if not line.startswith(("ERROR", "WARNING", "+", "|")) and ": " in line]
    return (own or lines or ["failed with no output"])[-1]
