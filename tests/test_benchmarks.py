"""The benchmark's arithmetic: the compute bound is only as good as its FLOP count."""

from benchmarks import train_speed
from tests.test_architecture import load_spec


def test_forward_flops_of_conv3_pool_match_a_hand_count():
    # 2 x multiply-adds: conv 3x3x1->32 on 26x26, 3x3x32->64 on 11x11, 3x3x64->96 on 3x3, dense 96->128->10.
    by_hand = 2 * (9 * 1 * 32 * 26 * 26 + 9 * 32 * 64 * 11 * 11 + 9 * 64 * 96 * 3 * 3 + 96 * 128 + 128 * 10)
    assert train_speed.forward_flops(load_spec("architectures.conv3_pool")) == by_hand == 5_872_384


def test_forward_flops_count_same_padded_convolutions_at_full_size():
    # conv5_pool's last three convs keep 4x4 ('same'); pooling is not counted.
    by_hand = 2 * (
        25 * 1 * 32 * 24 * 24
        + 25 * 32 * 56 * 8 * 8
        + 25 * 56 * 68 * 16
        + 25 * 68 * 80 * 16
        + 25 * 80 * 92 * 16
        + 1472 * 128
        + 128 * 10
    )
    assert train_speed.forward_flops(load_spec("architectures.conv5_pool")) == by_hand == 20_321_792


def test_matmul_rate_is_a_plausible_flop_rate():
    rate = train_speed.matmul_rate(size=256, repetitions=3)
    assert 1e8 < rate < 1e13


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
