"""Fused bias + activation, and the activation's backward, one pass each.

Activations are passed as integer codes (ACTIVATION_CODES) so that one kernel
serves them all:

    linear   y = z                         dz = dy
    relu     y = max(z, 0)                 dz = dy * [y > 0]      (derivative 0 at 0)
    sigmoid  y = 1 / (1 + exp(-z))         dz = dy * y * (1 - y)
             computed from e = exp(-|z|) as 1 / (1 + e) for z >= 0 and e / (1 + e)
             for z < 0: exp never overflows, and tiny outputs keep full relative
             precision (0.5 * tanh(z / 2) + 0.5 would lose it to cancellation).
    softmax  y_k = exp(z_k - max z) / sum_j exp(z_j - max z)     over the last axis (a row)
                                           dz = y * (dy - sum_k dy_k y_k)

The backward is written in terms of the output y, so forward keeps y (not z).
"""
import numpy as np
from numba import njit, prange


ACTIVATION_CODES = {"linear": 0, "relu": 1, "sigmoid": 2, "softmax": 3}


@njit(inline="always")
def activate(z, code):
    """act(z) of one value for codes 0 (linear), 1 (relu) and 2 (sigmoid), for kernels
    that fuse the activation into their own output pass."""
    if code == 1:
        return max(z, 0.0)
    if code == 2:
        e = np.exp(-abs(z))
        return 1.0 / (1.0 + e) if z >= 0 else e / (1.0 + e)
    return z


@njit(parallel=True, cache=True, nogil=True)
def _bias_activation(z, b, code):
    m, c = z.shape
    for r in prange(m):
        for ch in range(c):
            v = z[r, ch] + b[ch]
            if code == 1:
                v = max(v, 0.0)
            elif code == 2:
                e = np.exp(-abs(v))
                v = 1.0 / (1.0 + e) if v >= 0 else e / (1.0 + e)
            z[r, ch] = v
        if code == 3:                       # softmax needs the whole row
            top = z[r, 0]
            for ch in range(1, c):
                top = max(top, z[r, ch])
            total = 0.0
            for ch in range(c):
                z[r, ch] = np.exp(z[r, ch] - top)
                total += z[r, ch]
            for ch in range(c):
                z[r, ch] /= total
    return z


def bias_activation(z, b, code, keep_logits=False):
    """y = act(z + b), written over z (the fresh output of a matmul).

    z: ndarray of shape (M, C), C-contiguous; b: ndarray of shape (C,).
    Returns (y, logits): y is z's memory; logits is None unless keep_logits is set
    and the activation is sigmoid, in which case it is a separate array holding z + b
    (the loss is then computed from logits, as Keras does after a sigmoid).
    """
    if keep_logits and code == ACTIVATION_CODES["sigmoid"]:
        logits = _bias_activation(z, b, 0)
        return _bias_activation(logits.copy(), np.zeros_like(b), code), logits
    return _bias_activation(z, b, code), None


def bias_activation_reference(z, b, code, keep_logits=False):
    """NumPy twin of bias_activation (also writes over z)."""
    z += b
    logits = z.copy() if keep_logits and code == 2 else None
    if code == 1:
        np.maximum(z, 0, out=z)
    elif code == 2:
        e = np.exp(-np.abs(z))
        z[...] = np.where(z >= 0, 1 / (1 + e), e / (1 + e))
    elif code == 3:
        e = np.exp(z - z.max(axis=-1, keepdims=True))
        z[...] = e / e.sum(axis=-1, keepdims=True)
    return z, logits


def activation_backward(dy, y, code):
    """dz = dL/dz from dy = dL/dy and the forward output y; dy is not modified.

    dy, y: ndarrays of the same shape (..., C). Returns dz of that shape.
    """
    if code == 0:
        return dy.copy()
    shape = dy.shape
    dz, _ = activation_backward_and_bias_grad(np.ascontiguousarray(dy).reshape(-1, shape[-1]),
                                              np.ascontiguousarray(y).reshape(-1, shape[-1]), code)
    return dz.reshape(shape)


@njit(parallel=True, cache=True, nogil=True)
def _activation_backward_bias(dy, y, code, dz, partial):
    m, c = dy.shape
    chunks = partial.shape[0]
    size = (m + chunks - 1) // chunks
    for t in prange(chunks):               # each task sums its own rows into partial[t]
        for r in range(t * size, min(m, (t + 1) * size)):
            row_dot = 0.0
            if code == 3:
                for ch in range(c):
                    row_dot += dy[r, ch] * y[r, ch]
            for ch in range(c):
                g = dy[r, ch]
                if code == 1:
                    g = g if y[r, ch] > 0 else 0.0
                elif code == 2:
                    g = g * y[r, ch] * (1.0 - y[r, ch])
                elif code == 3:
                    g = y[r, ch] * (g - row_dot)
                dz[r, ch] = g
                partial[t, ch] += g
    return dz


def activation_backward_and_bias_grad(dy, y, code):
    """(dz, db): activation_backward and db = sum of dz over rows, in one pass.

    dy, y: ndarrays of shape (M, C), C-contiguous. Returns dz (M, C) and db (C,). Row sums
    are accumulated per task in float64, then added up, so db is at least as accurate as
    np.sum's.
    """
    out = np.empty_like(dy)
    partial = np.zeros((min(64, max(1, dy.shape[0])), dy.shape[1]), dtype=np.float64)
    dz = _activation_backward_bias(dy, y, code, out, partial)
    return dz, partial.sum(axis=0).astype(dy.dtype)


def layer_dz_and_db(dy, y, code, from_logits=False, db=None):
    """(dZ, db) of a layer's output gradient, both flattened to rows of C channels.

    dy, y: (..., C). Normally dZ = act'(dY) and db its row sum
    (activation_backward_and_bias_grad). With from_logits, dy is dZ already (the loss
    differentiated the logits); when db is given too (a fused backward computed it, e.g.
    maxpool_backward_relu), dy is used as dZ as it is, with no pass over it.
    """
    c = y.shape[-1]
    dy2d = np.ascontiguousarray(dy).reshape(-1, c)
    if from_logits and db is not None:
        return dy2d, db
    return activation_backward_and_bias_grad(dy2d, y.reshape(-1, c), 0 if from_logits else code)


def activation_backward_and_bias_grad_reference(dy, y, code):
    """NumPy twin of activation_backward_and_bias_grad."""
    dz = activation_backward_reference(dy, y, code)
    return dz, dz.sum(axis=0, dtype=np.float64).astype(dy.dtype)


def activation_backward_reference(dy, y, code):
    """NumPy twin of activation_backward."""
    if code == 1:
        return dy * (y > 0)
    if code == 2:
        return dy * y * (1 - y)
    if code == 3:
        return y * (dy - np.sum(dy * y, axis=-1, keepdims=True))
    return dy.copy()
