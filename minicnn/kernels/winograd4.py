"""3x3 stride-1 convolution at inference by Winograd's F(4x4, 3x3).

F(2x2, 3x3) (minicnn.kernels.winograd) computes a 2x2 block of outputs from a 4x4 input
tile with 16 products per channel pair: 2.25x fewer multiply-adds than im2col. F(4x4, 3x3)
computes a 4x4 block from a 6x6 tile with 36: 4x fewer. Its transformed tiles hold 36
values per 16 outputs instead of 16 per 4, so V and M are 44 % smaller as well. With d a
6x6 input tile and g the 3x3 kernel (Lavin and Gray, "Fast Algorithms for Convolutional
Neural Networks", interpolation points 0, 1, -1, 2, -2 and infinity):

    Y_tile (4x4) = A^T [ (G g G^T) (*) (B^T d B) ] A          (*): elementwise

    B^T = [[4,  0, -5,  0, 1, 0],    G = [[ 1/4,     0,    0],    A^T = [[1, 1,  1, 1,  1, 0],
           [0, -4, -4,  1, 1, 0],         [-1/6, -1/6, -1/6],           [0, 1, -1, 2, -2, 0],
           [0,  4, -4, -1, 1, 0],         [-1/6,  1/6, -1/6],           [0, 1,  1, 4,  4, 0],
           [0, -2, -1,  2, 1, 0],         [1/24, 1/12,  1/6],           [0, 1, -1, 8, -8, 1]]
           [0,  2, -1, -2, 1, 0],         [1/24,-1/12,  1/6],
           [0,  4,  0, -5, 0, 1]]         [   0,    0,    1]]

As in F(2x2, 3x3), summed over input channels the elementwise product becomes one matrix
product per position xi = 6*i + j of the transformed tile, 36 in one np.matmul:

    V[xi, t, c] = (B^T d_{t,c} B)[xi],   U[xi, c, o] = (G g_{c,o} G^T)[xi],   M[xi] = V[xi] @ U[xi]
    Y_tile(t, o) = A^T M[:, t, o] A + b[o],  then the activation

Tile t = (n, ti, tj) reads input rows 4*ti - P_top .. 4*ti - P_top + 5 (zeros outside X)
and writes output rows 4*ti .. 4*ti + 3 (the part inside the output).

The price of the larger tile is rounding: the transforms' entries reach 8 and 1/24, and
float32 results differ from im2col's by a few units in the 6th significant digit of the
output's scale, where F(2x2, 3x3)'s differ in the 7th. That is well within what a
prediction needs, so inference takes F(4x4, 3x3); training keeps F(2x2, 3x3), whose
adjoints the backward needs and whose gradients stay as exact as im2col's.
"""
import numpy as np
from numba import njit, prange

from minicnn.kernels.geometry import window_output_size
from minicnn.kernels.winograd import (
    bias_activation_row,
    kernel_transform,
    tile_array,
    winograd_reference,
)

B_T = np.array([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
                [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]],
               dtype=np.float64)
G = np.array([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
              [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]], dtype=np.float64)
A_T = np.array([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0],
                [0, 1, -1, 8, -8, 1]], dtype=np.float64)
POSITIONS = 36                  # values per transformed tile


def tiles(h_out, w_out):
    """(tiles_h, tiles_w): 4x4 output tiles covering an H_out x W_out output."""
    return -(-h_out // 4), -(-w_out // 4)


def winograd4_kernel(kernel):
    """U[xi, c, o] = (G g G^T)[xi] of a (3, 3, C_in, C_out) kernel: (36, C_in, C_out),
    computed in float64 (G's sixths and twenty-fourths are not exact in float32)."""
    return kernel_transform(kernel, G)


# The input transform works tile by tile: per channel, a tile's 36 values are read, both
# passes of B^T run on scalars (B^T as a function of six values, which compiles to
# registers), and its 36 transformed values are stored. The output transform works on a
# whole row of tiles at a time, on rows of channels: each step sets one row of values to
# a combination of six others with the coefficients of one row of A^T (a loop the compiler
# turns into vector instructions).

# B^T's integer entries as float32 scalars (exact): float32 times float32 stays float32,
# and float64 data still computes in float64.
_2, _4, _5 = np.float32(2), np.float32(4), np.float32(5)


@njit(cache=True, nogil=True, inline="always")
def _bt(a0, a1, a2, a3, a4, a5):
    """B^T (a0, ..., a5)."""
    return (_4 * a0 - _5 * a2 + a4, a3 + a4 - _4 * (a1 + a2), _4 * (a1 - a2) + a4 - a3,
            _2 * (a3 - a1) + a4 - a2, _2 * (a1 - a3) + a4 - a2, _4 * a1 - _5 * a3 + a5)


@njit(cache=True, nogil=True, inline="always")
def _bt_along_row(src, ih, iw, ch):
    """B^T applied to src[ih, iw:iw+6, ch]: one row of the tile, d B."""
    row = src[ih]
    return _bt(row[iw, ch], row[iw + 1, ch], row[iw + 2, ch], row[iw + 3, ch],
               row[iw + 4, ch], row[iw + 5, ch])


@njit(cache=True, nogil=True, inline="always")
def _bt_down_column(v, t, j, ch, s0, s1, s2, s3, s4, s5):
    """V[j + 6*i, t, ch] = (B^T (s0[j], ..., s5[j]))[i]: column j of the tile, B^T (d B)."""
    c0, c1, c2, c3, c4, c5 = _bt(s0[j], s1[j], s2[j], s3[j], s4[j], s5[j])
    v[j, t, ch] = c0
    v[6 + j, t, ch] = c1
    v[12 + j, t, ch] = c2
    v[18 + j, t, ch] = c3
    v[24 + j, t, ch] = c4
    v[30 + j, t, ch] = c5


@njit(cache=True, nogil=True)
def _input_tile(src, ih, iw, v, t):
    """V[:, t] = B^T d B for the 6x6 tile d = src[ih:ih+6, iw:iw+6] of an (H, W, C) array."""
    for ch in range(src.shape[2]):
        s0 = _bt_along_row(src, ih, iw, ch)
        s1 = _bt_along_row(src, ih + 1, iw, ch)
        s2 = _bt_along_row(src, ih + 2, iw, ch)
        s3 = _bt_along_row(src, ih + 3, iw, ch)
        s4 = _bt_along_row(src, ih + 4, iw, ch)
        s5 = _bt_along_row(src, ih + 5, iw, ch)
        _bt_down_column(v, t, 0, ch, s0, s1, s2, s3, s4, s5)
        _bt_down_column(v, t, 1, ch, s0, s1, s2, s3, s4, s5)
        _bt_down_column(v, t, 2, ch, s0, s1, s2, s3, s4, s5)
        _bt_down_column(v, t, 3, ch, s0, s1, s2, s3, s4, s5)
        _bt_down_column(v, t, 4, ch, s0, s1, s2, s3, s4, s5)
        _bt_down_column(v, t, 5, ch, s0, s1, s2, s3, s4, s5)


@njit(parallel=True, cache=True, nogil=True)
def _winograd4_input(x, pad_top, pad_left, tiles_h, tiles_w, v):
    n, h, w, c = x.shape
    for r in prange(n * tiles_h):           # one row of tiles (n, ti) per task
        img = r // tiles_h
        ti = r % tiles_h
        d = np.empty((6, 6, c), dtype=x.dtype)  # a border tile, zeros outside x
        ih0 = 4 * ti - pad_top
        for tj in range(tiles_w):
            t = r * tiles_w + tj
            iw0 = 4 * tj - pad_left
            if 0 <= ih0 and ih0 + 6 <= h and 0 <= iw0 and iw0 + 6 <= w:
                _input_tile(x[img], ih0, iw0, v, t)
                continue
            for a in range(6):
                for b in range(6):
                    ih, iw = ih0 + a, iw0 + b
                    if 0 <= ih < h and 0 <= iw < w:
                        d[a, b] = x[img, ih, iw]
                    else:
                        d[a, b] = 0.0
            _input_tile(d, 0, 0, v, t)
    return v


@njit(cache=True, nogil=True)
def _combine6(out, coef, r0, r1, r2, r3, r4, r5):
    """out = coef[0] r0 + ... + coef[5] r5, elementwise over equal-length rows."""
    c0, c1, c2, c3, c4, c5 = coef[0], coef[1], coef[2], coef[3], coef[4], coef[5]
    for k in range(out.shape[0]):
        out[k] = c0 * r0[k] + c1 * r1[k] + c2 * r2[k] + c3 * r3[k] + c4 * r4[k] + c5 * r5[k]


@njit(parallel=True, cache=True, nogil=True)
def _winograd4_output(m, a_t, bias, code, tiles_h, tiles_w, y, logits, keep_logits):
    n, h_out, w_out, c = y.shape
    for r in prange(n * tiles_h):           # one row of tiles (n, ti) per task
        img = r // tiles_h
        ti = r % tiles_h
        t0 = r * tiles_w
        # A^T M down every column j of the row's tiles: p[u, j] = sum_i A^T[u, i] M[6 i + j]
        p = np.empty((4, 6, tiles_w * c), dtype=y.dtype)
        for u in range(4):
            for j in range(6):
                _combine6(p[u, j], a_t[u], m[j, t0:t0 + tiles_w].reshape(-1),
                          m[6 + j, t0:t0 + tiles_w].reshape(-1),
                          m[12 + j, t0:t0 + tiles_w].reshape(-1),
                          m[18 + j, t0:t0 + tiles_w].reshape(-1),
                          m[24 + j, t0:t0 + tiles_w].reshape(-1),
                          m[30 + j, t0:t0 + tiles_w].reshape(-1))
        # (A^T M) A along every row u of each tile: Z[4 ti + u, 4 tj + vv] =
        # sum_j A^T[vv, j] p[u, j, tile tj]; then the bias and the activation
        z = np.empty(c, dtype=y.dtype)
        for u in range(min(4, h_out - 4 * ti)):
            i = 4 * ti + u
            pu = p[u]
            for tj in range(tiles_w):
                col = tj * c
                for vv in range(min(4, w_out - 4 * tj)):
                    _combine6(z, a_t[vv], pu[0, col:col + c], pu[1, col:col + c],
                              pu[2, col:col + c], pu[3, col:col + c], pu[4, col:col + c],
                              pu[5, col:col + c])
                    bias_activation_row(y[img, i, 4 * tj + vv], logits[img, i, 4 * tj + vv],
                                         keep_logits, z, bias, code)
    return y


def _output_tiles(x_shape, pads):
    """(H_out, W_out, tiles_h, tiles_w, T) of a 3x3 stride-1 convolution of x_shape."""
    n, h, w, _ = x_shape
    h_out = window_output_size(h, 3, 1, pads[0], pads[1])
    w_out = window_output_size(w, 3, 1, pads[2], pads[3])
    tiles_h, tiles_w = tiles(h_out, w_out)
    return h_out, w_out, tiles_h, tiles_w, n * tiles_h * tiles_w


def winograd4_workspace_per_image(h_out, w_out, c_in, c_out, itemsize):
    """Bytes of V and M for one image."""
    tiles_h, tiles_w = tiles(h_out, w_out)
    return POSITIONS * tiles_h * tiles_w * (c_in + c_out) * itemsize


def conv3x3_winograd4(x, kernel, bias, pads, activation=0, keep_logits=False,
                      workspace=None, kernel_u=None):
    """y = act(conv3x3(x) + b) at stride 1 by F(4x4, 3x3). Returns (y, logits).

    Arguments as conv3x3_winograd's (minicnn.kernels.winograd): workspace, optional, a flat
    array of at least 36 * (T + 1) * (C_in + C_out) elements of x's dtype for V and M;
    kernel_u: U (36, C_in, C_out) if already transformed.
    """
    c_in, c_out = kernel.shape[2:]
    h_out, w_out, tiles_h, tiles_w, t = _output_tiles(x.shape, pads)
    size = POSITIONS * (t | 1) * (c_in + c_out)
    if workspace is None or workspace.size < size:
        workspace = np.empty(size, dtype=x.dtype)
    v = tile_array(t, c_in, x.dtype, workspace, POSITIONS)
    m = tile_array(t, c_out, x.dtype, workspace[v.size:], POSITIONS)
    u = winograd4_kernel(kernel) if kernel_u is None else kernel_u
    _winograd4_input(np.ascontiguousarray(x), pads[0], pads[2], tiles_h, tiles_w, v)
    np.matmul(v[:, :t], u, out=m[:, :t])                    # the 36 products, one call
    b = bias if bias is not None else np.zeros(c_out, dtype=x.dtype)
    y = np.empty((x.shape[0], h_out, w_out, c_out), dtype=x.dtype)
    logits = np.empty_like(y) if keep_logits else y
    _winograd4_output(m, A_T.astype(x.dtype), b, activation, tiles_h, tiles_w, y, logits,
                      keep_logits)
    return y, (logits if keep_logits else None)


def conv3x3_winograd4_reference(x, kernel, bias, pads, activation=0, keep_logits=False):
    """NumPy twin of conv3x3_winograd4, with the transforms as matrix products."""
    return winograd_reference(x, kernel, bias, pads, activation, keep_logits, B_T, G, A_T)
