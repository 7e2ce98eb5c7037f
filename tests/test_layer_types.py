"""The layer types beyond the study's: augment (training only) and global_pool, built, counted and checked."""

import numpy as np
import pytest

from stages import architecture
from stages.errors import ParamsError


def parse(layers: list[dict]) -> architecture.ArchitectureSpec:
    return architecture.parse_architecture("arch", {"kernel": 3, "layers": layers})


AUGMENTED = [
    {"type": "augment", "rotation": 10, "shift": 0.1, "zoom": 0.1},
    {"type": "conv", "filters": 8, "padding": "same"},
    {"type": "pool"},
    {"type": "global_pool"},
]


def test_augment_keeps_the_shape_adds_no_parameters_and_no_flops():
    spec = parse(AUGMENTED)
    # By hand: the augment layer keeps 28x28x1, the conv makes 8 channels, the pool halves to 14, the
    # global pool leaves one value per channel.
    assert architecture.output_shapes(spec) == [(28, 28, 1), (28, 28, 8), (14, 14, 8), (8,)]
    model = architecture.build_model(spec)
    # conv 3x3x1x8 + 8 biases, classifier 8x10 + 10: nothing from the augment or the global pool.
    assert model.count_params() == (9 * 8 + 8) + (8 * 10 + 10) == 170
    # FLOPs: the conv at 28x28 and the classifier, 2 x multiply-adds; the random layers count as zero.
    assert architecture.forward_flops(spec) == 2 * (9 * 1 * 8 * 28 * 28 + 8 * 10) == 113_056
    assert spec.to_dict()["layers"][0] == {"type": "augment", "rotation": 10.0, "shift": 0.1, "zoom": 0.1}


def test_augment_builds_only_the_keras_layers_it_is_asked_for():
    model = architecture.build_model(parse([{"type": "augment", "shift": 0.2}, {"type": "flatten"}]))
    augment = model.layers[0]
    assert [type(layer).__name__ for layer in augment.layers] == ["RandomTranslation"]
    assert augment.layers[0].height_factor == 0.2 and augment.layers[0].width_factor == 0.2


def test_augment_fields_default_to_off():
    assert parse([{"type": "augment", "zoom": 0.05}, {"type": "flatten"}]).layers[0].settings == {
        "rotation": 0.0, "shift": 0.0, "zoom": 0.05}  # fmt: skip


@pytest.mark.parametrize(
    ("layer", "message"),
    [
        ({"type": "augment"}, r"^params.yaml: 'arch.layers\[0\]' sets no rotation, shift or zoom above 0, so it would "
                              r"do nothing; expected at least one of them"),
        ({"type": "augment", "rotation": -5}, r"'arch.layers\[0\].rotation' must be in \[0, 180\], got -5"),
        ({"type": "augment", "rotation": 270}, r"'arch.layers\[0\].rotation' must be in \[0, 180\], got 270"),
        ({"type": "augment", "shift": 1}, r"shifts or zooms by a whole image \(1.0\).*expected shift and zoom in "
                                          r"\[0, 1\), got shift 1.0, zoom 0.0"),
        ({"type": "augment", "zoom": 1.5}, r"'arch.layers\[0\].zoom' must be in \[0, 1\], got 1.5"),
        ({"type": "augment", "shift": "10%"}, r"'arch.layers\[0\].shift' must be int or float, got '10%'"),
        ({"type": "augment", "angle": 10}, r"unknown key 'arch.layers\[0\].angle'"),
        ({"type": "global_pool", "size": 2}, r"unknown key 'arch.layers\[0\].size'"),
        ({"type": "augmentation", "shift": 0.1}, r"'arch.layers\[0\].type' is 'augmentation'.*did you mean 'augment'"),
    ],
)  # fmt: skip
def test_invalid_augment_and_global_pool_fields_are_named_with_the_value_and_what_is_expected(layer, message):
    with pytest.raises(ParamsError, match=message):
        parse([layer, {"type": "flatten"}])


@pytest.mark.parametrize("layer_type", ["augment", "global_pool"])
def test_augment_and_global_pool_need_a_feature_map(layer_type):
    layer = {"type": layer_type} | ({"shift": 0.1} if layer_type == "augment" else {})
    spec = parse([{"type": "flatten"}, layer])
    expected = rf"layer 1 \({layer_type}\): needs a feature map \(height, width, channels\), got shape \(784,\)"
    with pytest.raises(ParamsError, match=expected):
        architecture.output_shapes(spec)


def test_global_pool_is_the_mean_of_each_channel():
    model = architecture.build_model(parse([{"type": "global_pool"}]))
    images = np.zeros((1, 28, 28, 1), np.float32)
    images[0, :14] = 1.0  # the top half lit: the mean is 0.5
    pooled = model.layers[0](images)
    assert np.asarray(pooled).tolist() == [[0.5]]


def one_dot(row: int, column: int) -> np.ndarray:
    images = np.zeros((1, 28, 28, 1), np.float32)
    images[0, row, column, 0] = 1.0
    return images


def brightest(images) -> tuple[int, int]:
    row, column = np.unravel_index(np.argmax(np.asarray(images)[0, :, :, 0]), (28, 28))
    return int(row), int(column)


def test_augment_is_the_identity_at_inference_and_moves_pixels_in_training():
    model = architecture.build_model(parse(AUGMENTED))
    augment = model.layers[0]
    dot = one_dot(14, 24)
    assert np.array_equal(np.asarray(augment(dot, training=False)), dot)
    moved = [brightest(augment(dot, training=True)) for _ in range(30)]
    assert any(place != (14, 24) for place in moved)


def test_shift_moves_by_at_most_its_fraction_of_the_image():
    # shift 0.1 of 28 pixels: at most 2.8 pixels each way, so the dot at (14, 14) stays within 3 of it.
    augment = architecture.build_model(parse([{"type": "augment", "shift": 0.1}, {"type": "flatten"}])).layers[0]
    places = [brightest(augment(one_dot(14, 14), training=True)) for _ in range(60)]
    assert all(abs(row - 14) <= 3 and abs(column - 14) <= 3 for row, column in places)
    assert max(abs(row - 14) for row, _ in places) >= 2  # it does shift, by more than rounding


def test_rotation_is_in_degrees():
    # 10 degrees about the centre (13.5, 13.5) move a dot 10 pixels right of it by at most 2 sin(5 deg) x 10 = 1.7
    # pixels; 90 degrees move it about 14 pixels. A factor read as a fraction of a turn, or as radians, fails one.
    dot = one_dot(14, 24)
    small = architecture.build_model(parse([{"type": "augment", "rotation": 10}, {"type": "flatten"}])).layers[0]
    assert all(abs(row - 14) <= 2 and abs(column - 24) <= 2
               for row, column in (brightest(small(dot, training=True)) for _ in range(40)))  # fmt: skip
    large = architecture.build_model(parse([{"type": "augment", "rotation": 90}, {"type": "flatten"}])).layers[0]
    distances = [abs(row - 14) + abs(column - 24) for row, column in (brightest(large(dot, training=True))
                                                                       for _ in range(40))]  # fmt: skip
    assert max(distances) >= 8


def test_a_model_with_augment_predicts_as_the_same_weights_without_it():
    with_augment = architecture.build_model(parse(AUGMENTED))
    without = architecture.build_model(parse(AUGMENTED[1:]))
    without.set_weights(with_augment.get_weights())
    images = np.random.default_rng(0).random((16, 28, 28, 1), dtype=np.float32)
    assert np.array_equal(with_augment.predict(images, verbose=0), without.predict(images, verbose=0))


def test_a_saved_model_with_augment_loads_in_safe_mode_and_predicts_the_same(tmp_path):
    from stages import artifacts

    model = architecture.build_model(parse(AUGMENTED))
    artifacts.save_keras_model(model, tmp_path / "model.keras")
    loaded = artifacts.load_keras_model(tmp_path / "model.keras")
    images = np.random.default_rng(1).random((8, 28, 28, 1), dtype=np.float32)
    assert np.array_equal(loaded.predict(images, verbose=0), model.predict(images, verbose=0))
    assert [type(layer).__name__ for layer in loaded.layers[0].layers] == [
        "RandomRotation", "RandomTranslation", "RandomZoom"]  # fmt: skip
