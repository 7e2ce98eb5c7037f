"""`cli.run`, the shell of every stage: expected errors are one line and exit 1; bugs keep their traceback."""

import subprocess

import pytest

from tests.conftest import run_python

STAGE = """
import sys
from stages import cli, errors
def main():
    raise {error}
cli.run("demo", main)
"""


def run_stage(error: str, environment: dict) -> subprocess.CompletedProcess:
    return run_python(["-c", STAGE.format(error=error)], environment, timeout=60)


@pytest.mark.parametrize(
    "error", ["errors.ParamsError", "errors.DataError", "errors.SourceError", "errors.WriteError", "errors.StudyError"]
)
def test_every_expected_error_is_one_line_and_exit_status_1(error, isolated_environment):
    completed = run_stage(f"{error}('params.yaml: train.epochs is 0; expected at least 1')", isolated_environment)
    assert completed.returncode == 1
    assert completed.stderr == "demo: error: params.yaml: train.epochs is 0; expected at least 1\n"


@pytest.mark.parametrize("error", ["ValueError('inside a library')", "FileNotFoundError('a bug')", "KeyError('x')"])
def test_an_unexpected_error_keeps_its_traceback(error, isolated_environment):
    completed = run_stage(error, isolated_environment)
    assert completed.returncode == 1
    assert completed.stderr.startswith("Traceback (most recent call last):")
    assert "demo: error:" not in completed.stderr


def test_stages_traceback_shows_the_traceback_of_an_expected_error_too(isolated_environment):
    completed = run_stage("errors.DataError('bad file')", isolated_environment | {"STAGES_TRACEBACK": "1"})
    assert completed.returncode == 1 and "Traceback" in completed.stderr and "DataError: bad file" in completed.stderr


def test_ctrl_c_is_one_line_and_exit_status_130(isolated_environment):
    completed = run_stage("KeyboardInterrupt()", isolated_environment)
    assert completed.returncode == 130
    assert completed.stderr == "demo: interrupted; `dvc repro` will run this stage again\n"


def test_tensorflows_load_notices_are_silenced_and_its_output_otherwise_kept(isolated_environment):
    code = (
        "import sys; from stages import cli\n"
        "cli.run('demo', lambda: print('tensorflow', sys.modules['tensorflow'].__version__, file=sys.stderr),"
        " uses_tensorflow=True)"
    )
    completed = run_python(["-c", code], isolated_environment, timeout=120)
    assert completed.returncode == 0
    assert completed.stderr.startswith("tensorflow 2.")
    assert "oneDNN custom operations" not in completed.stderr and "absl::InitializeLog" not in completed.stderr
