"""Affine warp with bilinear interpolation: the geometric half of data augmentation.

Each image n has a 3x3 matrix A_n that maps an OUTPUT pixel (i, j) (row, column) to the
INPUT point it samples, as scipy.ndimage.affine_transform does:

    [u]   [a00 a01 a02] [i]
    [v] = [a10 a11 a12] [j]        (u, v): a real-valued row and column in the input
    [1]   [ 0   0   1 ] [1]

and every channel c is sampled there with bilinear interpolation (scipy's order=1):

    i0 = floor(u), f = u - i0, w_u = (1 - f, f)       j0 = floor(v), g = v - j0, w_v = (1 - g, g)
    Y[n, i, j, c] = sum over p, q in {0, 1} of X[n, b(i0 + p), b(j0 + q), c] * w_u[p] * w_v[q]

Points outside the image are handled by the fill mode; for an axis of length L:

    'nearest'   clamp: b(k) = min(max(k, 0), L - 1)                     a a a | a b c d | d d d
    'constant'  a point with u or v outside [0, L - 1] is the constant cval; no blending
                with cval (scipy's 'constant', not 'grid-constant')
    'reflect'   half-sample symmetric, period 2L                          c b a | a b c d | d c b a
    'wrap'      scipy's 'wrap': the point is moved by whole multiples of L - 1 (not L) into
                [0, L - 1]; for L = 4 the columns -3..6 read   d b c | a b c d | b c a
                scipy's historical definition, kept because Keras calls scipy ('grid-wrap'
                would be the periodic extension with period L)

For 'reflect' and 'wrap' the coordinate itself is folded into the image first (see
`_map_coordinate`); the two neighbours of a folded point that fall one step outside are then
folded again (reflect: reflect; constant and wrap: whole-sample mirror, the same rule scipy
uses for its spline support). The arithmetic follows scipy's ni_interpolation.c step by
step: the coordinate summed as (a02 + i*a00) + j*a01, the weights 1 - f and 1 - (1 - f),
the products X * w_u * w_v added in row-major order, all in float64 with one cast to the
output dtype at the end; so the result equals scipy.ndimage.affine_transform(order=1,
prefilter=False) bit for bit in practice (the tests allow float32 precision).
"""
import numpy as np
from numba import njit, prange

# error_model="numpy": the folding divides by L - 1 or 2L - 2, zero only for L = 1, a case
# handled before any division; without it Numba guards every division with a check.

FILL_MODES = ("nearest", "constant", "reflect", "wrap")

# codes shared by the kernel and its twin; MIRROR is internal (edge neighbours only)
_NEAREST, _CONSTANT, _REFLECT, _WRAP, _MIRROR = 0, 1, 2, 3, 4
_MODE_CODES = {"nearest": _NEAREST, "constant": _CONSTANT, "reflect": _REFLECT, "wrap": _WRAP}


@njit(cache=True, nogil=True, error_model="numpy")
def _map_coordinate(x, length, mode):
    """Fold an input coordinate x into an axis of `length` samples (scipy's map_coordinate).

    Returns -1.0 for 'constant' outside [0, L - 1] (the caller then writes cval)."""
    if x < 0.0:
        if mode == _NEAREST:
            return 0.0
        if mode == _CONSTANT:
            return -1.0
        if length <= 1:
            return 0.0
        if mode == _REFLECT:
            sz2 = 2 * length
            if x < -sz2:
                x = float(sz2 * int(-x / sz2)) + x
            if x < -length:
                return x + sz2
            # scipy: keep -x - 1 strictly above -1 for x in (-1e-15, 0)
            return (1e-15 if x > -1e-15 else -x) - 1.0
        if mode == _WRAP:
            sz = length - 1
            return x + float(sz * (int(-x / sz) + 1))
        # _MIRROR
        sz2 = 2 * length - 2
        x = float(sz2 * int(-x / sz2)) + x
        return x + sz2 if x <= 1 - length else -x
    if x > length - 1:
        if mode == _NEAREST:
            return float(length - 1)
        if mode == _CONSTANT:
            return -1.0
        if length <= 1:
            return 0.0
        if mode == _REFLECT:
            sz2 = 2 * length
            x -= float(sz2 * int(x / sz2))
            if x >= length:
                x = (sz2 - x) - 1.0
            return x
        if mode == _WRAP:
            sz = length - 1
            return x - float(sz * int(x / sz))
        # _MIRROR
        sz2 = 2 * length - 2
        x -= float(sz2 * int(x / sz2))
        if x >= length:
            x = sz2 - x
        return x
    return x


@njit(cache=True, nogil=True, error_model="numpy")
def _axis_taps(coord, length, mode):
    """(k0, k1, w0, w1, outside): the two input indices and bilinear weights along one axis.

    scipy folds the coordinate for every mode but 'nearest' (whose neighbours are clamped
    instead), and folds out-of-range neighbours with mirror for 'constant' and 'wrap'."""
    if mode != _NEAREST:
        coord = _map_coordinate(coord, length, mode)
        if coord <= -1.0:                 # only 'constant' gets here
            return 0, 0, 0.0, 0.0, True
    start = np.floor(coord)
    w0 = 1.0 - (coord - start)
    w1 = 1.0 - w0
    k = int(start)
    edge_mode = _MIRROR if (mode == _CONSTANT or mode == _WRAP) else mode
    k0 = int(_map_coordinate(float(k), length, edge_mode))
    k1 = int(_map_coordinate(float(k + 1), length, edge_mode))
    return k0, k1, w0, w1, False


@njit(parallel=True, cache=True, nogil=True, error_model="numpy")
def _affine_warp(x, matrices, mode, cval, y):
    n, h, w, c = x.shape
    for r in prange(n * h):               # one output row (n, i) per task
        img = r // h
        i = r % h
        a = matrices[img]
        # scipy's accumulation order: (a02 + i*a00) + j*a01, the same bits as scipy
        u_row = a[0, 2] + i * a[0, 0]
        v_row = a[1, 2] + i * a[1, 0]
        for j in range(w):
            u = u_row + j * a[0, 1]
            v = v_row + j * a[1, 1]
            if 0.0 <= u < h - 1 and 0.0 <= v < w - 1:
                # inside: no folding for any mode, both neighbours exist (most pixels)
                fu = np.floor(u)
                fv = np.floor(v)
                i0, j0 = int(fu), int(fv)
                i1, j1 = i0 + 1, j0 + 1
                wu0 = 1.0 - (u - fu)
                wv0 = 1.0 - (v - fv)
                wu1 = 1.0 - wu0
                wv1 = 1.0 - wv0
            else:
                i0, i1, wu0, wu1, out_u = _axis_taps(u, h, mode)
                j0, j1, wv0, wv1, out_v = _axis_taps(v, w, mode)
                if out_u or out_v:
                    for ch in range(c):
                        y[img, i, j, ch] = cval
                    continue
            for ch in range(c):
                t = 0.0
                t += float(x[img, i0, j0, ch]) * wu0 * wv0
                t += float(x[img, i0, j1, ch]) * wu0 * wv1
                t += float(x[img, i1, j0, ch]) * wu1 * wv0
                t += float(x[img, i1, j1, ch]) * wu1 * wv1
                y[img, i, j, ch] = t
    return y


def _check_warp_args(x, matrices, fill_mode):
    if not isinstance(x, np.ndarray) or x.ndim != 4 or x.dtype not in (np.float32, np.float64):
        got = (f"{x.dtype} array of shape {x.shape}" if isinstance(x, np.ndarray)
               else type(x).__name__)
        raise ValueError(f"affine_warp: x must be a float32 or float64 array of shape "
                         f"(N, H, W, C). Received: {got}")
    matrices = np.asarray(matrices, dtype=np.float64)
    if matrices.shape != (x.shape[0], 3, 3):
        raise ValueError(f"affine_warp: matrices must have shape (N, 3, 3) = "
                         f"({x.shape[0]}, 3, 3) for x of shape {x.shape}. "
                         f"Received: {matrices.shape}")
    if not np.all(np.isfinite(matrices[:, :2])):
        raise ValueError("affine_warp: matrices must be finite (a NaN or inf coordinate "
                         "has no pixel). Received non-finite entries")
    if fill_mode not in _MODE_CODES:
        raise ValueError(f"affine_warp: fill_mode must be one of {FILL_MODES}. "
                         f"Received: {fill_mode!r}")
    return np.ascontiguousarray(matrices), _MODE_CODES[fill_mode]


def affine_warp(x, matrices, fill_mode="nearest", cval=0.0):
    """Warp every image of a batch by its own affine matrix (bilinear, scipy order=1).

    x: ndarray of shape (N, H, W, C), float32 or float64.
    matrices: ndarray of shape (N, 3, 3), float64; matrices[n] maps output (i, j, 1) to the
        input point (u, v, 1) that output pixel samples (see the module docstring); the
        bottom row is taken to be (0, 0, 1) and not read.
    fill_mode: 'nearest', 'constant', 'reflect' or 'wrap'; cval: the value for 'constant'.
    Returns y: ndarray of shape (N, H, W, C), dtype of x. Channel by channel it equals
    scipy.ndimage.affine_transform(x[n, ..., c], matrices[n, :2, :2], matrices[n, :2, 2],
    order=1, mode=fill_mode, cval=cval, prefilter=False).
    Releases the GIL (nogil) so worker threads can warp batches in parallel.
    """
    matrices, mode = _check_warp_args(x, matrices, fill_mode)
    y = np.empty_like(x, order="C")
    return _affine_warp(np.ascontiguousarray(x), matrices, mode, float(cval), y)


def _map_coordinate_reference(x, length, mode):
    """NumPy twin of _map_coordinate over an array of coordinates."""
    x = np.asarray(x, dtype=np.float64)
    lo, hi = x < 0.0, x > length - 1
    if mode == _NEAREST:
        return np.clip(x, 0.0, length - 1.0)
    if mode == _CONSTANT:
        return np.where(lo | hi, -1.0, x)
    if length <= 1:
        return np.where(lo | hi, 0.0, x)
    # np.trunc(a / b) * b is the C integer division of the kernel, exact below 2**53
    if mode == _REFLECT:
        sz2 = 2 * length
        xl = np.where(x < -sz2, sz2 * np.trunc(-x / sz2) + x, x)
        xl = np.where(xl < -length, xl + sz2, np.where(xl > -1e-15, 1e-15, -xl) - 1.0)
        xh = x - sz2 * np.trunc(x / sz2)
        xh = np.where(xh >= length, (sz2 - xh) - 1.0, xh)
    elif mode == _WRAP:
        sz = length - 1
        xl = x + sz * (np.trunc(-x / sz) + 1)
        xh = x - sz * np.trunc(x / sz)
    else:  # _MIRROR
        sz2 = 2 * length - 2
        xl = sz2 * np.trunc(-x / sz2) + x
        xl = np.where(xl <= 1 - length, xl + sz2, -xl)
        xh = x - sz2 * np.trunc(x / sz2)
        xh = np.where(xh >= length, sz2 - xh, xh)
    return np.where(lo, xl, np.where(hi, xh, x))


def _axis_taps_reference(coord, length, mode):
    outside = np.zeros(np.shape(coord), dtype=bool)
    if mode != _NEAREST:
        coord = _map_coordinate_reference(coord, length, mode)
        outside = coord <= -1.0
        coord = np.where(outside, 0.0, coord)
    start = np.floor(coord)
    w0 = 1.0 - (coord - start)
    w1 = 1.0 - w0
    edge_mode = _MIRROR if mode in (_CONSTANT, _WRAP) else mode
    k0 = _map_coordinate_reference(start, length, edge_mode).astype(np.intp)
    k1 = _map_coordinate_reference(start + 1.0, length, edge_mode).astype(np.intp)
    return k0, k1, w0, w1, outside


def affine_warp_reference(x, matrices, fill_mode="nearest", cval=0.0):
    """NumPy twin of affine_warp: all output pixels of all images at once."""
    matrices, mode = _check_warp_args(x, matrices, fill_mode)
    n, h, w, c = x.shape
    i = np.arange(h, dtype=np.float64)[None, :, None]
    j = np.arange(w, dtype=np.float64)[None, None, :]
    a = matrices[:, :, :, None, None]                     # (N, 3, 3, 1, 1)
    u = (a[:, 0, 2] + i * a[:, 0, 0]) + j * a[:, 0, 1]     # (N, H, W)
    v = (a[:, 1, 2] + i * a[:, 1, 0]) + j * a[:, 1, 1]
    i0, i1, wu0, wu1, out_u = _axis_taps_reference(u, h, mode)
    j0, j1, wv0, wv1, out_v = _axis_taps_reference(v, w, mode)
    img = np.arange(n)[:, None, None]
    xd = x.astype(np.float64)
    t = 0.0 + xd[img, i0, j0] * wu0[..., None] * wv0[..., None]
    t += xd[img, i0, j1] * wu0[..., None] * wv1[..., None]
    t += xd[img, i1, j0] * wu1[..., None] * wv0[..., None]
    t += xd[img, i1, j1] * wu1[..., None] * wv1[..., None]
    t = np.where((out_u | out_v)[..., None], float(cval), t)
    return t.astype(x.dtype)
