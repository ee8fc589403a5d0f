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

Writing goes through a temporary file renamed into place (minicnn.atomic): a failed or
interrupted save leaves the previous file as it was. The bytes are repeatable (no
timestamps, the oldest HDF5 object format), as for weight files.

A path ending in `.keras` is written as Keras 3's native archive instead, and a zip file
is read as one (minicnn.io.keras_archive): that format keeps the optimizer's state for
Keras too.

The code is split by what it reads and writes: minicnn.io.architecture (model_config),
minicnn.io.training_state (training_config, optimizer_weights, the minicnn attribute),
minicnn.io.hdf5 (the weights), minicnn.io.keras_compat (Keras's encodings); this module
puts them in one file and takes them out.
"""
from __future__ import annotations

import json
import os

import numpy as np

from minicnn.io import hdf5, keras_archive
from minicnn.io.architecture import (
    MODEL_CLASSES,
    InputNames,
    check_readable,
    model_entry,
    model_from_entry,
)
from minicnn.atomic import atomic_path
from minicnn.io.keras_compat import BACKEND, KERAS_VERSION, Context
from minicnn.io.training_state import (
    loss_from_keras,
    metrics_from_keras,
    minicnn_extras,
    optimizer_entries,
    optimizer_from_keras,
    restore_optimizer_state,
    restore_rng_states,
    training_config,
    write_optimizer_weights,
)
from minicnn.model import Sequential
from minicnn.registry import FileFormat, register_format


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
    if path.endswith(".keras"):                 # Keras 3's native format, as model.save
        return keras_archive.save_keras(model, path, include_optimizer=include_optimizer)
    config = model_entry(model, InputNames(model))
    compiled = include_optimizer and model.optimizer is not None and model.loss is not None
    metadata = {"keras_version": KERAS_VERSION, "backend": BACKEND, "model_config": config}
    if compiled:
        metadata["training_config"] = training_config(model)
    metadata["minicnn"] = minicnn_extras(model, compiled)
    layer_weights = [(layer.name, hdf5._layer_weights(layer, model.name))
                     for layer in model.layers]
    optimizer_weights = optimizer_entries(model) if compiled else None

    with atomic_path(path) as tmp:
        import h5py

        with h5py.File(tmp, "w", libver=hdf5.LIBVER) as f:
            for key, value in metadata.items():
                # As Keras: JSON as UTF-8 bytes, plain strings as they are.
                f.attrs[key] = json.dumps(value).encode("utf8") if isinstance(value, dict) \
                    else value
            _write_model_weights(f.create_group("model_weights"), layer_weights)
            if optimizer_weights is not None:
                write_optimizer_weights(f.create_group("optimizer_weights"), optimizer_weights)
    return path


def _write_model_weights(group, layer_weights) -> None:
    """minicnn.io.hdf5's layout (write_weights_file), into the model file's group."""
    hdf5._save_attribute(group, "layer_names", [n.encode("utf8") for n, _ in layer_weights])
    group.attrs["backend"] = BACKEND.encode("utf8")
    group.attrs["keras_version"] = KERAS_VERSION.encode("utf8")
    for name, weights in sorted(layer_weights, key=lambda entry: entry[0]):
        hdf5._write_group(group.create_group(name), weights)
    hdf5._write_group(group.create_group("top_level_model_weights"), [])


def _check_file(path) -> None:
    import h5py

    if not os.path.isfile(path):
        raise FileNotFoundError(f"model file {path} does not exist")
    if not h5py.is_hdf5(path):
        raise ValueError(f"{path} is neither an HDF5 file nor a zip archive, so neither a "
                         f"Keras .h5 model file nor a .keras archive")


def _json_attribute(f, key, path):
    value = f.attrs[key]
    try:
        return json.loads(value.decode("utf8") if isinstance(value, bytes) else str(value))
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: the '{key}' attribute is not valid JSON ({e})") from None


def _read(path, compile: bool):
    """(model_config, training_config, extras, keras_version, optimizer weights) of a file."""
    with hdf5.reading(path, "Keras .h5 model file") as f:
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
    if os.path.isfile(path) and keras_archive.is_keras_archive(path):
        return keras_archive.load_keras(path, compile=compile)
    _check_file(path)
    model_config, training_config, extras, keras_version, optimizer_weights = \
        _read(path, compile)
    ctx = Context(path, keras_version)
    if not isinstance(model_config, dict) or "config" not in model_config:
        raise ctx.error("model_config is not a Keras model config ({'class_name', 'config'})")
    if model_config.get("class_name") not in MODEL_CLASSES:
        raise ctx.error(f"the file holds a {model_config.get('class_name')!r}; minicnn reads "
                        f"Sequential models and functional models that are a chain of layers")
    check_readable(model_config, ctx)
    model = model_from_entry(model_config, ctx, seed=extras.get("seed"))
    if not model.built:
        raise ctx.error("the model config gives no input shape (no InputLayer, "
                        "batch_input_shape or build_input_shape), so its weights cannot be "
                        "placed")
    hdf5.load_weights(model, path)
    restore_rng_states(model, extras)
    if compile and training_config is not None:
        optimizer = optimizer_from_keras(training_config.get("optimizer_config") or {},
                                          extras, ctx)
        model.compile(optimizer=optimizer,
                      loss=loss_from_keras(training_config.get("loss"), ctx),
                      metrics=metrics_from_keras(training_config.get("metrics"), ctx))
        if optimizer_weights is not None:
            restore_optimizer_state(model, *optimizer_weights, ctx, strict=bool(extras))
    return model


# The lecture's (R) names.
save_model_hdf5 = save_model


load_model_hdf5 = load_model


register_format("model", FileFormat("Keras HDF5 model file", save_model, load_model))
