"""Every architecture in params.yaml is built; the study's four match ../shared/seed-architectures.md."""

import pytest

from stages import architecture, params

# From the study: parameter count and every layer's output shape (the classifier's (10,) last).
STUDY_MODELS = {
    "conv3_pool": (
        87_914,
        [(26, 26, 32), (13, 13, 32), (11, 11, 64), (5, 5, 64), (3, 3, 96), (1, 1, 96), (96,), (128,), (10,)],
    ),
    "conv5_pool": (
        650_962,
        [
            (24, 24, 32),
            (12, 12, 32),
            (8, 8, 56),
            (4, 4, 56),
            (4, 4, 68),
            (4, 4, 68),
            (4, 4, 80),
            (4, 4, 80),
            (4, 4, 92),
            (4, 4, 92),
            (1472,),
            (128,),
            (10,),
        ],
    ),
    "conv7_pool": (
        778_574,
        [
            (27, 27, 16),
            (13, 13, 16),
            (12, 12, 32),
            (6, 6, 32),
            (6, 6, 44),
            (6, 6, 44),
            (6, 6, 56),
            (6, 6, 56),
            (6, 6, 68),
            (6, 6, 68),
            (6, 6, 80),
            (6, 6, 80),
            (6, 6, 92),
            (6, 6, 92),
            (3312,),
            (128,),
            (10,),
        ],
    ),
    "conv3_dropout": (
        1_562_474,
        [(26, 26, 32), (24, 24, 64), (22, 22, 96), (11, 11, 96), (11616,), (11616,), (128,), (128,), (10,)],
    ),
}


def load_spec(key: str) -> architecture.ArchitectureSpec:
    return architecture.parse_architecture(key.split(".")[-1], params.select(params.load_params(), key))


@pytest.mark.parametrize("name", sorted(STUDY_MODELS))
def test_study_model_has_the_study_parameter_count_and_shapes(name):
    expected_parameters, expected_shapes = STUDY_MODELS[name]
    model = architecture.build_model(load_spec(f"architectures.{name}"))
    assert model.count_params() == expected_parameters
    assert [tuple(layer.output.shape[1:]) for layer in model.layers] == expected_shapes
    assert all(
        layer.kernel_initializer.__class__.__name__ == "GlorotNormal"
        for layer in model.layers
        if hasattr(layer, "kernel")
    )


def test_every_architecture_in_params_is_listed_here():
    assert sorted(params.load_params()["architectures"]) == sorted(STUDY_MODELS)


@pytest.mark.parametrize("kernel", range(2, 8))
def test_default_arch_builds_for_every_kernel_from_2_to_7(kernel):
    section = params.load_params()["arch"] | {"kernel": kernel}
    model = architecture.build_model(architecture.parse_architecture("arch", section))
    assert model.layers[0].kernel_size == (kernel, kernel)
    assert tuple(model.layers[-1].output.shape[1:]) == (10,)


def spec_with(layers: list[dict], kernel: int = 3) -> dict:
    return {"kernel": kernel, "layers": layers}


def test_kernel_larger_than_its_feature_map_names_model_layer_and_sizes():
    spec = architecture.parse_architecture(
        "conv3_pool", params.load_params()["architectures"]["conv3_pool"] | {"kernel": 7}
    )
    with pytest.raises(
        ValueError,
        match=r"model 'conv3_pool', layer 4 \(conv\): conv window 7x7 is larger than "
        r"its 2x2 input feature map",
    ):
        architecture.output_shapes(spec, (28, 28, 1))


@pytest.mark.parametrize(
    ("layers", "message"),
    [
        ([{"type": "conv", "filters": 0}], r"'arch.layers\[0\].filters' must be in \[1, inf\], got 0"),
        ([{"type": "convolution", "filters": 8}], r"'arch.layers\[0\].type' is 'convolution'.*did you mean 'conv'"),
        ([{"type": "conv", "filter": 8}], r"unknown key 'arch.layers\[0\].filter' \(did you mean 'filters'\?\)"),
        ([{"type": "dense", "units": "many"}], r"'arch.layers\[0\].units' must be int, got 'many'"),
        ([{"type": "pool", "padding": "full"}], r"'arch.layers\[0\].padding' must be one of valid, same"),
    ],
)
def test_invalid_layer_specs_are_rejected(layers, message):
    with pytest.raises(params.ParamsError, match=message):
        architecture.parse_architecture("arch", spec_with(layers))


def test_unsafe_model_name_is_rejected():
    with pytest.raises(params.ParamsError, match="not a safe identifier"):
        architecture.parse_architecture("x; rm -rf /", spec_with([{"type": "flatten"}]))


def test_dense_on_a_feature_map_asks_for_flatten():
    spec = architecture.parse_architecture(
        "arch", spec_with([{"type": "conv", "filters": 4}, {"type": "dense", "units": 8}])
    )
    with pytest.raises(ValueError, match=r"layer 1 \(dense\): dense needs a flat input; add \{type: flatten\}"):
        architecture.output_shapes(spec, (28, 28, 1))


def test_kernel_label_names_overrides():
    assert load_spec("architectures.conv7_pool").kernel_label() == "2x2, 5x5 in 2 of 7 convs"
    assert load_spec("architectures.conv3_pool").kernel_label() == "3x3"
