"""Winograd F(4x4, 3x3) at inference against plain loops, its NumPy twin and im2col."""
import numpy as np
from hypothesis import given, strategies as st

from minicnn import layers
from minicnn.kernels import winograd4
from minicnn.model import Sequential
from minicnn.shapes import window_2d

import reference


@st.composite
def geometries(draw):
    """(x_shape, padding, c_out) for a 3x3 stride-1 kernel that fits its input: sizes that
    leave 0 to 3 output rows and columns past the last whole 4x4 tile, and interior tiles."""
    padding = draw(st.sampled_from(["valid", "same"]))
    low = 3 if padding == "valid" else 1
    shape = (draw(st.integers(1, 3)), draw(st.integers(low, 15)), draw(st.integers(low, 15)),
             draw(st.integers(1, 6)))
    return shape, padding, draw(st.integers(1, 5))


def _case(geometry, seed, dtype=np.float64):
    x_shape, padding, c_out = geometry
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal((3, 3, x_shape[-1], c_out)).astype(dtype)
    b = rng.standard_normal(c_out).astype(dtype)
    pads = window_2d(x_shape[1], x_shape[2], (3, 3), (1, 1), padding)[2:]
    return x, w, b, pads


@given(geometries(), st.integers(0, 2 ** 32 - 1))
def test_winograd4_equals_plain_loops(geometry, seed):
    x, w, b, pads = _case(geometry, seed)
    z_ref = reference.conv2d_forward(x, w, b, (1, 1), geometry[1])
    y, _ = winograd4.conv3x3_winograd4(x, w, b, pads)
    np.testing.assert_allclose(y, z_ref, rtol=1e-10, atol=1e-10)


@given(geometries(), st.sampled_from([0, 1, 2]), st.integers(0, 2 ** 32 - 1))
def test_winograd4_kernel_equals_its_numpy_twin(geometry, activation, seed):
    x, w, b, pads = _case(geometry, seed)
    keep = activation == 2
    y, logits = winograd4.conv3x3_winograd4(x, w, b, pads, activation, keep_logits=keep)
    y_ref, logits_ref = winograd4.conv3x3_winograd4_reference(x, w, b, pads, activation, keep)
    np.testing.assert_allclose(y, y_ref, rtol=1e-11, atol=1e-11)
    if keep:
        np.testing.assert_allclose(logits, logits_ref, rtol=1e-11, atol=1e-11)
    else:
        assert logits is None


@given(geometries(), st.integers(0, 2 ** 32 - 1))
def test_winograd4_in_float32_stays_within_a_few_millionths_of_the_outputs_scale(geometry, seed):
    # the rounding the module's docstring states: a few units in the 6th significant digit
    x, w, b, pads = _case(geometry, seed)
    z_ref = reference.conv2d_forward(x, w, b, (1, 1), geometry[1])
    y, _ = winograd4.conv3x3_winograd4(*(a.astype(np.float32) for a in (x, w, b)), pads)
    assert y.dtype == np.float32
    scale = max(1.0, float(np.abs(z_ref).max()))
    assert float(np.abs(y - z_ref).max()) < 1e-5 * scale


def test_kernel_transform_is_g_g_gt():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((3, 3, 2, 3))
    u = winograd4.winograd4_kernel(w).reshape(6, 6, 2, 3)
    for c in range(2):
        for o in range(3):
            np.testing.assert_allclose(u[:, :, c, o], winograd4.G @ w[:, :, c, o] @ winograd4.G.T,
                                       rtol=1e-12, atol=1e-12)


def test_the_transforms_compute_a_4x4_block_of_a_1d_convolution_exactly():
    # A^T [(G g) * (B^T d)] = the four valid outputs of the 3-tap correlation of d with g
    rng = np.random.default_rng(1)
    for _ in range(5):
        d, g = rng.standard_normal(6), rng.standard_normal(3)
        expected = [d[i:i + 3] @ g for i in range(4)]
        got = winograd4.A_T @ ((winograd4.G @ g) * (winograd4.B_T @ d))
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


def test_a_model_predicts_the_same_by_f4x4_as_by_im2col():
    model = Sequential([
        layers.Conv2D(8, 3, padding="same", activation="relu", input_shape=(18, 18, 3)),
        layers.Conv2D(8, 3, activation="relu"), layers.MaxPooling2D(2),
        layers.Conv2D(4, 3, padding="same", activation="sigmoid"),
        layers.Flatten(), layers.Dense(1, activation="sigmoid")], seed=3)
    x = np.random.default_rng(1).random((5, 18, 18, 3), dtype=np.float32)
    previous = layers.set_winograd_min_channels(None)
    try:
        expected = model.predict(x, verbose=0)
        layers.set_winograd_min_channels((None, 1))
        got = model.predict(x, verbose=0)
    finally:
        layers.set_winograd_min_channels(previous)
    assert not np.array_equal(got, expected)          # computed another way
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


@given(st.integers(1, 3), st.integers(6, 12), st.sampled_from(["valid", "same"]),
       st.integers(0, 2 ** 32 - 1))
def test_border_tiles_read_zeros_outside_the_input(n, size, padding, seed):
    # the same image inside a larger one of zeros gives the same output ('valid' crops it)
    x, w, b, pads = _case(((n, size, size, 2), padding, 3), seed)
    big = np.zeros((n, size + 8, size + 8, 2))
    big[:, 4:4 + size, 4:4 + size] = x
    y, _ = winograd4.conv3x3_winograd4(x, w, b, pads)
    y_big, _ = winograd4.conv3x3_winograd4(big, w, b, (0, 0, 0, 0))
    top, left = 4 - pads[0], 4 - pads[2]
    np.testing.assert_allclose(y, y_big[:, top:top + y.shape[1], left:left + y.shape[2]],
                               rtol=1e-10, atol=1e-10)
