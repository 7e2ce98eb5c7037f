"""Architectures as data: a spec from params.yaml, validated, and the one builder that turns it into Keras.

A spec is a block-level default `kernel` and a list of layers:
  {type: conv, filters: 32}                 kernel from the block unless `kernel:` is given
  {type: conv, filters: 68, padding: same}  padding valid (default) or same
  {type: pool}                              2x2 max pooling, stride 2 (padding valid)
  {type: pool, padding: same}               2x2 max pooling, stride 1, padding same (as in the study)
  {type: dropout, rate: 0.5}
  {type: flatten}
  {type: dense, units: 128}                 ReLU
The builder appends the classifier, Dense(class count, softmax). Every conv and dense kernel is
initialized Glorot-normal, every bias zero, as in the study.
"""

import dataclasses
import re

from stages.params import ParamsError, check_keys, suggest, typed

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
PADDINGS = ("valid", "same")
# Layer type -> (required fields, optional fields).
LAYER_FIELDS = {
    "conv": ({"filters"}, frozenset({"kernel", "padding"})),
    "pool": (set(), frozenset({"size", "padding"})),
    "dropout": ({"rate"}, frozenset()),
    "flatten": (set(), frozenset()),
    "dense": ({"units"}, frozenset()),
}


@dataclasses.dataclass(frozen=True)
class LayerSpec:
    """One layer. Fields that do not apply to its type are None."""

    type: str
    filters: int | None = None
    kernel: int | None = None
    padding: str = "valid"
    size: int | None = None
    rate: float | None = None
    units: int | None = None


@dataclasses.dataclass(frozen=True)
class ArchitectureSpec:
    """A whole model: its name (a safe identifier), default conv kernel and layers."""

    name: str
    kernel: int
    layers: tuple[LayerSpec, ...]

    def to_dict(self) -> dict:
        """The spec as plain data, without the fields a layer does not use."""
        return {
            "name": self.name,
            "kernel": self.kernel,
            "layers": [{key: value for key, value in dataclasses.asdict(layer).items()
                        if value is not None and not (key == "padding" and layer.type not in ("conv", "pool"))}
                       for layer in self.layers],
        }

    def kernel_label(self) -> str:
        """The conv kernels in words, e.g. '3x3' or '2x2, 5x5 in 2 of 7 convs'."""
        kernels = [layer.kernel for layer in self.layers if layer.type == "conv"]
        label = f"{self.kernel}x{self.kernel}"
        for other in sorted(set(kernels) - {self.kernel}):
            label += f", {other}x{other} in {kernels.count(other)} of {len(kernels)} convs"
        return label


def parse_architecture(name: str, section) -> ArchitectureSpec:
    """Validates one architecture's params (`where` names it in messages) and returns its spec.

    Raises:
        ParamsError: an unsafe name, an unknown layer type or field, a wrong type or value.
    """
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise ParamsError(f"params.yaml: architecture name {name!r} is not a safe identifier; expected lower-case "
                          "letters, digits and '_', starting with a letter, at most 40 characters")
    where = "arch" if name == "arch" else f"architectures.{name}"
    check_keys(where, section, {"kernel", "layers"})
    kernel = typed(f"{where}.kernel", section["kernel"], int, minimum=1)
    layers_section = section["layers"]
    if not isinstance(layers_section, list) or not layers_section:
        raise ParamsError(f"params.yaml: '{where}.layers' must be a non-empty list of layers, got {layers_section!r}")
    layers = tuple(_parse_layer(f"{where}.layers[{index}]", raw, kernel) for index, raw in enumerate(layers_section))
    return ArchitectureSpec(name=name, kernel=kernel, layers=layers)


def _parse_layer(where: str, raw, default_kernel: int) -> LayerSpec:
    if not isinstance(raw, dict) or "type" not in raw:
        raise ParamsError(f"params.yaml: '{where}' must be a mapping with a 'type', got {raw!r}")
    layer_type = raw["type"]
    if layer_type not in LAYER_FIELDS:
        raise ParamsError(f"params.yaml: '{where}.type' is {layer_type!r}; expected one of "
                          f"{', '.join(LAYER_FIELDS)}{suggest(str(layer_type), list(LAYER_FIELDS))}")
    required, optional = LAYER_FIELDS[layer_type]
    check_keys(where, raw, required | {"type"}, optional)
    padding = raw.get("padding", "valid")
    if padding not in PADDINGS:
        raise ParamsError(f"params.yaml: '{where}.padding' must be one of {', '.join(PADDINGS)}, got {padding!r}")
    if layer_type == "conv":
        return LayerSpec("conv", filters=typed(f"{where}.filters", raw["filters"], int, minimum=1),
                         kernel=typed(f"{where}.kernel", raw.get("kernel", default_kernel), int, minimum=1),
                         padding=padding)
    if layer_type == "pool":
        return LayerSpec("pool", size=typed(f"{where}.size", raw.get("size", 2), int, minimum=1), padding=padding)
    if layer_type == "dropout":
        rate = float(typed(f"{where}.rate", raw["rate"], (int, float), minimum=0, maximum=1))
        if rate == 1:
            raise ParamsError(f"params.yaml: '{where}.rate' is 1, which drops everything; expected a rate in [0, 1)")
        return LayerSpec("dropout", rate=rate)
    if layer_type == "dense":
        return LayerSpec("dense", units=typed(f"{where}.units", raw["units"], int, minimum=1))
    return LayerSpec("flatten")


def output_shapes(spec: ArchitectureSpec, input_shape: tuple[int, int, int]) -> list[tuple[int, ...]]:
    """Each layer's output shape (without the batch axis), checking every layer fits its input.

    Raises:
        ValueError: a kernel or pool window larger than its input feature map, or a dense or conv
            layer on the wrong rank; names the model, the layer and the sizes.
    """
    shape: tuple[int, ...] = tuple(input_shape)
    shapes = []
    for index, layer in enumerate(spec.layers):
        label = f"model '{spec.name}', layer {index} ({layer.type})"
        if layer.type in ("conv", "pool"):
            if len(shape) != 3:
                raise ValueError(f"{label}: needs a feature map (height, width, channels), got shape {shape}")
            window = layer.kernel if layer.type == "conv" else layer.size
            height, width, channels = shape
            if layer.padding == "valid" and (window > height or window > width):
                raise ValueError(f"{label}: {layer.type} window {window}x{window} is larger than its "
                                 f"{height}x{width} input feature map; use a smaller kernel or padding 'same'")
            if layer.type == "conv":
                if layer.padding == "valid":
                    height, width = height - window + 1, width - window + 1
                channels = layer.filters
            elif layer.padding == "valid":
                height, width = height // window, width // window
            shape = (height, width, channels)
        elif layer.type == "flatten":
            shape = (int(_product(shape)),)
        elif layer.type == "dense":
            if len(shape) != 1:
                raise ValueError(f"{label}: dense needs a flat input; add {{type: flatten}} before it "
                                 f"(input shape {shape})")
            shape = (layer.units,)
        shapes.append(shape)
    if len(shape) != 1:
        raise ValueError(f"model '{spec.name}': the last layer's output {shape} is not flat; end with flatten or dense")
    return shapes


def _product(values) -> int:
    result = 1
    for value in values:
        result *= value
    return result


def build_model(spec: ArchitectureSpec, input_shape: tuple[int, int, int] = (28, 28, 1), class_count: int = 10):
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
        layer_name = f"{layer.type}_{counts[layer.type]}"
        if layer.type == "conv":
            model_layers.append(layers.Conv2D(layer.filters, layer.kernel, padding=layer.padding, activation="relu",
                                              kernel_initializer="glorot_normal", name=layer_name))
        elif layer.type == "pool":
            strides = layer.size if layer.padding == "valid" else 1
            model_layers.append(layers.MaxPooling2D(layer.size, strides=strides, padding=layer.padding,
                                                    name=layer_name))
        elif layer.type == "dropout":
            model_layers.append(layers.Dropout(layer.rate, name=layer_name))
        elif layer.type == "flatten":
            model_layers.append(layers.Flatten(name=layer_name))
        else:
            model_layers.append(layers.Dense(layer.units, activation="relu", kernel_initializer="glorot_normal",
                                             name=layer_name))
    model_layers.append(layers.Dense(class_count, activation="softmax", kernel_initializer="glorot_normal",
                                     name="output"))
    return keras.Sequential(model_layers, name=spec.name)
