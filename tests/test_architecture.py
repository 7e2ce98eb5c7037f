"""Every architecture in params.yaml is built; the study's four match ../shared/seed-architectures.md."""

import pytest

from stages import architecture
from stages.errors import ParamsError
from tests.conftest import project_params

# From the study: parameter count and every layer's output shape (the classifier's (10,) last).
STUDY_MODELS = {
    "conv3_pool": (
        87_914,
        [(26, 26, 32), (13, 13, 32), (11, 11, 64), (5, 5, 64), (3, 3, 96), (1, 1, 96), (96,), (128,), (10,)],
    ),
    "conv5_pool": (
        650_962,
        [(24, 24, 32), (12, 12, 32), (8, 8, 56), (4, 4, 56), (4, 4, 68), (4, 4, 68), (4, 4, 80), (4, 4, 80),
         (4, 4, 92), (4, 4, 92), (1472,), (128,), (10,)],
    ),
    "conv7_pool": (
        778_574,
        [(27, 27, 16), (13, 13, 16), (12, 12, 32), (6, 6, 32), (6, 6, 44), (6, 6, 44), (6, 6, 56), (6, 6, 56),
         (6, 6, 68), (6, 6, 68), (6, 6, 80), (6, 6, 80), (6, 6, 92), (6, 6, 92), (3312,), (128,), (10,)],
    ),
    "conv3_dropout": (
        1_562_474,
        [(26, 26, 32), (24, 24, 64), (22, 22, 96), (11, 11, 96), (11616,), (11616,), (128,), (128,), (10,)],
    ),
}  # fmt: skip
# The model under study, by hand: 3x3 'same' convs keep 28 and 14; two pools halve to 7; 7*7*64 = 3,136 flat.
ARCH_PARAMETERS = (
    (9 * 1 * 32 + 32)
    + (9 * 32 * 32 + 32)
    + (9 * 32 * 64 + 64)
    + (9 * 64 * 64 + 64)
    + (3136 * 128 + 128)
    + (128 * 10 + 10)
)


def load_spec(name: str) -> architecture.ArchitectureSpec:
    return architecture.parse_architecture(name, project_params()[name])


@pytest.mark.parametrize("name", sorted(STUDY_MODELS))
def test_study_model_has_the_study_parameter_count_and_shapes(name):
    expected_parameters, expected_shapes = STUDY_MODELS[name]
    model = architecture.build_model(load_spec(name))
    assert model.count_params() == expected_parameters
    assert [tuple(layer.output.shape[1:]) for layer in model.layers] == expected_shapes
    assert all(
        layer.kernel_initializer.__class__.__name__ == "GlorotNormal"
        for layer in model.layers
        if hasattr(layer, "kernel")
    )


def test_every_model_in_params_is_built_and_counted():
    counts = {name: architecture.build_model(load_spec(name)).count_params() for name in project_params()["models"]}
    assert counts == {name: parameters for name, (parameters, _) in STUDY_MODELS.items()} | {"arch": ARCH_PARAMETERS}


@pytest.mark.parametrize("kernel", range(2, 14))
def test_default_arch_builds_for_every_kernel_from_2_to_13(kernel):
    section = project_params()["arch"] | {"kernel": kernel}
    model = architecture.build_model(architecture.parse_architecture("arch", section))
    assert model.layers[0].kernel_size == (kernel, kernel)
    assert tuple(model.layers[-1].output.shape[1:]) == (10,)


def spec_with(layers: list[dict], kernel: int = 3) -> dict:
    return {"kernel": kernel, "layers": layers}


def test_kernel_larger_than_its_feature_map_names_model_layer_and_sizes():
    spec = architecture.parse_architecture("conv3_pool", project_params()["conv3_pool"] | {"kernel": 7})
    with pytest.raises(
        ParamsError,
        match=r"model 'conv3_pool', layer 4 \(conv\): conv window 7x7 is larger than its 2x2 input feature map",
    ):
        architecture.output_shapes(spec)


@pytest.mark.parametrize(("kernel", "layer", "size"), [(100, 0, 28), (56, 0, 28), (55, 3, 14), (28, 3, 14)])
def test_same_padding_refuses_a_window_whose_outer_weights_never_see_the_image(kernel, layer, size):
    # 'same' keeps the map (28 at arch's first two convs, 14 at the next two); a window up to 2n-1 still reaches
    # real input: 55 on 28 and 27 on 14.
    spec = architecture.parse_architecture("arch", project_params()["arch"] | {"kernel": kernel})
    largest = 2 * size - 1
    with pytest.raises(
        ParamsError,
        match=rf"model 'arch', layer {layer} \(conv\): conv window {kernel}x{kernel} is too large for its "
        rf"{size}x{size} input feature map: .*expected a window of at most {largest}x{largest}",
    ):
        architecture.output_shapes(spec)


def test_the_study_runs_5x5_same_windows_over_4x4_maps_which_stays_allowed():
    shapes = architecture.output_shapes(load_spec("conv5_pool"))
    assert shapes[4] == (4, 4, 68)


@pytest.mark.parametrize(
    ("layers", "message"),
    [
        ([{"type": "conv", "filters": 0}], r"'arch.layers\[0\].filters' must be in \[1, inf\], got 0"),
        ([{"type": "convolution", "filters": 8}], r"'arch.layers\[0\].type' is 'convolution'.*did you mean 'conv'"),
        ([{"type": "conv", "filter": 8}], r"unknown key 'arch.layers\[0\].filter' \(did you mean 'filters'\?\)"),
        ([{"type": "dense", "units": "many"}], r"'arch.layers\[0\].units' must be int, got 'many'"),
        ([{"type": "pool", "padding": "full"}], r"'arch.layers\[0\].padding' must be one of valid, same"),
        ([{"type": "batchnorm", "momentum": 0.9}], r"unknown key 'arch.layers\[0\].momentum'"),
    ],
)
def test_invalid_layer_specs_are_rejected(layers, message):
    with pytest.raises(ParamsError, match=message):
        architecture.parse_architecture("arch", spec_with(layers))


@pytest.mark.parametrize("rate", [1, 1.5, -0.1])
def test_dropout_outside_zero_to_one_is_rejected_naming_the_rate(rate):
    expected = (
        r"params.yaml: 'arch.layers\[0\].rate' is 1, which drops everything; expected a rate in \[0, 1\)"
        if rate == 1
        else rf"params.yaml: 'arch.layers\[0\].rate' must be in \[0, 1\], got {rate}"
    )
    with pytest.raises(ParamsError, match=expected):
        architecture.parse_architecture("arch", spec_with([{"type": "dropout", "rate": rate}]))


def test_unsafe_model_name_is_rejected():
    with pytest.raises(ParamsError, match="not a safe identifier"):
        architecture.parse_architecture("x; rm -rf /", spec_with([{"type": "flatten"}]))


def test_dense_on_a_feature_map_asks_for_flatten():
    spec = architecture.parse_architecture(
        "arch", spec_with([{"type": "conv", "filters": 4}, {"type": "dense", "units": 8}])
    )
    with pytest.raises(ParamsError, match=r"layer 1 \(dense\): dense needs a flat input; add \{type: flatten\}"):
        architecture.output_shapes(spec)


def test_batchnorm_is_a_layer_type_with_four_values_per_channel():
    spec = architecture.parse_architecture(
        "arch",
        spec_with([{"type": "conv", "filters": 8}, {"type": "batchnorm"}, {"type": "flatten"}]),
    )
    model = architecture.build_model(spec)
    assert type(model.layers[1]).__name__ == "BatchNormalization"
    # gamma and beta (trained), moving mean and variance (not): 4 x 8 channels.
    assert model.layers[1].count_params() == 4 * 8
    assert architecture.output_shapes(spec) == [(26, 26, 8), (26, 26, 8), (26 * 26 * 8,)]
    assert spec.to_dict()["layers"][1] == {"type": "batchnorm"}


def test_forward_flops_of_conv3_pool_match_a_hand_count():
    # 2 x multiply-adds: conv 3x3x1->32 on 26x26, 3x3x32->64 on 11x11, 3x3x64->96 on 3x3, dense 96->128->10.
    by_hand = 2 * (9 * 1 * 32 * 26 * 26 + 9 * 32 * 64 * 11 * 11 + 9 * 64 * 96 * 3 * 3 + 96 * 128 + 128 * 10)
    assert architecture.forward_flops(load_spec("conv3_pool")) == by_hand == 5_872_384


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
    assert architecture.forward_flops(load_spec("conv5_pool")) == by_hand == 20_321_792
