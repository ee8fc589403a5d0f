"""The Layer contract every minicnn layer follows.

    layer.build(input_shape, rng)    create the weights for inputs of shape (None, ...)
    layer.forward(x, training=False) -> y          caches what backward needs when training
                                     (keep_cache=False: training behaviour, no cache, for
                                     layers no backward will reach, such as a frozen base)
    layer.backward(dy, need_dx=True) -> dx         sets layer.grads, frees the cache
    layer.params                     weights in Keras order (kernel, then bias)
    layer.grads                      dL/dparams, same shapes, after backward (trainable layers)
    layer.output_shape               with None for the batch, e.g. (None, 148, 148, 32)
    layer.get_weights() / set_weights(ws)          Keras shapes, copies in and out

backward never modifies dy or the cache, and assigns grads (it never adds to them).
"""
from __future__ import annotations

import re
from collections import defaultdict

import numpy as np

from minicnn import activations, initializers
from minicnn.shapes import format_shape

_name_counts: dict[str, int] = defaultdict(int)


def clear_session() -> None:
    """Restart default layer names from conv2d, dense, ... (keras.backend.clear_session)."""
    _name_counts.clear()


def snake_case(name: str) -> str:
    """'MaxPooling2D' -> 'max_pooling2d', as Keras names layers."""
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


def unique_name(base: str) -> str:
    """base, base_1, base_2, ... across the session, as Keras does."""
    count = _name_counts[base]
    _name_counts[base] += 1
    return base if count == 0 else f"{base}_{count}"


class Layer:
    """Base class: naming, trainability, shape checks and weight access."""

    def __init__(self, name=None, trainable=True, input_shape=None, dtype="float32"):
        self.name = name if name is not None else unique_name(snake_case(type(self).__name__))
        self._trainable = bool(trainable)
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise ValueError(f"{self._label()}: dtype must be float32 or float64; "
                             f"received dtype={dtype!r}")
        # Keras's `input_shape` excludes the batch; stored here with None in front.
        self.batch_input_shape = None if input_shape is None else \
            (None,) + tuple(int(d) for d in input_shape)
        self.input_shape = None
        self.output_shape = None
        self.built = False
        self.grads: list[np.ndarray] = []
        self._cache = None
        self._logits = None      # Z of the last forward, kept by sigmoid layers only

    # -- naming and errors -------------------------------------------------
    def _label(self) -> str:
        return f"{type(self).__name__} '{self.name}'"

    def _error(self, message: str) -> ValueError:
        return ValueError(f"{self._label()}: {message}")

    def __repr__(self) -> str:
        shape = "" if self.output_shape is None else f", output_shape={format_shape(self.output_shape)}"
        return f"<{type(self).__name__} name={self.name!r}{shape}>"

    # -- building ----------------------------------------------------------
    def build(self, input_shape, rng=None):
        """Check input_shape (None, ...), create weights, set output_shape. Returns output_shape."""
        input_shape = tuple(input_shape)
        if self.batch_input_shape is not None and tuple(input_shape[1:]) != self.batch_input_shape[1:]:
            raise self._error(f"declared input_shape={self.batch_input_shape[1:]} but is "
                              f"given inputs of shape {input_shape[1:]}")
        output_shape = self.compute_output_shape(input_shape)
        self._create_weights(input_shape, rng if rng is not None else np.random.default_rng())
        self.input_shape = (None,) + tuple(input_shape[1:])
        self.output_shape = output_shape
        self.built = True
        return output_shape

    def compute_output_shape(self, input_shape) -> tuple:
        """Output shape for an input shape (None, ...); raises on inputs the layer cannot take."""
        return tuple(input_shape)

    def _create_weights(self, input_shape, rng) -> None:
        """Layers with weights create them here (in self.dtype)."""

    def _require_rank(self, input_shape, rank: int, layout: str) -> None:
        if len(input_shape) != rank:
            raise self._error(f"expected input of rank {rank} {layout}; "
                              f"received shape {format_shape(input_shape)}")

    def _check_input(self, x: np.ndarray) -> np.ndarray:
        """Build on first use, then check x against the built input shape; returns x in self.dtype."""
        x = np.asarray(x)
        if not self.built:
            self.build((None,) + x.shape[1:])
        if x.ndim != len(self.input_shape) or x.shape[1:] != self.input_shape[1:]:
            expected = format_shape(("N",) + tuple(self.input_shape[1:])).replace("'", "")
            raise self._error(f"expected input of shape {expected}; received {x.shape}")
        return x.astype(self.dtype, copy=False)

    def _require_cache(self):
        if self._cache is None:
            raise RuntimeError(f"{self._label()}: backward() needs a forward(x, training=True) "
                               f"before it (nothing is cached at inference, and backward frees it)")
        cache, self._cache = self._cache, None
        return cache

    # -- the teaching contract ------------------------------------------------
    def __call__(self, x, training=False):
        return self.forward(x, training=training)

    def forward(self, x, training=False, keep_cache=None):
        raise NotImplementedError

    def backward(self, dy, need_dx=True):
        raise NotImplementedError

    def output_logits(self):
        """Z before the sigmoid of the last forward, for a loss computed from logits."""
        raise self._error("has no sigmoid output, so there are no logits to take")

    def backward_from_logits(self, dz, need_dx=True):
        """backward() of a sigmoid output when the loss already gives dL/dZ (from logits)."""
        raise self._error("has no sigmoid output; backward_from_logits does not apply")

    def _kept_logits(self):
        if self._logits is None:
            raise RuntimeError(f"{self._label()}: no logits kept; a layer with a sigmoid "
                               f"activation keeps them at each forward")
        return self._logits

    @property
    def params(self) -> list[np.ndarray]:
        return []

    @property
    def trainable(self) -> bool:
        return self._trainable

    @trainable.setter
    def trainable(self, value) -> None:
        self._trainable = bool(value)

    @property
    def trainable_weights(self) -> list[np.ndarray]:
        return list(self.params) if self.trainable else []

    @property
    def non_trainable_weights(self) -> list[np.ndarray]:
        return [] if self.trainable else list(self.params)

    @property
    def trainable_grads(self) -> list[np.ndarray]:
        """Gradients of trainable_weights after backward, in the same order."""
        return list(self.grads) if self.trainable else []

    @property
    def weights(self) -> list[np.ndarray]:
        return list(self.params)

    def count_params(self) -> int:
        if not self.built:
            raise self._error("is not built yet, so it has no weights to count; give the "
                              "first layer input_shape=... or call the model on data first")
        return int(sum(p.size for p in self.params))

    def get_weights(self) -> list[np.ndarray]:
        return [p.copy() for p in self.params]

    def set_weights(self, weights) -> None:
        """Copy weights in place (optimizer state stays attached to the same arrays)."""
        params = self.params
        weights = list(weights)
        if len(weights) != len(params):
            raise self._error(f"set_weights expected {len(params)} arrays "
                              f"{[p.shape for p in params]}; received {len(weights)}")
        for i, (p, w) in enumerate(zip(params, weights)):
            w = np.asarray(w)
            if w.shape != p.shape:
                raise self._error(f"set_weights: weight {i} expected shape {p.shape}; "
                                  f"received {w.shape}")
        for p, w in zip(params, weights):
            p[...] = w

    def set_dtype(self, dtype) -> None:
        """Switch compute dtype and cast the weights (float64 is for gradient checks)."""
        self.dtype = np.dtype(dtype)
        self._cast_weights()

    def _cast_weights(self) -> None:
        """Layers with weights re-create them in self.dtype here."""

    def get_config(self) -> dict:
        config = {"name": self.name, "trainable": self.trainable, "dtype": self.dtype.name}
        if self.batch_input_shape is not None:
            config["batch_input_shape"] = list(self.batch_input_shape)
        return config

    @classmethod
    def from_config(cls, config: dict) -> "Layer":
        """A new, unbuilt layer with the settings get_config returned (its keys are the
        constructor's arguments, with batch_input_shape (None, ...) for input_shape)."""
        config = dict(config)
        batch_input_shape = config.pop("batch_input_shape", None)
        if batch_input_shape is not None:
            config["input_shape"] = tuple(batch_input_shape[1:])
        return cls(**config)


class KernelLayer(Layer):
    """What Conv2D and Dense share: a kernel, an optional bias, an activation.

    Subclasses set the kernel's shape in `_kernel_shape(input_shape)` and compute
    forward and `_backward(dy, need_dx, from_logits)`; this class owns the weights
    (Keras order: kernel, then bias), their initialisers and dtype, and routes
    backward/backward_from_logits/output_logits.
    """

    def __init__(self, activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", input_shape=None, name=None, trainable=True,
                 dtype="float32"):
        super().__init__(name=name, trainable=trainable, input_shape=input_shape, dtype=dtype)
        label = self._label()
        self.activation = activations.resolve(activation, label)
        self._activation_code = activations.code(self.activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = kernel_initializer
        self.bias_initializer = bias_initializer
        self._kernel_init = initializers.resolve(kernel_initializer, label)
        self._bias_init = initializers.resolve(bias_initializer, label)
        self.kernel = None
        self.bias = None

    def _positive_int(self, value, what: str) -> int:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
            raise self._error(f"`{what}` must be a positive int; received {what}={value!r}")
        return int(value)

    def _kernel_shape(self, input_shape) -> tuple:
        raise NotImplementedError

    def _create_weights(self, input_shape, rng):
        shape = self._kernel_shape(input_shape)
        self.kernel = self._kernel_init(shape, rng).astype(self.dtype)
        self.bias = self._bias_init((shape[-1],), rng).astype(self.dtype) if self.use_bias else None

    def _cast_weights(self):
        if self.kernel is not None:
            self.kernel = self.kernel.astype(self.dtype)
        if self.bias is not None:
            self.bias = self.bias.astype(self.dtype)

    @property
    def params(self):
        if self.kernel is None:
            return []
        return [self.kernel, self.bias] if self.use_bias else [self.kernel]

    def _set_grads(self, dw, db) -> None:
        self.grads = ([dw, db] if self.use_bias else [dw]) if self.trainable else []

    def backward(self, dy, need_dx=True):
        return self._backward(dy, need_dx, from_logits=False)

    def backward_from_logits(self, dz, need_dx=True):
        return self._backward(dz, need_dx, from_logits=True)

    def output_logits(self):
        return self._kept_logits()

    def _backward(self, dy, need_dx, from_logits):
        raise NotImplementedError

    def get_config(self):
        return {**super().get_config(), "activation": self.activation, "use_bias": self.use_bias,
                "kernel_initializer": self.kernel_initializer,
                "bias_initializer": self.bias_initializer}
