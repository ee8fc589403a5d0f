"""Random augmentation's geometry, as Keras's legacy ImageDataGenerator does it: the affine
matrix of one transformation, and the per-thread random state its draws use.

For each image, draw (`get_random_transform`, degrees for angles)

    theta ~ U(-rotation_range, rotation_range)           rotation
    tx    ~ U(-height_shift_range, height_shift_range) * H     (fraction < 1: of the size)
    ty    ~ U(-width_shift_range, width_shift_range) * W        (ints >= 1: pixels)
    shear ~ U(-shear_range, shear_range)                 shear angle
    zx, zy ~ U(1 - zoom_range, 1 + zoom_range), drawn independently
    flip_horizontal, flip_vertical: a coin each (drawn always, used if enabled)

then compose ONE affine matrix (`transform_matrix`, the code of Keras's
apply_affine_transform), with t = theta and s = shear in radians:

        [cos t  -sin t  0]       [1  0  tx]       [1  -sin s  0]       [zx  0  0]
    R = [sin t   cos t  0]   T = [0  1  ty]   S = [0   cos s  0]   Z = [ 0 zy  0]
        [  0       0    1]       [0  0   1]       [0     0    1]       [ 0  0  1]

    M = R . T . S . Z                      (a factor whose parameters are neutral is left out)
    A = P . C(o) . M . C(-o) . P           C(o) = [[1, 0, o_1], [0, 1, o_2], [0, 0, 1]],
                                           o = (H/2 - 0.5, W/2 - 0.5); P swaps the first
                                           two coordinates (Keras's (x, y) -> (row, col))

A maps an OUTPUT pixel (row i, column j, 1) to the INPUT point (u, v, 1) it samples, and the
image is resampled there with bilinear interpolation (minicnn.kernels.affine_warp):

    Y[i, j, c] = sum over p, q in {0, 1} of X[b(floor(u) + p), b(floor(v) + q), c] * w_p(u) * w_q(v)
    w_0(u) = 1 - (u - floor(u)),  w_1(u) = 1 - w_0(u)

where b folds indices that fall outside the image by the fill mode: 'nearest' (clamp to
the edge: aaa|abcd|ddd), 'constant' (a point with u or v outside [0, L - 1] is cval),
'reflect' (half-sample mirror: cba|abcd|dcb) or 'wrap' (scipy's wrap, by multiples of
L - 1). Flips come after the warp (X[:, ::-1] horizontal, X[::-1] vertical) and
`standardize` (x * rescale) after all of it.

Two Keras quirks are reproduced on purpose, because parity with Keras is the contract: P
is applied after the centring, so `tx` (drawn from height_shift_range and scaled by H)
moves the image along the columns and `ty` along the rows, and the centre of rotation,
shear and zoom is row W/2 - 0.5, column H/2 - 0.5. For square images (the lecture's
150 x 150) the centre is the true one and, with equal shift ranges, only the names differ.

The book's Keras 2.0.8 drew the shear angle in radians and warped with nearest-neighbour
interpolation; minicnn follows today's Keras: shear in degrees, bilinear interpolation
(scipy.ndimage.affine_transform with order=1), so its augmented images equal today's Keras
ones to float32 precision for the same seed.
"""
from __future__ import annotations

import threading
from numbers import Real

import numpy as np


def transform_matrix(theta=0, tx=0, ty=0, shear=0, zx=1, zy=1, h=1, w=1):
    """The 3x3 matrix A (output (row, col, 1) -> input point) of the module docstring, or
    None when every parameter is neutral (no warp at all).

    theta, shear: degrees; tx, ty: pixels; zx, zy: zoom factors; h, w: image height, width.
    The products are computed in Keras's order with np.dot, so A has Keras's exact bits.
    """
    matrix = None
    if theta != 0:
        t = np.deg2rad(theta)
        matrix = np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1]])
    if tx != 0 or ty != 0:
        shift = np.array([[1, 0, tx], [0, 1, ty], [0, 0, 1]])
        matrix = shift if matrix is None else np.dot(matrix, shift)
    if shear != 0:
        s = np.deg2rad(shear)
        shear_matrix = np.array([[1, -np.sin(s), 0], [0, np.cos(s), 0], [0, 0, 1]])
        matrix = shear_matrix if matrix is None else np.dot(matrix, shear_matrix)
    if zx != 1 or zy != 1:
        zoom = np.array([[zx, 0, 0], [0, zy, 0], [0, 0, 1]])
        matrix = zoom if matrix is None else np.dot(matrix, zoom)
    if matrix is None:
        return None
    o_x, o_y = float(h) / 2 - 0.5, float(w) / 2 - 0.5
    offset = np.array([[1, 0, o_x], [0, 1, o_y], [0, 0, 1]])
    reset = np.array([[1, 0, -o_x], [0, 1, -o_y], [0, 0, 1]])
    matrix = np.dot(np.dot(offset, matrix), reset).astype(np.float64)
    # Keras builds M in (x, y) order, then swaps to numpy's (row, col): A = P M P.
    return matrix[[1, 0, 2]][:, [1, 0, 2]]


_local = threading.local()


def _random_state(seed):
    """A RandomState in the state RandomState(seed) starts in, one per thread.

    Re-seeding costs ~1.5 us where building a new RandomState costs ~140 us (it first seeds
    itself from the OS), which would be most of the cost of drawing a batch's parameters.
    """
    rng = getattr(_local, "rng", None)
    if rng is None:
        rng = _local.rng = np.random.RandomState()
    rng.seed(seed)
    return rng


def _is_number(value):
    return isinstance(value, Real) and not isinstance(value, bool)
