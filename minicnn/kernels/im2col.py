"""im2col and col2im: convolution as one matrix product.

im2col lays every K_h x K_w x C_in input patch out as one row, so that a
convolution with a kernel W of shape (K_h, K_w, C_in, C_out) becomes

    Y[(n, i, j), o] = sum_{(p, q, c)} cols[(n, i, j), (p, q, c)] * W[p, q, c, o]
    i.e.  Y_2d = cols @ W.reshape(K_h*K_w*C_in, C_out)

Row (n, i, j) of cols is the patch X_pad[n, i*S_h + p, j*S_w + q, c] for
p < K_h, q < K_w, c < C_in (column index (p*K_w + q)*C_in + c), where X_pad is
X with P_top zero rows above and P_left zero columns to the left; positions
outside X are zeros. This column order matches Keras's HWIO kernel layout, so
the kernel reshapes without a transpose.

col2im is the adjoint of im2col: it adds every row of a (N*H_out*W_out,
K_h*K_w*C_in) matrix back onto the input positions the patch came from. It
turns dcols = dY_2d @ W_2d^T into dX.
"""
import numpy as np
from numba import njit, prange

from minicnn.kernels.geometry import window_output_size



@njit(cache=True, nogil=True, inline="always")
def patch_row(x, img, i, k_h, k_w, s_h, s_w, pad_top, pad_left, w_out, cols, row0):
    """The patches of output row i of image img into cols[row0:row0 + W_out]: row
    row0 + j holds patch (i, j), zeros outside X. Shared by im2col and the banded
    convolution (minicnn.kernels.im2col_bands)."""
    h, w, c = x.shape[1], x.shape[2], x.shape[3]
    for j in range(w_out):
        row = row0 + j
        for p in range(k_h):
            ih = i * s_h - pad_top + p
            for q in range(k_w):
                iw = j * s_w - pad_left + q
                base = (p * k_w + q) * c
                if 0 <= ih < h and 0 <= iw < w:
                    for ch in range(c):
                        cols[row, base + ch] = x[img, ih, iw, ch]
                else:
                    for ch in range(c):
                        cols[row, base + ch] = 0.0


@njit(parallel=True, cache=True, nogil=True)
def _im2col(x, k_h, k_w, s_h, s_w, pad_top, pad_left, h_out, w_out, cols):
    for r in prange(x.shape[0] * h_out):           # one output row (n, i) per task
        patch_row(x, r // h_out, r % h_out, k_h, k_w, s_h, s_w, pad_top, pad_left, w_out,
                  cols, r * w_out)
    return cols


def im2col(x, kernel_size, strides, pads, out=None):
    """Patches of x as rows.

    x: ndarray of shape (N, H, W, C_in); kernel_size (K_h, K_w); strides
    (S_h, S_w); pads (P_top, P_bottom, P_left, P_right).
    Returns cols: ndarray of shape (N*H_out*W_out, K_h*K_w*C_in), same dtype, written
    into `out` when it is given with that shape and dtype (inference's micro-batch
    workspace).
    """
    (k_h, k_w), (s_h, s_w), (top, bottom, left, right) = kernel_size, strides, pads
    n, _, _, c = x.shape
    h_out = window_output_size(x.shape[1], k_h, s_h, top, bottom)
    w_out = window_output_size(x.shape[2], k_w, s_w, left, right)
    shape = (n * h_out * w_out, k_h * k_w * c)
    if out is None or out.shape != shape or out.dtype != x.dtype:
        out = np.empty(shape, dtype=x.dtype)
    return _im2col(np.ascontiguousarray(x), k_h, k_w, s_h, s_w, top, left, h_out, w_out, out)


def im2col_reference(x, kernel_size, strides, pads):
    """NumPy twin of im2col: one strided slice per kernel offset (p, q)."""
    (k_h, k_w), (s_h, s_w), (top, bottom, left, right) = kernel_size, strides, pads
    n, h, w, c = x.shape
    h_out = window_output_size(h, k_h, s_h, top, bottom)
    w_out = window_output_size(w, k_w, s_w, left, right)
    xp = np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))
    cols = np.empty((n, h_out, w_out, k_h, k_w, c), dtype=x.dtype)
    for p in range(k_h):
        for q in range(k_w):
            cols[:, :, :, p, q, :] = xp[:, p:p + s_h * (h_out - 1) + 1:s_h,
                                        q:q + s_w * (w_out - 1) + 1:s_w, :]
    return cols.reshape(n * h_out * w_out, k_h * k_w * c)


@njit(parallel=True, cache=True, nogil=True)
def _col2im(cols, n, h, w, c, k_h, k_w, s_h, s_w, pad_top, pad_left, h_out, w_out):
    # Each task owns one input row (n, ih) and adds in every patch entry that came
    # from it, so no two tasks write the same element (race-free without atomics).
    dx = np.zeros((n, h, w, c), dtype=cols.dtype)
    for r in prange(n * h):
        img = r // h
        ih = r % h
        for p in range(k_h):
            t = ih + pad_top - p             # = i * S_h for the output row i that used ih
            if t < 0 or t % s_h != 0:
                continue
            i = t // s_h
            if i >= h_out:
                continue
            for j in range(w_out):
                row = (img * h_out + i) * w_out + j
                for q in range(k_w):
                    iw = j * s_w - pad_left + q
                    if 0 <= iw < w:
                        base = (p * k_w + q) * c
                        for ch in range(c):
                            dx[img, ih, iw, ch] += cols[row, base + ch]
    return dx


def col2im(cols, x_shape, kernel_size, strides, pads):
    """Adjoint of im2col: scatter-add patch rows back to an (N, H, W, C_in) array.

    cols: ndarray of shape (N*H_out*W_out, K_h*K_w*C_in); x_shape (N, H, W, C_in).
    Returns dx: ndarray of shape x_shape.
    """
    n, h, w, c = x_shape
    (k_h, k_w), (s_h, s_w), (top, bottom, left, right) = kernel_size, strides, pads
    h_out = window_output_size(h, k_h, s_h, top, bottom)
    w_out = window_output_size(w, k_w, s_w, left, right)
    return _col2im(np.ascontiguousarray(cols), n, h, w, c, k_h, k_w, s_h, s_w,
                   top, left, h_out, w_out)


def col2im_reference(cols, x_shape, kernel_size, strides, pads):
    """NumPy twin of col2im: one strided slice-add per kernel offset (p, q)."""
    n, h, w, c = x_shape
    (k_h, k_w), (s_h, s_w), (top, bottom, left, right) = kernel_size, strides, pads
    h_out = window_output_size(h, k_h, s_h, top, bottom)
    w_out = window_output_size(w, k_w, s_w, left, right)
    patches = cols.reshape(n, h_out, w_out, k_h, k_w, c)
    # Room for every window even when stride leaves rows past the bottom pad.
    hp = max(h + top + bottom, s_h * (h_out - 1) + k_h)
    wp = max(w + left + right, s_w * (w_out - 1) + k_w)
    dxp = np.zeros((n, hp, wp, c), dtype=cols.dtype)
    for p in range(k_h):
        for q in range(k_w):
            dxp[:, p:p + s_h * (h_out - 1) + 1:s_h,
                q:q + s_w * (w_out - 1) + 1:s_w, :] += patches[:, :, :, p, q, :]
    return dxp[:, top:top + h, left:left + w, :]
