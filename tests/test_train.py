"""The training stage's core: optimizers, the cost guard, and a training that leaves the process as it found it.

Training runs in a child process: it turns on TensorFlow's op determinism and seeds every
generator, which must not leak into the rest of the test session.
"""

import json
import textwrap

import pytest

from stages import architecture, train
from stages.errors import ParamsError
from tests.conftest import project_params, run_python

TINY_TRAINING = """
import json, signal, sys, tempfile
from pathlib import Path
import numpy as np
from stages import architecture, train
generator = np.random.default_rng(0)
images = generator.random((40, 28, 28, 1), dtype=np.float32)
labels = np.eye(10, dtype=np.float32)[generator.integers(0, 10, 40)]
spec = architecture.parse_architecture("tiny", {"kernel": 3, "layers": [
    {"type": "conv", "filters": 4}, {"type": "pool"}, {"type": "flatten"}, {"type": "dropout", "rate": 0.5}]})
"""


def run_child(code: str, environment: dict) -> dict:
    """Runs `code` after the tiny set-up in a fresh interpreter; returns the JSON it prints last."""
    completed = run_python(["-c", TINY_TRAINING + textwrap.dedent(code)], environment)
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(("name", "keras_class"), [("adam", "Adam"), ("sgd", "SGD"), ("rmsprop", "RMSprop")])
def test_the_configured_optimizer_is_the_one_trained_with(name, keras_class, isolated_environment):
    result = run_child(
        f"""
        settings = train.TrainParams(epochs=1, batch_size=20, optimizer="{name}", learning_rate=0.005,
                                     max_gflop_per_epoch=10, precision="float32")
        with tempfile.TemporaryDirectory() as live:
            model, history = train.train(spec, settings, 1, {{"x": images[:30], "y": labels[:30]}},
                                         {{"x": images[30:], "y": labels[30:]}}, Path(live))
        print(json.dumps({{"class": type(model.optimizer).__name__,
                          "learning_rate": float(model.optimizer.learning_rate.numpy())}}))
        """,
        isolated_environment,
    )
    assert result == {"class": keras_class, "learning_rate": pytest.approx(0.005)}


def test_training_restores_the_signal_handlers_it_replaced(isolated_environment):
    result = run_child(
        """
        def mine(number, frame):
            pass
        signal.signal(signal.SIGINT, mine)
        before = (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM))
        settings = train.TrainParams(epochs=1, batch_size=20, optimizer="adam", learning_rate=0.001,
                                     max_gflop_per_epoch=10, precision="float32")
        with tempfile.TemporaryDirectory() as live:
            train.train(spec, settings, 1, {"x": images[:30], "y": labels[:30]},
                        {"x": images[30:], "y": labels[30:]}, Path(live))
        after = (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM))
        print(json.dumps({"restored": before == after, "ours": after[0] is mine}))
        """,
        isolated_environment,
    )
    assert result == {"restored": True, "ours": True}


def test_cost_of_an_epoch_counts_training_three_times_forward_and_validation_once():
    spec = architecture.parse_architecture("conv3_pool", project_params()["conv3_pool"])
    # By hand, multiply-adds per image: conv 3x3x1x32 over 26x26 = 194,688; conv 3x3x32x64 over 11x11 = 2,230,272;
    # conv 3x3x64x96 over 3x3 = 497,664; dense 96x128 = 12,288; dense 128x10 = 1,280; in all 2,936,192, so
    # 5,872,384 FLOPs forward. An epoch: 3 x that x 48,000 training images + that x 12,000 validation images
    # = 5,872,384 x 156,000 = 916.09 GFLOP.
    assert train.epoch_gflop(spec, 48_000, 12_000) == pytest.approx(916.091904)


def test_the_study_models_pass_the_default_guard_and_a_huge_spec_does_not():
    loaded = project_params()
    limit = train.TrainParams.from_section(loaded["train"]).max_gflop_per_epoch
    for name in loaded["models"]:
        spec = architecture.parse_architecture(name, loaded[name])
        train.check_cost(spec, train.epoch_gflop(spec, 48_000, 12_000), limit)
    # A typo of 1024 filters for 64, say: 3.7 GFLOP per image forward, half a million per epoch.
    huge = architecture.parse_architecture(
        "arch",
        {"kernel": 3, "layers": [{"type": "conv", "filters": 256, "padding": "same"},
                                 {"type": "conv", "filters": 1024, "padding": "same"}, {"type": "flatten"}]},
    )  # fmt: skip
    gflop = train.epoch_gflop(huge, 48_000, 12_000)
    with pytest.raises(
        ParamsError,
        match=rf"^model 'arch' would cost {gflop:,.0f} GFLOP per epoch, over the limit train.max_gflop_per_epoch = "
        r"100,000; check the spec for a typo, or raise train.max_gflop_per_epoch in params.yaml if you mean it$",
    ):
        train.check_cost(huge, gflop, limit)


def test_a_signal_stops_at_the_next_batch_and_a_second_one_at_once(isolated_environment):
    result = run_child(
        """
        import os
        events = []
        with train.StopOnSignal() as stop:
            os.kill(os.getpid(), signal.SIGTERM)  # recorded, not raised: training may be inside TensorFlow
            events.append("kept running")
            try:
                stop.on_train_batch_end(0)
            except KeyboardInterrupt:
                events.append("stopped at the batch boundary")
            try:
                os.kill(os.getpid(), signal.SIGINT)  # the impatient second Ctrl-C
                events.append("not stopped")
            except KeyboardInterrupt:
                events.append("second signal stopped at once")
        print(json.dumps(events))
        """,
        isolated_environment,
    )
    assert result == ["kept running", "stopped at the batch boundary", "second signal stopped at once"]
