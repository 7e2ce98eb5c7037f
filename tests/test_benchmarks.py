"""The benchmark's arithmetic: the compute bound is only as good as its FLOP count."""

from benchmarks import train_speed


def test_matmul_rate_is_the_flop_count_over_the_time_of_the_same_product():
    import statistics
    import time

    import numpy as np

    size = 1024
    left = right = np.ones((size, size), dtype=np.float32)
    seconds = []
    for _ in range(6):
        started = time.perf_counter()
        left @ right
        seconds.append(time.perf_counter() - started)
    direct = 2 * size**3 / statistics.median(seconds[1:])
    # The same product timed here (median of five, after a warm-up): a wrong FLOP count (no factor 2, or n^2)
    # would be off by 2 to 2,048 times; timing noise between the two medians stays well inside 1.6 times.
    assert direct / 1.6 < train_speed.matmul_rate(size=size, repetitions=5) < direct * 1.6


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
