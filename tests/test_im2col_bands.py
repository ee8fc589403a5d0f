"""minicnn.kernels.im2col_bands: im2col's convolution at inference in bands of output rows,
against conv2d_forward (the whole batch's patches and one product) and the plain loops."""
import numpy as np
import pytest
from hypothesis import assume, given, strategies as st

import minicnn as mc
from minicnn import layers
from minicnn.kernels import blas, conv2d_forward, conv2d_inference, im2col_bands, \
    maxpool_bias_activation, maxpool_bias_activation_reference
from minicnn.kernels.elementwise import bias_activation_reference
from minicnn.kernels.winograd import Pooling
from minicnn.shapes import window_2d

import reference
from strategies import fused_passes, windows

pytestmark = pytest.mark.skipif(not blas.AVAILABLE, reason="NumPy's BLAS is not an ILP64 "
                                "OpenBLAS here; im2col keeps to one product per batch")

TOLERANCE = {np.float32: 1e-5, np.float64: 1e-11}


def _case(geometry, c_out, dtype, seed):
    x_shape, kernel, strides, padding = geometry
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(kernel + (x_shape[3], c_out)).astype(dtype)
    b = rng.standard_normal(c_out).astype(dtype)
    pads = window_2d(x_shape[1], x_shape[2], kernel, strides, padding)[2:]
    return x, w, b, pads


@given(windows(max_size=12), st.integers(1, 6), st.sampled_from([0, 1, 2]),
       st.sampled_from([np.float32, np.float64]), st.sampled_from([1, 300, 2 ** 18]),
       st.integers(0, 2 ** 32 - 1))
def test_the_bands_give_the_numbers_of_the_whole_batchs_patches_and_product(
        geometry, c_out, activation, dtype, band_bytes, seed):
    # any kernel, stride and padding, bands of one row to the whole image: conv2d_forward's
    # y and logits, and the plain loops' to rounding
    x, w, b, pads = _case(geometry, c_out, dtype, seed)
    assert im2col_bands.runs_in_bands(w.shape, activation, dtype)
    y, logits = im2col_bands.conv2d_bands(x, w, b, geometry[2], pads, activation,
                                          keep_logits=True, band_bytes=band_bytes)
    y_whole, logits_whole, _ = conv2d_forward(x, w, b, geometry[2], pads, activation,
                                              keep_cache=False)
    tolerance = TOLERANCE[dtype]
    assert y.dtype == dtype and y.shape == y_whole.shape
    np.testing.assert_allclose(y, y_whole, rtol=tolerance, atol=tolerance)
    z_plain = reference.conv2d_forward(x.astype(np.float64), w.astype(np.float64), b,
                                       geometry[2], geometry[3])
    y_plain, _ = bias_activation_reference(z_plain.copy(), 0.0, activation)
    np.testing.assert_allclose(y, y_plain, rtol=tolerance, atol=tolerance * 10)
    if activation == 2:
        np.testing.assert_allclose(logits, z_plain, rtol=tolerance, atol=tolerance * 10)
    else:
        assert logits_whole is None
    assert im2col_bands.conv2d_bands(x, w, b, geometry[2], pads, activation)[1] is None


@st.composite
def pooled_cases(draw):
    """A convolution (windows draw) and a max-pooling of its output that the bands compute:
    windows of any size at stride = size, 'valid' or 'same' (padding only after)."""
    geometry = draw(windows(max_size=12))
    x_shape, kernel, strides, padding = geometry
    h_out, w_out = window_2d(x_shape[1], x_shape[2], kernel, strides, padding)[:2]
    size = (draw(st.integers(1, min(4, h_out))), draw(st.integers(1, min(4, w_out))))
    window = window_2d(h_out, w_out, size, size, draw(st.sampled_from(["valid", "same"])))
    assume(im2col_bands.pools(size, size, window[2:], kernel + (x_shape[3], 1)))
    return geometry, size, window


@given(pooled_cases(), st.integers(1, 5), st.sampled_from([0, 1]), st.booleans(),
       st.sampled_from([np.float32, np.float64]), st.sampled_from([1, 500, 2 ** 18]),
       st.integers(0, 2 ** 32 - 1))
def test_a_pooling_in_the_bands_gives_the_numbers_of_the_pooling_after_the_convolution(
        case, c_out, activation, use_bias, dtype, band_bytes, seed):
    geometry, size, window = case
    x, w, b, pads = _case(geometry, c_out, dtype, seed)
    b = b if use_bias else None
    pooled, logits = im2col_bands.conv2d_bands(x, w, b, geometry[2], pads, activation,
                                               pool=Pooling(size, window[:2]),
                                               band_bytes=band_bytes)
    assert logits is None and pooled.dtype == dtype and pooled.shape[1:3] == window[:2]
    z, _, _ = conv2d_forward(x, w, None, geometry[2], pads, 0, keep_cache=False)
    np.testing.assert_allclose(
        pooled, maxpool_bias_activation(z, size, size, window[2:], b, activation),
        rtol=TOLERANCE[dtype], atol=TOLERANCE[dtype])
    plain = reference.conv2d_forward(x.astype(np.float64), w.astype(np.float64), None,
                                     geometry[2], geometry[3])
    plain = maxpool_bias_activation_reference(plain, size, size, window[2:], b, activation)
    np.testing.assert_allclose(pooled, plain, rtol=TOLERANCE[dtype], atol=TOLERANCE[dtype] * 10)


@given(st.integers(1, 200), st.integers(1, 200), st.integers(1, 4), st.integers(1, 4),
       st.integers(1, 64), st.integers(1, 64), st.integers(1, 4), st.sampled_from([1, 2 ** 18]))
def test_a_band_is_whole_pooling_windows_within_its_bytes_and_the_output(
        h_out, w_out, k_h, k_w, c_in, c_out, pool_rows, band_bytes):
    kernel = (k_h, k_w, c_in, c_out)
    band = im2col_bands.band_rows(h_out, w_out, kernel, 4, pool_rows, band_bytes)
    per_row = w_out * (k_h * k_w * c_in + c_out) * 4
    assert band >= pool_rows and band % pool_rows == 0
    assert band <= -(-h_out // pool_rows) * pool_rows
    assert band == pool_rows or band * per_row <= band_bytes


def test_the_bands_take_small_kernels_the_activations_they_fuse_and_float32_or_64():
    first_conv = (3, 3, 3, 32)                              # the lecture CNN's, VGG16's
    assert im2col_bands.runs_in_bands(first_conv, 1, np.float32)
    assert im2col_bands.runs_in_bands((3, 3, 3, 64), 2, np.float64)
    assert not im2col_bands.runs_in_bands(first_conv, 3, np.float32)      # softmax
    assert not im2col_bands.runs_in_bands(first_conv, 1, np.float16)
    assert not im2col_bands.runs_in_bands((3, 3, 512, 512), 1, np.float32)  # W_2d repacked
    assert im2col_bands.pools((2, 2), (2, 2), (0, 1, 0, 1), first_conv)
    assert not im2col_bands.pools((2, 2), (1, 1), (0, 0, 0, 0), first_conv)  # overlapping
    assert not im2col_bands.pools((2, 2), (2, 2), (1, 0, 0, 0), first_conv)  # pad above
    with fused_passes(False):                      # where the kernels cannot call the BLAS
        assert not im2col_bands.runs_in_bands(first_conv, 1, np.float32)
        assert not im2col_bands.pools((2, 2), (2, 2), (0, 0, 0, 0), first_conv)


def test_inference_runs_im2col_in_bands_and_an_empty_batch_gives_an_empty_output():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 9, 9, 3)).astype(np.float32)
    w = rng.standard_normal((3, 3, 3, 4)).astype(np.float32)
    y, _ = conv2d_inference(x, w, None, (2, 2), (1, 1, 1, 1), 1, None, None)
    expected, _, _ = conv2d_forward(x, w, None, (2, 2), (1, 1, 1, 1), 1, keep_cache=False)
    np.testing.assert_allclose(y, expected, rtol=1e-6, atol=1e-6)
    empty, _ = im2col_bands.conv2d_bands(x[:0], w, None, (1, 1), (0, 0, 0, 0), 1)
    assert empty.shape == (0, 7, 7, 4)


def test_a_model_whose_first_convolution_pools_in_its_bands_predicts_as_with_the_bands_off():
    # predict through a block like the lecture CNN's first (3 channels, ReLU, 2x2 pooling)
    # and a strided 'same' convolution in the bands, and with the kernels kept from the
    # BLAS: one product over the batch, then the pooling
    model = mc.Sequential([
        layers.Conv2D(8, 3, activation="relu", input_shape=(21, 19, 3)),
        layers.MaxPooling2D(), layers.Conv2D(4, 3, strides=2, padding="same"),
        layers.Flatten(), layers.Dense(1, activation="sigmoid")], seed=4)
    rng = np.random.default_rng(4)
    for layer in model.layers:
        if getattr(layer, "bias", None) is not None:
            layer.bias[:] = rng.standard_normal(layer.bias.shape)     # not all zero
    assert model.layers[0].pools(model.layers[1])
    x = rng.standard_normal((5, 21, 19, 3)).astype(np.float32)
    banded = model.predict(x, verbose=0)
    with fused_passes(False):
        assert not model.layers[0].pools(model.layers[1])
        apart = model.predict(x, verbose=0)
    np.testing.assert_allclose(banded, apart, rtol=1e-6, atol=1e-7)
