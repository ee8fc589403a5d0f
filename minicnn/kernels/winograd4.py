"""3x3 stride-1 convolution by Winograd's F(4x4, 3x3), forward and backward.

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

The backward is F(2x2, 3x3)'s with these matrices (minicnn.kernels.winograd), from
dZ = act'(dY): dM = A dZ A^T per tile, dU = V^T dM and dW = G^T dU G, dV = dM U^T and
dX += B dV B^T over tiles that overlap by two rows and columns.

The price of the larger tile is rounding: the transforms' entries reach 8 and 1/24, and
float32 outputs and gradients differ from the exact convolution by a few units in the 6th
significant digit of their scale, where F(2x2, 3x3)'s and im2col's differ in the 7th. That
is well within what training and prediction need (the tests bound it), and it buys 4x
fewer multiply-adds where F(2x2, 3x3) saves 2.25x.
"""
import numpy as np
from numba import njit, prange

from minicnn.kernels.blas import matmul_rows
from minicnn.kernels.winograd import Algorithm, bias_activation_row, winograd_reference

B_T = np.array([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
                [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]],
               dtype=np.float64)
G = np.array([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
              [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]], dtype=np.float64)
A_T = np.array([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0],
                [0, 1, -1, 8, -8, 1]], dtype=np.float64)


# The transforms work on a whole row of tiles at a time, on rows of values: each step sets
# (or adds to) one row a combination of six others with the coefficients of one row of
# B^T, A^T or B (_combine6), a loop the compiler turns into vector instructions. The input
# transform first combines six input rows into six (B^T down the columns), then runs along
# each tile's six columns of those (d B); the output transform and the input's adjoint do
# the same the other way round. The output's adjoint, dM = A dZ A^T, works tile by tile:
# per channel, a tile's values are read into scalars, both passes run on them (A as a
# function of four scalars returning a tuple), and the results are stored. (The compiler
# does not vectorize that loop over channels: its 36 stores go to 36 matrices, more
# streams than it checks for overlap; written on rows, as the others, it was slower for
# up to 128 channels and faster only for 512.)

# The transforms' integer entries as float32 scalars (exact): float32 times float32 stays
# float32, and float64 data still computes in float64.
_2, _4, _8 = np.float32(2), np.float32(4), np.float32(8)


@njit(cache=True, nogil=True, inline="always")
def _store_column(dst, t, j, ch, c):
    """dst[j + 6*i, t, ch] = c[i] for i < 6: column j of tile t's 36 transformed values."""
    dst[j, t, ch] = c[0]
    dst[6 + j, t, ch] = c[1]
    dst[12 + j, t, ch] = c[2]
    dst[18 + j, t, ch] = c[3]
    dst[24 + j, t, ch] = c[4]
    dst[30 + j, t, ch] = c[5]


@njit(cache=True, nogil=True)
def _border_tile(x, img, ih0, iw0, d):
    """d = x[img, ih0:ih0+6, iw0:iw0+6], zeros outside x."""
    h, w, c = x.shape[1], x.shape[2], x.shape[3]
    for a in range(d.shape[0]):
        for b in range(d.shape[1]):
            ih, iw = ih0 + a, iw0 + b
            inside = 0 <= ih < h and 0 <= iw < w
            for ch in range(c):
                d[a, b, ch] = x[img, ih, iw, ch] if inside else 0.0


@njit(cache=True, nogil=True)
def _combine6(out, coef, r0, r1, r2, r3, r4, r5):
    """out = coef[0] r0 + ... + coef[5] r5, elementwise over equal-length rows."""
    c0, c1, c2, c3, c4, c5 = coef[0], coef[1], coef[2], coef[3], coef[4], coef[5]
    for k in range(out.shape[0]):
        out[k] = c0 * r0[k] + c1 * r1[k] + c2 * r2[k] + c3 * r3[k] + c4 * r4[k] + c5 * r5[k]


@njit(cache=True, nogil=True)
def _row_span(w, c, tiles_w, pad_left):
    """Where a row of tiles meets an input row of W pixels x C channels, as flat offsets:
    (cols, seg, lo) with cols = 4 tiles_w + 2 the input columns the tiles read (the padding
    included), seg = the values of the input row inside them, lo = where those start in a
    row of cols * C values (after the left padding's)."""
    cols = 4 * tiles_w + 2
    return cols, min(w, cols - pad_left) * c, pad_left * c


@njit(cache=True, nogil=True)
def _input_row(x, b_t, pad_top, pad_left, tiles_w, img, ti, v, t0):
    """V of the row of tiles ti of image img, into v's tiles t0 .. t0 + tiles_w - 1."""
    n, h, w, c = x.shape
    cols, seg, lo = _row_span(w, c, tiles_w, pad_left)
    ih0 = 4 * ti - pad_top
    # its six input rows, a row of zeros for each one outside x
    zero = np.zeros(w * c, dtype=x.dtype)
    r0 = x[img, ih0].reshape(-1) if 0 <= ih0 < h else zero
    r1 = x[img, ih0 + 1].reshape(-1) if 0 <= ih0 + 1 < h else zero
    r2 = x[img, ih0 + 2].reshape(-1) if 0 <= ih0 + 2 < h else zero
    r3 = x[img, ih0 + 3].reshape(-1) if 0 <= ih0 + 3 < h else zero
    r4 = x[img, ih0 + 4].reshape(-1) if 0 <= ih0 + 4 < h else zero
    r5 = x[img, ih0 + 5].reshape(-1) if 0 <= ih0 + 5 < h else zero
    # B^T down the columns, whole rows at a time: e[a] = sum_i B^T[a, i] row_i, zeros
    # in the padding's columns
    e = np.zeros((6, cols * c), dtype=x.dtype)
    for a in range(6):
        _combine6(e[a, lo:lo + seg], b_t[a], r0[:seg], r1[:seg], r2[:seg], r3[:seg],
                  r4[:seg], r5[:seg])
    # then d B along each tile's row of e: V[6 a + b, t] = sum_j B^T[b, j] e[a, 4 tj + j]
    for tj in range(tiles_w):
        t = t0 + tj
        k = 4 * tj * c
        for a in range(6):
            ea = e[a]
            for b in range(6):
                _combine6(v[6 * a + b, t], b_t[b], ea[k:k + c], ea[k + c:k + 2 * c],
                          ea[k + 2 * c:k + 3 * c], ea[k + 3 * c:k + 4 * c],
                          ea[k + 4 * c:k + 5 * c], ea[k + 5 * c:k + 6 * c])


@njit(parallel=True, cache=True, nogil=True)
def _winograd4_input(x, b_t, pad_top, pad_left, tiles_h, tiles_w, v):
    for r in prange(x.shape[0] * tiles_h):  # one row of tiles (n, ti) per task
        _input_row(x, b_t, pad_top, pad_left, tiles_w, r // tiles_h, r % tiles_h, v,
                   r * tiles_w)
    return v


@njit(cache=True, nogil=True)
def _down_columns(m, a_t, t0, tiles_w, c):
    """A^T M down every column j of the tiles t0 .. t0 + tiles_w - 1 (a row of tiles):
    p[u, j] = sum_i A^T[u, i] M[6 i + j], each a row of tiles_w * C values."""
    p = np.empty((4, 6, tiles_w * c), dtype=m.dtype)
    for u in range(4):
        for j in range(6):
            _combine6(p[u, j], a_t[u], m[j, t0:t0 + tiles_w].reshape(-1),
                      m[6 + j, t0:t0 + tiles_w].reshape(-1),
                      m[12 + j, t0:t0 + tiles_w].reshape(-1),
                      m[18 + j, t0:t0 + tiles_w].reshape(-1),
                      m[24 + j, t0:t0 + tiles_w].reshape(-1),
                      m[30 + j, t0:t0 + tiles_w].reshape(-1))
    return p


@njit(cache=True, nogil=True)
def _output_row(m, a_t, bias, code, tiles_w, y, logits, keep_logits, img, ti, t0):
    """Output rows 4 ti .. 4 ti + 3 of image img from m's tiles t0 .. t0 + tiles_w - 1."""
    h_out, w_out, c = y.shape[1], y.shape[2], y.shape[3]
    p = _down_columns(m, a_t, t0, tiles_w, c)
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


@njit(parallel=True, cache=True, nogil=True)
def _winograd4_output(m, a_t, bias, code, tiles_h, tiles_w, y, logits, keep_logits):
    for r in prange(y.shape[0] * tiles_h):  # one row of tiles (n, ti) per task
        _output_row(m, a_t, bias, code, tiles_w, y, logits, keep_logits, r // tiles_h,
                    r % tiles_h, r * tiles_w)
    return y


@njit(cache=True, nogil=True)
def _output_pooled_row(m, a_t, bias, code, tiles_w, h_out, w_out, k_h, k_w, y, img, ti, t0):
    """As _output_row, but each output row of channels goes into the maximum of its
    pooling window (k_h x k_w, stride = size, from the top-left corner) instead of into Y;
    the bias and activation follow on the pooled rows. k_h divides 4, so a window's rows
    lie in one row of tiles and each row of tiles owns the pooled rows it writes."""
    h_pool, w_pool, c = y.shape[1], y.shape[2], y.shape[3]
    h_used, w_used = min(h_out, h_pool * k_h), min(w_out, w_pool * k_w)
    if 4 * ti >= h_used:
        return
    zero = np.float32(0)
    p = _down_columns(m, a_t, t0, tiles_w, c)
    z = np.empty(c, dtype=y.dtype)
    for u in range(min(4, h_used - 4 * ti)):
        i = 4 * ti + u
        pooled_row = y[img, i // k_h]
        first_row = i % k_h == 0
        pu = p[u]
        for tj in range(tiles_w):
            col = tj * c
            for vv in range(min(4, w_used - 4 * tj)):
                j = 4 * tj + vv
                _combine6(z, a_t[vv], pu[0, col:col + c], pu[1, col:col + c],
                          pu[2, col:col + c], pu[3, col:col + c], pu[4, col:col + c],
                          pu[5, col:col + c])
                out = pooled_row[j // k_w]
                if first_row and j % k_w == 0:      # a window's first cell
                    for ch in range(c):
                        out[ch] = z[ch]
                else:
                    for ch in range(c):
                        out[ch] = np.maximum(out[ch], z[ch])
    # then act(max + b) on the pooled rows this row of tiles filled, as
    # minicnn.kernels.maxpool_bias_activation does (a loop per case, vectorized)
    for pi in range(4 * ti // k_h, min(h_pool, (4 * ti + 4) // k_h)):
        for pj in range(w_pool):
            out = y[img, pi, pj]
            if code == 1:
                for ch in range(c):
                    out[ch] = np.maximum(out[ch] + bias[ch], zero)
            elif bias.size:
                for ch in range(c):
                    out[ch] += bias[ch]


@njit(parallel=True, cache=True, nogil=True)
def _winograd4_output_pooled(m, a_t, bias, code, tiles_h, tiles_w, h_out, w_out, k_h, k_w, y):
    for r in prange(y.shape[0] * tiles_h):
        _output_pooled_row(m, a_t, bias, code, tiles_w, h_out, w_out, k_h, k_w, y,
                           r // tiles_h, r % tiles_h, r * tiles_w)
    return y


@njit(parallel=True, cache=True, nogil=True)
def _winograd4_fused(x, b_t, u, a_t, bias, code, pad_top, pad_left, tiles_h, tiles_w,
                     h_out, w_out, k_h, k_w, y, logits, keep_logits, v_all):
    # One image per task, its three passes one after the other on its own core: V of its
    # tiles, the 36 products by the BLAS (single-threaded: minicnn.kernels.blas), then the
    # output transform (into the pooling's output when k_h > 0). V goes into v_all (the
    # whole batch's tiles, kept for the backward) when it has rows, else into the task's
    # own array; M is always the task's.
    n, c_in, c_out = x.shape[0], x.shape[3], u.shape[2]
    per = tiles_h * tiles_w
    keep_v = v_all.shape[1] > 0
    for img in prange(n):
        v = v_all if keep_v else np.empty((36, per | 1, c_in), dtype=x.dtype)
        first = img * per if keep_v else 0          # the image's first tile in v
        m = np.empty((36, per | 1, c_out), dtype=x.dtype)
        for ti in range(tiles_h):
            _input_row(x, b_t, pad_top, pad_left, tiles_w, img, ti, v, first + ti * tiles_w)
        for xi in range(36):
            matmul_rows(v[xi, first:], u[xi], m[xi], per)
        for ti in range(tiles_h):
            if k_h > 0:
                _output_pooled_row(m, a_t, bias, code, tiles_w, h_out, w_out, k_h, k_w, y,
                                   img, ti, ti * tiles_w)
            else:
                _output_row(m, a_t, bias, code, tiles_w, y, logits, keep_logits, img, ti,
                            ti * tiles_w)
    return y


# The backward's adjoint transforms: dM = A dZ A^T (A = (A^T)^T, 6x4), tile by tile on
# scalars, and dX += B dV B^T (B = (B^T)^T, 6x6) on rows.


@njit(cache=True, nogil=True, inline="always")
def _a(z0, z1, z2, z3):
    """A (z0, ..., z3): six values from four."""
    plus, minus = z0 + z2, z1 + z3
    plus4, minus2 = z0 + _4 * z2, _2 * z1 + _8 * z3
    return z0, plus + minus, plus - minus, plus4 + minus2, plus4 - minus2, z3


@njit(cache=True, nogil=True, inline="always")
def _a_along_row(src, i, j, ch):
    """A applied to src[i, j:j+4, ch]: one row of the dZ tile, dZ A^T."""
    row = src[i]
    return _a(row[j, ch], row[j + 1, ch], row[j + 2, ch], row[j + 3, ch])


@njit(cache=True, nogil=True, inline="always")
def _a_down_column(dm, t, j, ch, q0, q1, q2, q3):
    """dM[j + 6*i, t, ch] = (A (q0[j], ..., q3[j]))[i]: column j of A (dZ A^T)."""
    _store_column(dm, t, j, ch, _a(q0[j], q1[j], q2[j], q3[j]))


@njit(cache=True, nogil=True)
def _output_adjoint_tile(src, i, j, dm, t):
    """dM[:, t] = A dZ_tile A^T for the 4x4 tile src[i:i+4, j:j+4] of an (H_out, W_out, C)
    array."""
    for ch in range(src.shape[2]):
        q0 = _a_along_row(src, i, j, ch)
        q1 = _a_along_row(src, i + 1, j, ch)
        q2 = _a_along_row(src, i + 2, j, ch)
        q3 = _a_along_row(src, i + 3, j, ch)
        _a_down_column(dm, t, 0, ch, q0, q1, q2, q3)
        _a_down_column(dm, t, 1, ch, q0, q1, q2, q3)
        _a_down_column(dm, t, 2, ch, q0, q1, q2, q3)
        _a_down_column(dm, t, 3, ch, q0, q1, q2, q3)
        _a_down_column(dm, t, 4, ch, q0, q1, q2, q3)
        _a_down_column(dm, t, 5, ch, q0, q1, q2, q3)


@njit(parallel=True, cache=True, nogil=True)
def _winograd4_output_adjoint(dz, tiles_h, tiles_w, dm):
    n, h_out, w_out, c = dz.shape
    for r in prange(n * tiles_h):
        img = r // tiles_h
        ti = r % tiles_h
        e = np.empty((4, 4, c), dtype=dz.dtype)     # a border tile, zeros outside dZ
        rows = min(4, h_out - 4 * ti)
        for tj in range(tiles_w):
            t = r * tiles_w + tj
            if rows == 4 and 4 * tj + 4 <= w_out:
                src, i, j = dz[img], 4 * ti, 4 * tj
            else:
                _border_tile(dz, img, 4 * ti, 4 * tj, e)
                src, i, j = e, 0, 0
            _output_adjoint_tile(src, i, j, dm, t)     # one call site, as in the input's
    return dm


@njit(cache=True, nogil=True)
def _add_combine6(out, coef, r0, r1, r2, r3, r4, r5):
    """out += coef[0] r0 + ... + coef[5] r5, elementwise over equal-length rows."""
    c0, c1, c2, c3, c4, c5 = coef[0], coef[1], coef[2], coef[3], coef[4], coef[5]
    for k in range(out.shape[0]):
        out[k] += c0 * r0[k] + c1 * r1[k] + c2 * r2[k] + c3 * r3[k] + c4 * r4[k] + c5 * r5[k]


@njit(parallel=True, cache=True, nogil=True)
def _winograd4_input_adjoint(dv, b, pad_top, pad_left, tiles_h, tiles_w, dx):
    # dX += B dV B^T, the input transform's steps backwards on rows of values, with
    # b = B (= (B^T)^T, 6x6). Tiles of rows ti and ti + 1 overlap by two input rows, so
    # even rows of tiles run first and odd rows second: within a pass no two tasks touch
    # the same element.
    n, h, w, c = dx.shape
    cols, seg, lo = _row_span(w, c, tiles_w, pad_left)
    for parity in range(2):
        rows_in_pass = (tiles_h - parity + 1) // 2
        for r in prange(n * rows_in_pass):
            img = r // rows_in_pass
            ti = 2 * (r % rows_in_pass) + parity
            # dV B^T along each tile's rows, added into six rows of the row of tiles'
            # width: g[a, column 4 tj + j] += sum_k B[j, k] dV[6 a + k, t] (neighbouring
            # tiles share two columns)
            g = np.zeros((6, cols * c), dtype=dx.dtype)
            for tj in range(tiles_w):
                t = (img * tiles_h + ti) * tiles_w + tj
                k = 4 * tj * c
                for a in range(6):
                    ga = g[a]
                    for j in range(6):
                        _add_combine6(ga[k + j * c:k + (j + 1) * c], b[j], dv[6 * a, t],
                                      dv[6 * a + 1, t], dv[6 * a + 2, t], dv[6 * a + 3, t],
                                      dv[6 * a + 4, t], dv[6 * a + 5, t])
            # then B down the columns: dX row ih0 + i += sum_a B[i, a] g[a], inside dX
            ih0 = 4 * ti - pad_top
            for i in range(6):
                if 0 <= ih0 + i < h:
                    row = dx[img, ih0 + i].reshape(-1)
                    _add_combine6(row[:seg], b[i], g[0, lo:lo + seg], g[1, lo:lo + seg],
                                  g[2, lo:lo + seg], g[3, lo:lo + seg], g[4, lo:lo + seg],
                                  g[5, lo:lo + seg])
    return dx


def _input(x, pad_top, pad_left, tiles_h, tiles_w, v):
    """The input transform with F2's arguments: B^T in x's dtype."""
    return _winograd4_input(np.ascontiguousarray(x), B_T.astype(x.dtype), pad_top, pad_left,
                            tiles_h, tiles_w, v)


def _input_adjoint(dv, pad_top, pad_left, tiles_h, tiles_w, dx):
    """The input transform's adjoint with F2's arguments: B in dx's dtype; dx C-contiguous."""
    return _winograd4_input_adjoint(dv, np.ascontiguousarray(B_T.T.astype(dx.dtype)), pad_top,
                                    pad_left, tiles_h, tiles_w, dx)


def _output(m, bias, code, tiles_h, tiles_w, y, logits, keep_logits):
    """The output transform with F2's arguments: A^T in y's dtype."""
    return _winograd4_output(m, A_T.astype(y.dtype), bias, code, tiles_h, tiles_w, y, logits,
                             keep_logits)


def _output_pooled(m, bias, code, tiles_h, tiles_w, h_out, w_out, pool_size, y):
    """The output transform into a max-pooling's output y (Algorithm.output_pooled)."""
    return _winograd4_output_pooled(m, A_T.astype(y.dtype), bias, code, tiles_h, tiles_w,
                                    h_out, w_out, pool_size[0], pool_size[1], y)


def _fused(x, u, bias, code, pads, tiles_h, tiles_w, h_out, w_out, pool_size, y, logits,
           keep_logits, v_all):
    """The three passes an image per task (Algorithm.fused), with F2's other arguments: A^T
    and B^T in x's dtype; pool_size None or the pooling whose output y is."""
    k_h, k_w = (0, 0) if pool_size is None else pool_size
    return _winograd4_fused(np.ascontiguousarray(x), B_T.astype(x.dtype), u,
                            A_T.astype(x.dtype), bias, code, pads[0], pads[2], tiles_h,
                            tiles_w, h_out, w_out, k_h, k_w, y, logits, keep_logits, v_all)


F4 = Algorithm("F(4x4, 3x3)", 4, G, _input, _output, _winograd4_output_adjoint,
               _input_adjoint, _output_pooled, _fused)


def conv3x3_winograd4_reference(x, kernel, bias, pads, activation=0, keep_logits=False):
    """NumPy twin of conv3x3_winograd(..., algorithm=F4), with the transforms as matrix
    products."""
    return winograd_reference(x, kernel, bias, pads, activation, keep_logits, B_T, G, A_T)
