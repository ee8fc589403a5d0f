"""Keras 3's native `.keras` archive: `save_keras(model, path)`, `load_keras(path)`.

Keras 3 opens minicnn's legacy .h5 model files but drops their optimizer state. A `.keras`
file keeps it, so a model trained here continues in Keras (one machine or many) exactly
where it stopped: `keras.saving.load_model("model.keras")`, then `fit`. The archive is a
zip file (stored, not compressed, as Keras writes it), written here without Keras:

    metadata.json       {"keras_version": "3.15.1", "date_saved": "..."}
    config.json         the model as keras.saving.serialize_keras_object writes it:
                        {"module": "keras", "class_name": "Sequential", "config": {...},
                         "registered_name": null, "build_config": {"input_shape": [...]},
                         "compile_config": {"optimizer": {...}, "loss": ..., "metrics": ...}}
                        each layer with its "module" ("keras.layers"), "registered_name" and
                        "build_config"; the layer configs are those of the .h5 file
                        (minicnn.io.architecture)
    model.weights.h5    the variables by the path Keras walks to them, not by their names:
                        layers/<key>/vars/<i> for each layer's i-th variable (kernel 0,
                        bias 1), <key> the layer's class in snake case, numbered in each
                        model from the second of a class on (conv2d, conv2d_1, ...); a
                        model inside the model opens its own layers/ (a functional model's
                        InputLayer included); optimizer/vars/<i>: iterations (int64),
                        learning_rate, then the slots (RMSprop: every velocity) in the order
                        of the trainable weights; every group has its vars/ (empty when
                        the object holds no variable), named in its "name" attribute
    minicnn.json        what Keras has no place for and ignores: the model's seed, RMSprop's
                        epsilon_inside_sqrt, the random generators' states (as the .h5
                        file's `minicnn` attribute)

Reading takes minicnn's archives and Keras 3's, for the models minicnn has (the layers of
minicnn.io.architecture); the optimizer's state is restored, so training continues exactly.
Writing goes through a temporary file renamed into place (minicnn.atomic).
"""
from __future__ import annotations

import datetime
import io
import json
import os
import re
import zipfile

import numpy as np

from minicnn.atomic import atomic_path
from minicnn.io import hdf5
from minicnn.io.architecture import (
    MODEL_CLASSES,
    InputNames,
    check_readable,
    model_entry,
    model_from_entry,
)
from minicnn.io.keras_compat import KERAS_VERSION, Context
from minicnn.io.training_state import (
    loss_from_keras,
    metrics_from_keras,
    minicnn_extras,
    optimizer_entries,
    optimizer_from_keras,
    restore_optimizer_state,
    restore_rng_states,
    training_config,
)
from minicnn.model import Sequential

CONFIG, METADATA, WEIGHTS, EXTRAS = "config.json", "metadata.json", "model.weights.h5", \
    "minicnn.json"
_MODULES = {"Sequential": "keras", "Functional": "keras.src.models.functional"}


# -- writing ---------------------------------------------------------------------------

def save_keras(model, path, include_optimizer=True) -> str:
    """Write `model` (a built Sequential) to `path` as a Keras 3 `.keras` archive, with
    its training configuration and optimizer state when it is compiled and
    include_optimizer is set. Everything is built in memory first; the previous file at
    `path` stays intact until the new one is complete. Returns the path."""
    path = os.fspath(path)
    if not isinstance(model, Sequential):
        raise TypeError(f"save_keras expects a minicnn Sequential; received "
                        f"{type(model).__name__}")
    if not model.built:
        raise ValueError(f"save_keras: {model._label()} is not built yet; give its first "
                         f"layer input_shape=... or call it on data first")
    compiled = include_optimizer and model.optimizer is not None and model.loss is not None
    entry = model_entry(model, InputNames(model))
    config = {**_native(entry, model), "build_config": {"input_shape": list(model.input_shape)}}
    if compiled:
        config["compile_config"] = _compile_config(training_config(model))
    metadata = {"keras_version": KERAS_VERSION,
                "date_saved": datetime.datetime.now().strftime("%Y-%m-%d@%H:%M:%S")}
    weights = _weights_file(model, entry, optimizer_entries(model) if compiled else None)
    extras = minicnn_extras(model, compiled)
    with atomic_path(path) as tmp:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as archive:
            archive.writestr(METADATA, json.dumps(metadata))
            archive.writestr(CONFIG, json.dumps(config))
            archive.writestr(WEIGHTS, weights)
            archive.writestr(EXTRAS, json.dumps(extras))
    return path


def _native(entry, model) -> dict:
    """A model's config entry (minicnn.io.architecture) as serialize_keras_object writes
    it: "module" and "registered_name" on the model and on each layer, and each layer's
    "build_config"."""
    class_name, config = entry["class_name"], dict(entry["config"])
    layers = []
    for layer_entry in config["layers"]:
        if layer_entry["class_name"] == "InputLayer":
            layers.append({"module": "keras.layers", **layer_entry, "registered_name": None})
            continue
        layer = next(l for l in model.layers if l.name == layer_entry["config"]["name"])
        if isinstance(layer, Sequential):
            native = _native(layer_entry, layer)
        else:
            native = {"module": "keras.layers", **layer_entry, "registered_name": None}
        # (Keras leaves a functional model's input shape to its own InputLayer.)
        native["build_config"] = {"input_shape": None if layer_entry["class_name"] == "Functional"
                                  else list(layer.input_shape)}
        layers.append(native)
    config["layers"] = layers
    native = {"module": _MODULES[class_name], "class_name": class_name, "config": config,
              "registered_name": "Functional" if class_name == "Functional" else None}
    if class_name == "Functional":       # as Keras writes a functional model inside a model
        native["compile_config"] = {}
    return native


def _compile_config(training) -> dict:
    """The .h5 file's training_config as Keras 3's compile_config."""
    optimizer = training["optimizer_config"]
    loss = training["loss"]
    if isinstance(loss, dict):
        loss = {"module": "keras.losses", **loss, "registered_name": None}
    return {"optimizer": {"module": "keras.optimizers", **optimizer, "registered_name": None},
            "loss": loss, "loss_weights": None, "metrics": training["metrics"],
            "weighted_metrics": None, "run_eagerly": False, "steps_per_execution": 1,
            "jit_compile": False}


def _snake_case(class_name) -> str:
    """Keras's keras.src.utils.naming.to_snake_case: Conv2D -> conv2d, MaxPooling2D ->
    max_pooling2d, InputLayer -> input_layer."""
    name = re.sub(r"\W+", "", class_name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def _children(entry, model):
    """(key, class name, layer or None for an InputLayer, layer entry) of each object Keras
    visits in model.layers: keys unique in the model, numbered from the second of a class."""
    by_name = {layer.name: layer for layer in model.layers}
    used = {}
    for layer_entry in entry["config"]["layers"]:
        class_name = layer_entry["class_name"]
        if class_name == "InputLayer" and entry["class_name"] == "Sequential":
            continue                      # a Sequential's layers do not list its input
        key = _snake_case(class_name)
        if key in used:
            used[key] += 1
            key = f"{key}_{used[key]}"
        else:
            used[key] = 0
        layer = None if class_name == "InputLayer" else by_name[layer_entry["config"]["name"]]
        yield key, class_name, layer, layer_entry


def _write_model_state(f, path, entry, model) -> None:
    f.create_group(f"{path}vars").attrs["name"] = model.name
    f.create_group(f"{path}layers")
    for key, class_name, layer, layer_entry in _children(entry, model):
        where = f"{path}layers/{key}/"
        if class_name in MODEL_CLASSES:
            _write_model_state(f, where, layer_entry, layer)
            continue
        group = f.create_group(f"{where}vars")
        group.attrs["name"] = layer.name if layer is not None else layer_entry["config"]["name"]
        for i, weight in enumerate(layer.weights if layer is not None else []):
            group.create_dataset(str(i), data=np.ascontiguousarray(weight), track_times=False)


def _weights_file(model, entry, optimizer) -> bytes:
    import h5py

    buffer = io.BytesIO()
    with h5py.File(buffer, "w", libver=hdf5.LIBVER) as f:
        _write_model_state(f, "", entry, model)
        if optimizer is not None:
            group = f.create_group("optimizer/vars")
            group.attrs["name"] = optimizer[0][0].split("/")[0]
            for i, (_, value) in enumerate(optimizer):
                value = np.asarray(value)
                group.create_dataset(str(i), data=value if value.ndim == 0 else
                                     np.ascontiguousarray(value), track_times=False)
    return buffer.getvalue()


# -- reading ---------------------------------------------------------------------------

def is_keras_archive(path) -> bool:
    return zipfile.is_zipfile(path)


def load_keras(path, compile=True) -> Sequential:
    """The model in a Keras 3 `.keras` archive (written by minicnn or by Keras): layers,
    weights (every count, shape and dtype checked before any is set), and with compile=True
    the optimizer, loss and metrics of its compile_config and the optimizer's state."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"model file {path} does not exist")
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            missing = [n for n in (CONFIG, WEIGHTS) if n not in names]
            if missing:
                raise ValueError(f"{path}: a .keras archive holds {CONFIG} and {WEIGHTS}; "
                                 f"this zip file has no {' and no '.join(missing)} (its "
                                 f"entries: {sorted(names)[:10]})")
            config = _json(archive, CONFIG, path)
            metadata = _json(archive, METADATA, path) if METADATA in names else {}
            extras = _json(archive, EXTRAS, path) if EXTRAS in names else {}
            weights = archive.read(WEIGHTS)
    except zipfile.BadZipFile as error:
        raise ValueError(f"{path}: cannot read it as a .keras archive: the zip file is "
                         f"damaged or cut short ({error})") from None
    ctx = Context(path, str(metadata.get("keras_version", "")))
    if not isinstance(config, dict) or config.get("class_name") not in MODEL_CLASSES \
            or not isinstance(config.get("config"), dict):
        raise ctx.error(f"{CONFIG} does not hold a Sequential or functional model (class "
                        f"{config.get('class_name') if isinstance(config, dict) else None!r})")
    check_readable(config, ctx)
    model = model_from_entry(config, ctx, seed=extras.get("seed"))
    if not model.built:
        shape = (config.get("build_config") or {}).get("input_shape")
        if shape is None:
            raise ctx.error("the model config gives no input shape, so its weights cannot be "
                            "placed")
        model.build((None,) + tuple(int(d) for d in shape[1:]))
    optimizer_values = _read_weights(model, config, weights, ctx)
    restore_rng_states(model, extras)
    compile_config = config.get("compile_config") or None
    if compile and compile_config:
        optimizer = optimizer_from_keras(compile_config.get("optimizer") or {}, extras, ctx)
        model.compile(optimizer=optimizer, loss=loss_from_keras(compile_config.get("loss"), ctx),
                      metrics=metrics_from_keras(compile_config.get("metrics"), ctx))
        if optimizer_values:
            # Keras 3's order: iterations, learning_rate, then the slots by weight.
            names = ["iteration", "learning_rate"] + [
                f"slot_{i}" for i in range(len(optimizer_values) - 2)]
            restore_optimizer_state(model, names, optimizer_values, ctx, strict=True)
    return model


def _json(archive, name, path):
    try:
        return json.loads(archive.read(name).decode("utf8"))
    except (ValueError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: its {name} is not valid JSON ({error})") from None


def _read_weights(model, config, weights, ctx) -> list:
    """Check and set every layer's variables from model.weights.h5; returns the optimizer's
    variables (empty when the file has none)."""
    import h5py

    assignments = []
    try:
        with h5py.File(io.BytesIO(weights), "r") as f:
            _match_model(f, "", config, model, assignments, ctx)
            optimizer = _numbered(f.get("optimizer/vars"), "optimizer/vars", ctx)
    except OSError as error:
        raise ctx.error(f"its {WEIGHTS} is damaged ({error})") from None
    for target, value in assignments:
        target[...] = value
    return optimizer


def _numbered(group, where, ctx) -> list:
    """The arrays of a vars/ group, named 0, 1, ... as Keras numbers them."""
    if group is None:
        return []
    keys = sorted(group, key=lambda k: (not k.isdigit(), int(k) if k.isdigit() else 0, k))
    if keys != [str(i) for i in range(len(keys))]:
        raise ctx.error(f"{where} holds variables {keys[:8]}; expected 0, 1, 2, ...")
    return [np.asarray(group[k]) for k in keys]


def _match_model(f, path, entry, model, assignments, ctx) -> None:
    for key, class_name, layer, layer_entry in _children(entry, model):
        where = f"{path}layers/{key}/"
        if class_name in MODEL_CLASSES:
            _match_model(f, where, layer_entry, layer, assignments, ctx)
            continue
        if layer is None or not layer.weights:
            continue
        saved = _numbered(f.get(f"{where}vars"), f"{where}vars", ctx)
        label = f"layer '{layer.name}' ({class_name}, {where}vars)"
        if len(saved) != len(layer.weights):
            raise ctx.error(f"{label}: the file has {len(saved)} variables, the model "
                            f"expects {len(layer.weights)} of shapes "
                            f"{[w.shape for w in layer.weights]}")
        for i, (value, target) in enumerate(zip(saved, layer.weights)):
            if value.shape != target.shape or value.dtype.kind != "f":
                raise ctx.error(f"{label}, variable {i}: the file has {value.dtype} of shape "
                                f"{value.shape}, the model expects floating-point values of "
                                f"shape {target.shape}")
            assignments.append((target, value))
