"""A model's architecture as Keras's model_config, and a model from one.

Writing gives each layer's full config with the keys and defaults Keras 3.15 writes (nested
initializer and dtype-policy objects, InputLayer first); a model inside the model is a layer
entry whose config holds its own layers: a Sequential as a Sequential, a model with
`functional = True` (VGG16) as Keras's Functional config, a chain of layers with its
inbound nodes. Reading takes Keras 3's and Keras 2's configs; each class is the one
registered under the config's class name (minicnn.registry), and a functional model is read
when it is a single chain of layers.
"""
from __future__ import annotations

import numpy as np

from minicnn.io.keras_compat import (
    KERAS_VERSION,
    Context,
    drop_training_only,
    dtype_policy,
    get_activation,
    get_dtype,
    get_initializer,
    keras_initializer,
    require,
)
from minicnn.layers import Activation, Conv2D, Dense, Dropout, Flatten, MaxPooling2D
from minicnn.model import Sequential
from minicnn.registry import lookup


def _common(layer) -> dict:
    return {"name": layer.name, "trainable": layer.trainable, "dtype": dtype_policy(layer.dtype)}


def _conv2d_config(layer: Conv2D) -> dict:
    return {**_common(layer), "filters": layer.filters, "kernel_size": list(layer.kernel_size),
            "strides": list(layer.strides), "padding": layer.padding,
            "data_format": "channels_last", "dilation_rate": [1, 1], "groups": 1,
            "activation": layer.activation, "use_bias": layer.use_bias,
            "kernel_initializer": keras_initializer(layer.kernel_initializer),
            "bias_initializer": keras_initializer(layer.bias_initializer),
            "kernel_regularizer": None, "bias_regularizer": None, "activity_regularizer": None,
            "kernel_constraint": None, "bias_constraint": None}


def _dense_config(layer: Dense) -> dict:
    return {**_common(layer), "units": layer.units, "activation": layer.activation,
            "use_bias": layer.use_bias,
            "kernel_initializer": keras_initializer(layer.kernel_initializer),
            "bias_initializer": keras_initializer(layer.bias_initializer),
            "kernel_regularizer": None, "bias_regularizer": None, "kernel_constraint": None,
            "bias_constraint": None, "quantization_config": None}


def _maxpool_config(layer: MaxPooling2D) -> dict:
    return {**_common(layer), "pool_size": list(layer.pool_size), "padding": layer.padding,
            "strides": list(layer.strides), "data_format": "channels_last"}


def _flatten_config(layer: Flatten) -> dict:
    return {**_common(layer), "data_format": "channels_last"}


def _dropout_config(layer: Dropout) -> dict:
    seed = None if layer.seed is None else int(layer.seed)
    return {**_common(layer), "rate": layer.rate, "seed": seed, "noise_shape": None}


def _activation_config(layer: Activation) -> dict:
    return {**_common(layer), "activation": layer.activation}


# Each layer's Keras config, by the class's registered name (minicnn.registry).
_TO_KERAS = {"Conv2D": _conv2d_config, "Dense": _dense_config,
             "MaxPooling2D": _maxpool_config, "Flatten": _flatten_config,
             "Dropout": _dropout_config, "Activation": _activation_config}


class InputNames:
    """Names for the InputLayer entries ('input_layer', 'input_layer_1', ...), none equal
    to a layer's name."""

    def __init__(self, model):
        self.taken = set(_all_layer_names(model))
        self.count = 0

    def next(self) -> str:
        while True:
            name = "input_layer" if self.count == 0 else f"input_layer_{self.count}"
            self.count += 1
            if name not in self.taken:
                return name


def _all_layer_names(model):
    for layer in model.layers:
        yield layer.name
        if isinstance(layer, Sequential):
            yield from _all_layer_names(layer)


def _output_dtype(layer) -> str:
    return _output_dtype(layer.layers[-1]) if isinstance(layer, Sequential) else layer.dtype.name


def _input_layer(model, name) -> dict:
    return {"class_name": "InputLayer",
            "config": {"batch_shape": list(model.input_shape), "dtype": _input_dtype(model),
                       "sparse": False, "ragged": False, "name": name, "optional": False}}


def _input_dtype(model) -> str:
    first = model.layers[0]
    return _input_dtype(first) if isinstance(first, Sequential) else first.dtype.name


def _layer_entry(layer, input_names) -> dict:
    if isinstance(layer, Sequential):
        return model_entry(layer, input_names)
    to_keras = _TO_KERAS.get(type(layer).__name__)
    if to_keras is None or lookup(type(layer).__name__) is not type(layer):
        raise ValueError(f"save_model: {layer._label()} cannot be written as a Keras layer; "
                         f"model files hold {', '.join(sorted(_TO_KERAS))} and models of them")
    return {"class_name": type(layer).__name__, "config": to_keras(layer)}


def layer_config(layer) -> dict:
    """One layer's entry of a model file's model_config: {"class_name", "config"}, the
    config with the keys and defaults Keras 3.15 writes for the same layer."""
    return _layer_entry(layer, None)


def layer_from_config(entry, where="a layer config"):
    """A new, unbuilt layer from its entry of a model_config (Keras's or minicnn's);
    errors start with `where`."""
    return _layer_from_entry(entry, Context(where, KERAS_VERSION))


def model_entry(model, input_names) -> dict:
    """The Keras config of a Sequential: as a Sequential, or as a Functional chain when the
    model presents itself as functional (VGG16)."""
    if not model.built:
        raise ValueError(f"save_model: {model._label()} is not built yet, so it has no weights "
                         f"to save; give its first layer input_shape=... first")
    entries = [_layer_entry(layer, input_names) for layer in model.layers]
    input_name = input_names.next()      # after the inner models', as Keras numbers them
    if not getattr(model, "functional", False):
        return {"class_name": "Sequential",
                "config": {"name": model.name, "trainable": model.trainable,
                           "dtype": dtype_policy(model.dtype),
                           "layers": [_input_layer(model, input_name)] + entries,
                           "build_input_shape": list(model.input_shape)}}
    # Keras's functional config: each layer names the layer whose output it takes.
    layers = [{**_input_layer(model, input_name), "name": input_name, "inbound_nodes": []}]
    previous, dtype = input_name, _input_dtype(model)
    for layer, entry in zip(model.layers, entries):
        tensor = {"class_name": "__keras_tensor__",
                  "config": {"shape": list(layer.input_shape), "dtype": dtype,
                             "keras_history": [previous, 0, 0]}}
        layers.append({**entry, "name": layer.name,
                       "inbound_nodes": [{"args": [tensor], "kwargs": {}}]})
        previous, dtype = layer.name, _output_dtype(layer)
    return {"class_name": "Functional",
            "config": {"name": model.name, "trainable": model.trainable, "layers": layers,
                       "input_layers": [input_name, 0, 0],
                       "output_layers": [previous, 0, 0]}}


MODEL_CLASSES = ("Sequential", "Functional", "Model")


_LAYER_ALIASES = {"MaxPool2D": "MaxPooling2D"}


def supported_classes() -> str:
    return ("Activation, Conv2D, Dense, Dropout, Flatten, InputLayer, MaxPooling2D "
            "(MaxPool2D), and Sequential and Functional models that are a chain of these")


def unsupported_layers(entry, found: list) -> list:
    """(layer name, class name) of every layer in a config that minicnn does not have."""
    class_name = entry.get("class_name")
    config = entry.get("config", {})
    if class_name in MODEL_CLASSES:
        for child in (config if isinstance(config, list) else config.get("layers", [])):
            unsupported_layers(child, found)
    elif class_name != "InputLayer" and not _readable(class_name):
        name = config.get("name", "?") if isinstance(config, dict) else "?"
        found.append((name, class_name))
    return found


def check_readable(entry, ctx) -> None:
    """An error naming every layer of a model config that minicnn does not have."""
    unsupported = unsupported_layers(entry, [])
    if unsupported:
        listed = ", ".join(f"'{name}' ({class_name})" for name, class_name in unsupported)
        raise ctx.error(f"the model has layers minicnn does not have: {listed}; minicnn "
                        f"supports {supported_classes()}")


def _readable(class_name) -> bool:
    """A layer config minicnn reads: a registered class with a Keras config reader."""
    name = _LAYER_ALIASES.get(class_name, class_name)
    return name in _FROM_KERAS and lookup(name) is not None


def _common_from_keras(config, label, ctx) -> dict:
    kwargs = {"name": config["name"], "trainable": bool(config.get("trainable", True)),
              "dtype": get_dtype(config, label, ctx)}
    if config.get("batch_input_shape") is not None:     # Keras 2: on the first layer
        kwargs["batch_input_shape"] = list(config["batch_input_shape"])
    return kwargs


def _padding(config, label, ctx) -> str:
    padding = config.get("padding", "valid")
    if padding not in ("valid", "same"):
        raise ctx.error(f"{label}: padding={padding!r} is not supported; minicnn has 'valid' "
                        f"and 'same'")
    return padding


def _conv2d_from_keras(config, label, ctx) -> dict:
    require(config, "data_format", ["channels_last", None], label, ctx)
    require(config, "dilation_rate", [[1, 1], 1], label, ctx)
    require(config, "groups", [1], label, ctx)
    return {**_kernel_layer_from_keras(config, label, ctx), "filters": config["filters"],
            "kernel_size": config["kernel_size"], "strides": config.get("strides", (1, 1)),
            "padding": _padding(config, label, ctx)}


def _dense_from_keras(config, label, ctx) -> dict:
    require(config, "lora_rank", [None, 0], label, ctx)
    require(config, "quantization_config", [None], label, ctx)
    return {**_kernel_layer_from_keras(config, label, ctx), "units": config["units"]}


def _kernel_layer_from_keras(config, label, ctx) -> dict:
    """What Conv2D and Dense share (minicnn's KernelLayer): activation, bias, initialisers."""
    drop_training_only(config, ("kernel_regularizer", "bias_regularizer",
                                 "activity_regularizer", "kernel_constraint",
                                 "bias_constraint"), label)
    return {**_common_from_keras(config, label, ctx),
            "activation": get_activation(config, label, ctx),
            "use_bias": bool(config.get("use_bias", True)),
            "kernel_initializer": get_initializer(config, "kernel_initializer", label,
                                                   "glorot_uniform"),
            "bias_initializer": get_initializer(config, "bias_initializer", label, "zeros")}


def _maxpool_from_keras(config, label, ctx) -> dict:
    require(config, "data_format", ["channels_last", None], label, ctx)
    return {**_common_from_keras(config, label, ctx),
            "pool_size": config.get("pool_size", (2, 2)), "strides": config.get("strides"),
            "padding": _padding(config, label, ctx)}


def _flatten_from_keras(config, label, ctx) -> dict:
    # channels_first would flatten (C, H, W) order: other weights for the next Dense.
    require(config, "data_format", ["channels_last", None], label, ctx)
    return _common_from_keras(config, label, ctx)


def _dropout_from_keras(config, label, ctx) -> dict:
    require(config, "noise_shape", [None], label, ctx)
    return {**_common_from_keras(config, label, ctx), "rate": float(config["rate"]),
            "seed": config.get("seed")}


def _activation_from_keras(config, label, ctx) -> dict:
    return {**_common_from_keras(config, label, ctx),
            "activation": get_activation(config, label, ctx)}


# Each Keras config's constructor arguments, by class name; the class is the one registered
# under that name (minicnn.registry).
_FROM_KERAS = {"Conv2D": _conv2d_from_keras, "Dense": _dense_from_keras,
               "MaxPooling2D": _maxpool_from_keras, "Flatten": _flatten_from_keras,
               "Dropout": _dropout_from_keras, "Activation": _activation_from_keras}


# The config keys Keras 3 and Keras 2 write for each class minicnn reads. A key outside
# these is refused rather than ignored: it may change what the layer computes.
_COMMON_KEYS = {"name", "trainable", "dtype", "batch_input_shape", "batch_shape",
                "input_shape", "input_dim"}
_KERNEL_KEYS = {"activation", "use_bias", "kernel_initializer", "bias_initializer",
                "kernel_regularizer", "bias_regularizer", "activity_regularizer",
                "kernel_constraint", "bias_constraint"}
_KEYS = {"Conv2D": _KERNEL_KEYS | {"filters", "kernel_size", "strides", "padding",
                                   "data_format", "dilation_rate", "groups"},
         "Dense": _KERNEL_KEYS | {"units", "lora_rank", "lora_alpha", "quantization_config"},
         "MaxPooling2D": {"pool_size", "strides", "padding", "data_format"},
         "Flatten": {"data_format"},
         "Dropout": {"rate", "noise_shape", "seed"},
         "Activation": {"activation"}}


def _check_keys(config, name, label, ctx) -> None:
    unknown = sorted(set(config) - _COMMON_KEYS - _KEYS[name])
    if unknown:
        raise ctx.error(f"{label}: its config has keys minicnn does not know: {unknown}; a "
                        f"{name} config has {sorted(_KEYS[name] | _COMMON_KEYS)}")


def _layer_from_entry(entry, ctx):
    class_name = entry.get("class_name")
    if class_name in MODEL_CLASSES:
        return model_from_entry(entry, ctx)
    name = _LAYER_ALIASES.get(class_name, class_name)
    cls, from_keras = lookup(name), _FROM_KERAS[name]
    config = entry.get("config", {})
    label = f"{class_name} '{config.get('name', '?')}'"
    if not isinstance(config, dict):
        raise ctx.error(f"{label}: its config is {type(config).__name__}, not a mapping")
    _check_keys(config, name, label, ctx)
    try:
        kwargs = from_keras(config, label, ctx)
    except (KeyError, TypeError, AttributeError) as e:
        raise ctx.error(f"{label}: its config is not one minicnn can read ({e!r})") from None
    try:
        return cls.from_config(kwargs)
    except (TypeError, ValueError) as e:            # the layer's own checks
        raise ctx.error(str(e)) from None


def _batch_shape(entry, ctx):
    config = entry.get("config", {})
    return _fixed_shape(config.get("batch_shape", config.get("batch_input_shape")),
                        config.get("name"), ctx)


def _fixed_shape(shape, name, ctx):
    """(None, H, W, C) from a Keras batch shape; minicnn builds for one input size."""
    if shape is None:
        return None
    if any(d is None for d in shape[1:]):
        raise ctx.error(f"'{name}' takes inputs of shape {tuple(shape)}; minicnn needs every "
                        f"dimension but the batch fixed (save the Keras model with an "
                        f"input_shape)")
    return (None,) + tuple(int(d) for d in shape[1:])


def _functional_chain(config, ctx) -> list:
    """The layer entries of a functional config in order from input to output, when the
    model is a single chain (each layer takes the output of the one before); else an error."""
    name = config.get("name", "?")
    entries = {e.get("name", e.get("config", {}).get("name")): e for e in config["layers"]}
    inputs, outputs = config.get("input_layers"), config.get("output_layers")
    # One input/output is written [name, 0, 0]; several, [[name, 0, 0], ...].
    if not inputs or not outputs or isinstance(inputs[0], list) and len(inputs) != 1 \
            or isinstance(outputs[0], list) and len(outputs) != 1:
        raise ctx.error(f"functional model '{name}' has several inputs or outputs; minicnn "
                        f"reads functional models that are a single chain of layers")
    first = inputs[0][0] if isinstance(inputs[0], list) else inputs[0]
    current = outputs[0][0] if isinstance(outputs[0], list) else outputs[0]
    chain = []
    while True:
        entry = entries.get(current)
        if entry is None:
            raise ctx.error(f"functional model '{name}' refers to a layer {current!r} it "
                            f"does not define")
        chain.append(entry)
        if current == first:
            break
        sources = _inbound_layers(entry)
        if len(sources) != 1:
            raise ctx.error(f"functional model '{name}': layer {current!r} takes "
                            f"{len(sources)} inputs ({sources}); minicnn reads functional "
                            f"models that are a single chain of layers")
        current = sources[0]
    if len(chain) != len(entries):
        unused = sorted(set(entries) - {e.get("name") for e in chain})
        raise ctx.error(f"functional model '{name}' has layers off the chain from input to "
                        f"output ({unused}); minicnn reads single chains of layers")
    return chain[::-1]


def _inbound_layers(entry) -> list:
    """Names of the layers whose outputs a functional layer takes, from Keras 3's
    inbound_nodes ([{"args": [keras tensors], ...}]) or Keras 2's ([[[name, 0, 0, {}]]])."""
    found = []

    def walk(x):
        if isinstance(x, dict):
            if x.get("class_name") == "__keras_tensor__":
                found.append(x["config"]["keras_history"][0])
            else:
                for value in x.values():
                    walk(value)
        elif isinstance(x, list):
            if len(x) >= 3 and isinstance(x[0], str) and isinstance(x[1], int):
                found.append(x[0])            # Keras 2: [layer name, node, tensor, kwargs]
            else:
                for value in x:
                    walk(value)

    for node in entry.get("inbound_nodes", []):
        walk(node)
    return found


def model_from_entry(entry, ctx, seed=None):
    """A Sequential (or Functional chain) from its Keras config, built when its input shape
    is known."""
    class_name, config = entry["class_name"], entry["config"]
    if isinstance(config, list):          # Keras <= 2.1: a Sequential's config is its layers
        config = {"name": None, "layers": config}
    if class_name == "Sequential":
        entries = list(config.get("layers", []))
    else:
        entries = _functional_chain(config, ctx)
    shape = None
    if entries and entries[0].get("class_name") == "InputLayer":
        shape = _batch_shape(entries.pop(0), ctx)
    if any(e.get("class_name") == "InputLayer" for e in entries):
        raise ctx.error(f"model '{config.get('name')}' has an InputLayer that is not its first "
                        f"layer; minicnn reads a single chain of layers")
    if not entries:
        raise ctx.error(f"model '{config.get('name')}' has no layers")
    if shape is None:
        shape = _batch_shape(entries[0], ctx)
    if shape is None:
        shape = _fixed_shape(config.get("build_input_shape"), config.get("name"), ctx)
    layers = [_layer_from_entry(e, ctx) for e in entries]
    if shape is not None and not isinstance(layers[0], Sequential) \
            and layers[0].batch_input_shape is None:
        # As the user would have written it: input_shape on the first layer.
        layers[0].batch_input_shape = shape
    # The class registered for this kind of model (and this name: VGG16's own class).
    cls = lookup("Sequential" if class_name == "Sequential" else "Functional",
                 config.get("name"))
    model = cls(layers, name=config.get("name"), seed=seed,
                trainable=bool(config.get("trainable", True)))
    if "dtype" in config:             # the model's own policy (its layers keep theirs)
        model.dtype = np.dtype(get_dtype(config, model._label(), ctx))
    if not model.built and shape is not None:
        model.build(shape)
    return model
