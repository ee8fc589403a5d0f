"""What only Winograd's F(4x4, 3x3) needs tested (the rest, with F(2x2, 3x3): test_winograd.py):
its transforms, its float32 rounding, its border tiles."""
import numpy as np
from hypothesis import given, strategies as st

from minicnn.kernels import winograd, winograd4
from minicnn.kernels.winograd4 import F4

import reference
from strategies import conv3x3_case, conv3x3_geometries


@given(conv3x3_geometries(), st.integers(0, 2 ** 32 - 1))
def test_winograd4_in_float32_stays_within_a_few_millionths_of_the_outputs_scale(geometry, seed):
    # the rounding the module's docstring states: a few units in the 6th significant digit
    x, w, b, pads = conv3x3_case(geometry, seed)
    z_ref = reference.conv2d_forward(x, w, b, (1, 1), geometry[1])
    y, _ = winograd.conv3x3_winograd(*(a.astype(np.float32) for a in (x, w, b)), pads,
                                     algorithm=F4)
    assert y.dtype == np.float32
    scale = max(1.0, float(np.abs(z_ref).max()))
    assert float(np.abs(y - z_ref).max()) < 1e-5 * scale


def test_the_transforms_compute_a_4x4_block_of_a_1d_convolution_exactly():
    # A^T [(G g) * (B^T d)] = the four valid outputs of the 3-tap correlation of d with g
    rng = np.random.default_rng(1)
    for _ in range(5):
        d, g = rng.standard_normal(6), rng.standard_normal(3)
        expected = [d[i:i + 3] @ g for i in range(4)]
        got = winograd4.A_T @ ((winograd4.G @ g) * (winograd4.B_T @ d))
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


@given(st.integers(1, 3), st.integers(6, 12), st.sampled_from(["valid", "same"]),
       st.integers(0, 2 ** 32 - 1))
def test_border_tiles_read_zeros_outside_the_input(n, size, padding, seed):
    # the same image inside a larger one of zeros gives the same output ('valid' crops it)
    x, w, b, pads = conv3x3_case(((n, size, size, 2), padding, 3), seed)
    big = np.zeros((n, size + 8, size + 8, 2))
    big[:, 4:4 + size, 4:4 + size] = x
    y, _ = winograd.conv3x3_winograd(x, w, b, pads, algorithm=F4)
    y_big, _ = winograd.conv3x3_winograd(big, w, b, (0, 0, 0, 0), algorithm=F4)
    top, left = 4 - pads[0], 4 - pads[2]
    np.testing.assert_allclose(y, y_big[:, top:top + y.shape[1], left:left + y.shape[2]],
                               rtol=1e-10, atol=1e-10)


def test_the_adjoint_transforms_compute_a_and_b_exactly():
    # the backward's A and B are the transposes of the forward's A^T and B^T
    rng = np.random.default_rng(2)
    z, e = rng.standard_normal(4), rng.standard_normal(6)
    np.testing.assert_allclose(winograd4._a.py_func(*z), winograd4.A_T.T @ z, rtol=1e-12)
    np.testing.assert_allclose(winograd4._b.py_func(*e), winograd4.B_T.T @ e, rtol=1e-12)
    np.testing.assert_allclose(winograd4._bt.py_func(*e), winograd4.B_T @ e, rtol=1e-12)


@given(conv3x3_geometries(), st.integers(0, 2 ** 32 - 1))
def test_winograd4_gradients_in_float32_stay_within_a_few_millionths_of_their_scale(geometry,
                                                                                   seed):
    x, w, b, pads = conv3x3_case(geometry, seed)
    dz = np.random.default_rng(seed + 1).standard_normal(
        reference.conv2d_forward(x, w, b, (1, 1), geometry[1]).shape)
    dx_ref, dw_ref, _ = reference.conv2d_backward(x, w, dz, (1, 1), geometry[1])
    x32, w32, b32 = (a.astype(np.float32) for a in (x, w, b))
    _, _, cache = winograd.winograd_forward(x32, w32, b32, pads, 0, F4)
    dx, dw, _ = winograd.winograd_backward(dz.astype(np.float32), cache, from_logits=True)
    assert dx.dtype == dw.dtype == np.float32
    for got, expected in ((dx, dx_ref), (dw, dw_ref)):
        scale = max(1.0, float(np.abs(expected).max()))
        assert float(np.abs(got - expected).max()) < 1e-5 * scale
