"""im2col's convolution at inference in bands of output rows, each band's patches, product
and output in one task while they are in the core's cache.

conv2d_forward writes the whole batch's patches (the lecture CNN's first convolution at
batch 32: a 76 MB matrix of 700,928 rows of K = 27), multiplies them by the kernel in one
BLAS call into a 90 MB Z, and a max-pooling after it reads Z back: three passes through
memory. Here a task takes one band of B output rows of one image:

    cols_band = patches of rows i0 .. i0 + B - 1           (B W_out, K_h K_w C_in)
    Z_band    = cols_band @ W_2d                           one single-threaded BLAS call
    Y         = act(Z_band + b)                            rows i0 .. of the output
          or  = act(maxpool(Z_band) + b)                   B a multiple of the pooling's K_h

with cols_band and Z_band the task's own (BAND_BYTES together), so only X and Y go through
memory. The numbers are conv2d_forward's (and maxpool_bias_activation's after it): the same
patches, each output value the same dot product over K (BLAS accumulates over K whatever
the rows it is given), the same bias and activation; the test suite compares them.

Where it runs (runs_in_bands): where the BLAS can be called from a kernel
(minicnn.kernels.blas), for float32 and float64, activations linear, ReLU and sigmoid, and
kernels whose matrix W_2d is at most BANDS_MAX_KERNEL_VALUES values: each call packs W_2d
again, which for a large kernel costs more than one product over the whole batch saves.
"""
import numpy as np
from numba import njit, prange

from minicnn.kernels import blas
from minicnn.kernels.elementwise import activate
from minicnn.kernels.geometry import window_output_size
from minicnn.kernels.im2col import patch_row
from minicnn.kernels.pooling import pooling_bias

# A band's patches and products together (then at least one output row, and the rows
# of one pooling window): small enough for a core's L2 cache (1-2 MiB here).
BAND_BYTES = 256 * 2 ** 10
# The largest W_2d (K_h K_w C_in x C_out values) the bands take: 64 K values, 256 KiB in
# float32 (the first convolutions: 27 x 32 in the lecture CNN, 27 x 64 in VGG16).
BANDS_MAX_KERNEL_VALUES = 64 * 2 ** 10


def fits_bands(kernel_shape, activation):
    """Whether the bands take this kernel (K_h, K_w, C_in, C_out) and activation code, in
    float32 and float64."""
    k_h, k_w, c_in, c_out = kernel_shape
    return (blas.AVAILABLE and activation in (0, 1, 2)
            and k_h * k_w * c_in * c_out <= BANDS_MAX_KERNEL_VALUES)


def runs_in_bands(kernel_shape, activation, dtype):
    """Whether conv2d_bands computes this convolution (else conv2d_forward)."""
    return (fits_bands(kernel_shape, activation)
            and np.dtype(dtype) in (np.float32, np.float64))


def pools(pool_size, strides, pads, kernel_shape):
    """Whether conv2d_bands computes this max-pooling of a convolution with this kernel
    (K_h, K_w, C_in, C_out) in the same pass: windows that tile the output from its top-left
    corner (strides = pool_size, no padding before), where the bands run."""
    return (tuple(strides) == tuple(pool_size) and pads[0] == 0 and pads[2] == 0
            and runs_in_bands(kernel_shape, 0, np.float32))


def band_rows(h_out, w_out, kernel_shape, itemsize, pool_rows=1, band_bytes=BAND_BYTES):
    """Output rows in one band: as many as keep its patches and products within band_bytes,
    at least one, a multiple of pool_rows (a pooling window's K_h), at most H_out rounded up
    to that multiple."""
    k_h, k_w, c_in, c_out = kernel_shape
    per_row = max(w_out * (k_h * k_w * c_in + c_out) * itemsize, 1)
    windows = max(1, band_bytes // (per_row * pool_rows))
    return pool_rows * min(windows, -(-h_out // pool_rows))


@njit(cache=True, nogil=True)
def _activate_band(z, b, code, y, logits, keep_logits, img, i0, rows, w_out):
    """Y rows i0 .. i0 + rows - 1 of image img = act(Z_band + b)."""
    c = z.shape[1]
    for u in range(rows):
        out = y[img, i0 + u]
        for j in range(w_out):
            r = u * w_out + j
            if keep_logits:
                for ch in range(c):
                    logits[img, i0 + u, j, ch] = z[r, ch] + b[ch]
            if code == 1:                     # a loop per case keeps each one vectorized
                for ch in range(c):
                    out[j, ch] = max(z[r, ch] + b[ch], 0.0)
            elif code == 2:
                for ch in range(c):
                    out[j, ch] = activate(z[r, ch] + b[ch], code)
            else:
                for ch in range(c):
                    out[j, ch] = z[r, ch] + b[ch]


@njit(cache=True, nogil=True)
def _pool_band(z, b, code, k_h, k_w, h_out, w_out, y, img, i0, rows):
    """The pooled rows of output rows i0 .. i0 + rows - 1 (i0 a multiple of k_h):
    act(max over each k_h x k_w window, at stride = size from the corner, + b), windows
    cut by the output's edge taking the cells inside it (maxpool_bias_activation's)."""
    h_pool, w_pool, c = y.shape[1], y.shape[2], y.shape[3]
    for pi in range(i0 // k_h, min(h_pool, -(-(i0 + rows) // k_h))):
        for pj in range(w_pool):
            out = y[img, pi, pj]
            first = (pi * k_h - i0) * w_out + pj * k_w
            for ch in range(c):
                out[ch] = z[first, ch]
            for p in range(min(k_h, h_out - pi * k_h)):
                for q in range(min(k_w, w_out - pj * k_w)):
                    r = first + p * w_out + q
                    for ch in range(c):
                        out[ch] = np.maximum(out[ch], z[r, ch])
            if code == 1:
                for ch in range(c):
                    out[ch] = np.maximum(out[ch] + b[ch], np.float32(0))
            elif b.size:
                for ch in range(c):
                    out[ch] += b[ch]


@njit(parallel=True, cache=True, nogil=True)
def _conv_bands(x, w2d, b, code, k_h, k_w, s_h, s_w, pad_top, pad_left, h_out, w_out, band,
                pool_h, pool_w, y, logits, keep_logits):
    # One band of one image per task; the products single-threaded (one_blas_thread), each
    # task's on its own core.
    bands = -(-h_out // band)
    for t in prange(x.shape[0] * bands):
        img, i0 = t // bands, (t % bands) * band
        rows = min(band, h_out - i0)
        cols = np.empty((band * w_out, w2d.shape[0]), dtype=x.dtype)
        z = np.empty((band * w_out, w2d.shape[1]), dtype=x.dtype)
        for u in range(rows):
            patch_row(x, img, i0 + u, k_h, k_w, s_h, s_w, pad_top, pad_left, w_out, cols,
                      u * w_out)
        blas.matmul_rows(cols, w2d, z, rows * w_out)
        if pool_h > 0:
            _pool_band(z, b, code, pool_h, pool_w, h_out, w_out, y, img, i0, rows)
        else:
            _activate_band(z, b, code, y, logits, keep_logits, img, i0, rows, w_out)
    return y


def conv2d_bands(x, kernel, bias, strides, pads, activation=0, keep_logits=False, pool=None,
                 band_bytes=BAND_BYTES):
    """y = act(conv(x) + b) by im2col in bands (runs_in_bands must hold). Returns (y, logits).

    x: (N, H, W, C_in); kernel: (K_h, K_w, C_in, C_out); bias (C_out,) or None; strides
    (S_h, S_w); pads (P_top, P_bottom, P_left, P_right); activation: code 0 linear, 1 relu,
    2 sigmoid; logits Z = conv + b beside y when keep_logits (else None).
    pool: a max-pooling of the output (minicnn.kernels.winograd.Pooling: windows `size` at
    stride = size from the top-left corner, `out_hw` its output's (H, W); activation linear
    or relu): y = act(maxpool(conv(x)) + b), the convolution's output never written.
    """
    k_h, k_w, c_in, c_out = kernel.shape
    n = x.shape[0]
    h_out = window_output_size(x.shape[1], k_h, strides[0], pads[0], pads[1])
    w_out = window_output_size(x.shape[2], k_w, strides[1], pads[2], pads[3])
    w2d = np.ascontiguousarray(kernel.reshape(k_h * k_w * c_in, c_out), dtype=x.dtype)
    if pool is not None:
        pool_h, pool_w = pool.size
        y = np.empty((n,) + tuple(pool.out_hw) + (c_out,), dtype=x.dtype)
        b = pooling_bias(bias, activation, c_out, x.dtype)
        keep_logits = False
    else:
        pool_h = pool_w = 0
        y = np.empty((n, h_out, w_out, c_out), dtype=x.dtype)
        b = np.zeros(c_out, x.dtype) if bias is None else np.asarray(bias, dtype=x.dtype)
    logits = np.empty_like(y) if keep_logits else y
    if y.size == 0:
        return y, (logits if keep_logits else None)
    band = band_rows(h_out, w_out, kernel.shape, x.dtype.itemsize, max(pool_h, 1), band_bytes)
    with blas.one_blas_thread():
        _conv_bands(np.ascontiguousarray(x), w2d, b, activation, k_h, k_w, strides[0],
                    strides[1], pads[0], pads[2], h_out, w_out, band, pool_h, pool_w, y,
                    logits, keep_logits)
    return y, (logits if keep_logits else None)
