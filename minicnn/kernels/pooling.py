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



@njit(inline="always")
def _window_cells(i, stride, pad, k, size):
    """The window cells p (of 0 <= p < k) of output i whose input row i*S - P + p is inside
    the input: p_lo <= p < p_hi."""
    start = i * stride - pad
    return max(0, -start), min(k, size - start)


# The kernels below run the channel loop innermost, over contiguous memory and without
# branches, so that it compiles to vector instructions: the training forward updates the
# maximum and its argmax by a comparison and two selects; the inference one by
# np.maximum (a single select `v if v > y else y` would compile to masked stores, slow on
# many CPUs).

@njit(parallel=True, cache=True, nogil=True)
def _maxpool_forward(x, k_h, k_w, s_h, s_w, pad_top, pad_left, h_out, w_out):
    n, h, w, c = x.shape
    y = np.empty((n, h_out, w_out, c), dtype=x.dtype)
    argmax = np.empty((n, h_out, w_out, c), dtype=np.int32)
    for r in prange(n * h_out):
        img = r // h_out
        i = r % h_out
        p_lo, p_hi = _window_cells(i, s_h, pad_top, k_h, h)
        for j in range(w_out):
            q_lo, q_hi = _window_cells(j, s_w, pad_left, k_w, w)
            ih, iw = i * s_h - pad_top + p_lo, j * s_w - pad_left + q_lo
            for ch in range(c):                   # the window's first cell inside X
                y[img, i, j, ch] = x[img, ih, iw, ch]
                argmax[img, i, j, ch] = ih * w + iw
            for p in range(p_lo, p_hi):
                ih = i * s_h - pad_top + p
                for q in range(q_lo, q_hi):
                    iw = j * s_w - pad_left + q
                    for ch in range(c):
                        v = x[img, ih, iw, ch]
                        better = v > y[img, i, j, ch]      # strict: the first maximum stays
                        y[img, i, j, ch] = v if better else y[img, i, j, ch]
                        argmax[img, i, j, ch] = ih * w + iw if better else argmax[img, i, j, ch]
    return y, argmax


def maxpool_forward(x, pool_size, strides, pads):
    """x: ndarray of shape (N, H, W, C). Returns (y, argmax), both (N, H_out, W_out, C);
    argmax holds int32 flat indices ih*W + iw into each input channel plane."""
    (k_h, k_w), (s_h, s_w), (top, bottom, left, right) = pool_size, strides, pads
    h_out = window_output_size(x.shape[1], k_h, s_h, top, bottom)
    w_out = window_output_size(x.shape[2], k_w, s_w, left, right)
    return _maxpool_forward(np.ascontiguousarray(x), k_h, k_w, s_h, s_w, top, left,
                            h_out, w_out)


@njit(parallel=True, cache=True, nogil=True)
def _maxpool_bias_activation(x, b, code, k_h, k_w, s_h, s_w, pad_top, pad_left, h_out, w_out):
    n, h, w, c = x.shape
    y = np.empty((n, h_out, w_out, c), dtype=x.dtype)
    for r in prange(n * h_out):
        img = r // h_out
        i = r % h_out
        p_lo, p_hi = _window_cells(i, s_h, pad_top, k_h, h)
        for j in range(w_out):
            q_lo, q_hi = _window_cells(j, s_w, pad_left, k_w, w)
            ih, iw = i * s_h - pad_top + p_lo, j * s_w - pad_left + q_lo
            for ch in range(c):
                y[img, i, j, ch] = x[img, ih, iw, ch]
            for p in range(p_lo, p_hi):
                ih = i * s_h - pad_top + p
                for q in range(q_lo, q_hi):
                    iw = j * s_w - pad_left + q
                    for ch in range(c):
                        y[img, i, j, ch] = np.maximum(y[img, i, j, ch], x[img, ih, iw, ch])
            if code == 1:                     # a loop per case keeps each one vectorized
                for ch in range(c):
                    y[img, i, j, ch] = np.maximum(y[img, i, j, ch] + b[ch], np.float32(0))
            elif b.size:
                for ch in range(c):
                    y[img, i, j, ch] += b[ch]
    return y


def maxpool_bias_activation(z, pool_size, strides, pads, bias=None, activation=0):
    """act(maxpool(Z) + b): the pooled output of a convolution whose bias and activation
    were left for after the pooling; without argmax (inference).

        Y[n, i, j, c] = act(max over the window of Z[n, ., ., c] + b[c])

    Equal, bit for bit, to maxpool_forward(act(Z + b)) for a nondecreasing act (linear,
    relu): rounding z + b is nondecreasing in z, so the window's maximum stays where it
    was, and the pooling reads Z once instead of Z, then act(Z + b), in two passes.
    A NaN in a window makes that output NaN (np.maximum), where maxpool_forward's strict
    comparison would pass it over unless it comes first.
    z: ndarray of shape (N, H, W, C); bias (C,) or None (then act(maxpool(Z)) with the
    activation skipped as well when it is linear). Returns y, (N, H_out, W_out, C).
    """
    if activation not in (0, 1):
        raise ValueError(f"maxpool_bias_activation: the activation must be linear (0) or "
                         f"relu (1), which commute with the maximum; received code {activation}")
    (k_h, k_w), (s_h, s_w), (top, bottom, left, right) = pool_size, strides, pads
    h_out = window_output_size(z.shape[1], k_h, s_h, top, bottom)
    w_out = window_output_size(z.shape[2], k_w, s_w, left, right)
    b = pooling_bias(bias, activation, z.shape[3], z.dtype)
    return _maxpool_bias_activation(np.ascontiguousarray(z), b, activation, k_h, k_w, s_h,
                                    s_w, top, left, h_out, w_out)


def pooling_bias(bias, activation, c, dtype):
    """The bias as the pooled kernels take it (maxpool_bias_activation's, and Winograd's
    pooled output transform): zeros for a ReLU without one, empty for a linear one."""
    b = np.zeros(c, dtype) if bias is None and activation else bias
    return np.empty(0, dtype) if b is None else np.asarray(b, dtype=dtype)


def maxpool_bias_activation_reference(z, pool_size, strides, pads, bias=None, activation=0):
    """NumPy twin: maxpool_forward_reference of Z, then bias and activation."""
    y = maxpool_forward_reference(z, pool_size, strides, pads)[0]
    y = y if bias is None else y + np.asarray(bias, dtype=z.dtype)
    return np.maximum(y, 0) if activation == 1 else y


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


@njit(parallel=True, cache=True, nogil=True)
def _maxpool_backward_relu_tiled(dy, y, argmax, k_h, k_w, pad_top, pad_left, h, w, dz,
                                 partial):
    # Windows that tile X (strides == pool_size): each cell of dZ lies in one window at
    # most, so it is written once, by a select on its own window's argmax, with no zeroing
    # pass and no scatter; the cells of no window (the last rows and columns a 'valid'
    # pooling leaves out) are zeroed by the task of the row or image they end.
    n, h_out, w_out, c = dy.shape
    w_end = min(w, w_out * k_w - pad_left)
    for r in prange(n * h_out):           # one row of windows per task
        img = r // h_out
        i = r % h_out
        p_lo, p_hi = _window_cells(i, k_h, pad_top, k_h, h)
        for p in range(p_lo, p_hi):
            ih = i * k_h - pad_top + p
            for j in range(w_out):
                q_lo, q_hi = _window_cells(j, k_w, pad_left, k_w, w)
                for q in range(q_lo, q_hi):
                    iw = j * k_w - pad_left + q
                    cell = ih * w + iw
                    for ch in range(c):
                        g = dy[img, i, j, ch] if y[img, i, j, ch] > 0 else 0.0
                        dz[img, ih, iw, ch] = g if argmax[img, i, j, ch] == cell else 0.0
            dz[img, ih, w_end:] = 0.0
        for j in range(w_out):
            for ch in range(c):
                partial[r, ch] += dy[img, i, j, ch] if y[img, i, j, ch] > 0 else 0.0
        if i == h_out - 1:
            dz[img, min(h, h_out * k_h - pad_top):] = 0.0
    return dz


def maxpool_backward_relu(dy, y, argmax, x_shape, tiling=None):
    """The backward of max-pooling over a ReLU's output and of that ReLU, in one pass.

    The pooled input is X = relu(Z), so the cell argmax routes dY to holds the window's
    maximum Y itself, and relu'(Z) there is [Y > 0]:

        dZ[n, ih, iw, c] = sum over outputs routed to (ih, iw) of dY[n, i, j, c] * [Y[n, i, j, c] > 0]
        db[c]            = sum of dZ over n, ih, iw  (the bias gradient of the layer before)

    dy, y, argmax: (N, H_out, W_out, C); x_shape (N, H, W, C). Returns (dz, db): dz of
    x_shape, db (C,). The same as
    maxpool_backward followed by activation_backward_and_bias_grad, without reading the
    ReLU's output or writing dX in between.

    tiling: (pool_size, pads) when the windows tile X (strides equal to pool_size, as in
    the lecture's 2x2 poolings): each dZ cell is then written once, by its own window.
    """
    dy = np.ascontiguousarray(dy)
    out = np.empty(x_shape, dtype=dy.dtype)      # every cell written by the kernel
    if tiling is not None:
        (k_h, k_w), (top, _, left, _) = tiling
        partial = np.zeros((dy.shape[0] * dy.shape[1], x_shape[3]), dtype=np.float64)
        _maxpool_backward_relu_tiled(dy, y, argmax, k_h, k_w, top, left, x_shape[1],
                                     x_shape[2], out, partial)
    else:
        partial = np.zeros((x_shape[0], x_shape[3]), dtype=np.float64)
        _maxpool_backward_relu(dy, y, argmax, x_shape[1], x_shape[2], out, partial)
    return out, partial.sum(axis=0).astype(dy.dtype)


def maxpool_backward_relu_reference(dy, y, argmax, x_shape, tiling=None):
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
