"""A tiny copy of the project in a fresh git + DVC repository, and the commands tests and benchmarks run in it."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

PROJECT_ROOT = Path(__file__).resolve().parents[1]
PARAMS_FILE = PROJECT_ROOT / "params.yaml"
# What a copy of the project needs to run the pipeline; data, models and caches are left behind.
PROJECT_FILES = ("stages", "tools", "cluster", "params.yaml", "dvc.yaml", ".gitignore", ".dvcignore")
# A few hundred images, one epoch, one seed: the real pipeline, shrunk.
TINY_PARAMS = {"data.limit": 300, "train.epochs": 1, "train.seeds": [1], "evaluate.sample_indices": [0, 100, 250]}


def run(command: list[str], cwd: Path, environment: dict, check: bool = True,
        timeout: float = 600) -> subprocess.CompletedProcess:  # fmt: skip
    """Runs a command, returning its output; on failure the assertion shows stdout and stderr. A command still
    running after `timeout` seconds is killed, and the test fails naming it."""
    completed = subprocess.run(command, cwd=cwd, env=environment, capture_output=True, text=True, check=False,
                               timeout=timeout)  # fmt: skip
    if check:
        assert completed.returncode == 0, f"{' '.join(command)} failed:\n{completed.stdout}\n{completed.stderr}"
    return completed


def run_python(arguments: list[str], environment: dict, cwd: Path = PROJECT_ROOT, timeout: float = 300,
               prefix: list[str] = ()) -> subprocess.CompletedProcess:  # fmt: skip
    """Runs this interpreter in a child process (so nothing it does touches the test session), capturing output."""
    return subprocess.run([*prefix, sys.executable, *arguments], cwd=cwd, env=environment, capture_output=True,
                          text=True, timeout=timeout, check=False)  # fmt: skip


def set_params(path: Path, overrides: dict) -> None:
    """Sets dotted keys in a params.yaml; `layers[2]` indexes a list."""
    content = yaml.safe_load(path.read_text())
    for dotted_key, value in overrides.items():
        steps = [int(step) if step.isdigit() else step for step in re.split(r"\.|\[|\]\.?", dotted_key) if step]
        node = content
        for step in steps[:-1]:
            node = node[step]
        node[steps[-1]] = value
    path.write_text(yaml.safe_dump(content, sort_keys=False))


def make_tiny_project(project: Path, environment: dict) -> Path:
    """Copies the project into `project`, a fresh git + DVC repository, configured to train tiny."""
    project.mkdir(parents=True)
    for name in PROJECT_FILES:
        source = PROJECT_ROOT / name
        if source.is_dir():
            shutil.copytree(source, project / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, project / name)
    set_params(project / "params.yaml", TINY_PARAMS)
    run(["git", "init", "-q"], project, environment)
    run(["dvc", "init", "-q"], project, environment)
    # The report's plot templates, and the page template that renders plots offline, set as setup.sh sets it.
    shutil.copytree(PROJECT_ROOT / ".dvc/plots", project / ".dvc/plots")
    page = run_python(["-m", "tools.offline_plots", "--node-modules", str(PROJECT_ROOT / "node_modules"),
                       "--output", str(project / ".dvc/offline-plots.html")], environment)  # fmt: skip
    assert page.returncode == 0, page.stderr
    run(["dvc", "config", "--local", "plots.html_template", "offline-plots.html"], project, environment)
    run(["git", "add", "-A"], project, environment)
    run(["git", "commit", "-qm", "tiny project"], project, environment)
    return project
