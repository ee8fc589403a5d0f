"""Whole-model files in Keras's legacy HDF5 layout: `save_model(model, path)`, `load_model(path)`.

The layout is the one Keras 3 writes with `model.save("model.h5")` and reads with
`keras.models.load_model` (keras/src/legacy/saving/legacy_h5_format.py), which is also the
layout of Keras 2's .h5 model files, the lecture's `save_model_hdf5`:

    /                       attrs: keras_version, backend
                                   model_config     JSON: {"class_name": "Sequential",
                                                    "config": {"name", "trainable", "dtype",
                                                    "layers": [InputLayer, each layer's
                                                    {"class_name", "config"}], ...}}
                                   training_config  JSON: loss, metrics, optimizer_config
                                                    (only for a compiled model)
                                   minicnn          JSON: what Keras has no place for (below);
                                                    Keras ignores it
    /model_weights          the weights layout of minicnn.io.hdf5: attrs layer_names, one
                            group per layer with attrs weight_names and its arrays
    /optimizer_weights      attrs weight_names: '<opt>/iteration', '<opt>/learning_rate',
                            then one slot array per trainable weight and slot, named
                            '<opt>/<weight path with _ for />_<slot>' in Keras's order
                            (RMSprop: every velocity, then every momentum; Adam: momentum
                            and velocity of each weight in turn; SGD: every momentum)

Configs are written with the keys and defaults Keras 3.15 writes for the same model (each
layer's full config, initializers and dtype policies as nested objects, InputLayer first).
A model inside the model is a layer entry whose config holds its own layers: a Sequential
as a Sequential, a model with `functional = True` (VGG16) as Keras's Functional config, a
chain of layers with its inbound nodes.

The `minicnn` attribute holds what makes training resume exactly and Keras cannot express:
the model's seed, RMSprop's `epsilon_inside_sqrt` (Keras 3 always puts epsilon inside the
square root) and the states of the random generators (Dropout masks, shuffling).

Reading takes minicnn's files and Keras's: Keras 3, and Keras 2 configs where they differ
(batch_input_shape, dtype strings, VarianceScaling initializers, `lr` and `decay`, the
Keras 2 inbound_nodes of a functional model). A functional model is read when it is a single
chain of layers. Anything minicnn cannot compute the same way (a layer class, dilation,
channels_first, an activation, gradient clipping, ...) is an error that names it.

Writing goes through a temporary file renamed into place (minicnn.io.atomic): a failed or
interrupted save leaves the previous file as it was. The bytes are repeatable (no
timestamps, the oldest HDF5 object format), as for weight files.
"""
from __future__ import annotations

import json
import os
import warnings
import zipfile

import numpy as np

from minicnn import losses, metrics as metrics_lib, optimizers
from minicnn.io import hdf5
from minicnn.io.atomic import atomic_path
from minicnn.layers import Activation, Conv2D, Dense, Dropout, Flatten, MaxPooling2D
from minicnn.model import Sequential

# The Keras release whose configs (the keys of each layer, optimizer and initializer) this
# module writes, and the one given in the files: Keras reads it only to convert Keras 1 files.
KERAS_VERSION = "3.15.1"
BACKEND = hdf5.BACKEND


class Functional(Sequential):
    """A chain of layers that Keras saved as a functional model (keras.Model(inputs,
    outputs)). It runs as a Sequential, shows as one '(Functional)' row inside another
    model, and is written back as a Functional config."""

    functional = True


# ---------------------------------------------------------------------------------
# minicnn -> Keras configs
# ---------------------------------------------------------------------------------

_KERAS_INITIALIZERS = {          # minicnn name -> (Keras class, Keras 3.15 config)
    "glorot_uniform": ("GlorotUniform", {"seed": None, "input_axes": None, "output_axes": None}),
    "glorot_normal": ("GlorotNormal", {"seed": None, "input_axes": None, "output_axes": None}),
    "he_uniform": ("HeUniform", {"seed": None, "input_axes": None, "output_axes": None}),
    "he_normal": ("HeNormal", {"seed": None, "input_axes": None, "output_axes": None}),
    "zeros": ("Zeros", {}),
    "ones": ("Ones", {}),
}

_KERAS_OPTIMIZERS = {            # minicnn class -> (Keras class, Keras's default name)
    optimizers.RMSprop: ("RMSprop", "rm_sprop"),
    optimizers.Adam: ("Adam", "adam"),
    optimizers.SGD: ("SGD", "sgd"),
}


def _dtype_policy(dtype) -> dict:
    return {"module": "keras", "class_name": "DTypePolicy",
            "config": {"name": np.dtype(dtype).name}, "registered_name": None}


def _keras_initializer(name: str) -> dict:
    class_name, config = _KERAS_INITIALIZERS[name]
    return {"module": "keras.initializers", "class_name": class_name, "config": dict(config),
            "registered_name": None}


def _common(layer) -> dict:
    return {"name": layer.name, "trainable": layer.trainable, "dtype": _dtype_policy(layer.dtype)}


def _conv2d_config(layer: Conv2D) -> dict:
    return {**_common(layer), "filters": layer.filters, "kernel_size": list(layer.kernel_size),
            "strides": list(layer.strides), "padding": layer.padding,
            "data_format": "channels_last", "dilation_rate": [1, 1], "groups": 1,
            "activation": layer.activation, "use_bias": layer.use_bias,
            "kernel_initializer": _keras_initializer(layer.kernel_initializer),
            "bias_initializer": _keras_initializer(layer.bias_initializer),
            "kernel_regularizer": None, "bias_regularizer": None, "activity_regularizer": None,
            "kernel_constraint": None, "bias_constraint": None}


def _dense_config(layer: Dense) -> dict:
    return {**_common(layer), "units": layer.units, "activation": layer.activation,
            "use_bias": layer.use_bias,
            "kernel_initializer": _keras_initializer(layer.kernel_initializer),
            "bias_initializer": _keras_initializer(layer.bias_initializer),
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


_TO_KERAS = {Conv2D: _conv2d_config, Dense: _dense_config, MaxPooling2D: _maxpool_config,
             Flatten: _flatten_config, Dropout: _dropout_config, Activation: _activation_config}


class _InputNames:
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
        return _model_entry(layer, input_names)
    to_keras = _TO_KERAS.get(type(layer))
    if to_keras is None:
        raise ValueError(f"save_model: {layer._label()} cannot be written as a Keras layer; "
                         f"model files hold {', '.join(sorted(c.__name__ for c in _TO_KERAS))} "
                         f"and models of them")
    return {"class_name": type(layer).__name__, "config": to_keras(layer)}


def _model_entry(model, input_names) -> dict:
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
                           "dtype": _dtype_policy(model.dtype),
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


def _keras_loss(loss):
    if isinstance(loss, losses.BinaryCrossentropy):
        if not loss.from_logits:
            return "binary_crossentropy"
        return {"class_name": "BinaryCrossentropy",
                "config": {"name": "binary_crossentropy", "reduction": "sum_over_batch_size",
                           "from_logits": True, "label_smoothing": 0.0, "axis": -1}}
    if isinstance(loss, losses.MeanSquaredError):
        return "mean_squared_error"
    raise ValueError(f"save_model: the loss {type(loss).__name__} has no Keras equivalent "
                     f"known to minicnn; save with include_optimizer=False")


def _keras_optimizer(optimizer) -> dict:
    known = _KERAS_OPTIMIZERS.get(type(optimizer))
    if known is None:
        raise ValueError(f"save_model: the optimizer {type(optimizer).__name__} has no Keras "
                         f"equivalent known to minicnn; save with include_optimizer=False")
    class_name, name = known
    config = {"name": name, "learning_rate": optimizer.learning_rate, "weight_decay": None,
              "clipnorm": None, "global_clipnorm": None, "clipvalue": None, "use_ema": False,
              "ema_momentum": 0.99, "ema_overwrite_frequency": None, "loss_scale_factor": None,
              "gradient_accumulation_steps": None}
    if isinstance(optimizer, optimizers.RMSprop):
        config.update(rho=optimizer.rho, momentum=optimizer.momentum,
                      epsilon=optimizer.epsilon, centered=False)
    elif isinstance(optimizer, optimizers.Adam):
        config.update(beta_1=optimizer.beta_1, beta_2=optimizer.beta_2,
                      epsilon=optimizer.epsilon, amsgrad=False)
    else:
        config.update(momentum=optimizer.momentum, nesterov=optimizer.nesterov)
    return {"class_name": class_name, "config": config}


def _training_config(model) -> dict:
    return {"loss": _keras_loss(model.loss), "loss_weights": None,
            "metrics": list(model.metrics) or None, "weighted_metrics": None,
            "run_eagerly": False, "steps_per_execution": 1, "jit_compile": False,
            "optimizer_config": _keras_optimizer(model.optimizer)}


def _weight_paths(model) -> dict:
    """id(array) -> Keras's path of every weight ('sequential/conv2d/kernel', and
    'vgg16/block1_conv1/kernel' inside a model), the names model_weights uses."""
    return {id(array): name for layer in model.layers
            for name, array in hdf5._layer_weights(layer, model.name)}


def _optimizer_entries(model) -> list[tuple[str, np.ndarray]]:
    """What Keras keeps in /optimizer_weights: iteration, learning_rate, the slots."""
    optimizer = model.optimizer
    prefix = _KERAS_OPTIMIZERS[type(optimizer)][1]
    weights = model.trainable_weights
    paths = _weight_paths(model)
    state = optimizer.get_state(weights)
    entries = [(f"{prefix}/iteration", np.asarray(optimizer.iterations, dtype=np.int64)),
               (f"{prefix}/learning_rate", np.asarray(optimizer.learning_rate, dtype=np.float32))]
    for slot, i in optimizer.slot_layout(len(weights)):
        path = paths[id(weights[i])].replace("/", "_")
        entries.append((f"{prefix}/{path}_{optimizer.keras_slot_names[slot]}", state[i][slot]))
    return entries


def _rng_states(model, prefix="") -> dict:
    """The states of the generators that draw Dropout masks, by layer path."""
    states = {}
    for layer in model.layers:
        path = f"{prefix}{layer.name}"
        if isinstance(layer, Sequential):
            states.update(_rng_states(layer, path + "/"))
        elif isinstance(layer, Dropout) and layer.rng is not None:
            states[path] = layer.rng.bit_generator.state
    return states


def _minicnn_extras(model, include_optimizer: bool) -> dict:
    seed = model.seed if isinstance(model.seed, (int, np.integer)) else None
    extras = {"seed": None if seed is None else int(seed),
              "dropout_rng_states": _rng_states(model),
              "shuffle_rng_state": model._shuffle_rng.bit_generator.state}
    if include_optimizer and isinstance(model.optimizer, optimizers.RMSprop):
        extras["epsilon_inside_sqrt"] = model.optimizer.epsilon_inside_sqrt
    return extras


def save_model(model, path, include_optimizer=True, overwrite=True) -> str:
    """Write `model` (a built Sequential) to `path` as a Keras legacy HDF5 model file.

    With include_optimizer and a compiled model, the training configuration and the
    optimizer state are saved too, so that load_model can resume training exactly.
    Everything is checked before the file is touched; the previous file at `path` stays
    intact until the new one is complete. Returns the path.
    """
    path = os.fspath(path)
    if not isinstance(model, Sequential):
        raise TypeError(f"save_model expects a minicnn Sequential; received "
                        f"{type(model).__name__}")
    if not overwrite and os.path.exists(path):
        raise FileExistsError(f"save_model: {path} exists and overwrite=False")
    config = _model_entry(model, _InputNames(model))
    compiled = include_optimizer and model.optimizer is not None and model.loss is not None
    metadata = {"keras_version": KERAS_VERSION, "backend": BACKEND, "model_config": config}
    if compiled:
        metadata["training_config"] = _training_config(model)
    metadata["minicnn"] = _minicnn_extras(model, compiled)
    layer_weights = [(layer.name, hdf5._layer_weights(layer, model.name))
                     for layer in model.layers]
    optimizer_weights = _optimizer_entries(model) if compiled else None

    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    with atomic_path(path) as tmp:
        import h5py

        with h5py.File(tmp, "w", libver=hdf5.LIBVER) as f:
            for key, value in metadata.items():
                # As Keras: JSON as UTF-8 bytes, plain strings as they are.
                f.attrs[key] = json.dumps(value).encode("utf8") if isinstance(value, dict) \
                    else value
            _write_model_weights(f.create_group("model_weights"), layer_weights)
            if optimizer_weights is not None:
                _write_optimizer_weights(f.create_group("optimizer_weights"), optimizer_weights)
    return path


def _write_optimizer_weights(group, entries) -> None:
    """As hdf5._write_group, with scalars (iteration, learning_rate) kept 0-d as Keras
    writes them (np.ascontiguousarray would make them shape (1,))."""
    hdf5._save_attribute(group, "weight_names", [n.encode("utf8") for n, _ in entries])
    for name, value in entries:
        value = np.asarray(value)
        group.create_dataset(name, data=value if value.ndim == 0 else
                             np.ascontiguousarray(value), track_times=False)


def _write_model_weights(group, layer_weights) -> None:
    """minicnn.io.hdf5's layout (write_weights_file), into the model file's group."""
    hdf5._save_attribute(group, "layer_names", [n.encode("utf8") for n, _ in layer_weights])
    group.attrs["backend"] = BACKEND.encode("utf8")
    group.attrs["keras_version"] = KERAS_VERSION.encode("utf8")
    for name, weights in sorted(layer_weights, key=lambda entry: entry[0]):
        hdf5._write_group(group.create_group(name), weights)
    hdf5._write_group(group.create_group("top_level_model_weights"), [])


# ---------------------------------------------------------------------------------
# Keras configs -> minicnn
# ---------------------------------------------------------------------------------

_MODEL_CLASSES = ("Sequential", "Functional", "Model")
_LAYER_ALIASES = {"MaxPool2D": "MaxPooling2D"}
_FROM_KERAS_INITIALIZERS = {class_name: name
                            for name, (class_name, _) in _KERAS_INITIALIZERS.items()}
# Keras 2.0-2.2 wrote Glorot and He initializers as VarianceScaling(scale, mode, distribution).
_VARIANCE_SCALING = {(1.0, "fan_avg", "uniform"): "glorot_uniform",
                     (1.0, "fan_avg", "normal"): "glorot_normal",
                     (1.0, "fan_avg", "truncated_normal"): "glorot_normal",
                     (2.0, "fan_in", "uniform"): "he_uniform",
                     (2.0, "fan_in", "normal"): "he_normal",
                     (2.0, "fan_in", "truncated_normal"): "he_normal"}


def supported_classes() -> str:
    return ("Activation, Conv2D, Dense, Dropout, Flatten, InputLayer, MaxPooling2D "
            "(MaxPool2D), and Sequential and Functional models that are a chain of these")


def _unsupported_layers(entry, found: list) -> list:
    """(layer name, class name) of every layer in a config that minicnn does not have."""
    class_name = entry.get("class_name")
    config = entry.get("config", {})
    if class_name in _MODEL_CLASSES:
        for child in (config if isinstance(config, list) else config.get("layers", [])):
            _unsupported_layers(child, found)
    elif class_name != "InputLayer" and _LAYER_ALIASES.get(class_name, class_name) \
            not in _FROM_KERAS:
        name = config.get("name", "?") if isinstance(config, dict) else "?"
        found.append((name, class_name))
    return found


class _Context:
    """What reading a config needs to know: the file (for messages) and who wrote it."""

    def __init__(self, path, keras_version):
        self.path = path
        self.keras_version = keras_version or ""

    def error(self, message) -> ValueError:
        return ValueError(f"{self.path}: {message}")


def _get_dtype(config, label, ctx) -> str:
    dtype = config.get("dtype", "float32")
    if isinstance(dtype, dict):        # DTypePolicy (Keras 3), Policy (Keras 2 mixed precision)
        dtype = dtype.get("config", {}).get("name", "float32")
    if dtype is None:
        dtype = "float32"
    if dtype not in ("float32", "float64"):
        raise ctx.error(f"{label}: dtype {dtype!r} is not supported; minicnn computes in "
                        f"float32 or float64")
    return dtype


def _get_activation(config, label, ctx) -> str:
    activation = config.get("activation", "linear")
    if isinstance(activation, dict):           # a serialized function
        activation = activation.get("config", activation.get("class_name"))
    if activation is None:
        return "linear"
    from minicnn.activations import NAMES
    if not isinstance(activation, str) or activation.lower() not in NAMES:
        raise ctx.error(f"{label}: activation {activation!r} is not supported; minicnn has "
                        f"{', '.join(NAMES)}")
    return activation.lower()


def _get_initializer(config, key, label, default) -> str:
    init = config.get(key, default)
    name = None
    if isinstance(init, str):
        name = init.lower() if init.lower() in _KERAS_INITIALIZERS else \
            _FROM_KERAS_INITIALIZERS.get(init)
    elif isinstance(init, dict):
        class_name = init.get("class_name")
        name = _FROM_KERAS_INITIALIZERS.get(class_name)
        if class_name == "VarianceScaling":
            c = init.get("config", {})
            name = _VARIANCE_SCALING.get((float(c.get("scale", 1.0)), c.get("mode"),
                                          c.get("distribution")))
    if name is None:
        # Only a fresh layer would use it: the weights come from the file.
        warnings.warn(f"{label}: {key} {init!r} has no minicnn equivalent; {default} is used "
                      f"if the layer is ever re-initialised", stacklevel=4)
        return default
    return name


def _require(config, key, allowed, label, ctx) -> None:
    """An option minicnn has no way to compute must have one of its `allowed` values."""
    value = config.get(key, allowed[0])
    normalized = list(value) if isinstance(value, tuple) else value
    if normalized not in allowed:
        raise ctx.error(f"{label}: {key}={value!r} is not supported by minicnn (expected "
                        f"{' or '.join(repr(a) for a in allowed)})")


def _drop_training_only(config, keys, label) -> None:
    for key in keys:
        if config.get(key) is not None:
            warnings.warn(f"{label}: {key} {config[key]!r} is ignored (minicnn does not apply "
                          f"regularizers or constraints when training)", stacklevel=4)


def _common_from_keras(config, label, ctx) -> dict:
    kwargs = {"name": config["name"], "trainable": bool(config.get("trainable", True)),
              "dtype": _get_dtype(config, label, ctx)}
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
    _require(config, "data_format", ["channels_last", None], label, ctx)
    _require(config, "dilation_rate", [[1, 1], 1], label, ctx)
    _require(config, "groups", [1], label, ctx)
    return {**_kernel_layer_from_keras(config, label, ctx), "filters": config["filters"],
            "kernel_size": config["kernel_size"], "strides": config.get("strides", (1, 1)),
            "padding": _padding(config, label, ctx)}


def _dense_from_keras(config, label, ctx) -> dict:
    _require(config, "lora_rank", [None, 0], label, ctx)
    return {**_kernel_layer_from_keras(config, label, ctx), "units": config["units"]}


def _kernel_layer_from_keras(config, label, ctx) -> dict:
    """What Conv2D and Dense share (minicnn's KernelLayer): activation, bias, initialisers."""
    _drop_training_only(config, ("kernel_regularizer", "bias_regularizer",
                                 "activity_regularizer", "kernel_constraint",
                                 "bias_constraint"), label)
    return {**_common_from_keras(config, label, ctx),
            "activation": _get_activation(config, label, ctx),
            "use_bias": bool(config.get("use_bias", True)),
            "kernel_initializer": _get_initializer(config, "kernel_initializer", label,
                                                   "glorot_uniform"),
            "bias_initializer": _get_initializer(config, "bias_initializer", label, "zeros")}


def _maxpool_from_keras(config, label, ctx) -> dict:
    _require(config, "data_format", ["channels_last", None], label, ctx)
    return {**_common_from_keras(config, label, ctx),
            "pool_size": config.get("pool_size", (2, 2)), "strides": config.get("strides"),
            "padding": _padding(config, label, ctx)}


def _flatten_from_keras(config, label, ctx) -> dict:
    # channels_first would flatten (C, H, W) order: other weights for the next Dense.
    _require(config, "data_format", ["channels_last", None], label, ctx)
    return _common_from_keras(config, label, ctx)


def _dropout_from_keras(config, label, ctx) -> dict:
    _require(config, "noise_shape", [None], label, ctx)
    return {**_common_from_keras(config, label, ctx), "rate": float(config["rate"]),
            "seed": config.get("seed")}


def _activation_from_keras(config, label, ctx) -> dict:
    return {**_common_from_keras(config, label, ctx),
            "activation": _get_activation(config, label, ctx)}


_FROM_KERAS = {"Conv2D": (Conv2D, _conv2d_from_keras), "Dense": (Dense, _dense_from_keras),
               "MaxPooling2D": (MaxPooling2D, _maxpool_from_keras),
               "Flatten": (Flatten, _flatten_from_keras),
               "Dropout": (Dropout, _dropout_from_keras),
               "Activation": (Activation, _activation_from_keras)}


def _layer_from_entry(entry, ctx):
    class_name = entry.get("class_name")
    if class_name in _MODEL_CLASSES:
        return _model_from_entry(entry, ctx)
    cls, from_keras = _FROM_KERAS[_LAYER_ALIASES.get(class_name, class_name)]
    config = entry.get("config", {})
    label = f"{class_name} '{config.get('name', '?')}'"
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


def _model_from_entry(entry, ctx, seed=None):
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
    if class_name == "Sequential":
        cls = Sequential
    else:
        from minicnn.applications.vgg16 import VGG16Model
        cls = VGG16Model if config.get("name") == "vgg16" else Functional
    model = cls(layers, name=config.get("name"), seed=seed,
                trainable=bool(config.get("trainable", True)))
    if "dtype" in config:             # the model's own policy (its layers keep theirs)
        model.dtype = np.dtype(_get_dtype(config, model._label(), ctx))
    if not model.built and shape is not None:
        model.build(shape)
    return model


# -- training configuration ---------------------------------------------------------

_OPTIMIZER_CLASSES = {"rmsprop": optimizers.RMSprop, "adam": optimizers.Adam,
                      "sgd": optimizers.SGD}
# Options minicnn does not implement: each must be absent or have its neutral value.
_NEUTRAL_OPTIONS = ("decay", "weight_decay", "clipnorm", "clipvalue", "global_clipnorm",
                    "use_ema", "gradient_accumulation_steps", "loss_scale_factor", "centered",
                    "amsgrad")
_COMPILE_YOURSELF = "load with compile=False and compile the model yourself"


def _epsilon_inside_sqrt(keras_version: str) -> bool:
    """Where RMSprop's epsilon goes for files without minicnn's note: multi-backend Keras
    (2.3.1 and before, the lecture's) added it to sqrt(v); tf.keras (versions '-tf', 2.4
    and later) and Keras 3 add it to v under the square root."""
    if keras_version.endswith("-tf"):
        return True
    try:
        major, minor = (int(p) for p in keras_version.split(".")[:2])
    except ValueError:
        return True
    return not (major < 2 or major == 2 and minor < 4)


def _optimizer_from_keras(entry, extras, ctx):
    class_name = str(entry.get("class_name", "")).split(">")[-1]   # 'Custom>Adam' (tf.keras 2.11)
    config = dict(entry.get("config") or {})
    cls = _OPTIMIZER_CLASSES.get(class_name.lower())
    if cls is None:
        raise ctx.error(f"the optimizer {class_name!r} is not one minicnn has (RMSprop, Adam, "
                        f"SGD); {_COMPILE_YOURSELF}")
    for key in _NEUTRAL_OPTIONS:
        if config.get(key) not in (None, False, 0, 0.0):
            raise ctx.error(f"optimizer {class_name}: {key}={config[key]!r} is not supported "
                            f"by minicnn; {_COMPILE_YOURSELF}")
    defaults = cls().get_config()
    lr = config.get("learning_rate", config.get("lr", defaults["learning_rate"]))
    if not isinstance(lr, (int, float)) or isinstance(lr, bool):
        raise ctx.error(f"optimizer {class_name}: learning_rate {lr!r} (a schedule?) is not "
                        f"supported; {_COMPILE_YOURSELF}")
    kwargs = {"learning_rate": float(lr)}
    for key in defaults:
        if key in ("name", "learning_rate", "epsilon_inside_sqrt"):
            continue
        value = config.get(key)
        kwargs[key] = defaults[key] if value is None else value   # Keras 2.0: epsilon None
    if cls is optimizers.RMSprop:
        kwargs["epsilon_inside_sqrt"] = extras.get(
            "epsilon_inside_sqrt", _epsilon_inside_sqrt(ctx.keras_version))
    try:
        return cls.from_config(kwargs)
    except (TypeError, ValueError) as e:
        raise ctx.error(f"optimizer {class_name}: {e}; {_COMPILE_YOURSELF}") from None


def _loss_from_keras(loss, ctx):
    if isinstance(loss, list) and len(loss) == 1:
        return _loss_from_keras(loss[0], ctx)
    if isinstance(loss, dict) and "class_name" not in loss and len(loss) == 1:
        return _loss_from_keras(next(iter(loss.values())), ctx)      # {output name: loss}
    if isinstance(loss, dict):
        config = loss.get("config") or {}
        if isinstance(config, str):                                  # a serialized function
            return _loss_from_keras(config, ctx)
        if loss.get("class_name") == "BinaryCrossentropy" and \
                not config.get("label_smoothing"):
            return losses.BinaryCrossentropy(from_logits=bool(config.get("from_logits")))
        if loss.get("class_name") == "MeanSquaredError":
            return losses.MeanSquaredError()
    elif isinstance(loss, str):
        try:
            return losses.get(loss)
        except ValueError:
            pass
    raise ctx.error(f"the loss {loss!r} is not one minicnn has (binary_crossentropy, "
                    f"mean_squared_error); {_COMPILE_YOURSELF}")


def _metrics_from_keras(metrics, ctx) -> list:
    names = []

    def walk(m):
        if isinstance(m, str):
            names.append(m)
        elif isinstance(m, list):
            for x in m:
                walk(x)
        elif isinstance(m, dict) and "class_name" in m:
            config = m.get("config") or {}
            if isinstance(config, str):
                names.append(config)
            elif m["class_name"] in ("BinaryAccuracy", "MeanMetricWrapper") and \
                    config.get("name") in metrics_lib.ACCURACY_NAMES:
                names.append(config["name"])
            elif m["class_name"] == "BinaryAccuracy":
                names.append("binary_accuracy")
            else:
                names.append(config.get("name", m["class_name"]))
        elif isinstance(m, dict):                                  # {output name: metrics}
            for x in m.values():
                walk(x)

    walk(metrics)
    try:
        return metrics_lib.resolve(names)
    except ValueError as e:
        raise ctx.error(f"{e}; {_COMPILE_YOURSELF}") from None


def _slot_aliases(optimizer) -> dict:
    """minicnn slot -> the names Keras gives it: Keras 3's suffixes, tf.keras 2's slots."""
    tf_keras = {"velocity": ("rms",), "m": ("m",), "v": ("v",)}
    return {slot: (keras,) + tf_keras.get(slot, ())
            for slot, keras in optimizer.keras_slot_names.items() if slot in optimizer.slot_names}


def _state_from_arrays(optimizer, arrays, n_weights):
    """[{slot: array}] per trainable weight from the file's slot arrays [(name, array)]:
    by the slot each name ends with, each slot's arrays in weight order; or, when the names
    do not say, in Keras 3's order. None when neither fits."""
    aliases = _slot_aliases(optimizer)
    by_slot = {slot: [] for slot in optimizer.slot_names}
    for name, value in arrays:
        last = name.split("/")[-1].split(":")[0]
        kinds = [slot for slot, names in aliases.items()
                 if any(last == a or last.endswith("_" + a) for a in names)]
        if len(kinds) != 1:
            by_slot = None
            break
        by_slot[kinds[0]].append(value)
    if by_slot is not None and all(len(v) == n_weights for v in by_slot.values()):
        return [{slot: by_slot[slot][i] for slot in optimizer.slot_names}
                for i in range(n_weights)]
    layout = optimizer.slot_layout(n_weights)
    if len(arrays) != len(layout):
        return None
    state = [{} for _ in range(n_weights)]
    for (slot, i), (_, value) in zip(layout, arrays):
        state[i][slot] = value
    return state


def _restore_optimizer_state(model, names, values, ctx, strict: bool) -> None:
    optimizer = model.optimizer
    weights = model.trainable_weights
    iterations, arrays = 0, []
    for name, value in zip(names, values):
        last = name.split("/")[-1].split(":")[0]
        if value.ndim == 0:
            if last in ("iteration", "iterations", "iter"):
                iterations = int(value)
            continue                    # learning_rate (in the config too), hyperparameters
        arrays.append((name, value))
    if arrays:
        state = _state_from_arrays(optimizer, arrays, len(weights))
    else:
        # Keras saves an optimizer that never stepped without slots: they are all zeros.
        state = optimizer.get_state(weights)
    problem = None
    if state is None:
        problem = (f"the file's optimizer state ({len(arrays)} slot arrays) does not fit "
                   f"{type(optimizer).__name__} with {len(weights)} trainable weights "
                   f"({len(optimizer.slot_layout(len(weights)))} slot arrays)")
    else:
        try:
            optimizer.set_state(weights, iterations, state)
        except ValueError as e:
            problem = f"the file's optimizer state does not fit the model: {e}"
    if problem is not None:
        if strict:
            raise ctx.error(problem)
        warnings.warn(f"{ctx.path}: {problem}; training starts with a fresh optimizer state",
                      stacklevel=3)


# -- random generators ------------------------------------------------------------------

_BIT_GENERATORS = ("PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64")


def _generator(state):
    if not isinstance(state, dict) or state.get("bit_generator") not in _BIT_GENERATORS:
        return None
    bit_generator = getattr(np.random, state["bit_generator"])()
    bit_generator.state = state
    return np.random.Generator(bit_generator)


def _restore_rng_states(model, extras) -> None:
    for path, state in (extras.get("dropout_rng_states") or {}).items():
        layer = model
        for name in path.split("/"):
            layer = next((l for l in getattr(layer, "layers", []) if l.name == name), None)
        rng = _generator(state)
        if isinstance(layer, Dropout) and rng is not None:
            layer.rng = rng
    rng = _generator(extras.get("shuffle_rng_state"))
    if rng is not None:
        model._shuffle_rng = rng


# -- reading ------------------------------------------------------------------------

def _check_file(path) -> None:
    import h5py

    if not os.path.isfile(path):
        raise FileNotFoundError(f"model file {path} does not exist")
    if not h5py.is_hdf5(path):
        if zipfile.is_zipfile(path):
            raise ValueError(f"{path} is a zip archive (Keras 3's native .keras format?), not "
                             f"an HDF5 file; minicnn reads Keras .h5 model files: in Keras, "
                             f"save with model.save('model.h5')")
        raise ValueError(f"{path} is not an HDF5 file, so not a Keras .h5 model file")


def _json_attribute(f, key, path):
    value = f.attrs[key]
    try:
        return json.loads(value.decode("utf8") if isinstance(value, bytes) else str(value))
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: the '{key}' attribute is not valid JSON ({e})") from None


def _read(path, compile: bool):
    """(model_config, training_config, extras, keras_version, optimizer weights) of a file."""
    import h5py

    with h5py.File(path, "r") as f:
        if "model_config" not in f.attrs:
            if hdf5._has_attribute(f, "layer_names"):
                raise ValueError(
                    f"{path} is a weights file (Keras's save_weights layout: layer_names, no "
                    f"model_config), not a model file; build the model and call "
                    f"model.load_weights({path!r})")
            raise ValueError(
                f"{path} is an HDF5 file but not a Keras model file: it has no 'model_config' "
                f"attribute (top-level entries: {sorted(f.keys())[:20]}, attributes: "
                f"{sorted(f.attrs.keys())[:20]})")
        model_config = _json_attribute(f, "model_config", path)
        training_config = _json_attribute(f, "training_config", path) \
            if "training_config" in f.attrs else None
        extras = _json_attribute(f, "minicnn", path) if "minicnn" in f.attrs else {}
        keras_version = hdf5._decode(f.attrs.get("keras_version")) or ""
        if "model_weights" not in f:
            raise ValueError(f"{path}: the file has a model_config but no 'model_weights' "
                             f"group, so no weights to load")
        optimizer_weights = None
        if compile and training_config is not None and "optimizer_weights" in f:
            group = f["optimizer_weights"]
            names = hdf5._load_attribute(group, "weight_names")
            missing = [n for n in names if n not in group]
            if missing:
                raise ValueError(f"{path}: optimizer_weights lists {missing[:3]} but the file "
                                 f"has no such datasets")
            optimizer_weights = (names, [np.asarray(group[n]) for n in names])
    return model_config, training_config, extras, keras_version, optimizer_weights


def load_model(path, compile=True) -> Sequential:
    """The model in a Keras legacy HDF5 model file (written by minicnn or by Keras).

    Layers, names, trainable flags, dtypes and input shape come from the config, weights
    from /model_weights (every shape checked). With compile=True and a training
    configuration in the file, the model is compiled with the same optimizer, loss and
    metrics and the optimizer state is restored, so that training continues where it
    stopped (exactly, for minicnn's files).
    """
    path = os.fspath(path)
    _check_file(path)
    model_config, training_config, extras, keras_version, optimizer_weights = \
        _read(path, compile)
    ctx = _Context(path, keras_version)
    if not isinstance(model_config, dict) or "config" not in model_config:
        raise ctx.error("model_config is not a Keras model config ({'class_name', 'config'})")
    if model_config.get("class_name") not in _MODEL_CLASSES:
        raise ctx.error(f"the file holds a {model_config.get('class_name')!r}; minicnn reads "
                        f"Sequential models and functional models that are a chain of layers")
    unsupported = _unsupported_layers(model_config, [])
    if unsupported:
        listed = ", ".join(f"'{name}' ({class_name})" for name, class_name in unsupported)
        raise ctx.error(f"the model has layers minicnn does not have: {listed}; minicnn "
                        f"supports {supported_classes()}")
    model = _model_from_entry(model_config, ctx, seed=extras.get("seed"))
    if not model.built:
        raise ctx.error("the model config gives no input shape (no InputLayer, "
                        "batch_input_shape or build_input_shape), so its weights cannot be "
                        "placed")
    hdf5.load_weights(model, path)
    _restore_rng_states(model, extras)
    if compile and training_config is not None:
        optimizer = _optimizer_from_keras(training_config.get("optimizer_config") or {},
                                          extras, ctx)
        model.compile(optimizer=optimizer,
                      loss=_loss_from_keras(training_config.get("loss"), ctx),
                      metrics=_metrics_from_keras(training_config.get("metrics"), ctx))
        if optimizer_weights is not None:
            _restore_optimizer_state(model, *optimizer_weights, ctx, strict=bool(extras))
    return model


# The lecture's (R) names.
save_model_hdf5 = save_model
load_model_hdf5 = load_model
