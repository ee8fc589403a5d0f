"""Conv2D."""
from __future__ import annotations

from minicnn.kernels import conv2d_backward, conv2d_forward, conv2d_inference
from minicnn.kernels.conv import (
    WINOGRAD_MIN_CHANNELS,
    RecomputeCache,
    conv2d_backward_bounded,
    conv2d_forward_bounded,
    micro_batches,
)
from minicnn.kernels.winograd import F2, WinogradCache, winograd_backward, winograd_forward
from minicnn.kernels.winograd4 import F4
from minicnn.layers.base import KernelLayer
from minicnn.shapes import normalize_padding, normalize_tuple, window_2d

# A Conv2D's workspace (its im2col matrix, or Winograd's tiles) stays under this many bytes
# (set_workspace_limit): at inference by micro-batches of images; in training too, when
# the whole batch's would not fit, by keeping the input and rebuilding the patches one
# micro-batch at a time in backward.
_workspace_limit = 256 * 2 ** 20
# 3x3 stride-1 kernels with at least this many input channels, (in training, at inference),
# are computed by Winograd's algorithm (set_winograd_min_channels), with output tiles of 4x4
# or 2x2 (set_winograd_tile).
_winograd_min_channels = (WINOGRAD_MIN_CHANNELS, WINOGRAD_MIN_CHANNELS)
_winograd_algorithm = F4


def set_workspace_limit(nbytes) -> int:
    """Bound the workspace of every Conv2D (bytes; None: no bound), in training and at
    inference: its im2col matrix, or Winograd's transformed tiles, are built for as many
    images at a time as fit (at least one). Returns the previous bound."""
    global _workspace_limit
    if nbytes is not None and (isinstance(nbytes, bool) or not isinstance(nbytes, int)
                               or nbytes <= 0):
        raise ValueError(f"set_workspace_limit: expected a positive number of bytes or None; "
                         f"received {nbytes!r}")
    previous, _workspace_limit = _workspace_limit, nbytes
    return previous


def set_winograd_min_channels(channels) -> tuple:
    """3x3 stride-1 Conv2Ds with at least this many input channels are computed by
    Winograd's algorithm instead of im2col. channels: one number (or None: never) for
    training and inference, or a pair (training, inference); the default is 32 for both.
    Returns the previous setting, as a pair."""
    global _winograd_min_channels
    pair = tuple(channels) if isinstance(channels, (tuple, list)) else (channels, channels)
    if len(pair) != 2 or not all(
            c is None or (isinstance(c, int) and not isinstance(c, bool) and c >= 1)
            for c in pair):
        raise ValueError(f"set_winograd_min_channels: expected a positive number of channels, "
                         f"None, or a pair (training, inference) of those; received {channels!r}")
    previous, _winograd_min_channels = _winograd_min_channels, pair
    return previous


def set_winograd_tile(m) -> int:
    """Winograd's output tile for the Conv2Ds that take it: 4 for F(4x4, 3x3) (the default:
    4x fewer multiply-adds than im2col, rounding a few millionths of the output's scale in
    float32) or 2 for F(2x2, 3x3) (2.25x fewer, rounding as im2col's). Returns the previous
    tile."""
    global _winograd_algorithm
    algorithms = {2: F2, 4: F4}
    if not isinstance(m, int) or isinstance(m, bool) or m not in algorithms:
        raise ValueError(f"set_winograd_tile: expected 2 or 4; received {m!r}")
    previous, _winograd_algorithm = _winograd_algorithm.m, algorithms[m]
    return previous


class Conv2D(KernelLayer):
    """2-D convolution (cross-correlation, as Keras), with bias and activation.

    Input  X: ndarray of shape (N, H, W, C_in)
    Kernel W: ndarray of shape (K_h, K_w, C_in, C_out)   bias b: (C_out,)
    Output Y: ndarray of shape (N, H_out, W_out, C_out)

        Z[n, i, j, o] = b[o] + sum_{p, q, c} X_pad[n, i*S_h + p, j*S_w + q, c] * W[p, q, c, o]
        Y = act(Z)

    Output size: 'valid' H_out = floor((H - K_h) / S_h) + 1; 'same' H_out = ceil(H / S_h),
    with P = max((H_out - 1)*S_h + K_h - H, 0) zero rows, floor(P/2) on top, the rest
    below (the same for W). Parameters: K_h*K_w*C_in*C_out + C_out.

    Computed as im2col + one matrix product (minicnn.kernels.conv):
        cols = im2col(X)  (N*H_out*W_out, K_h*K_w*C_in);   Z = cols @ W_2d + b
    Forward caches cols, W and Y. Backward, with dZ = act'(dY):
        dW = cols^T @ dZ,   db = sum_{n,i,j} dZ,   dX = col2im(dZ @ W_2d^T)
    When the whole batch's cols would exceed the workspace limit (set_workspace_limit),
    forward keeps X instead and backward rebuilds cols for a few images at a time.
    3x3 stride-1 kernels over enough input channels take Winograd's F(4x4, 3x3) instead
    (minicnn.kernels.winograd4; F(2x2, 3x3) with set_winograd_tile(2),
    minicnn.kernels.winograd): the same Z and gradients up to rounding, with 4x (2.25x)
    fewer multiply-adds.
    """

    def __init__(self, filters, kernel_size, strides=(1, 1), padding="valid", activation=None,
                 use_bias=True, kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 input_shape=None, name=None, trainable=True, dtype="float32"):
        super().__init__(activation, use_bias, kernel_initializer, bias_initializer,
                         input_shape=input_shape, name=name, trainable=trainable, dtype=dtype)
        label = self._label()
        self.filters = self._positive_int(filters, "filters")
        self.kernel_size = normalize_tuple(kernel_size, 2, "kernel_size", label)
        self.strides = normalize_tuple(strides, 2, "strides", label)
        self.padding = normalize_padding(padding, label)

    def compute_output_shape(self, input_shape):
        self._require_rank(input_shape, 4, "(N, H, W, C_in)")
        _, h, w, _ = input_shape
        win = window_2d(h, w, self.kernel_size, self.strides, self.padding)
        if win.h_out <= 0 or win.w_out <= 0:
            raise self._error(f"kernel_size {self.kernel_size} is larger than its input "
                              f"(H, W) = {(h, w)} with padding='valid'")
        self._pads = win[2:]
        return (None, win.h_out, win.w_out, self.filters)

    def _kernel_shape(self, input_shape):
        return self.kernel_size + (input_shape[-1], self.filters)

    def forward(self, x, training=False, keep_cache=None):
        x = self._check_input(x)
        keep_cache = training if keep_cache is None else keep_cache
        if not keep_cache:
            self._cache = None
            y, self._logits = conv2d_inference(x, self.kernel, self.bias, self.strides,
                                               self._pads, self._activation_code,
                                               max_workspace=_workspace_limit,
                                               winograd_min_channels=_winograd_min_channels[1],
                                               algorithm=_winograd_algorithm)
            return y
        min_channels = _winograd_min_channels[0]
        plan = micro_batches(x.shape, self.kernel.shape, self.strides, self._pads,
                             self._activation_code, x.dtype.itemsize, _workspace_limit,
                             min_channels, _winograd_algorithm)
        if plan.chunk < x.shape[0]:
            y, self._logits, self._cache = conv2d_forward_bounded(
                x, self.kernel, self.bias, self.strides, self._pads, self._activation_code,
                _workspace_limit, min_channels, _winograd_algorithm)
            return y
        if plan.winograd:
            y, self._logits, self._cache = winograd_forward(
                x, self.kernel, self.bias, self._pads, self._activation_code,
                _winograd_algorithm)
            return y
        y, self._logits, self._cache = conv2d_forward(
            x, self.kernel, self.bias, self.strides, self._pads, self._activation_code,
            keep_cache=True)
        return y

    def backward_from_dz(self, dz, db, need_dx=True):
        """Backward from dZ (N, H_out, W_out, C_out) and its sum db (C_out,) when the layer
        after has applied the activation's derivative already (MaxPooling2D's
        backward_through_relu). Returns dX like backward."""
        return self._backward(dz, need_dx, from_logits=True, db=db)

    def _backward(self, dy, need_dx, from_logits, db=None):
        cache = self._require_cache()
        train = self.trainable
        # The cache is freed here, so its im2col matrix (or V) can take dZ @ W^T once dW
        # is done. Scratch arrays are not kept between steps: the allocator hands the same
        # memory back next step (minicnn.runtime), and the process holds only what one
        # step needs at a time.
        if isinstance(cache, RecomputeCache):
            dx, dw, db = conv2d_backward_bounded(dy, cache, need_dx=need_dx, need_dw=train,
                                                 need_db=train and self.use_bias,
                                                 from_logits=from_logits, db=db)
        elif isinstance(cache, WinogradCache):
            dx, dw, db = winograd_backward(dy, cache, need_dx=need_dx, need_dw=train,
                                           need_db=train and self.use_bias,
                                           from_logits=from_logits, db=db)
        else:
            dx, dw, db = conv2d_backward(dy, cache, need_dx=need_dx, need_dw=train,
                                         need_db=train and self.use_bias,
                                         from_logits=from_logits, dcols_out=cache.cols, db=db)
        self._set_grads(dw, db)
        return dx

    def get_config(self):
        return {**super().get_config(), "filters": self.filters,
                "kernel_size": list(self.kernel_size), "strides": list(self.strides),
                "padding": self.padding}
