"""Keras's legacy HDF5 weights layout: `save_weights(model, path)`, `load_weights(model, path)`.

The layout is the one Keras writes with `save_weights_to_hdf5_group` and reads with
`load_weights_from_hdf5_group[_by_name]` (keras/src/legacy/saving/legacy_h5_format.py),
and the one of the files keras-applications publishes, such as
`vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5`:

    /                                 attrs: layer_names  [every top-level layer, in order,
                                                           weights or not]
                                             backend, keras_version
    /<layer>                          attrs: weight_names [the layer's weights, in Keras's
                                                           legacy order: trainable, then
                                                           non-trainable]
    /<layer>/<weight name>            one dataset per weight name; a name with '/' in it
                                      makes sub-groups ('sequential/dense/kernel')
    /top_level_model_weights          attrs: weight_names [] (weights of the model itself;
                                      a Sequential has none)

A model inside a model (the VGG16 base inside the lecture's classifier) is one group, as
Keras writes it: no layer_names of its own, all its weights listed in `weight_names`
with names that carry their layer ('vgg16/block1_conv1/kernel').

Kernels are stored as minicnn holds them, which is Keras's layout: Conv2D (K_h, K_w, C_in,
C_out), Dense (in, out), bias (C_out,).

Writing goes through a temporary file renamed into place (minicnn.atomic), and is
byte-for-byte repeatable: no timestamps on datasets, the oldest HDF5 object format, groups
created in sorted order (as Keras does, so that no name is a prefix of a later one).
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field

import numpy as np

from minicnn.atomic import atomic_path
from minicnn.registry import FileFormat, register_format

# What goes into the root attributes. minicnn computes as TensorFlow does (cross-correlation,
# HWIO kernels); Keras 2's loader looks at `backend` to decide whether to flip Theano
# kernels and at `keras_version` == "1" to convert Keras 1 files, so these two values make
# every Keras read the arrays as they are. A fixed version string keeps the bytes of a
# file independent of the minicnn release that wrote it.
BACKEND = "tensorflow"
KERAS_VERSION = "3.0.0"

# HDF5 object headers hold at most 64 KB; Keras splits longer name lists into
# layer_names0, layer_names1, ... (and reads them back the same way).
HDF5_OBJECT_HEADER_LIMIT = 64512

# The oldest object format HDF5 1.10+ still writes: no creation times in object headers.
LIBVER = ("earliest", "v110")


# -- writing ----------------------------------------------------------------------

def save_weights(model, path) -> str:
    """Write the weights of a built Sequential `model` to `path` in Keras's legacy layout.

    Layers without weights get an empty group (Keras's readers expect one per name in
    `layer_names`). Returns the path. The previous file at `path`, if any, stays intact
    until the new one is complete.
    """
    if not getattr(model, "built", False):
        raise ValueError(f"save_weights: {model._label()} is not built yet, so it has no "
                         f"weights to save; give its first layer input_shape=... first")
    entries = [(layer.name, _layer_weights(layer, model.name)) for layer in model.layers]
    return write_weights_file(path, entries)


def write_weights_file(path, entries) -> str:
    """Write `entries`, [(layer_name, [(weight_name, array), ...]), ...] in model order, as
    a legacy Keras weights file. The arrays are stored with their own dtype and shape."""
    path = os.fspath(path)
    names = [name for name, _ in entries]
    if len(set(names)) != len(names):
        duplicates = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"save_weights: layer names must be unique in a weights file; "
                         f"repeated: {duplicates}")
    with atomic_path(path) as tmp:
        import h5py

        with h5py.File(tmp, "w", libver=LIBVER) as f:
            _save_attribute(f, "layer_names", [n.encode("utf8") for n in names])
            f.attrs["backend"] = BACKEND.encode("utf8")
            f.attrs["keras_version"] = KERAS_VERSION.encode("utf8")
            for name, weights in sorted(entries, key=lambda entry: entry[0]):
                _write_group(f.create_group(name), weights)
            _write_group(f.create_group("top_level_model_weights"), [])
    return path


def _write_group(group, weights) -> None:
    _save_attribute(group, "weight_names", [w.encode("utf8") for w, _ in weights])
    for weight_name, value in weights:
        value = np.ascontiguousarray(value)
        group.create_dataset(weight_name, data=value, track_times=False)


def _save_attribute(group, name, data) -> None:
    """As Keras's save_attributes_to_hdf5_group: one attribute, or numbered chunks of it
    when the list is longer than an object header holds."""
    too_long = [x for x in data if len(x) > HDF5_OBJECT_HEADER_LIMIT]
    if too_long:
        raise ValueError(f"save_weights: names longer than {HDF5_OBJECT_HEADER_LIMIT} bytes "
                         f"cannot be stored in HDF5: {too_long[0][:80]!r}...")
    array = np.asarray(data)
    chunks = [array]
    while any(chunk.nbytes > HDF5_OBJECT_HEADER_LIMIT for chunk in chunks):
        chunks = np.array_split(array, len(chunks) + 1)
    if len(chunks) > 1:
        for i, chunk in enumerate(chunks):
            group.attrs[f"{name}{i}"] = chunk
    else:
        group.attrs[name] = data


def _variable_names(layer) -> list[str]:
    """Names of layer.params as Keras names its variables: kernel, bias."""
    names = getattr(layer, "param_names", None)
    if names is None:
        names = ["kernel", "bias"] if hasattr(layer, "kernel") else \
            [("variable" if i == 0 else f"variable_{i}") for i in range(len(layer.params))]
    return list(names)[:len(layer.params)]


def _named_params(layer, prefix: str) -> list[tuple[str, np.ndarray]]:
    """(weight name, array) for every parameter of `layer`, nested models flattened, in
    params order. Names follow Keras 3: '<model>/<layer>/<variable>'."""
    if hasattr(layer, "layers"):
        return [named for inner in layer.layers
                for named in _named_params(inner, f"{prefix}/{layer.name}" if prefix else layer.name)]
    return [(f"{prefix}/{layer.name}/{var}", p)
            for var, p in zip(_variable_names(layer), layer.params)]


def _layer_weights(layer, model_name: str) -> list[tuple[str, np.ndarray]]:
    """The (name, array) pairs of one top-level layer's group, in Keras's legacy order
    (trainable weights, then non-trainable ones: it matters only for a partly frozen
    model inside the model, whose weights Keras lists in that order).

    Keras 3 names the weights of a layer of a Sequential '<model>/<layer>/kernel', and
    those of a model inside it '<inner model>/<layer>/kernel' (without the outer name).
    """
    prefix = "" if hasattr(layer, "layers") else model_name
    named = _named_params(layer, prefix)
    by_id = {id(array): name for name, array in named}
    ordered = list(layer.trainable_weights) + list(layer.non_trainable_weights)
    if sorted(map(id, ordered)) != sorted(by_id):      # a layer outside the contract
        ordered = [array for _, array in named]
    return [(by_id[id(array)], array) for array in ordered]


# -- reading ----------------------------------------------------------------------

@dataclass
class WeightsFile:
    """A legacy weights file read whole: layer names in file order, and for each layer
    its (weight name, array) pairs in `weight_names` order."""
    path: str
    layer_names: list[str]
    weights: dict[str, list[tuple[str, np.ndarray]]] = field(repr=False)
    backend: str | None = None
    keras_version: str | None = None

    def layers_with_weights(self) -> list[str]:
        return [name for name in self.layer_names if self.weights.get(name)]


@contextlib.contextmanager
def reading(path, what):
    """Open an HDF5 file for reading; an error of the HDF5 library itself (a file cut
    short, damaged bytes) becomes a ValueError that names the file and what it was read
    as. Errors raised inside the block pass through."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            yield f
    except OSError as error:
        if isinstance(error, FileNotFoundError):
            raise
        raise ValueError(f"{path}: cannot read it as a {what}: the HDF5 file is damaged or "
                         f"cut short, e.g. by an interrupted copy or download "
                         f"(HDF5: {error})") from None


def read_weights_file(path) -> WeightsFile:
    """Read a Keras legacy weights file (save_weights), or the weights of a full model
    file (save_model keeps them in /model_weights)."""
    import h5py

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"weights file {path} does not exist")
    if not h5py.is_hdf5(path):
        raise ValueError(f"{path} is not an HDF5 file, so not a Keras .h5 weights file")
    with reading(path, "Keras .h5 weights file") as f:
        root = f
        if not _has_attribute(f, "layer_names") and "model_weights" in f:
            root = f["model_weights"]          # a whole model saved with save_model
        if not _has_attribute(root, "layer_names"):
            raise ValueError(
                f"{path}: this HDF5 file has no 'layer_names' attribute, so it is not a "
                f"Keras weights file in the legacy .h5 layout (Keras 3's '.weights.h5' "
                f"format is a different one); top-level entries: {sorted(f.keys())[:20]}")
        layer_names = _load_attribute(root, "layer_names")
        weights = {}
        for name in layer_names:
            if name not in root:
                raise ValueError(f"{path}: layer {name!r} is listed in layer_names but has "
                                 f"no group in the file")
            group = root[name]
            pairs = []
            for weight_name in _load_attribute(group, "weight_names"):
                if weight_name not in group:
                    raise ValueError(f"{path}: layer {name!r} lists weight {weight_name!r} "
                                     f"but the file has no such dataset")
                pairs.append((weight_name, np.asarray(group[weight_name])))
            weights[name] = pairs
        return WeightsFile(path, layer_names, weights,
                           _decode(root.attrs.get("backend")),
                           _decode(root.attrs.get("keras_version")))


def _has_attribute(group, name) -> bool:
    return name in group.attrs or f"{name}0" in group.attrs


def _decode(value):
    return value.decode("utf8") if isinstance(value, bytes) else (
        None if value is None else str(value))


def _load_attribute(group, name) -> list[str]:
    """As Keras's load_attributes_from_hdf5_group: one attribute or its numbered chunks."""
    if name in group.attrs:
        values = list(group.attrs[name])
    else:
        values, i = [], 0
        while f"{name}{i}" in group.attrs:
            values.extend(group.attrs[f"{name}{i}"])
            i += 1
    return [_decode(v) for v in values]


def load_weights(model, path) -> None:
    """Load a Keras legacy weights file into a built Sequential `model`, layer by name.

    Every layer of the model that has weights needs a group of the same name in the file;
    groups the model does not have (input_1, fc1, ...) are ignored, as are layers without
    weights. The weights of a model inside the model are matched to its layers by the
    layer names in their weight names, or by Keras's order when the names do not say.
    Every count, shape and dtype is checked before anything is assigned, so on an error
    the model is unchanged. Floating-point weights of another precision are converted to
    the layer's dtype, as Keras does (float16 exactly, float64 rounded to float32);
    non-floating ones are refused.
    """
    path = os.fspath(path)
    if not getattr(model, "built", False):
        raise ValueError(f"load_weights: {model._label()} is not built yet; give its first "
                         f"layer input_shape=... before loading {path}")
    file = read_weights_file(path)
    with_weights = [layer for layer in model.layers if layer.params]
    for layer in with_weights:
        if layer.name not in file.weights:
            raise ValueError(
                f"{path}: no weights for layer '{layer.name}' ({type(layer).__name__}) of "
                f"{model._label()}; the file has layers {file.layer_names} (with weights: "
                f"{file.layers_with_weights()})")
    assignments = []            # (model array, file array), all checked before any is set
    for layer in with_weights:
        assignments += _match_layer(layer, model.name, file.weights[layer.name], path)
    for target, value in assignments:
        target[...] = value


def _match_layer(layer, model_name, saved, path) -> list[tuple[np.ndarray, np.ndarray]]:
    """Pair each saved array of one group with the model's array it belongs to."""
    expected = _layer_weights(layer, model_name)        # [(name, array)] legacy order
    kind = "Sequential" if hasattr(layer, "layers") else type(layer).__name__
    if len(saved) != len(expected):
        raise ValueError(
            f"{path}: layer '{layer.name}' ({kind}) has {len(saved)} weights in the file "
            f"{[n for n, _ in saved]} with shapes {[v.shape for _, v in saved]}; the model "
            f"expects {len(expected)}: {[n for n, _ in expected]} with shapes "
            f"{[a.shape for _, a in expected]}")
    targets = [array for _, array in expected]
    if hasattr(layer, "layers"):
        targets = _targets_by_name(layer, saved) or targets
    pairs = []
    for (weight_name, value), target in zip(saved, targets):
        if value.shape != target.shape:
            raise ValueError(
                f"{path}: layer '{layer.name}' ({kind}), weight '{weight_name}': the file "
                f"has shape {value.shape}, the model expects {target.shape}")
        if value.dtype.kind != "f":
            # Floating weights are converted to the layer's dtype, as Keras does on
            # loading (float16 exactly, float64 rounded); integers or strings are not weights.
            raise ValueError(
                f"{path}: layer '{layer.name}' ({kind}), weight '{weight_name}': the file "
                f"holds {value.dtype} values; expected floating-point weights (float16, "
                f"float32 or float64, converted to the layer's {target.dtype})")
        pairs.append((target, value))
    return pairs


def _targets_by_name(model, saved):
    """For the group of a model inside the model: the model's array for each saved weight,
    found from the names ('vgg16/block1_conv1/kernel', 'block1_conv1/kernel:0'), or None
    when the names do not identify every array once."""
    leaves = {}
    for name, array in _named_params(model, ""):
        parts = name.split("/")
        leaves[(parts[-2], parts[-1])] = array          # (layer, variable)
    targets = []
    for weight_name, _ in saved:
        parts = weight_name.split(":")[0].split("/")
        if len(parts) < 2 or (parts[-2], parts[-1]) not in leaves:
            return None
        targets.append(leaves[(parts[-2], parts[-1])])
    if len({id(t) for t in targets}) != len(leaves) or len(targets) != len(leaves):
        return None
    return targets


register_format("weights", FileFormat("Keras HDF5 weights file", save_weights, load_weights))
