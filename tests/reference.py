"""Plain-loop references: slow, obviously correct versions of the layers' math.

Loops run over output positions; nothing here shares code with minicnn's kernels.
"""
import numpy as np


def pads_for(h, w, kernel, strides, padding):
    """(top, bottom, left, right) written out from the 'same' rule, independently."""
    if padding == "valid":
        return 0, 0, 0, 0
    out = []
    for size, k, s in ((h, kernel[0], strides[0]), (w, kernel[1], strides[1])):
        n_out = -(-size // s)
        total = max((n_out - 1) * s + k - size, 0)
        out += [total // 2, total - total // 2]
    return tuple(out)


def conv2d_forward(x, w, b, strides, padding):
    """Z[n, i, j, o] = b[o] + sum_{p,q,c} Xpad[n, i*S_h + p, j*S_w + q, c] * W[p, q, c, o]."""
    n, h, wd, c = x.shape
    kh, kw, _, co = w.shape
    top, bottom, left, right = pads_for(h, wd, (kh, kw), strides, padding)
    xp = np.zeros((n, h + top + bottom, wd + left + right, c), dtype=x.dtype)
    xp[:, top:top + h, left:left + wd] = x
    ho = (h + top + bottom - kh) // strides[0] + 1
    wo = (wd + left + right - kw) // strides[1] + 1
    z = np.zeros((n, ho, wo, co), dtype=x.dtype)
    for img in range(n):
        for i in range(ho):
            for j in range(wo):
                patch = xp[img, i * strides[0]:i * strides[0] + kh, j * strides[1]:j * strides[1] + kw]
                for o in range(co):
                    z[img, i, j, o] = np.sum(patch * w[..., o]) + (b[o] if b is not None else 0)
    return z


def conv2d_backward(x, w, dz, strides, padding):
    """(dX, dW, db) for Z = conv(X, W) + b, by the same loops run backwards."""
    n, h, wd, c = x.shape
    kh, kw, _, co = w.shape
    top, bottom, left, right = pads_for(h, wd, (kh, kw), strides, padding)
    xp = np.zeros((n, h + top + bottom, wd + left + right, c), dtype=x.dtype)
    xp[:, top:top + h, left:left + wd] = x
    dxp = np.zeros_like(xp)
    dw = np.zeros_like(w)
    _, ho, wo, _ = dz.shape
    for img in range(n):
        for i in range(ho):
            for j in range(wo):
                rs, cs = i * strides[0], j * strides[1]
                for o in range(co):
                    g = dz[img, i, j, o]
                    dw[..., o] += g * xp[img, rs:rs + kh, cs:cs + kw]
                    dxp[img, rs:rs + kh, cs:cs + kw] += g * w[..., o]
    return dxp[:, top:top + h, left:left + wd], dw, dz.sum(axis=(0, 1, 2))


def maxpool_forward(x, pool, strides, padding):
    """Y = max over each window (cells outside X ignored); also the winning (ih, iw)."""
    n, h, w, c = x.shape
    top, bottom, left, right = pads_for(h, w, pool, strides, padding)
    ho = (h + top + bottom - pool[0]) // strides[0] + 1
    wo = (w + left + right - pool[1]) // strides[1] + 1
    y = np.zeros((n, ho, wo, c), dtype=x.dtype)
    where = {}
    for img in range(n):
        for i in range(ho):
            for j in range(wo):
                for ch in range(c):
                    best, at = None, None
                    for p in range(pool[0]):
                        for q in range(pool[1]):
                            ih, iw = i * strides[0] - top + p, j * strides[1] - left + q
                            if 0 <= ih < h and 0 <= iw < w and (best is None or x[img, ih, iw, ch] > best):
                                best, at = x[img, ih, iw, ch], (ih, iw)
                    y[img, i, j, ch] = best
                    where[img, i, j, ch] = at
    return y, where


def maxpool_backward(x_shape, dy, where):
    dx = np.zeros(x_shape, dtype=dy.dtype)
    for (img, i, j, ch), (ih, iw) in where.items():
        dx[img, ih, iw, ch] += dy[img, i, j, ch]
    return dx
