"""Architectures as data: a spec from params.yaml, validated, and the one builder that turns it into Keras.

A spec is a model-wide default `kernel` and a list of layers:
  {type: conv, filters: 32}                 kernel from the model unless `kernel:` is given
  {type: conv, filters: 68, padding: same}  padding valid (default) or same
  {type: pool}                              2x2 max pooling, stride 2 (padding valid)
  {type: pool, padding: same}               2x2 max pooling, stride 1, padding same (as in the study)
  {type: batchnorm}                         batch normalization (Keras' defaults)
  {type: augment, rotation: 10, shift: 0.1, zoom: 0.1}
                                            random rotation (up to +-degrees), shift (fraction of
                                            the size) and zoom (+-fraction), each optional: active
                                            in training only, the identity at inference
  {type: global_pool}                       the mean of each channel over the map (flat output)
  {type: dropout, rate: 0.5}
  {type: flatten}
  {type: dense, units: 128}                 ReLU
The builder appends the classifier, Dense(class count, softmax). Every conv and dense kernel is
initialized Glorot-normal, every bias zero, as in the study.

Everything the code knows about a layer type (its fields, how they are checked, its output shape,
its cost and its Keras layer) is one row of LAYER_TYPES: adding a type touches only that table.
"""

import dataclasses
import math
import re
from collections.abc import Callable
from typing import Any

from stages import artifacts, params
from stages.errors import ParamsError

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
PADDINGS = ("valid", "same")


@dataclasses.dataclass(frozen=True)
class LayerSpec:
    """One layer: its type and its validated settings (defaults filled in)."""

    type: str
    settings: dict[str, Any]

    def __getitem__(self, field: str) -> Any:
        return self.settings[field]


@dataclasses.dataclass(frozen=True)
class ArchitectureSpec:
    """A whole model: its name (a safe identifier), default conv kernel and layers."""

    name: str
    kernel: int
    layers: tuple[LayerSpec, ...]

    def to_dict(self) -> dict:
        """The spec as plain data, every setting spelled out (what spec.json records)."""
        return {
            "name": self.name,
            "kernel": self.kernel,
            "layers": [{"type": layer.type, **layer.settings} for layer in self.layers],
        }


Shape = tuple[int, ...]


class ShapeError(ParamsError):
    """A layer that cannot apply to its input (a window larger than the feature map, a dense on a map)."""


@dataclasses.dataclass(frozen=True)
class LayerType:
    """One row of the table: what a layer type accepts, computes, costs and builds.

    `parse(where, raw, default_kernel)` returns the validated settings; `output_shape(layer,
    shape, label)` raises ShapeError when the layer cannot apply; `forward_flops(layer, input,
    output)` counts 2 x multiply-adds for one image; `keras_layer(layer, name, layers)` builds it.
    """

    required: frozenset[str]
    optional: frozenset[str]
    parse: Callable[[str, dict, int], dict]
    output_shape: Callable[[LayerSpec, Shape, str], Shape]
    keras_layer: Callable[[LayerSpec, str, Any], Any]
    forward_flops: Callable[[LayerSpec, Shape, Shape], int] = lambda layer, before, after: 0


def _padding(where: str, raw: dict) -> str:
    return params.one_of(f"{where}.padding", raw.get("padding", "valid"), PADDINGS)


def _feature_map(label: str, shape: Shape) -> tuple[int, int, int]:
    if len(shape) != 3:
        raise ShapeError(f"{label}: needs a feature map (height, width, channels), got shape {shape}")
    return shape


def _check_window(label: str, kind: str, window: int, padding: str, height: int, width: int) -> None:
    """Refuses a window that cannot be meant.

    With padding 'valid' the window must fit the map. With 'same', a window of up to 2n-1 still
    reaches real input from some position (the study's conv5_pool runs 5x5 windows over 4x4 maps);
    beyond that, rows and columns of weights only ever multiply padding zeros, and the cost grows
    with the window's square for nothing (a kernel of 100 made an 80-million-parameter model).
    """
    if padding == "valid" and (window > height or window > width):
        raise ShapeError(
            f"{label}: {kind} window {window}x{window} is larger than its {height}x{width} input "
            "feature map; use a smaller kernel or padding 'same'"
        )
    largest = 2 * min(height, width) - 1
    if padding == "same" and window > largest:
        raise ShapeError(
            f"{label}: {kind} window {window}x{window} is too large for its {height}x{width} input "
            f"feature map: with padding 'same' its outer weights would only ever see padding zeros; "
            f"expected a window of at most {largest}x{largest}"
        )


def _parse_conv(where: str, raw: dict, default_kernel: int) -> dict:
    return {
        "filters": params.typed(f"{where}.filters", raw["filters"], int, minimum=1),
        "kernel": params.typed(f"{where}.kernel", raw.get("kernel", default_kernel), int, minimum=1),
        "padding": _padding(where, raw),
    }


def _conv_shape(layer: LayerSpec, shape: Shape, label: str) -> Shape:
    height, width, _ = _feature_map(label, shape)
    _check_window(label, "conv", layer["kernel"], layer["padding"], height, width)
    if layer["padding"] == "valid":
        height, width = height - layer["kernel"] + 1, width - layer["kernel"] + 1
    return (height, width, layer["filters"])


def _conv_flops(layer: LayerSpec, before: Shape, after: Shape) -> int:
    height, width, channels = after
    return 2 * layer["kernel"] * layer["kernel"] * before[-1] * channels * height * width


def _conv_layer(layer: LayerSpec, name: str, layers) -> Any:
    return layers.Conv2D(
        layer["filters"],
        layer["kernel"],
        padding=layer["padding"],
        activation="relu",
        kernel_initializer="glorot_normal",
        name=name,
    )


def _parse_pool(where: str, raw: dict, default_kernel: int) -> dict:
    return {"size": params.typed(f"{where}.size", raw.get("size", 2), int, minimum=1), "padding": _padding(where, raw)}


def _pool_shape(layer: LayerSpec, shape: Shape, label: str) -> Shape:
    height, width, channels = _feature_map(label, shape)
    _check_window(label, "pool", layer["size"], layer["padding"], height, width)
    if layer["padding"] == "valid":
        height, width = height // layer["size"], width // layer["size"]
    return (height, width, channels)


def _pool_layer(layer: LayerSpec, name: str, layers) -> Any:
    # The study pools 'same' with stride 1 (the map keeps its size) and 'valid' with stride = size.
    strides = layer["size"] if layer["padding"] == "valid" else 1
    return layers.MaxPooling2D(layer["size"], strides=strides, padding=layer["padding"], name=name)


def _parse_dropout(where: str, raw: dict, default_kernel: int) -> dict:
    rate = float(params.typed(f"{where}.rate", raw["rate"], (int, float), minimum=0, maximum=1))
    if rate == 1:
        raise ParamsError(f"params.yaml: '{where}.rate' is 1, which drops everything; expected a rate in [0, 1)")
    return {"rate": rate}


def _parse_dense(where: str, raw: dict, default_kernel: int) -> dict:
    return {"units": params.typed(f"{where}.units", raw["units"], int, minimum=1)}


def _dense_shape(layer: LayerSpec, shape: Shape, label: str) -> Shape:
    if len(shape) != 1:
        raise ShapeError(f"{label}: dense needs a flat input; add {{type: flatten}} before it (input shape {shape})")
    return (layer["units"],)


def _parse_augment(where: str, raw: dict, default_kernel: int) -> dict:
    settings = {
        "rotation": float(
            params.typed(f"{where}.rotation", raw.get("rotation", 0), (int, float), minimum=0, maximum=180)
        ),
        "shift": float(params.typed(f"{where}.shift", raw.get("shift", 0), (int, float), minimum=0, maximum=1)),
        "zoom": float(params.typed(f"{where}.zoom", raw.get("zoom", 0), (int, float), minimum=0, maximum=1)),
    }
    if not any(settings.values()):
        raise ParamsError(
            f"params.yaml: '{where}' sets no rotation, shift or zoom above 0, so it would do nothing; "
            "expected at least one of them, e.g. {type: augment, shift: 0.1}"
        )
    if settings["shift"] == 1 or settings["zoom"] == 1:
        raise ParamsError(
            f"params.yaml: '{where}' shifts or zooms by a whole image (1.0), which can leave nothing of the "
            f"digit; expected shift and zoom in [0, 1), got shift {settings['shift']}, zoom {settings['zoom']}"
        )
    return settings


def _augment_shape(layer: LayerSpec, shape: Shape, label: str) -> Shape:
    return _feature_map(label, shape)


def _augment_layer(layer: LayerSpec, name: str, layers) -> Any:
    """Keras' own random image layers, in float32 whatever the policy (they resample pixels; bfloat16
    would only round them). Keras makes them the identity unless training, and seeds each from the
    global seed (train.configure_determinism), so a run is reproducible and resumes exactly (their
    seed-generator states are model variables, which the checkpoint saves)."""
    import keras

    steps = []
    if layer["rotation"]:
        steps.append(layers.RandomRotation(layer["rotation"] / 360, fill_mode="constant", dtype="float32",
                                           name=f"{name}_rotation"))  # fmt: skip
    if layer["shift"]:
        steps.append(layers.RandomTranslation(layer["shift"], layer["shift"], fill_mode="constant", dtype="float32",
                                              name=f"{name}_shift"))  # fmt: skip
    if layer["zoom"]:
        steps.append(layers.RandomZoom(layer["zoom"], fill_mode="constant", dtype="float32", name=f"{name}_zoom"))
    return keras.Sequential(steps, name=name)


def _global_pool_shape(layer: LayerSpec, shape: Shape, label: str) -> Shape:
    return (_feature_map(label, shape)[2],)


def _no_settings(where: str, raw: dict, default_kernel: int) -> dict:
    return {}


def _same_shape(layer: LayerSpec, shape: Shape, label: str) -> Shape:
    return shape


LAYER_TYPES: dict[str, LayerType] = {
    "conv": LayerType(
        frozenset({"filters"}), frozenset({"kernel", "padding"}), _parse_conv, _conv_shape, _conv_layer, _conv_flops
    ),
    "pool": LayerType(frozenset(), frozenset({"size", "padding"}), _parse_pool, _pool_shape, _pool_layer),
    "batchnorm": LayerType(
        frozenset(),
        frozenset(),
        _no_settings,
        _same_shape,
        lambda layer, name, layers: layers.BatchNormalization(name=name),
    ),
    "augment": LayerType(
        frozenset(), frozenset({"rotation", "shift", "zoom"}), _parse_augment, _augment_shape, _augment_layer
    ),
    "global_pool": LayerType(
        frozenset(),
        frozenset(),
        _no_settings,
        _global_pool_shape,
        lambda layer, name, layers: layers.GlobalAveragePooling2D(name=name),
    ),
    "dropout": LayerType(
        frozenset({"rate"}),
        frozenset(),
        _parse_dropout,
        _same_shape,
        lambda layer, name, layers: layers.Dropout(layer["rate"], name=name),
    ),
    "flatten": LayerType(
        frozenset(),
        frozenset(),
        _no_settings,
        lambda layer, shape, label: (math.prod(shape),),
        lambda layer, name, layers: layers.Flatten(name=name),
    ),
    "dense": LayerType(
        frozenset({"units"}),
        frozenset(),
        _parse_dense,
        _dense_shape,
        lambda layer, name, layers: layers.Dense(
            layer["units"], activation="relu", kernel_initializer="glorot_normal", name=name
        ),
        lambda layer, before, after: 2 * before[0] * after[0],
    ),
}


def parse_architecture(name: str, section) -> ArchitectureSpec:
    """Validates one architecture's params (its top-level key in params.yaml is `name`) and returns its spec.

    Raises:
        ParamsError: an unsafe name, an unknown layer type or field, a wrong type or value.
    """
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise ParamsError(
            f"params.yaml: architecture name {name!r} is not a safe identifier; expected lower-case "
            "letters, digits and '_', starting with a letter, at most 40 characters"
        )
    params.check_keys(name, section, {"kernel", "layers"})
    kernel = params.typed(f"{name}.kernel", section["kernel"], int, minimum=1)
    layers_section = section["layers"]
    if not isinstance(layers_section, list) or not layers_section:
        raise ParamsError(f"params.yaml: '{name}.layers' must be a non-empty list of layers, got {layers_section!r}")
    layers = tuple(_parse_layer(f"{name}.layers[{index}]", raw, kernel) for index, raw in enumerate(layers_section))
    return ArchitectureSpec(name=name, kernel=kernel, layers=layers)


def _parse_layer(where: str, raw, default_kernel: int) -> LayerSpec:
    if not isinstance(raw, dict) or "type" not in raw:
        raise ParamsError(f"params.yaml: '{where}' must be a mapping with a 'type', got {raw!r}")
    layer_type = raw["type"]
    if layer_type not in LAYER_TYPES:
        raise ParamsError(
            f"params.yaml: '{where}.type' is {layer_type!r}; expected one of "
            f"{', '.join(LAYER_TYPES)}{params.suggest(str(layer_type), list(LAYER_TYPES))}"
        )
    row = LAYER_TYPES[layer_type]
    params.check_keys(where, raw, set(row.required) | {"type"}, row.optional)
    return LayerSpec(layer_type, row.parse(where, raw, default_kernel))


def output_shapes(spec: ArchitectureSpec, input_shape: Shape = artifacts.IMAGE_SHAPE) -> list[Shape]:
    """Each layer's output shape (without the batch axis), checking every layer fits its input.

    Raises:
        ShapeError: a window too large for its input feature map, or a dense or conv layer on the
            wrong rank; names the model, the layer and the sizes.
    """
    shape: Shape = tuple(input_shape)
    shapes = []
    for index, layer in enumerate(spec.layers):
        shape = LAYER_TYPES[layer.type].output_shape(layer, shape, f"model '{spec.name}', layer {index} ({layer.type})")
        shapes.append(shape)
    if len(shape) != 1:
        raise ShapeError(
            f"model '{spec.name}': the last layer's output {shape} is not flat; end with flatten, global_pool or dense"
        )
    return shapes


def forward_flops(
    spec: ArchitectureSpec, input_shape: Shape = artifacts.IMAGE_SHAPE, class_count: int = artifacts.CLASS_COUNT
) -> int:
    """2 x multiply-adds of every conv and dense layer, classifier included, for one image.

    Pooling, normalization and activations are left out: next to the convolutions they are noise.
    """
    before: Shape = tuple(input_shape)
    flops = 0
    for layer, after in zip(spec.layers, output_shapes(spec, input_shape), strict=True):
        flops += LAYER_TYPES[layer.type].forward_flops(layer, before, after)
        before = after
    return flops + 2 * before[0] * class_count


def build_model(
    spec: ArchitectureSpec, input_shape: Shape = artifacts.IMAGE_SHAPE, class_count: int = artifacts.CLASS_COUNT
):
    """Builds the uncompiled `keras.Sequential` for `spec`, after checking its shapes.

    Layer names are the type and its ordinal (conv_1, pool_1, dense_1, ...), so summaries and
    weight plots read the same for every model; the classifier is `output`.
    """
    output_shapes(spec, input_shape)
    import keras  # imported here so parsing and validating specs does not load TensorFlow
    from keras import layers

    counts: dict[str, int] = {}
    model_layers = [keras.Input(shape=input_shape)]
    for layer in spec.layers:
        counts[layer.type] = counts.get(layer.type, 0) + 1
        model_layers.append(LAYER_TYPES[layer.type].keras_layer(layer, f"{layer.type}_{counts[layer.type]}", layers))
    # The classifier computes in float32 whatever the policy: a softmax in bfloat16 (8 bits of
    # mantissa) would round the probabilities the loss is taken of.
    model_layers.append(
        layers.Dense(
            class_count, activation="softmax", kernel_initializer="glorot_normal", dtype="float32", name="output"
        )  # fmt: skip
    )
    return keras.Sequential(model_layers, name=spec.name)
