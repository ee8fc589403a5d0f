"""Keras compatibility: how Keras encodes what minicnn's configs hold, and reading it back.

The Keras release whose keys this package writes (KERAS_VERSION), Keras 3's dtype policies
and initializer objects, and the readers that take Keras 3's and Keras 2's spellings of the
same things (dtype strings, VarianceScaling initializers) or refuse, naming the file and
the layer, what minicnn cannot compute the same way (_Context.error).
"""
from __future__ import annotations

import warnings

import numpy as np

from minicnn.activations import NAMES as ACTIVATION_NAMES
from minicnn.io import hdf5

# The Keras release whose configs (the keys of each layer, optimizer and initializer) this
# module writes, and the one given in the files: Keras reads it only to convert Keras 1 files.
KERAS_VERSION = "3.15.1"


BACKEND = hdf5.BACKEND


_KERAS_INITIALIZERS = {          # minicnn name -> (Keras class, Keras 3.15 config)
    "glorot_uniform": ("GlorotUniform", {"seed": None, "input_axes": None, "output_axes": None}),
    "glorot_normal": ("GlorotNormal", {"seed": None, "input_axes": None, "output_axes": None}),
    "he_uniform": ("HeUniform", {"seed": None, "input_axes": None, "output_axes": None}),
    "he_normal": ("HeNormal", {"seed": None, "input_axes": None, "output_axes": None}),
    "zeros": ("Zeros", {}),
    "ones": ("Ones", {}),
}


def dtype_policy(dtype) -> dict:
    return {"module": "keras", "class_name": "DTypePolicy",
            "config": {"name": np.dtype(dtype).name}, "registered_name": None}


def keras_initializer(name: str) -> dict:
    class_name, config = _KERAS_INITIALIZERS[name]
    return {"module": "keras.initializers", "class_name": class_name, "config": dict(config),
            "registered_name": None}


_FROM_KERAS_INITIALIZERS = {class_name: name
                            for name, (class_name, _) in _KERAS_INITIALIZERS.items()}


# Keras 2.0-2.2 wrote Glorot and He initializers as VarianceScaling(scale, mode, distribution).
_VARIANCE_SCALING = {(1.0, "fan_avg", "uniform"): "glorot_uniform",
                     (1.0, "fan_avg", "normal"): "glorot_normal",
                     (1.0, "fan_avg", "truncated_normal"): "glorot_normal",
                     (2.0, "fan_in", "uniform"): "he_uniform",
                     (2.0, "fan_in", "normal"): "he_normal",
                     (2.0, "fan_in", "truncated_normal"): "he_normal"}


class Context:
    """What reading a config needs to know: the file (for messages) and who wrote it."""

    def __init__(self, path, keras_version):
        self.path = path
        self.keras_version = keras_version or ""

    def error(self, message) -> ValueError:
        return ValueError(f"{self.path}: {message}")


def get_dtype(config, label, ctx) -> str:
    dtype = config.get("dtype", "float32")
    if isinstance(dtype, dict):        # DTypePolicy (Keras 3), Policy (Keras 2 mixed precision)
        dtype = dtype.get("config", {}).get("name", "float32")
    if dtype is None:
        dtype = "float32"
    if dtype not in ("float32", "float64"):
        raise ctx.error(f"{label}: dtype {dtype!r} is not supported; minicnn computes in "
                        f"float32 or float64")
    return dtype


def get_activation(config, label, ctx) -> str:
    activation = config.get("activation", "linear")
    if isinstance(activation, dict):           # a serialized function
        activation = activation.get("config", activation.get("class_name"))
    if activation is None:
        return "linear"
    if not isinstance(activation, str) or activation.lower() not in ACTIVATION_NAMES:
        raise ctx.error(f"{label}: activation {activation!r} is not supported; minicnn has "
                        f"{', '.join(ACTIVATION_NAMES)}")
    return activation.lower()


def get_initializer(config, key, label, default) -> str:
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


def require(config, key, allowed, label, ctx) -> None:
    """An option minicnn has no way to compute must have one of its `allowed` values."""
    value = config.get(key, allowed[0])
    normalized = list(value) if isinstance(value, tuple) else value
    if normalized not in allowed:
        raise ctx.error(f"{label}: {key}={value!r} is not supported by minicnn (expected "
                        f"{' or '.join(repr(a) for a in allowed)})")


def drop_training_only(config, keys, label) -> None:
    for key in keys:
        if config.get(key) is not None:
            warnings.warn(f"{label}: {key} {config[key]!r} is ignored (minicnn does not apply "
                          f"regularizers or constraints when training)", stacklevel=4)


def epsilon_inside_sqrt(keras_version: str) -> bool:
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
