"""3x3 stride-1 convolution by Winograd's minimal filtering F(2x2, 3x3).

im2col multiplies every 3x3 patch by the kernel: 9 multiply-adds per output pixel,
input channel and output channel. Winograd's algorithm computes a 2x2 block of outputs
from a 4x4 block of inputs with 16 instead of 36 multiplications, so the matrix products
do 16/36 = 1/2.25 of im2col's work. For one channel pair, with d a 4x4 input tile and g
the 3x3 kernel (Lavin and Gray, "Fast Algorithms for Convolutional Neural Networks"):

    Y_tile (2x2) = A^T [ (G g G^T) (*) (B^T d B) ] A          (*): elementwise

    B^T = [[1,  0, -1,  0],     G = [[1,    0,   0],      A^T = [[1, 1,  1,  0],
           [0,  1,  1,  0],          [1/2, 1/2, 1/2],             [0, 1, -1, -1]]
           [0, -1,  1,  0],          [1/2,-1/2, 1/2],
           [0,  1,  0, -1]]          [0,    0,   1]]

Summed over input channels, the elementwise product becomes 16 matrix products, one per
position xi of the 4x4 transformed tile:

    V[xi, t, c] = (B^T d_{t,c} B)[xi]          every input tile t, channel c
    U[xi, c, o] = (G g_{c,o} G^T)[xi]          every kernel slice
    M[xi]       = V[xi] @ U[xi]                (T, C_in) @ (C_in, C_out): one np.matmul of 16
    Y_tile(t, o) = A^T M[:, t, o] A + b[o],    then the activation

The backward runs the same steps transposed (each transform's adjoint), from dZ = act'(dY):

    dM[:, t, o]  = A dZ_tile(t, o) A^T         (zeros outside the output)
    dU[xi]       = V[xi]^T @ dM[xi]            dW = G^T dU G
    dV[xi]       = dM[xi] @ U[xi]^T            dX += B dV_tile B^T  (tiles overlap by 2)

Tile t = (n, ti, tj) reads input rows 2*ti - P_top .. 2*ti - P_top + 3 (zeros outside X)
and writes output rows 2*ti, 2*ti + 1 (the part inside the output). The transforms have
entries 0, +-1 and +-1/2, so float32 results differ from im2col's only by rounding.
"""
from typing import NamedTuple

import numba
import numpy as np
from numba import njit, prange

from minicnn.kernels import blas
from minicnn.kernels.elementwise import activate
from minicnn.kernels.elementwise import layer_dz_and_db
from minicnn.kernels.geometry import window_output_size
from minicnn.kernels.pooling import pooling_bias

# B^T, G and A^T above, for the NumPy twin and the kernel transform.
B_T = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], dtype=np.float64)
G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], dtype=np.float64)
A_T = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], dtype=np.float64)


# Winograd's three passes (input transform, products, output transform) run over blocks of
# images whose V and M together stay within this many bytes (at least one image), so that
# each pass reads what the one before wrote while it is still in the cache. Over a whole
# batch they go through memory: the lecture CNN's conv2d_1 at batch 32 has 143 MB of V and
# M, and its inference took 60 ms on an AMD EPYC (AVX-512, 32 MiB L3) against 41 ms in
# blocks of 8 MiB (benchmarks/RESULTS.md, run 12). An image whose V and M alone exceed it
# (VGG16's at 150x150 up to block2) gains nothing from blocks: its layers run whole.
BLOCK_BYTES = 8 * 2 ** 20
# Blocks pay where the passes' memory traffic dominates: with C_in C_out / (C_in + C_out)
# multiply-adds per value of V and M below this (conv2d_1: 21, conv2d_2: 43); from it
# on (128 and 128 channels: 64; 256 and 256: 128) the products' time dominates, and on a
# block's fewer tiles they ran up to 35 % slower.
BLOCKS_BELOW = 64
# Fused instead (Algorithm.fused, where the BLAS can be called from the kernel:
# minicnn.kernels.blas), each task runs the three passes on one image on its own core, the
# products single-threaded: 1.15-1.7x faster than blocks for the lecture CNN's layers (32 to
# 128 channels), 1.05-1.15x for VGG16's up to 128 channels, level or slower from 256 and 256
# channels on (C_in C_out / (C_in + C_out) = 128), where the products dominate and U no longer fits
# a core's cache (benchmarks/RESULTS.md, run 13).
FUSED_BELOW = 96


def tiles(h_out, w_out, m=2):
    """(tiles_h, tiles_w): m x m output tiles covering an H_out x W_out output."""
    return -(-h_out // m), -(-w_out // m)


def winograd_kernel(kernel, algorithm=None):
    """U[xi, c, o] = (G g G^T)[xi] of a (3, 3, C_in, C_out) kernel: (16, C_in, C_out), or
    (36, C_in, C_out) for F(4x4, 3x3) (algorithm: F2 when None)."""
    return kernel_transform(kernel, (algorithm or F2).g)


def kernel_transform(kernel, g):
    """(g w g^T)[xi] of every 3x3 slice w of a (3, 3, C_in, C_out) kernel, for a transform
    g of shape (a, 3): (a*a, C_in, C_out) in the kernel's dtype, computed in float64."""
    a = g.shape[0]
    k = kernel.astype(np.float64).reshape(3, -1)
    gg = np.matmul(g, k).reshape(a, 3, -1)                        # g w: (a, 3, C_in*C_out)
    u = np.matmul(g, gg).reshape(a * a, *kernel.shape[2:])        # (g w) g^T: [i, j]
    return u.astype(kernel.dtype)


# The transforms act on rows of channels: every tile keeps its 16 values per channel as 16
# rows of length C, and B^T, A^T and their adjoints combine whole rows. Each loop below reads
# two or three rows and writes one, so that the compiler turns it into vector instructions.

@njit(cache=True, nogil=True)
def _bt_rows(o0, o1, o2, o3, d0, d1, d2, d3):
    """B^T along one axis of the tile: (o0, o1, o2, o3) = (d0 - d2, d1 + d2, d2 - d1, d1 - d3)."""
    for ch in range(o0.shape[0]):
        o0[ch] = d0[ch] - d2[ch]
    for ch in range(o0.shape[0]):
        o1[ch] = d1[ch] + d2[ch]
    for ch in range(o0.shape[0]):
        o2[ch] = d2[ch] - d1[ch]
    for ch in range(o0.shape[0]):
        o3[ch] = d1[ch] - d3[ch]


@njit(cache=True, nogil=True)
def _at_rows(o0, o1, m0, m1, m2, m3):
    """A^T along one axis of the tile: (o0, o1) = (m0 + m1 + m2, m1 - m2 - m3)."""
    for ch in range(o0.shape[0]):
        o0[ch] = m0[ch] + m1[ch] + m2[ch]
    for ch in range(o0.shape[0]):
        o1[ch] = m1[ch] - m2[ch] - m3[ch]


@njit(cache=True, nogil=True)
def _b_rows(o0, o1, o2, o3, e0, e1, e2, e3):
    """B, the adjoint of B^T: (o0, o1, o2, o3) = (e0, e1 - e2 + e3, e1 + e2 - e0, -e3)."""
    for ch in range(o0.shape[0]):
        o0[ch] = e0[ch]
    for ch in range(o0.shape[0]):
        o1[ch] = e1[ch] - e2[ch] + e3[ch]
    for ch in range(o0.shape[0]):
        o2[ch] = e1[ch] + e2[ch] - e0[ch]
    for ch in range(o0.shape[0]):
        o3[ch] = -e3[ch]


@njit(cache=True, nogil=True)
def _a_rows(o0, o1, o2, o3, z0, z1):
    """A, the adjoint of A^T: (o0, o1, o2, o3) = (z0, z0 + z1, z0 - z1, -z1)."""
    for ch in range(o0.shape[0]):
        o0[ch] = z0[ch]
    for ch in range(o0.shape[0]):
        o1[ch] = z0[ch] + z1[ch]
    for ch in range(o0.shape[0]):
        o2[ch] = z0[ch] - z1[ch]
    for ch in range(o0.shape[0]):
        o3[ch] = -z1[ch]


@njit(cache=True, nogil=True)
def _input_tile(x, img, ih, iw, v, t):
    """V[:, t] = B^T d B for the 4x4 tile of x at rows ih.., columns iw.. when it lies wholly
    inside x (every tile but the border ones): per channel, 16 loads, the two passes of B^T
    on scalars and 16 stores, a loop the compiler vectorizes over channels."""
    x0, x1, x2, x3 = x[img, ih], x[img, ih + 1], x[img, ih + 2], x[img, ih + 3]  # (W, C) rows
    for ch in range(x.shape[3]):
        d00, d01, d02, d03 = x0[iw, ch], x0[iw + 1, ch], x0[iw + 2, ch], x0[iw + 3, ch]
        d10, d11, d12, d13 = x1[iw, ch], x1[iw + 1, ch], x1[iw + 2, ch], x1[iw + 3, ch]
        d20, d21, d22, d23 = x2[iw, ch], x2[iw + 1, ch], x2[iw + 2, ch], x2[iw + 3, ch]
        d30, d31, d32, d33 = x3[iw, ch], x3[iw + 1, ch], x3[iw + 2, ch], x3[iw + 3, ch]
        s00 = d00 - d20; s10 = d10 + d20; s20 = d20 - d10; s30 = d10 - d30
        s01 = d01 - d21; s11 = d11 + d21; s21 = d21 - d11; s31 = d11 - d31
        s02 = d02 - d22; s12 = d12 + d22; s22 = d22 - d12; s32 = d12 - d32
        s03 = d03 - d23; s13 = d13 + d23; s23 = d23 - d13; s33 = d13 - d33
        v[0, t, ch] = s00 - s02; v[1, t, ch] = s01 + s02
        v[2, t, ch] = s02 - s01; v[3, t, ch] = s01 - s03
        v[4, t, ch] = s10 - s12; v[5, t, ch] = s11 + s12
        v[6, t, ch] = s12 - s11; v[7, t, ch] = s11 - s13
        v[8, t, ch] = s20 - s22; v[9, t, ch] = s21 + s22
        v[10, t, ch] = s22 - s21; v[11, t, ch] = s21 - s23
        v[12, t, ch] = s30 - s32; v[13, t, ch] = s31 + s32
        v[14, t, ch] = s32 - s31; v[15, t, ch] = s31 - s33


@njit(parallel=True, cache=True, nogil=True)
def _winograd_input(x, pad_top, pad_left, tiles_h, tiles_w, v):
    n, h, w, c = x.shape
    for r in prange(n * tiles_h):           # one row of tiles (n, ti) per task
        img = r // tiles_h
        ti = r % tiles_h
        d = np.empty((16, c), dtype=x.dtype)    # the 4x4 input tile: row 4*a + b
        s = np.empty((16, c), dtype=x.dtype)    # B^T d
        ih0 = 2 * ti - pad_top
        for tj in range(tiles_w):
            t = r * tiles_w + tj
            iw0 = 2 * tj - pad_left
            if 0 <= ih0 and ih0 + 4 <= h and 0 <= iw0 and iw0 + 4 <= w:
                _input_tile(x, img, ih0, iw0, v, t)
                continue
            for a in range(4):              # a border tile: zeros outside x
                ih = 2 * ti - pad_top + a
                for b in range(4):
                    iw = 2 * tj - pad_left + b
                    row = d[4 * a + b]
                    if 0 <= ih < h and 0 <= iw < w:
                        row[:] = x[img, ih, iw]
                    else:
                        row[:] = 0.0
            for b in range(4):              # B^T d: down each column b
                _bt_rows(s[b], s[4 + b], s[8 + b], s[12 + b], d[b], d[4 + b], d[8 + b], d[12 + b])
            for a in range(4):              # (B^T d) B: along each row a, into V
                k = 4 * a
                _bt_rows(v[k, t], v[k + 1, t], v[k + 2, t], v[k + 3, t],
                         s[k], s[k + 1], s[k + 2], s[k + 3])
    return v


@njit(cache=True, nogil=True)
def bias_activation_row(y, logits, keep_logits, z, bias, code):
    """y = act(z + bias) over one row of channels (and logits = z + bias when kept)."""
    for ch in range(y.shape[0]):
        v = z[ch] + bias[ch]
        if keep_logits:
            logits[ch] = v
        y[ch] = activate(v, code)


@njit(cache=True, nogil=True)
def _output_tile(m, t, bias, code, y, logits, keep_logits, img, i, j):
    """Y[img, i:i+2, j:j+2] = act(A^T M[:, t] A + b) for a tile whose 2x2 outputs all lie
    inside Y: per channel, 16 loads, A^T twice on scalars, 4 stores (vectorized over
    channels)."""
    for ch in range(y.shape[3]):
        m00 = m[0, t, ch]; m01 = m[1, t, ch]; m02 = m[2, t, ch]; m03 = m[3, t, ch]
        m10 = m[4, t, ch]; m11 = m[5, t, ch]; m12 = m[6, t, ch]; m13 = m[7, t, ch]
        m20 = m[8, t, ch]; m21 = m[9, t, ch]; m22 = m[10, t, ch]; m23 = m[11, t, ch]
        m30 = m[12, t, ch]; m31 = m[13, t, ch]; m32 = m[14, t, ch]; m33 = m[15, t, ch]
        p00 = m00 + m10 + m20; p10 = m10 - m20 - m30
        p01 = m01 + m11 + m21; p11 = m11 - m21 - m31
        p02 = m02 + m12 + m22; p12 = m12 - m22 - m32
        p03 = m03 + m13 + m23; p13 = m13 - m23 - m33
        b = bias[ch]
        z00 = p00 + p01 + p02 + b
        z01 = p01 - p02 - p03 + b
        z10 = p10 + p11 + p12 + b
        z11 = p11 - p12 - p13 + b
        if keep_logits:
            logits[img, i, j, ch] = z00
            logits[img, i, j + 1, ch] = z01
            logits[img, i + 1, j, ch] = z10
            logits[img, i + 1, j + 1, ch] = z11
        y[img, i, j, ch] = activate(z00, code)
        y[img, i, j + 1, ch] = activate(z01, code)
        y[img, i + 1, j, ch] = activate(z10, code)
        y[img, i + 1, j + 1, ch] = activate(z11, code)


@njit(parallel=True, cache=True, nogil=True)
def _winograd_output(m, bias, code, tiles_h, tiles_w, y, logits, keep_logits):
    n, h_out, w_out, c = y.shape
    for r in prange(n * tiles_h):
        img = r // tiles_h
        ti = r % tiles_h
        p = np.empty((8, c), dtype=y.dtype)     # A^T M: row 4*u + b
        z = np.empty((4, c), dtype=y.dtype)     # A^T M A: row 2*u + v
        for tj in range(tiles_w):
            t = r * tiles_w + tj
            if 2 * ti + 2 <= h_out and 2 * tj + 2 <= w_out:
                _output_tile(m, t, bias, code, y, logits, keep_logits, img, 2 * ti, 2 * tj)
                continue
            for b in range(4):              # a border tile: part of it outside y
                _at_rows(p[b], p[4 + b], m[b, t], m[4 + b, t], m[8 + b, t], m[12 + b, t])
            for u in range(2):              # (A^T M) A: along each row u
                _at_rows(z[2 * u], z[2 * u + 1], p[4 * u], p[4 * u + 1], p[4 * u + 2], p[4 * u + 3])
            for u in range(2):
                i = 2 * ti + u
                for vv in range(2):
                    j = 2 * tj + vv
                    if i < h_out and j < w_out:
                        bias_activation_row(y[img, i, j], logits[img, i, j], keep_logits,
                                             z[2 * u + vv], bias, code)
    return y


@njit(cache=True, nogil=True)
def _output_adjoint_tile(dz, img, i, j, dm, t):
    """dM[:, t] = A dZ_tile A^T for a tile whose 2x2 outputs all lie inside dZ: per channel,
    4 loads, A twice on scalars and 16 stores (vectorized over channels)."""
    r0, r1 = dz[img, i], dz[img, i + 1]                 # (W_out, C) rows
    for ch in range(dz.shape[3]):
        z00, z01 = r0[j, ch], r0[j + 1, ch]
        z10, z11 = r1[j, ch], r1[j + 1, ch]
        q00 = z00; q10 = z00 + z10; q20 = z00 - z10; q30 = -z10
        q01 = z01; q11 = z01 + z11; q21 = z01 - z11; q31 = -z11
        dm[0, t, ch] = q00; dm[1, t, ch] = q00 + q01
        dm[2, t, ch] = q00 - q01; dm[3, t, ch] = -q01
        dm[4, t, ch] = q10; dm[5, t, ch] = q10 + q11
        dm[6, t, ch] = q10 - q11; dm[7, t, ch] = -q11
        dm[8, t, ch] = q20; dm[9, t, ch] = q20 + q21
        dm[10, t, ch] = q20 - q21; dm[11, t, ch] = -q21
        dm[12, t, ch] = q30; dm[13, t, ch] = q30 + q31
        dm[14, t, ch] = q30 - q31; dm[15, t, ch] = -q31


@njit(parallel=True, cache=True, nogil=True)
def _winograd_output_adjoint(dz, tiles_h, tiles_w, dm):
    n, h_out, w_out, c = dz.shape
    for r in prange(n * tiles_h):
        img = r // tiles_h
        ti = r % tiles_h
        e = np.empty((4, c), dtype=dz.dtype)    # the 2x2 tile of dZ: row 2*u + v
        q = np.empty((8, c), dtype=dz.dtype)    # A dZ: row 2*a + v
        for tj in range(tiles_w):
            t = r * tiles_w + tj
            if 2 * ti + 2 <= h_out and 2 * tj + 2 <= w_out:
                _output_adjoint_tile(dz, img, 2 * ti, 2 * tj, dm, t)
                continue
            for u in range(2):              # a border tile: zeros outside dZ
                i = 2 * ti + u
                for vv in range(2):
                    j = 2 * tj + vv
                    if i < h_out and j < w_out:
                        e[2 * u + vv, :] = dz[img, i, j]
                    else:
                        e[2 * u + vv, :] = 0.0
            for vv in range(2):             # A dZ: down each column v
                _a_rows(q[vv], q[2 + vv], q[4 + vv], q[6 + vv], e[vv], e[2 + vv])
            for a in range(4):              # (A dZ) A^T: along each row a, into dM
                k = 4 * a
                _a_rows(dm[k, t], dm[k + 1, t], dm[k + 2, t], dm[k + 3, t], q[2 * a], q[2 * a + 1])
    return dm


@njit(cache=True, nogil=True)
def _input_adjoint_tile(dv, t, dx, img, ih, iw):
    """dX[img, ih:ih+4, iw:iw+4] += B dV_tile B^T for a tile wholly inside dX: per channel,
    16 loads, B twice on scalars and 16 additions into dX (vectorized over channels)."""
    x0, x1, x2, x3 = dx[img, ih], dx[img, ih + 1], dx[img, ih + 2], dx[img, ih + 3]
    for ch in range(dx.shape[3]):
        dv00, dv01, dv02, dv03 = dv[0, t, ch], dv[1, t, ch], dv[2, t, ch], dv[3, t, ch]
        dv10, dv11, dv12, dv13 = dv[4, t, ch], dv[5, t, ch], dv[6, t, ch], dv[7, t, ch]
        dv20, dv21, dv22, dv23 = dv[8, t, ch], dv[9, t, ch], dv[10, t, ch], dv[11, t, ch]
        dv30, dv31, dv32, dv33 = dv[12, t, ch], dv[13, t, ch], dv[14, t, ch], dv[15, t, ch]
        s00 = dv00; s10 = dv10 - dv20 + dv30; s20 = dv10 + dv20 - dv00; s30 = -dv30
        s01 = dv01; s11 = dv11 - dv21 + dv31; s21 = dv11 + dv21 - dv01; s31 = -dv31
        s02 = dv02; s12 = dv12 - dv22 + dv32; s22 = dv12 + dv22 - dv02; s32 = -dv32
        s03 = dv03; s13 = dv13 - dv23 + dv33; s23 = dv13 + dv23 - dv03; s33 = -dv33
        x0[iw, ch] += s00
        x0[iw + 1, ch] += s01 - s02 + s03
        x0[iw + 2, ch] += s01 + s02 - s00
        x0[iw + 3, ch] -= s03
        x1[iw, ch] += s10
        x1[iw + 1, ch] += s11 - s12 + s13
        x1[iw + 2, ch] += s11 + s12 - s10
        x1[iw + 3, ch] -= s13
        x2[iw, ch] += s20
        x2[iw + 1, ch] += s21 - s22 + s23
        x2[iw + 2, ch] += s21 + s22 - s20
        x2[iw + 3, ch] -= s23
        x3[iw, ch] += s30
        x3[iw + 1, ch] += s31 - s32 + s33
        x3[iw + 2, ch] += s31 + s32 - s30
        x3[iw + 3, ch] -= s33


@njit(parallel=True, cache=True, nogil=True)
def _winograd_input_adjoint(dv, pad_top, pad_left, tiles_h, tiles_w, dx):
    # Tiles of rows ti and ti + 1 overlap by two input rows, so even rows of tiles run
    # first and odd rows second: within a pass no two tasks touch the same element.
    n, h, w, c = dx.shape
    for parity in range(2):
        rows_in_pass = (tiles_h - parity + 1) // 2
        for r in prange(n * rows_in_pass):
            img = r // rows_in_pass
            ti = 2 * (r % rows_in_pass) + parity
            s = np.empty((16, c), dtype=dx.dtype)     # B dV
            e = np.empty((16, c), dtype=dx.dtype)     # B dV B^T: row 4*a + b
            ih0 = 2 * ti - pad_top
            for tj in range(tiles_w):
                t = (img * tiles_h + ti) * tiles_w + tj
                iw0 = 2 * tj - pad_left
                if 0 <= ih0 and ih0 + 4 <= h and 0 <= iw0 and iw0 + 4 <= w:
                    _input_adjoint_tile(dv, t, dx, img, ih0, iw0)
                    continue
                for b in range(4):          # a border tile; B dV: down each column b
                    _b_rows(s[b], s[4 + b], s[8 + b], s[12 + b],
                            dv[b, t], dv[4 + b, t], dv[8 + b, t], dv[12 + b, t])
                for a in range(4):          # (B dV) B^T: along each row a
                    k = 4 * a
                    _b_rows(e[k], e[k + 1], e[k + 2], e[k + 3], s[k], s[k + 1], s[k + 2], s[k + 3])
                for a in range(4):
                    ih = 2 * ti - pad_top + a
                    if ih < 0 or ih >= h:
                        continue
                    for b in range(4):
                        iw = 2 * tj - pad_left + b
                        if 0 <= iw < w:
                            row = dx[img, ih, iw]
                            add = e[4 * a + b]
                            for ch in range(c):
                                row[ch] += add[ch]
    return dx


def winograd_kernel_adjoint(du, kernel_shape, algorithm=None):
    """dW = G^T dU G: the kernel gradient from dU (16 or 36, C_in, C_out), shape
    (3, 3, C_in, C_out)."""
    g = (algorithm or F2).g
    a = g.shape[0]
    g_t = np.ascontiguousarray(g.T.astype(du.dtype))
    d = du.reshape(a, a, -1)
    dw = np.matmul(g_t, d)                                         # dU G along b: (a, 3, .)
    dw = np.matmul(g_t, dw.reshape(a, -1)).reshape(3, 3, -1)      # G^T (dU G) along a
    return dw.reshape(kernel_shape)


class Algorithm(NamedTuple):
    """One of Winograd's F(m x m, 3x3): its kernel transform and its four tile kernels, each
    parallel over rows of tiles, with the same arguments for every m."""
    name: str
    m: int                      # output tile m x m, from an (m + 2) x (m + 2) input tile
    g: np.ndarray               # G, (m + 2, 3), in float64
    input: object               # V = B^T d B:  (x, pad_top, pad_left, tiles_h, tiles_w, v)
    output: object              # y = act(A^T M A + b):
                                #   (m, bias, code, tiles_h, tiles_w, y, logits, keep_logits)
    output_adjoint: object      # dM = A dZ A^T:  (dz, tiles_h, tiles_w, dm)
    input_adjoint: object       # dX += B dV B^T: (dv, pad_top, pad_left, tiles_h, tiles_w, dx)
    output_pooled: object = None  # y = act(maxpool(A^T M A) + b) in the same pass:
                                  #   (m, bias, code, tiles_h, tiles_w, h_out, w_out,
                                  #    pool_size, y), bias as maxpool_bias_activation's
    fused: object = None        # the three passes an image per task, the products by the
                                # BLAS (minicnn.kernels.blas; runs_fused says where):
                                #   (x, u, bias, code, pads, tiles_h, tiles_w, h_out, w_out,
                                #    pool_size or None, y, logits, keep_logits, v_all)

    def pools(self, pool_size, strides, pads) -> bool:
        """Whether output_pooled computes this max-pooling of the convolution's output:
        windows that tile it from its top-left corner (strides = pool_size, no padding
        before), each window's rows inside one row of m x m tiles (K_h divides m)."""
        return (self.output_pooled is not None and tuple(strides) == tuple(pool_size)
                and pads[0] == 0 and pads[2] == 0 and self.m % pool_size[0] == 0)

    @property
    def positions(self):
        """Values per transformed tile, (m + 2)^2: the number of matrix products."""
        return (self.m + 2) ** 2


F2 = Algorithm("F(2x2, 3x3)", 2, G, _winograd_input, _winograd_output,
               _winograd_output_adjoint, _winograd_input_adjoint)


class WinogradCache(NamedTuple):
    v: np.ndarray               # (16 or 36, T, C_in), the transformed input tiles
    kernel: np.ndarray          # (3, 3, C_in, C_out)
    kernel_u: np.ndarray        # (16 or 36, C_in, C_out)
    y: np.ndarray               # (N, H_out, W_out, C_out), the activated output
    x_shape: tuple
    pads: tuple
    activation: int
    algorithm: Algorithm        # F2 or F4: V's tile size and the transforms to undo


def tile_array(t, c, dtype, buffer=None, positions=16):
    """An array of shape (16, T', C) for V, M or dM (36 for F(4x4, 3x3): positions),
    T' = T or T + 1, whichever is odd; only the first T rows of each matrix are used. With
    T*C values between the 16 matrices (a multiple of 4 KB for many layers) the 16 values a
    transform writes or reads per channel would all fall in the same cache sets: the
    transforms ran up to 4x slower. An odd number of tiles apart, they spread over the sets.
    buffer: flat memory of at least positions*T'*C values to take it from."""
    rows = t | 1
    if buffer is None:
        return np.empty((positions, rows, c), dtype=dtype)
    return buffer[:positions * rows * c].reshape(positions, rows, c)


def winograd_forward(x, kernel, bias, pads, activation=0, algorithm=F2,
                     block_bytes=BLOCK_BYTES):
    """Forward for training: returns (y, logits, cache), logits as conv2d_forward's (Z after
    a sigmoid, else None). The cache keeps the whole batch's V; M is one block's
    (images_per_block), free again once y is written."""
    c_in, c_out = kernel.shape[2:]
    h_out, w_out, tiles_h, tiles_w, t = _output_tiles(x.shape, pads, algorithm.m)
    tiles_per_image = tiles_h * tiles_w
    v = tile_array(t, c_in, x.dtype, positions=algorithm.positions)
    u = winograd_kernel(kernel, algorithm)
    if runs_fused(x.shape[0], (c_in, c_out), x.dtype, algorithm):
        y, logits = _fused_passes(x, u, bias, pads, activation, activation == 2, algorithm,
                                  v_all=v)
    else:
        block = images_per_block(x.shape[0], (h_out, w_out), (c_in, c_out),
                                 x.dtype.itemsize, algorithm, block_bytes)
        m = tile_array(block * tiles_per_image, c_out, x.dtype, positions=algorithm.positions)
        y, logits = _transform_multiply_transform(np.ascontiguousarray(x), u, bias, pads,
                                                  activation, activation == 2, v, m,
                                                  algorithm, block=block, keep_v=True)
    cache = WinogradCache(v, kernel, u, y, x.shape, tuple(pads), activation, algorithm)
    return y, logits, cache


def winograd_tiles(x, pads, algorithm=F2):
    """V = B^T d B of every input tile of x (N, H, W, C_in), in tile_array's layout."""
    _, _, tiles_h, tiles_w, t = _output_tiles(x.shape, pads, algorithm.m)
    v = tile_array(t, x.shape[3], x.dtype, positions=algorithm.positions)
    return algorithm.input(np.ascontiguousarray(x), pads[0], pads[2], tiles_h, tiles_w, v)


def _output_tiles(x_shape, pads, m):
    """(H_out, W_out, tiles_h, tiles_w, T) of a 3x3 stride-1 convolution of x_shape, in
    m x m output tiles."""
    n, h, w, _ = x_shape
    h_out = window_output_size(h, 3, 1, pads[0], pads[1])
    w_out = window_output_size(w, 3, 1, pads[2], pads[3])
    tiles_h, tiles_w = tiles(h_out, w_out, m)
    return h_out, w_out, tiles_h, tiles_w, n * tiles_h * tiles_w


def runs_fused(n, kernel_channels, dtype, algorithm):
    """Whether n images' three passes run fused, an image per task (algorithm.fused): where
    the algorithm has that kernel, the BLAS can be called from it (blas.AVAILABLE), every
    thread gets an image, and the products do fewer than FUSED_BELOW multiply-adds per
    value of V and M."""
    c_in, c_out = kernel_channels
    return (algorithm.fused is not None and blas.AVAILABLE and n >= numba.get_num_threads()
            and np.dtype(dtype) in (np.float32, np.float64)
            and c_in * c_out < FUSED_BELOW * (c_in + c_out))


def _output_arrays(x, c_out, bias, pads, activation, keep_logits, algorithm, pool):
    """(y, logits, b) of a convolution's three passes: y the output (pooled when pool is
    given), logits Z beside it when keep_logits (else y itself), b the bias the output
    transform adds (zeros for none; pooling_bias's when pooled)."""
    n = x.shape[0]
    h_out, w_out = _output_tiles(x.shape, pads, algorithm.m)[:2]
    if pool is not None:
        y = np.empty((n,) + tuple(pool.out_hw) + (c_out,), dtype=x.dtype)
        b = pooling_bias(bias, activation, c_out, x.dtype)
    else:
        y = np.empty((n, h_out, w_out, c_out), dtype=x.dtype)
        b = bias if bias is not None else np.zeros(c_out, dtype=x.dtype)
    return y, (np.empty_like(y) if keep_logits else y), b


def _fused_passes(x, u, bias, pads, activation, keep_logits, algorithm, pool=None,
                  v_all=None):
    """The three passes by algorithm.fused (runs_fused must hold), V into v_all when given
    (training: the whole batch's tiles), else into each task's own array. Returns
    (y, logits)."""
    h_out, w_out, tiles_h, tiles_w, _ = _output_tiles(x.shape, pads, algorithm.m)
    y, logits, b = _output_arrays(x, u.shape[2], bias, pads, activation, keep_logits,
                                  algorithm, pool)
    if v_all is None:
        v_all = np.empty((algorithm.positions, 0, u.shape[1]), dtype=x.dtype)
    with blas.one_blas_thread():
        algorithm.fused(x, u, b, activation, pads, tiles_h, tiles_w, h_out, w_out,
                        None if pool is None else pool.size, y, logits, keep_logits, v_all)
    return y, (logits if keep_logits else None)


def images_per_block(n, out_hw, kernel_channels, itemsize, algorithm,
                     block_bytes=BLOCK_BYTES):
    """Images in one block of Winograd's passes for n images of out_hw (H_out, W_out) output
    and kernel_channels (C_in, C_out): as many as keep V and M within block_bytes. All n (no
    blocks) when block_bytes is None, when one image's V and M exceed it (a block would not
    stay in the cache either), or when the products do BLOCKS_BELOW or more multiply-adds
    per value of V and M, C_in C_out / (C_in + C_out) (there the products' time dominates,
    and on a block's fewer tiles they run slower)."""
    c_in, c_out = kernel_channels
    per_image = winograd_workspace_per_image(*out_hw, c_in, c_out, itemsize, algorithm)
    if (block_bytes is None or per_image > block_bytes
            or c_in * c_out >= BLOCKS_BELOW * (c_in + c_out)):
        return max(n, 1)
    return max(1, min(n, block_bytes // max(per_image, 1)))


def _transform_multiply_transform(x, u, bias, pads, activation, keep_logits, v, m, algorithm,
                                  pool=None, block=None, keep_v=False):
    """V = B^T d B into v, M = V @ U into m, then y = act(A^T M A + b), `block` images at a
    time (None: all at once), each block's three passes one after the other, so that the
    output transform reads M from the cache. Returns (y, logits).

    v: the whole batch's tiles when keep_v (training: each block writes its own rows, and
    v holds every tile's V afterwards), else one block's, reused; m: one block's.
    pool: a Pooling the output transform computes as well (algorithm.pools), y its output."""
    n = x.shape[0]
    h_out, w_out, tiles_h, tiles_w, _ = _output_tiles(x.shape, pads, algorithm.m)
    per_image = tiles_h * tiles_w
    y, logits, b = _output_arrays(x, u.shape[2], bias, pads, activation, keep_logits,
                                  algorithm, pool)
    block = block or max(n, 1)
    for start in range(0, n, block):
        images = slice(start, min(start + block, n))
        t = (images.stop - start) * per_image
        v_block = v[:, start * per_image:] if keep_v else v
        algorithm.input(x[images], pads[0], pads[2], tiles_h, tiles_w, v_block)
        np.matmul(v_block[:, :t], u, out=m[:, :t])      # the 16 (or 36) products, one call
        if pool is not None:
            algorithm.output_pooled(m, b, activation, tiles_h, tiles_w, h_out, w_out,
                                    pool.size, y[images])
        else:
            algorithm.output(m, b, activation, tiles_h, tiles_w, y[images], logits[images],
                             keep_logits)
    return y, (logits if keep_logits else None)


def winograd_backward(dy, cache: WinogradCache, need_dx=True, need_dw=True, need_db=True,
                      from_logits=False, db=None):
    """Returns (dX, dW, db) as conv2d_backward (db given: as there). dV is written over the
    cache's V (dU has been taken from it by then), so the cache is spent."""
    c_out = cache.kernel.shape[3]
    algorithm = cache.algorithm
    dz, db = layer_dz_and_db(dy, cache.y, cache.activation, from_logits, db)
    v = cache.v
    tiles_h, tiles_w = tiles(*cache.y.shape[1:3], algorithm.m)
    t = cache.y.shape[0] * tiles_h * tiles_w
    dm = tile_array(t, c_out, dy.dtype, positions=algorithm.positions)
    algorithm.output_adjoint(dz.reshape(cache.y.shape), tiles_h, tiles_w, dm)
    dw = None
    if need_dw:
        du = np.empty_like(cache.kernel_u)
        for xi in range(algorithm.positions):   # (numpy's stacked matmul is slow on V^T)
            np.matmul(v[xi, :t].T, dm[xi, :t], out=du[xi])
        dw = winograd_kernel_adjoint(du, cache.kernel.shape, algorithm)
    dx = None
    if need_dx:
        np.matmul(dm[:, :t], cache.kernel_u.transpose(0, 2, 1), out=v[:, :t])
        dv = v                                  # dV over V's memory (T' rows, the first T used)
        dx = np.zeros(cache.x_shape, dtype=dy.dtype)
        algorithm.input_adjoint(dv, cache.pads[0], cache.pads[2], tiles_h, tiles_w, dx)
    return dx, dw, (db if need_db else None)


def winograd_workspace_per_image(h_out, w_out, c_in, c_out, itemsize, algorithm=F2):
    """Bytes of V and M for one image."""
    tiles_h, tiles_w = tiles(h_out, w_out, algorithm.m)
    return algorithm.positions * tiles_h * tiles_w * (c_in + c_out) * itemsize


class Pooling(NamedTuple):
    """A max-pooling for a Winograd output transform to compute in the same pass
    (Algorithm.pools): windows of `size` (K_h, K_w) at stride `size`; `out_hw` its output's
    (H, W). Its bias and activation are the convolution's, after the maximum."""
    size: tuple
    out_hw: tuple


def conv3x3_winograd(x, kernel, bias, pads, activation=0, keep_logits=False,
                     workspace=None, kernel_u=None, algorithm=F2, pool=None,
                     block_bytes=BLOCK_BYTES):
    """y = act(conv3x3(x) + b) at stride 1 by F(2x2, 3x3) (or algorithm's F(m x m, 3x3)).
    Returns (y, logits).

    x: (N, H, W, C_in); kernel: (3, 3, C_in, C_out); bias: (C_out,) or None; pads
    (P_top, P_bottom, P_left, P_right); activation: code 0 linear, 1 relu, 2 sigmoid.
    logits is Z = conv + b when keep_logits is set (and None otherwise).
    workspace: optional flat array of at least P * (T + 1) * (C_in + C_out) elements of
    x's dtype to hold V and M (tile_array), T the number of tiles of one block of images
    (images_per_block of block_bytes), P algorithm.positions.
    kernel_u: U if already transformed.
    pool: a Pooling of the output, computed in the output transform (algorithm.pools must
    hold; activation linear or relu): y = act(maxpool(conv3x3(x)) + b), the same numbers as
    minicnn.kernels.maxpool_bias_activation of the convolution without bias and activation,
    without writing the convolution's output. logits None.
    """
    c_in, c_out = kernel.shape[2:]
    p = algorithm.positions
    h_out, w_out, tiles_h, tiles_w, _ = _output_tiles(x.shape, pads, algorithm.m)
    u = winograd_kernel(kernel, algorithm) if kernel_u is None else kernel_u
    if runs_fused(x.shape[0], (c_in, c_out), x.dtype, algorithm):
        return _fused_passes(x, u, bias, pads, activation, keep_logits, algorithm, pool)
    block = images_per_block(x.shape[0], (h_out, w_out), (c_in, c_out), x.dtype.itemsize,
                             algorithm, block_bytes)
    t = block * tiles_h * tiles_w
    if workspace is None or workspace.size < p * (t | 1) * (c_in + c_out):
        workspace = np.empty(p * (t | 1) * (c_in + c_out), dtype=x.dtype)
    v = tile_array(t, c_in, x.dtype, workspace, p)
    m = tile_array(t, c_out, x.dtype, workspace[v.size:], p)
    return _transform_multiply_transform(x, u, bias, pads, activation, keep_logits, v, m,
                                         algorithm, pool, block)


def conv3x3_winograd_reference(x, kernel, bias, pads, activation=0, keep_logits=False):
    """NumPy twin of conv3x3_winograd, with the transforms as matrix products."""
    return winograd_reference(x, kernel, bias, pads, activation, keep_logits, B_T, G, A_T)


def winograd_reference(x, kernel, bias, pads, activation, keep_logits, b_t, g, a_t):
    """Winograd's F(m x m, 3x3) in NumPy for the transforms b_t (m+2, m+2), g (m+2, 3) and
    a_t (m, m+2): the twin of conv3x3_winograd (m = 2) and conv3x3_winograd4 (m = 4)."""
    from numpy.lib.stride_tricks import sliding_window_view

    n, h, w, c_in = x.shape
    size, step = b_t.shape[0], a_t.shape[0]                       # input and output tile
    h_out = window_output_size(h, 3, 1, pads[0], pads[1])
    w_out = window_output_size(w, 3, 1, pads[2], pads[3])
    tiles_h, tiles_w = -(-h_out // step), -(-w_out // step)
    padded = np.zeros((n, step * tiles_h + 2, step * tiles_w + 2, c_in), dtype=x.dtype)
    rows, cols = min(h, padded.shape[1] - pads[0]), min(w, padded.shape[2] - pads[2])
    padded[:, pads[0]:pads[0] + rows, pads[2]:pads[2] + cols] = x[:, :rows, :cols]
    d = sliding_window_view(padded, (size, size), axis=(1, 2))[:, ::step, ::step]
    bt, gt, at = (m.astype(x.dtype) for m in (b_t, g, a_t))
    v = np.einsum("ai,nstcij,bj->abnstc", bt, d, bt)
    u = np.einsum("ap,pqco,bq->abco", gt, kernel, gt)
    mm = np.einsum("abnstc,abco->abnsto", v, u)
    z = np.einsum("ua,abnsto,vb->nsutvo", at, mm, at)
    z = z.reshape(n, step * tiles_h, step * tiles_w, -1)[:, :h_out, :w_out]
    if bias is not None:
        z = z + bias
    z = np.ascontiguousarray(z)
    if activation == 1:
        y = np.maximum(z, 0)
    elif activation == 2:
        y = 1 / (1 + np.exp(-z))
    else:
        y = z.copy()
    return y, (z if keep_logits else None)
