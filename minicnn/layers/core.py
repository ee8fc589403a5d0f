"""Dense, Flatten, Dropout, Activation."""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from minicnn import activations
from minicnn.kernels import (activation_backward, activation_backward_and_bias_grad,
                             bias_activation)
from minicnn.layers.base import KernelLayer, Layer
from minicnn.registry import register


class _DenseCache(NamedTuple):
    x: np.ndarray           # (M, D_in), the input with leading axes flattened
    y: np.ndarray           # (M, D_out), the activated output


@register()
class Dense(KernelLayer):
    """Fully connected layer.

    Input  X: ndarray of shape (N, D_in)   (or (N, ..., D_in): applied on the last axis)
    Kernel W: (D_in, D_out)   bias b: (D_out,)   Output Y: (N, D_out)

        Y = act(X @ W + b)          parameters: D_in*D_out + D_out

    Forward caches X and Y. Backward, with dZ = act'(dY):
        dW = X^T @ dZ,   db = sum_n dZ,   dX = dZ @ W^T
    """

    def __init__(self, units, activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 input_shape=None, name=None, trainable=True, dtype="float32"):
        super().__init__(activation, use_bias, kernel_initializer, bias_initializer,
                         input_shape=input_shape, name=name, trainable=trainable, dtype=dtype)
        self.units = self._positive_int(units, "units")

    def compute_output_shape(self, input_shape):
        if len(input_shape) < 2:
            raise self._error(f"expected input of rank >= 2 (N, D_in); received shape "
                              f"{tuple(input_shape)}")
        return tuple(input_shape[:-1]) + (self.units,)

    def _kernel_shape(self, input_shape):
        return (input_shape[-1], self.units)

    def forward(self, x, training=False, keep_cache=None):
        x = self._check_input(x)
        keep_cache = training if keep_cache is None else keep_cache
        x2d = x.reshape(-1, x.shape[-1])
        z = x2d @ self.kernel
        b = self.bias if self.use_bias else np.zeros(self.units, dtype=z.dtype)
        y2d, logits = bias_activation(z, b, self._activation_code, keep_logits=True)
        out_shape = x.shape[:-1] + (self.units,)
        self._logits = None if logits is None else logits.reshape(out_shape)
        self._cache = _DenseCache(x2d, y2d) if keep_cache else None
        return y2d.reshape(out_shape)

    def _backward(self, dy, need_dx, from_logits):
        cache = self._require_cache()
        dy2d = np.ascontiguousarray(dy).reshape(cache.y.shape)
        code = 0 if from_logits else self._activation_code    # from logits: dy is dZ already
        dz, db = activation_backward_and_bias_grad(dy2d, cache.y, code)
        self._set_grads(cache.x.T @ dz if self.trainable else None, db)
        if not need_dx:
            return None
        return (dz @ self.kernel.T).reshape(dy.shape[:-1] + (cache.x.shape[-1],))

    def get_config(self):
        return {**super().get_config(), "units": self.units}


@register()
class Flatten(Layer):
    """Flattens all axes but the batch: (N, d1, d2, ...) -> (N, d1*d2*...), row-major (C order).

    Backward reshapes dY back to the input shape. No parameters.
    """

    def compute_output_shape(self, input_shape):
        if len(input_shape) < 2:
            raise self._error(f"expected input of rank >= 2; received shape {tuple(input_shape)}")
        return (None, int(np.prod(input_shape[1:])))

    def forward(self, x, training=False, keep_cache=None):
        x = self._check_input(x)
        keep_cache = training if keep_cache is None else keep_cache
        self._cache = x.shape if keep_cache else None
        return x.reshape(x.shape[0], -1)

    def backward(self, dy, need_dx=True):
        x_shape = self._require_cache()
        self.grads = []
        return dy.reshape(x_shape) if need_dx else None


@register()
class Dropout(Layer):
    """Inverted dropout: Y = X * M / (1 - rate) at training, Y = X at inference.

    M[k] ~ Bernoulli(1 - rate), drawn anew at each training forward from the layer's
    numpy Generator (from `seed`, or from the model's seed when it builds the layer).
    Any input shape; no parameters. Forward caches the scaled mask S = M / (1 - rate);
    backward: dX = dY * S.
    """

    def __init__(self, rate, seed=None, input_shape=None, name=None, trainable=True,
                 dtype="float32"):
        super().__init__(name=name, trainable=trainable, input_shape=input_shape, dtype=dtype)
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate < 1:
            raise self._error(f"`rate` must be a number in [0, 1); received rate={rate!r}")
        self.rate = float(rate)
        self.seed = seed
        self.rng = np.random.default_rng(seed) if seed is not None else None

    def _create_weights(self, input_shape, rng):
        if self.rng is None:
            self.rng = rng

    def forward(self, x, training=False, keep_cache=None):
        x = self._check_input(x)
        keep_cache = training if keep_cache is None else keep_cache
        if not training:
            # The identity; kept for a backward when asked (an input gradient at inference,
            # minicnn.visualize), whose derivative is the identity too.
            self._cache = 1.0 if keep_cache else None
            return x
        if self.rng is None:
            self.rng = np.random.default_rng()
        keep = self.rng.random(x.shape, dtype=self.dtype) >= self.rate
        scale = (keep / (1.0 - self.rate)).astype(self.dtype)
        self._cache = scale if keep_cache else None
        return x * scale

    def backward(self, dy, need_dx=True):
        scale = self._require_cache()
        self.grads = []
        return dy * scale if need_dx else None

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}


@register()
class Activation(Layer):
    """Applies an activation elementwise: Y = act(X) (linear, relu, sigmoid).

    Forward caches Y; backward dX = act'(dY, Y) (see minicnn.activations). No parameters.
    """

    def __init__(self, activation, input_shape=None, name=None, trainable=True, dtype="float32"):
        super().__init__(name=name, trainable=trainable, input_shape=input_shape, dtype=dtype)
        self.activation = activations.resolve(activation, self._label())

    def compute_output_shape(self, input_shape):
        if len(input_shape) < 2:
            raise self._error(f"expected input of rank >= 2; received shape {tuple(input_shape)}")
        return tuple(input_shape)

    def forward(self, x, training=False, keep_cache=None):
        x = self._check_input(x)
        keep_cache = training if keep_cache is None else keep_cache
        z = np.array(x, order="C").reshape(-1, x.shape[-1])      # a copy: the kernel writes over it
        y, logits = bias_activation(z, np.zeros(z.shape[1], dtype=self.dtype),
                                    activations.code(self.activation), keep_logits=True)
        y = y.reshape(x.shape)
        self._logits = None if logits is None else logits.reshape(x.shape)
        self._cache = y if keep_cache else None
        return y

    def backward(self, dy, need_dx=True):
        y = self._require_cache()
        self.grads = []
        return activation_backward(dy, y, activations.code(self.activation)) if need_dx else None

    def backward_from_logits(self, dz, need_dx=True):
        self._require_cache()
        self.grads = []
        return dz.copy() if need_dx else None

    def output_logits(self):
        return self._kept_logits()

    def get_config(self):
        return {**super().get_config(), "activation": self.activation}
