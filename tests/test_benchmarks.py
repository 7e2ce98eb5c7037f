"""The benchmark's arithmetic: the compute bound is only as good as its FLOP count."""

from benchmarks import train_speed


def test_matmul_rate_is_the_flop_count_over_the_median_time_of_one_product(monkeypatch):
    # A clock that advances one second per reading except across the third product (five seconds): the
    # median of the timed products is 1 s, so the rate is the FLOP count of one n x n product, 2 n^3. A
    # wrong count (no factor 2, or n^2) or a mean instead of a median would give another number. A fake
    # clock, because two timings of the same product differ by more than any tolerance on a shared CPU.
    readings = iter([0, 1, 2, 3, 4, 9, 10, 11, 12, 13, 14, 15])
    monkeypatch.setattr(train_speed.time, "perf_counter", lambda: next(readings))
    assert train_speed.matmul_rate(size=64, repetitions=5) == 2 * 64**3


def test_knob_summary_counts_waits_before_the_first_batch_and_skips_the_warm_up_epoch():
    from benchmarks import knobs

    epochs = [
        {"wait": 0.1, "train": 9.0, "validation": 1.0},  # warm-up: tracing, not counted
        {"wait": 4.0, "train": 5.0, "validation": 0.5},
        {"wait": 0.0, "train": 5.0, "validation": 0.4},
        {"wait": 0.0, "train": 6.0, "validation": 0.6},
    ]
    row = knobs.summarize("arrays", "conv3_pool", 48000, {"epochs": epochs, "val_loss": 0.05})
    assert row["median_epoch_seconds"] == 6.0 and row["mean_epoch_seconds"] == round(20 / 3, 2)
    assert row["median_images_per_second"] == 8000 and row["median_validation_seconds"] == 0.5
    assert row["waits_over_1s"] == 1


def test_images_per_second_counts_every_image_trained_the_last_partial_batch_included(monkeypatch):
    import argparse

    from stages import architecture
    from tests.conftest import project_params

    # 450 images in batches of 200 is 3 batches, the last of 50; the old code counted 400.
    measured = {"images": 450, "epoch_seconds": [9.0, 1.5, 1.5, 1.5], "validation_seconds": [0.2] * 4}
    monkeypatch.setattr(train_speed, "run_isolated", lambda model, path, policy, arguments: dict(measured))
    monkeypatch.setattr(train_speed, "parameter_counts", lambda spec: {"keras": 1})
    spec = architecture.parse_architecture("conv3_pool", project_params()["conv3_pool"])
    row = train_speed.benchmark_model(spec, None, argparse.Namespace(paths=["pipeline"]), rates={"float32": 1e11})
    assert row["images_per_epoch"] == 450 and row["precisions"]["float32"]["pipeline"]["images_per_second"] == 300


def test_each_precision_has_its_own_bound_and_the_speedup_is_against_float32(monkeypatch):
    import argparse

    from stages import architecture
    from tests.conftest import project_params

    # float32 epochs of 2 s, bfloat16 epochs of 1 s, 4,000 images: 2,000 and 4,000 images per second.
    seconds = {"float32": 2.0, "mixed_bfloat16": 1.0}
    monkeypatch.setattr(
        train_speed,
        "run_isolated",
        lambda model, path, policy, arguments: {"images": 4000, "epoch_seconds": [5.0] + [seconds[policy]] * 3},
    )
    monkeypatch.setattr(train_speed, "parameter_counts", lambda spec: {"keras": 1})
    spec = architecture.parse_architecture("conv3_pool", project_params()["conv3_pool"])
    # conv3_pool trains at 3 x 5,872,384 FLOPs per image (tests/test_architecture.py's hand count): at
    # 1e11 FLOP/s float32 and 4e11 bfloat16 the bounds are 5,676 and 22,705 images per second.
    row = train_speed.benchmark_model(
        spec, None, argparse.Namespace(paths=["pipeline"]), rates={"float32": 1e11, "mixed_bfloat16": 4e11}
    )
    assert row["precisions"]["float32"]["bound_images_per_second"] == 5676
    assert row["precisions"]["mixed_bfloat16"]["bound_images_per_second"] == 22705
    assert row["precisions"]["mixed_bfloat16"]["ratios"]["pipeline/bound"] == round(4000 / 22705, 3)
    assert row["speedup_over_float32"] == {"pipeline mixed_bfloat16": 2.0}


def test_a_two_column_probe_averages_the_softmax_outputs_of_two_independent_columns():
    import keras
    import numpy as np

    from benchmarks import arch_probe

    keras.utils.set_random_seed(7)
    # Under the policy the probe trains with: the average, like the classifier, must stay float32.
    policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        model = arch_probe.build("plain_two_convs", columns=2)
    finally:
        keras.config.set_dtype_policy(policy)
    # Two full copies of the 467,818-parameter design (its count in docs/results.md), nothing shared.
    assert model.count_params() == 2 * 467_818
    columns = [layer for layer in model.layers if layer.name.startswith("column_")]
    assert [column.name for column in columns] == ["column_1", "column_2"]
    images = np.random.default_rng(0).random((4, 28, 28, 1), dtype=np.float32)
    first, second = (np.asarray(column(images, training=False)) for column in columns)
    assert not np.allclose(first, second)  # differently initialized, so the mean is not either one
    averaged = model(images, training=False)
    assert keras.backend.standardize_dtype(averaged.dtype) == "float32"
    np.testing.assert_allclose(np.asarray(averaged), (first + second) / 2, rtol=1e-5, atol=1e-7)
