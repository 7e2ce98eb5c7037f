import numpy as np
import pytest

from stages import prepare
from stages.errors import ParamsError


def raw_arrays(count: int = 10) -> dict:
    generator = np.random.default_rng(0)
    return {
        "x_train": generator.integers(0, 256, (count, 28, 28), dtype=np.uint8),
        "y_train": (np.arange(count) % 10).astype(np.uint8),
        "x_test": generator.integers(0, 256, (count, 28, 28), dtype=np.uint8),
        "y_test": (np.arange(count)[::-1] % 10).astype(np.uint8),
        "class_names": np.array([str(digit) for digit in range(10)]),
    }


def test_normalize_scales_to_unit_interval_with_channel_axis():
    images = np.array([[[0, 255], [51, 102]]], dtype=np.uint8)
    normalized = prepare.normalize_images(images)
    assert normalized.dtype == np.float32 and normalized.shape == (1, 2, 2, 1)
    np.testing.assert_allclose(normalized[0, :, :, 0], [[0.0, 1.0], [0.2, 0.4]])


def test_one_hot_encodes_ten_classes():
    encoded = prepare.one_hot(np.array([3, 0, 9], dtype=np.uint8), 10)
    assert encoded.dtype == np.float32 and encoded.shape == (3, 10)
    assert encoded.sum(axis=1).tolist() == [1, 1, 1] and encoded.argmax(axis=1).tolist() == [3, 0, 9]


def test_validation_is_the_last_fraction_like_keras():
    raw = raw_arrays(10)
    splits = prepare.prepare(raw, prepare.PrepareParams(validation_fraction=0.2, limit=None))
    assert len(splits["train"]["x"]) == 8 and len(splits["validation"]["x"]) == 2
    np.testing.assert_array_equal(splits["validation"]["y"].argmax(axis=1), raw["y_train"][8:])
    np.testing.assert_allclose(splits["validation"]["x"][..., 0], raw["x_train"][8:] / 255.0, rtol=1e-6)
    assert len(splits["test"]["x"]) == 10


def test_limit_applies_to_train_and_test_and_is_checked():
    splits = prepare.prepare(raw_arrays(10), prepare.PrepareParams(validation_fraction=0.2, limit=5))
    assert (len(splits["train"]["x"]), len(splits["validation"]["x"]), len(splits["test"]["x"])) == (4, 1, 5)
    with pytest.raises(ParamsError, match="data.limit 11 exceeds the 10 training images"):
        prepare.prepare(raw_arrays(10), prepare.PrepareParams(validation_fraction=0.2, limit=11))


@pytest.mark.parametrize("fraction", [0, 1, 1.5, -0.1])
def test_validation_fraction_outside_the_open_unit_interval_is_rejected(fraction):
    with pytest.raises(ParamsError, match=r"'data.validation_fraction' must be in \(0, 1\)"):
        prepare.PrepareParams.from_section({"validation_fraction": fraction, "limit": None})
