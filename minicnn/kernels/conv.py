"""2-D convolution as im2col + one matrix product + fused bias/activation.

Forward (X: (N, H, W, C_in), W: (K_h, K_w, C_in, C_out), b: (C_out,)):

    cols = im2col(X)                                  (N*H_out*W_out, K_h*K_w*C_in)
    Z    = cols @ W_2d + b,   W_2d = W.reshape(K_h*K_w*C_in, C_out)
    Y    = act(Z)                                     reshaped to (N, H_out, W_out, C_out)

Backward, from dY = dL/dY:

    dZ   = act'(dY, Y)                                (N*H_out*W_out, C_out)
    dW   = cols^T @ dZ          reshaped to (K_h, K_w, C_in, C_out)
    db   = sum of dZ over rows
    dX   = col2im(dZ @ W_2d^T)

The forward caches cols, W and Y (named fields of Conv2DCache), and Z only after a
sigmoid, so that the loss can start from the logits.
"""
from typing import NamedTuple, Optional

import numpy as np

from minicnn.kernels.elementwise import bias_activation, layer_dz_and_db
from minicnn.kernels.geometry import window_output_size
from minicnn.kernels.im2col import col2im, im2col
from minicnn.kernels.im2col_bands import conv2d_bands, runs_in_bands
from minicnn.kernels.winograd4 import F4
from minicnn.kernels.winograd import (
    WinogradCache,
    conv3x3_winograd,
    images_per_block,
    runs_fused,
    winograd_backward,
    winograd_kernel,
    winograd_tiles,
    winograd_workspace_per_image,
)

# 3x3 stride-1 kernels with at least this many input channels are computed by Winograd's
# F(4x4, 3x3) (with fewer, its (T, C_in) @ (C_in, C_out) products are too thin for BLAS to
# gain from doing 4x less work); None turns it off. F(2x2, 3x3), 2.25x less work and more
# memory traffic, gains only from 64 channels on. Conv2D's settings:
# minicnn.layers.set_winograd_min_channels and set_winograd_tile.
WINOGRAD_MIN_CHANNELS = 32


class Conv2DCache(NamedTuple):
    cols: np.ndarray            # (N*H_out*W_out, K_h*K_w*C_in)
    kernel: np.ndarray          # (K_h, K_w, C_in, C_out)
    y: np.ndarray               # (N, H_out, W_out, C_out), the activated output
    x_shape: tuple
    strides: tuple
    pads: tuple
    activation: int


def conv2d_forward(x, kernel, bias, strides, pads, activation=0, keep_cache=True,
                   cols_out=None):
    """Returns (y, logits, cache).

    logits is Z (N, H_out, W_out, C_out) after a sigmoid, else None; cache is None
    when keep_cache is False (inference). cols_out: optional workspace for im2col.
    """
    k_h, k_w, c_in, c_out = kernel.shape
    cols = im2col(x, (k_h, k_w), strides, pads, out=cols_out)
    n = x.shape[0]
    rows = cols.shape[0] // n if n else 0
    z = cols @ kernel.reshape(k_h * k_w * c_in, c_out)        # the one BLAS call
    if bias is None and activation == 0:
        y2d, logits = z, None                                 # Z itself: no pass over it
    else:
        b = bias if bias is not None else np.zeros(c_out, dtype=z.dtype)
        y2d, logits = bias_activation(z, b, activation, keep_logits=True)
    h_out = window_output_size(x.shape[1], k_h, strides[0], pads[0], pads[1])
    w_out = rows // h_out if h_out else 0
    y = y2d.reshape(n, h_out, w_out, c_out)
    if logits is not None:
        logits = logits.reshape(y.shape)
    cache = Conv2DCache(cols, kernel, y, x.shape, strides, pads, activation) if keep_cache else None
    return y, logits, cache


def uses_winograd(kernel_shape, strides, activation, min_channels=WINOGRAD_MIN_CHANNELS):
    """Whether this convolution is computed by Winograd's algorithm (at inference and in
    training)."""
    k_h, k_w, c_in, _ = kernel_shape
    return (min_channels is not None and (k_h, k_w) == (3, 3) and tuple(strides) == (1, 1)
            and activation in (0, 1, 2) and c_in >= min_channels)


class MicroBatches(NamedTuple):
    chunk: int                  # images per micro-batch (the whole batch when it fits)
    per_image: int              # workspace bytes of one image: im2col's rows, or V and M
    winograd: bool              # computed by Winograd's F(m x m, 3x3) rather than im2col
    out_shape: tuple            # (N, H_out, W_out, C_out)


def micro_batches(x_shape, kernel_shape, strides, pads, activation, itemsize,
                  max_workspace=None, winograd_min_channels=WINOGRAD_MIN_CHANNELS,
                  algorithm=F4) -> MicroBatches:
    """How many images a micro-batch holds so that its workspace (im2col's matrix, or
    Winograd's V and M for algorithm, F2 or F4) stays within max_workspace bytes: at least
    one image, the whole batch when max_workspace is None."""
    n, h, w, _ = x_shape
    k_h, k_w, c_in, c_out = kernel_shape
    h_out = window_output_size(h, k_h, strides[0], pads[0], pads[1])
    w_out = window_output_size(w, k_w, strides[1], pads[2], pads[3])
    winograd = uses_winograd(kernel_shape, strides, activation, winograd_min_channels)
    if winograd:
        per_image = winograd_workspace_per_image(h_out, w_out, c_in, c_out, itemsize, algorithm)
    else:
        per_image = h_out * w_out * k_h * k_w * c_in * itemsize
    chunk = n if max_workspace is None else max(1, min(n, int(max_workspace // max(per_image, 1))))
    return MicroBatches(chunk, per_image, winograd, (n, h_out, w_out, c_out))


def conv2d_inference(x, kernel, bias, strides, pads, activation=0, max_workspace=None,
                     winograd_min_channels=WINOGRAD_MIN_CHANNELS, algorithm=F4, pool=None):
    """conv2d_forward without a cache, in micro-batches of images whose workspace stays
    within max_workspace bytes (the whole batch at once when it fits or when max_workspace
    is None). Returns (y, logits).

    3x3 stride-1 kernels with at least winograd_min_channels input channels are computed
    by Winograd's F(4x4, 3x3) (algorithm F4, minicnn.kernels.winograd4: one np.matmul of 36
    products per micro-batch, 4x fewer multiply-adds), or F(2x2, 3x3) (F2,
    minicnn.kernels.winograd: 16 products, 2.25x fewer); the others by im2col, in bands of
    output rows whose patches and products stay in a core's cache where runs_in_bands
    holds (minicnn.kernels.im2col_bands: no workspace), else one matrix product per
    micro-batch.

    Memory: one workspace of at most max(max_workspace, one image's share) bytes, reused
    for every micro-batch, instead of the whole batch's patches (1 GB for VGG16's
    block1_conv2 at batch 20).

    pool: a minicnn.kernels.winograd.Pooling of the output for the output pass to compute
    as well (conv3x3_winograd's or conv2d_bands's pool; the convolution must be one that
    Winograd, or im2col in bands, computes, and the pooling one it pools: algorithm.pools,
    im2col_bands.pools): y is then the pooled output.
    """
    chunk, per_image, winograd, (n, h_out, w_out, c_out) = micro_batches(
        x.shape, kernel.shape, strides, pads, activation, x.dtype.itemsize, max_workspace,
        winograd_min_channels, algorithm)
    keep_logits = activation == 2
    if not winograd and runs_in_bands(kernel.shape, activation, x.dtype):
        return conv2d_bands(x, kernel, bias, strides, pads, activation, keep_logits, pool)
    if pool is not None:
        if not winograd:
            raise ValueError(f"conv2d_inference: a pooling in the output pass needs Winograd "
                             f"or im2col's bands (runs_in_bands); kernel {kernel.shape}, "
                             f"strides {tuple(strides)}, dtype {x.dtype} have neither")
        h_out, w_out = pool.out_hw
    fused = winograd and runs_fused(chunk, kernel.shape[2:], x.dtype, algorithm)
    if winograd and not fused:  # within that, blocks of images that stay in the cache
        chunk = images_per_block(chunk, (h_out, w_out), kernel.shape[2:], x.dtype.itemsize,
                                 algorithm)
    if not winograd and chunk >= n:
        y, logits, _ = conv2d_forward(x, kernel, bias, strides, pads, activation, keep_cache=False)
        return y, logits
    if fused and chunk >= n:
        return conv3x3_winograd(x, kernel, bias, pads, activation, keep_logits,
                                algorithm=algorithm, pool=pool)
    y = np.empty((n, h_out, w_out, c_out), dtype=x.dtype)
    logits = np.empty_like(y) if keep_logits else None
    # (Winograd's V and M take one tile more each: winograd.tile_array; fused, each task
    # has its own image's)
    workspace = None if fused else np.empty(
        chunk * per_image // x.dtype.itemsize
        + (algorithm.positions * (kernel.shape[2] + c_out) if winograd else 0), dtype=x.dtype)
    kernel_u = winograd_kernel(kernel, algorithm) if winograd else None
    for start in range(0, n, chunk):
        part = slice(start, min(start + chunk, n))
        count = part.stop - part.start
        if winograd:
            y[part], part_logits = conv3x3_winograd(x[part], kernel, bias, pads, activation,
                                                    keep_logits, workspace, kernel_u, algorithm,
                                                    pool)
        else:
            cols = workspace[:count * per_image // x.dtype.itemsize]
            cols = cols.reshape(count * h_out * w_out, -1)
            y[part], part_logits, _ = conv2d_forward(x[part], kernel, bias, strides, pads,
                                                     activation, keep_cache=False, cols_out=cols)
        if keep_logits:
            logits[part] = part_logits
    return y, logits


class RecomputeCache(NamedTuple):
    """What a training forward within a workspace bound keeps: the input instead of its
    patches (or Winograd's tiles), which the backward rebuilds one micro-batch at a time."""
    x: np.ndarray               # (N, H, W, C_in)
    kernel: np.ndarray          # (K_h, K_w, C_in, C_out)
    y: np.ndarray               # (N, H_out, W_out, C_out), the activated output
    strides: tuple
    pads: tuple
    activation: int
    chunk: int                  # images per micro-batch
    algorithm: object           # Winograd's F2 or F4 (minicnn.kernels.winograd), None: im2col


def conv2d_forward_bounded(x, kernel, bias, strides, pads, activation, max_workspace,
                           winograd_min_channels=WINOGRAD_MIN_CHANNELS, algorithm=F4):
    """The training forward when the whole batch's workspace would exceed max_workspace
    bytes: y and logits as conv2d_forward's (or Winograd's algorithm's), computed in
    micro-batches (conv2d_inference), and a RecomputeCache for conv2d_backward_bounded.
    Returns (y, logits, cache)."""
    y, logits = conv2d_inference(x, kernel, bias, strides, pads, activation, max_workspace,
                                 winograd_min_channels, algorithm)
    plan = micro_batches(x.shape, kernel.shape, strides, pads, activation, x.dtype.itemsize,
                         max_workspace, winograd_min_channels, algorithm)
    cache = RecomputeCache(x, kernel, y, tuple(strides), tuple(pads), activation, plan.chunk,
                           algorithm if plan.winograd else None)
    return y, logits, cache


def conv2d_backward_bounded(dy, cache: RecomputeCache, need_dx=True, need_dw=True,
                            need_db=True, from_logits=False, db=None):
    """conv2d_backward for a RecomputeCache: dZ and db for the whole batch, then per
    micro-batch of images the patches (or V) again from X, its share of dW, and its
    images' dX (each image's dX depends on that image's dZ only):

        dW = sum over micro-batches of cols_part^T @ dZ_part

    Returns (dX, dW, db) as conv2d_backward."""
    dz, db = layer_dz_and_db(dy, cache.y, cache.activation, from_logits, db)
    dz = dz.reshape(cache.y.shape)
    x, kernel = cache.x, cache.kernel
    dw = np.zeros(kernel.shape, dtype=dz.dtype) if need_dw else None
    dx = np.empty(x.shape, dtype=dz.dtype) if need_dx else None
    algorithm = cache.algorithm
    kernel_u = winograd_kernel(kernel, algorithm) if algorithm else None
    for start in range(0, x.shape[0], cache.chunk):
        part = slice(start, start + cache.chunk)
        xp, yp = np.ascontiguousarray(x[part]), cache.y[part]
        if algorithm:
            part_cache = WinogradCache(winograd_tiles(xp, cache.pads, algorithm), kernel,
                                       kernel_u, yp, xp.shape, cache.pads, cache.activation,
                                       algorithm)
            dx_part, dw_part, _ = winograd_backward(dz[part], part_cache, need_dx, need_dw,
                                                    need_db=False, from_logits=True, db=db)
        else:
            cols = im2col(xp, kernel.shape[:2], cache.strides, cache.pads)
            part_cache = Conv2DCache(cols, kernel, yp, xp.shape, cache.strides, cache.pads,
                                     cache.activation)
            dx_part, dw_part, _ = conv2d_backward(dz[part], part_cache, need_dx, need_dw,
                                                  need_db=False, from_logits=True,
                                                  dcols_out=cols, db=db)
        if need_dw:
            dw += dw_part
        if need_dx:
            dx[part] = dx_part
    return dx, dw, (db if need_db else None)


def conv2d_backward(dy, cache: Conv2DCache, need_dx=True, need_dw=True, need_db=True,
                    from_logits=False, dcols_out=None, db=None):
    """Returns (dX, dW, db), each None when not asked for; dy is not modified.

    With from_logits, dy is already dL/dZ (the loss differentiated the logits directly).
    dcols_out: optional workspace of cols's shape for dZ @ W_2d^T; a layer that is done
    with its cache passes cache.cols itself (dW has been taken from it by then).
    db: with from_logits, the bias gradient when the caller has it already (the sum of dy over
    rows, e.g. from maxpool_backward_relu); dy is then used as dZ without a copy.
    """
    k_h, k_w, c_in, c_out = cache.kernel.shape
    dz, db = layer_dz_and_db(dy, cache.y, cache.activation, from_logits, db)
    db = db if need_db else None
    dw = (cache.cols.T @ dz).reshape(cache.kernel.shape) if need_dw else None
    dx: Optional[np.ndarray] = None
    if need_dx:
        dcols = np.matmul(dz, cache.kernel.reshape(k_h * k_w * c_in, c_out).T, out=dcols_out)
        dx = col2im(dcols, cache.x_shape, (k_h, k_w), cache.strides, cache.pads)
    return dx, dw, db
