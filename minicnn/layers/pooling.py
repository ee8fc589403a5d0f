"""MaxPooling2D."""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from minicnn.kernels import (
    maxpool_backward,
    maxpool_backward_relu,
    maxpool_bias_activation,
    maxpool_forward,
)
from minicnn.layers.base import Layer
from minicnn.registry import register
from minicnn.shapes import normalize_padding, normalize_tuple, window_2d


class _PoolCache(NamedTuple):
    argmax: np.ndarray      # (N, H_out, W_out, C) int32, flat index ih*W + iw
    x_shape: tuple
    y: np.ndarray           # (N, H_out, W_out, C), the output (for backward_through_relu)


@register()
class MaxPooling2D(Layer):
    """Max-pooling over K_h x K_w windows, per channel.

    Input  X: ndarray of shape (N, H, W, C)      Output Y: (N, H_out, W_out, C)

        Y[n, i, j, c] = max_{p < K_h, q < K_w} X[n, i*S_h - P_top + p, j*S_w - P_left + q, c]

    strides default to pool_size. 'valid': H_out = floor((H - K_h) / S_h) + 1 (15 -> 7 for
    a 2x2 pool); 'same': H_out = ceil(H / S_h), padded cells never win. No parameters.

    Forward caches the argmax (first maximum in row-major window order). Backward
    routes each dY entry to its argmax and adds where windows overlap:
        dX[n, ih, iw, c] = sum_{(i, j): argmax[n, i, j, c] = (ih, iw)} dY[n, i, j, c]
    When the layer before is a ReLU convolution, a model runs this backward and the ReLU's
    in one pass (backward_through_relu): the routed cell holds Y itself, so relu' there
    is [Y > 0]. At inference the pooling keeps no argmax, and after a linear or ReLU
    convolution a model runs it on the convolution's Z and applies the bias and the
    activation after it (forward_after_conv): max commutes with adding b and with ReLU.
    """

    def __init__(self, pool_size=(2, 2), strides=None, padding="valid", input_shape=None,
                 name=None, trainable=True, dtype="float32"):
        super().__init__(name=name, trainable=trainable, input_shape=input_shape, dtype=dtype)
        label = self._label()
        self.pool_size = normalize_tuple(pool_size, 2, "pool_size", label)
        self.strides = self.pool_size if strides is None else \
            normalize_tuple(strides, 2, "strides", label)
        self.padding = normalize_padding(padding, label)

    def compute_output_shape(self, input_shape):
        self._require_rank(input_shape, 4, "(N, H, W, C)")
        _, h, w, c = input_shape
        win = window_2d(h, w, self.pool_size, self.strides, self.padding)
        if win.h_out <= 0 or win.w_out <= 0:
            raise self._error(f"pool_size {self.pool_size} is larger than its input "
                              f"(H, W) = {(h, w)} with padding='valid'")
        self._pads = win[2:]
        return (None, win.h_out, win.w_out, c)

    def forward(self, x, training=False, keep_cache=None):
        x = self._check_input(x)
        keep_cache = training if keep_cache is None else keep_cache
        if not keep_cache:                    # inference: the maximum only, no argmax
            self._cache = None
            return maxpool_bias_activation(x, self.pool_size, self.strides, self._pads)
        y, argmax = maxpool_forward(x, self.pool_size, self.strides, self._pads)
        self._cache = _PoolCache(argmax, x.shape, y)
        return y

    def forward_after_conv(self, z, bias, activation):
        """Inference after a convolution that left out its bias and activation
        (Conv2D.forward_before_pooling): Y = act(maxpool(Z) + b), the same numbers as
        maxpool(act(Z + b)) for a linear or ReLU activation, with the bias and the
        activation applied to the pooled output, K_h*K_w times smaller.
        z (N, H, W, C), bias (C,) or None, activation a code (0 linear, 1 relu)."""
        z = self._check_input(z)
        self._cache = None
        return maxpool_bias_activation(z, self.pool_size, self.strides, self._pads, bias,
                                       activation)

    def window(self):
        """(pool_size, strides, pads, (H_out, W_out)) of the built layer, pads (P_top,
        P_bottom, P_left, P_right): for a convolution that computes this pooling in its
        own output pass (Conv2D.forward_pooled)."""
        return self.pool_size, self.strides, self._pads, self.output_shape[1:3]

    def forget(self):
        """Drop the cache of an earlier training forward (its pass ran elsewhere)."""
        self._cache = None

    def backward(self, dy, need_dx=True):
        cache = self._require_cache()
        self.grads = []
        return maxpool_backward(dy, cache.argmax, cache.x_shape) if need_dx else None

    def backward_through_relu(self, dy):
        """(dZ, db) of the ReLU layer before this one, from this layer's dY, in one pass
        (minicnn.kernels.maxpool_backward_relu): the same as this backward followed by the
        ReLU's derivative and the bias gradient's sum, without the dX in between."""
        cache = self._require_cache()
        self.grads = []
        tiling = (self.pool_size, self._pads) if self.strides == self.pool_size else None
        return maxpool_backward_relu(dy, cache.y, cache.argmax, cache.x_shape, tiling)

    def get_config(self):
        return {**super().get_config(), "pool_size": list(self.pool_size),
                "strides": list(self.strides), "padding": self.padding}
