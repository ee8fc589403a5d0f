"""What only Winograd's F(4x4, 3x3) needs tested (the rest, with F(2x2, 3x3): test_winograd.py):
its transforms, its float32 rounding, its border tiles."""
import numba
import numpy as np
import pytest
from hypothesis import assume, given, strategies as st

from minicnn.kernels import blas, conv2d_inference, maxpool_bias_activation, \
    maxpool_bias_activation_reference, winograd, winograd4
from minicnn.kernels.winograd import Pooling
from minicnn.kernels.winograd4 import F4
from minicnn.shapes import window_2d

import reference
from strategies import conv3x3_case, conv3x3_geometries, fused_passes


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


def test_the_output_adjoint_computes_a_exactly():
    # the backward's A is the transpose of the forward's A^T
    z = np.random.default_rng(2).standard_normal(4)
    np.testing.assert_allclose(winograd4._a.py_func(*z), winograd4.A_T.T @ z, rtol=1e-12)


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


@st.composite
def pooled_cases(draw):
    """A conv3x3_geometries draw and a max-pooling of its output that F(4x4, 3x3)'s output
    transform computes (windows that tile the output from its corner, K_h dividing 4)."""
    geometry = draw(conv3x3_geometries())
    (_, h, w, _), padding, _ = geometry
    h_out, w_out = window_2d(h, w, (3, 3), (1, 1), padding)[:2]
    size = (draw(st.sampled_from([k for k in (1, 2, 4) if k <= h_out])),
            draw(st.integers(1, min(4, w_out))))
    window = window_2d(h_out, w_out, size, size, draw(st.sampled_from(["valid", "same"])))
    assume(F4.pools(size, size, window[2:]))
    return geometry, size, window


@given(pooled_cases(), st.sampled_from([0, 1]), st.booleans(),
       st.sampled_from([np.float32, np.float64]), st.integers(0, 2 ** 32 - 1))
def test_a_pooling_in_the_output_transform_gives_the_numbers_of_the_pooling_after_it(
        case, activation, use_bias, dtype, seed):
    # act(maxpool(Z) + b) in the output pass equals, bit for bit, the transform writing Z
    # and maxpool_bias_activation pooling it; and the plain loops' convolution and pooling
    # to rounding
    geometry, size, window = case
    x, w, b, pads = conv3x3_case(geometry, seed, dtype)
    b = b if use_bias else None
    z, _ = winograd.conv3x3_winograd(x, w, None, pads, algorithm=F4)
    expected = maxpool_bias_activation(z, size, size, window[2:], b, activation)
    pooled, logits = winograd.conv3x3_winograd(x, w, b, pads, activation, algorithm=F4,
                                               pool=Pooling(size, window[:2]))
    assert pooled.dtype == dtype and logits is None
    np.testing.assert_array_equal(pooled, expected)
    plain = reference.conv2d_forward(x.astype(np.float64), w.astype(np.float64), None, (1, 1),
                                     geometry[1])
    plain = maxpool_bias_activation_reference(plain, size, size, window[2:], b, activation)
    tolerance = 1e-5 if dtype == np.float32 else 1e-11
    np.testing.assert_allclose(pooled, plain, rtol=tolerance, atol=tolerance)


@given(pooled_cases(), st.integers(1, 4), st.integers(0, 2 ** 32 - 1))
def test_the_pooled_inference_in_micro_batches_equals_the_whole_batch(case, chunk, seed):
    geometry, size, window = case
    x, w, b, pads = conv3x3_case(geometry, seed, np.float32)
    pool = Pooling(size, window[:2])
    per_image = winograd.winograd_workspace_per_image(*window_2d(
        *x.shape[1:3], (3, 3), (1, 1), geometry[1])[:2], x.shape[3], w.shape[3], 4, F4)
    # the same products as the micro-batches' without a pooling, then pooled: bit for bit
    # (the whole batch's products round differently: a longer matrix, other BLAS blocks)
    z, _ = conv2d_inference(x, w, None, (1, 1), pads, 0, chunk * per_image, 1, F4)
    parts, _ = conv2d_inference(x, w, b, (1, 1), pads, 1, chunk * per_image, 1, F4, pool=pool)
    np.testing.assert_array_equal(parts, maxpool_bias_activation(z, size, size, window[2:], b, 1))
    whole, _ = conv2d_inference(x, w, b, (1, 1), pads, 1, None, 1, F4, pool=pool)
    np.testing.assert_allclose(parts, whole, rtol=1e-5, atol=1e-5)


def test_only_poolings_that_tile_the_output_from_its_corner_go_into_the_transform():
    assert F4.pools((2, 2), (2, 2), (0, 0, 0, 0)) and F4.pools((4, 3), (4, 3), (0, 1, 0, 1))
    assert not F4.pools((3, 3), (3, 3), (0, 0, 0, 0))        # rows across two tiles
    assert not F4.pools((2, 2), (1, 1), (0, 0, 0, 0))        # overlapping windows
    assert not F4.pools((4, 4), (4, 4), (1, 2, 0, 0))        # 'same' padding above
    assert not winograd.F2.pools((2, 2), (2, 2), (0, 0, 0, 0))   # F(2x2): not written
    # a kernel that neither Winograd (off here) nor im2col's bands (too many values) take
    with pytest.raises(ValueError, match=r"needs Winograd or im2col's bands"):
        conv2d_inference(np.zeros((1, 6, 6, 128), np.float32),
                         np.zeros((3, 3, 128, 64), np.float32), None, (1, 1), (0, 0, 0, 0), 0,
                         None, None, F4, pool=Pooling((2, 2), (2, 2)))


def enough_images(x):
    """x's images repeated (scaled) until every thread gets one: runs_fused's condition."""
    copies = -(-max(2, numba.get_num_threads()) // x.shape[0])
    return np.concatenate([x * (0.5 ** i) for i in range(copies)])


@pytest.mark.skipif(not blas.AVAILABLE, reason="no BLAS the kernels can call")
@given(geometry=conv3x3_geometries(), activation=st.sampled_from([0, 1, 2]),
       dtype=st.sampled_from([np.float32, np.float64]), seed=st.integers(0, 2 ** 32 - 1))
def test_the_fused_passes_equal_the_passes_in_blocks_forward_and_backward(
        geometry, activation, dtype, seed):
    # One image per task, the products by the BLAS one image at a time: the same numbers
    # as the blocks' (the same products, row for row, up to BLAS's rounding on other
    # row counts), the same V for the backward, and the plain loops' to rounding.
    x, w, b, pads = conv3x3_case(geometry, seed, dtype)
    x = enough_images(x)
    assert winograd.runs_fused(x.shape[0], w.shape[2:], dtype, F4)
    tolerance = 1e-5 if dtype == np.float32 else 1e-12
    keep = activation == 2
    y, logits = winograd.conv3x3_winograd(x, w, b, pads, activation, keep, algorithm=F4)
    yt, logits_t, cache = winograd.winograd_forward(x, w, b, pads, activation, F4)
    with fused_passes(False):
        assert not winograd.runs_fused(x.shape[0], w.shape[2:], dtype, F4)
        y_blocks, logits_blocks = winograd.conv3x3_winograd(x, w, b, pads, activation, keep,
                                                            algorithm=F4)
        yt_blocks, _, cache_blocks = winograd.winograd_forward(x, w, b, pads, activation, F4)
        t = x.shape[0] * np.prod(winograd._output_tiles(x.shape, pads, 4)[2:4])
        np.testing.assert_array_equal(cache.v[:, :t], cache_blocks.v[:, :t])
        dz = np.random.default_rng(seed + 1).standard_normal(yt.shape).astype(dtype)
        grads_blocks = winograd.winograd_backward(dz, cache_blocks, from_logits=True)  # V: dV
    z_ref = reference.conv2d_forward(x.astype(np.float64), w.astype(np.float64),
                                     b.astype(np.float64), (1, 1), geometry[1])
    # BLAS kernels may round products of other row counts differently (OpenBLAS's Haswell
    # kernels do), and the output transform carries that at the output's scale.
    scale = max(1.0, float(np.abs(z_ref).max()))
    assert y.dtype == dtype
    np.testing.assert_allclose(y, y_blocks, rtol=tolerance, atol=tolerance * scale)
    np.testing.assert_array_equal(yt, y)
    np.testing.assert_allclose(yt, yt_blocks, rtol=tolerance, atol=tolerance * scale)
    if keep:
        np.testing.assert_allclose(logits, logits_blocks, rtol=tolerance,
                                   atol=tolerance * scale)
        np.testing.assert_array_equal(logits_t, logits)
    np.testing.assert_allclose(logits if keep else y,
                               z_ref if activation != 1 else np.maximum(z_ref, 0),
                               rtol=tolerance, atol=tolerance * scale)
    for got, want in zip(winograd.winograd_backward(dz, cache, from_logits=True), grads_blocks):
        np.testing.assert_allclose(got, want, rtol=tolerance, atol=tolerance * scale)


@pytest.mark.skipif(not blas.AVAILABLE, reason="no BLAS the kernels can call")
@given(pooled_cases(), st.sampled_from([0, 1]), st.sampled_from([np.float32, np.float64]),
       st.integers(0, 2 ** 32 - 1))
def test_the_fused_passes_pool_as_the_passes_in_blocks_do(case, activation, dtype, seed):
    geometry, size, window = case
    x, w, b, pads = conv3x3_case(geometry, seed, dtype)
    x = enough_images(x)
    pool = Pooling(size, window[:2])
    assert winograd.runs_fused(x.shape[0], w.shape[2:], dtype, F4)
    fused, _ = conv2d_inference(x, w, b, (1, 1), pads, activation, None, 1, F4, pool=pool)
    with fused_passes(False):
        blocks, _ = conv2d_inference(x, w, b, (1, 1), pads, activation, None, 1, F4, pool=pool)
    tolerance = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(fused, blocks, rtol=tolerance, atol=tolerance)
    z, _ = winograd.conv3x3_winograd(x, w, None, pads, algorithm=F4)      # fused as well
    np.testing.assert_array_equal(fused, maxpool_bias_activation(z, size, size, window[2:], b,
                                                                 activation))


def test_the_passes_run_fused_only_where_they_pay_and_can():
    threads = numba.get_num_threads()
    fuses = winograd.runs_fused
    assert fuses(max(threads, 2), (32, 64), np.float32, F4) == blas.AVAILABLE
    assert not fuses(max(threads, 2), (32, 64), np.float32, winograd.F2)    # F4 only
    assert not fuses(max(threads, 2), (256, 256), np.float32, F4)           # products dominate
    assert not fuses(max(threads, 2), (32, 64), np.float16, F4)             # no half BLAS
    if threads > 1:
        assert not fuses(threads - 1, (32, 64), np.float32, F4)             # a thread idle
    with fused_passes(False):
        assert not fuses(max(threads, 2), (32, 64), np.float32, F4)


@pytest.mark.skipif(not blas.AVAILABLE, reason="no BLAS the kernels can call")
@given(geometry=conv3x3_geometries(), activation=st.sampled_from(["linear", "relu", "sigmoid"]),
       seed=st.integers(0, 2 ** 32 - 1))
def test_a_conv2d_whose_passes_run_fused_passes_the_gradient_check(geometry, activation, seed):
    from minicnn import gradcheck, layers

    x_shape, padding, c_out = geometry
    x = enough_images(np.random.default_rng(seed).standard_normal(x_shape))
    assert winograd.runs_fused(x.shape[0], (x_shape[3], c_out), x.dtype, F4)
    previous, previous_tile = layers.set_winograd_min_channels(1), layers.set_winograd_tile(4)
    try:
        layer = layers.Conv2D(c_out, 3, padding=padding, activation=activation)
        result = gradcheck.check_layer(layer, x, seed=seed % 1000)
    finally:
        layers.set_winograd_min_channels(previous)
        layers.set_winograd_tile(previous_tile)
    assert result.max_error < 1e-6, result
