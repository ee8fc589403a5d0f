"""Max-pooling forward (with argmax) and backward.

    Y[n, i, j, c] = max over p < K_h, q < K_w of X[n, i*S_h - P_top + p, j*S_w - P_left + q, c]

over positions inside X only ('same' padding never lets a padded cell win, as
in TensorFlow). The forward records, per output, the flat index ih*W + iw of
the first maximum in row-major window order; the backward routes dY there:

    dX[n, ih, iw, c] = sum of dY[n, i, j, c] over the outputs whose argmax is (ih, iw).
"""
import numpy as np
from numba import njit, prange

from minicnn.kernels.geometry import window_output_size



@njit(parallel=True, cache=True, nogil=True)
def _maxpool_forward(x, k_h, k_w, s_h, s_w, pad_top, pad_left, h_out, w_out):
    n, h, w, c = x.shape
    y = np.empty((n, h_out, w_out, c), dtype=x.dtype)
    argmax = np.full((n, h_out, w_out, c), -1, dtype=np.int32)
    for r in prange(n * h_out):
        img = r // h_out
        i = r % h_out
        for j in range(w_out):
            for p in range(k_h):
                ih = i * s_h - pad_top + p
                if ih < 0 or ih >= h:
                    continue
                for q in range(k_w):
                    iw = j * s_w - pad_left + q
                    if iw < 0 or iw >= w:
                        continue
                    for ch in range(c):
                        v = x[img, ih, iw, ch]
                        # strict '>' keeps the first maximum
                        if argmax[img, i, j, ch] < 0 or v > y[img, i, j, ch]:
                            y[img, i, j, ch] = v
                            argmax[img, i, j, ch] = ih * w + iw
    return y, argmax


def maxpool_forward(x, pool_size, strides, pads):
    """x: ndarray of shape (N, H, W, C). Returns (y, argmax), both (N, H_out, W_out, C);
    argmax holds int32 flat indices ih*W + iw into each input channel plane."""
    (k_h, k_w), (s_h, s_w), (top, bottom, left, right) = pool_size, strides, pads
    h_out = window_output_size(x.shape[1], k_h, s_h, top, bottom)
    w_out = window_output_size(x.shape[2], k_w, s_w, left, right)
    return _maxpool_forward(np.ascontiguousarray(x), k_h, k_w, s_h, s_w, top, left,
                            h_out, w_out)


def maxpool_forward_reference(x, pool_size, strides, pads):
    """NumPy twin: pad with -inf, stack the K_h*K_w window cells, take argmax."""
    (k_h, k_w), (s_h, s_w), (top, bottom, left, right) = pool_size, strides, pads
    n, h, w, c = x.shape
    h_out = window_output_size(h, k_h, s_h, top, bottom)
    w_out = window_output_size(w, k_w, s_w, left, right)
    xp = np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)),
                constant_values=-np.inf)
    cells = np.stack([xp[:, p:p + s_h * (h_out - 1) + 1:s_h, q:q + s_w * (w_out - 1) + 1:s_w, :]
                      for p in range(k_h) for q in range(k_w)])      # (K_h*K_w, N, H_out, W_out, C)
    k = cells.argmax(axis=0)                                         # first maximum
    y = np.take_along_axis(cells, k[None], axis=0)[0]
    p, q = np.divmod(k, k_w)
    ih = np.arange(h_out)[None, :, None, None] * s_h - top + p
    iw = np.arange(w_out)[None, None, :, None] * s_w - left + q
    return y, (ih * w + iw).astype(np.int32)


@njit(parallel=True, cache=True, nogil=True)
def _maxpool_backward(dy, argmax, h, w):
    n, h_out, w_out, c = dy.shape
    dx = np.zeros((n, h, w, c), dtype=dy.dtype)
    for img in prange(n):                 # windows may overlap: one image per task
        for i in range(h_out):
            for j in range(w_out):
                for ch in range(c):
                    k = argmax[img, i, j, ch]
                    dx[img, k // w, k % w, ch] += dy[img, i, j, ch]
    return dx


def maxpool_backward(dy, argmax, x_shape):
    """dy, argmax: (N, H_out, W_out, C). Returns dx of shape x_shape (N, H, W, C)."""
    return _maxpool_backward(np.ascontiguousarray(dy), argmax, x_shape[1], x_shape[2])


@njit(parallel=True, cache=True, nogil=True)
def _maxpool_backward_relu(dy, y, argmax, h, w, dz, partial):
    n, h_out, w_out, c = dy.shape
    for img in prange(n):                 # windows may overlap: one image per task
        dz[img] = 0.0                     # zeroed here, in parallel, just before the scatter
        for i in range(h_out):
            for j in range(w_out):
                for ch in range(c):
                    g = dy[img, i, j, ch] if y[img, i, j, ch] > 0 else 0.0
                    k = argmax[img, i, j, ch]
                    dz[img, k // w, k % w, ch] += g
                    partial[img, ch] += g
    return dz


def maxpool_backward_relu(dy, y, argmax, x_shape):
    """The backward of max-pooling over a ReLU's output and of that ReLU, in one pass.

    The pooled input is X = relu(Z), so the cell argmax routes dY to holds the window's
    maximum Y itself, and relu'(Z) there is [Y > 0]:

        dZ[n, ih, iw, c] = sum over outputs routed to (ih, iw) of dY[n, i, j, c] * [Y[n, i, j, c] > 0]
        db[c]            = sum of dZ over n, ih, iw  (the bias gradient of the layer before)

    dy, y, argmax: (N, H_out, W_out, C); x_shape (N, H, W, C). Returns (dz, db): dz of
    x_shape, db (C,). The same as
    maxpool_backward followed by activation_backward_and_bias_grad, without reading the
    ReLU's output or writing dX in between.
    """
    out = np.empty(x_shape, dtype=dy.dtype)      # zeroed by the kernel, image by image
    partial = np.zeros((x_shape[0], x_shape[3]), dtype=np.float64)
    _maxpool_backward_relu(np.ascontiguousarray(dy), y, argmax, x_shape[1], x_shape[2], out, partial)
    return out, partial.sum(axis=0).astype(dy.dtype)


def maxpool_backward_relu_reference(dy, y, argmax, x_shape):
    """NumPy twin of maxpool_backward_relu: the ReLU mask, then maxpool_backward_reference."""
    g = dy * (y > 0)
    return (maxpool_backward_reference(g, argmax, x_shape),
            g.sum(axis=(0, 1, 2), dtype=np.float64).astype(dy.dtype))


def maxpool_backward_reference(dy, argmax, x_shape):
    """NumPy twin: np.add.at on the flat (H*W) plane of each image and channel."""
    n, h, w, c = x_shape
    dx = np.zeros((n, h * w, c), dtype=dy.dtype)
    img = np.arange(n)[:, None, None, None]
    ch = np.arange(c)[None, None, None, :]
    np.add.at(dx, (np.broadcast_to(img, dy.shape), argmax, np.broadcast_to(ch, dy.shape)), dy)
    return dx.reshape(x_shape)
