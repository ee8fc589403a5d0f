"""Numba kernels against their NumPy twins and against plain loops."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from minicnn import kernels
from minicnn.shapes import window_2d

import reference
from strategies import windows


def _pads(x_shape, k, s, padding):
    return window_2d(x_shape[1], x_shape[2], k, s, padding)[2:]


@given(windows(), st.sampled_from([np.float32, np.float64]), st.integers(0, 2 ** 32 - 1))
def test_im2col_and_col2im_equal_their_numpy_twins(geometry, dtype, seed):
    x_shape, k, s, padding = geometry
    pads = _pads(x_shape, k, s, padding)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(x_shape).astype(dtype)
    cols = kernels.im2col(x, k, s, pads)
    assert cols.dtype == dtype
    np.testing.assert_array_equal(cols, kernels.im2col_reference(x, k, s, pads))
    d = rng.standard_normal(cols.shape).astype(dtype)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(kernels.col2im(d, x_shape, k, s, pads),
                               kernels.col2im_reference(d, x_shape, k, s, pads), rtol=tol, atol=tol)


@given(windows(), st.integers(0, 2 ** 32 - 1))
def test_col2im_is_the_adjoint_of_im2col(geometry, seed):
    # <im2col(x), d> == <x, col2im(d)> for all x, d: the defining property of the backward.
    x_shape, k, s, padding = geometry
    pads = _pads(x_shape, k, s, padding)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(x_shape)
    d = rng.standard_normal(kernels.im2col(x, k, s, pads).shape)
    lhs = np.sum(kernels.im2col(x, k, s, pads) * d)
    rhs = np.sum(x * kernels.col2im(d, x_shape, k, s, pads))
    assert lhs == pytest.approx(rhs, rel=1e-10, abs=1e-10)


@given(windows(max_k=3, max_c=3), st.sampled_from([np.float32, np.float64]), st.integers(0, 2 ** 32 - 1))
def test_maxpool_kernels_equal_their_numpy_twins(geometry, dtype, seed):
    x_shape, k, s, padding = geometry
    pads = _pads(x_shape, k, s, padding)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(x_shape).astype(dtype)
    y, argmax = kernels.maxpool_forward(x, k, s, pads)
    y_ref, argmax_ref = kernels.maxpool_forward_reference(x, k, s, pads)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(argmax, argmax_ref)
    dy = rng.standard_normal(y.shape).astype(dtype)
    np.testing.assert_allclose(kernels.maxpool_backward(dy, argmax, x_shape),
                               kernels.maxpool_backward_reference(dy, argmax, x_shape), rtol=1e-6)


@given(windows(max_k=3, max_c=3), st.sampled_from([np.float32, np.float64]), st.integers(0, 2 ** 32 - 1))
def test_pooling_backward_through_relu_over_tiling_windows_equals_the_scatter(geometry, dtype, seed):
    # strides == pool_size: every dZ cell is written by a select on its own window's argmax
    # (the cells of no window, left over by 'valid', are zero), as the scatter writes it.
    x_shape, k, _, padding = geometry
    pads = _pads(x_shape, k, k, padding)
    rng = np.random.default_rng(seed)
    x = np.maximum(rng.standard_normal(x_shape), 0).astype(dtype)
    y, argmax = kernels.maxpool_forward(x, k, k, pads)
    dy = rng.standard_normal(y.shape).astype(dtype)
    dz, db = kernels.maxpool_backward_relu(dy, y, argmax, x_shape, (k, pads))
    dz_ref, db_ref = kernels.maxpool_backward_relu_reference(dy, y, argmax, x_shape)
    np.testing.assert_array_equal(dz, dz_ref)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(db, db_ref, rtol=tol, atol=tol)


@given(windows(max_k=3, max_c=3), st.sampled_from([np.float32, np.float64]),
       st.sampled_from(["linear", "relu"]), st.booleans(), st.integers(0, 2 ** 32 - 1))
def test_pooling_with_bias_and_activation_after_it_equals_them_before(geometry, dtype,
                                                                      activation, bias, seed):
    # Inference pools a convolution's Z and applies the bias and a nondecreasing activation
    # to the pooled output: bit for bit the pooling of act(Z + b), ties included.
    x_shape, k, s, padding = geometry
    pads = _pads(x_shape, k, s, padding)
    rng = np.random.default_rng(seed)
    z = np.round(rng.standard_normal(x_shape) * 2).astype(dtype)     # many equal values
    b = rng.standard_normal(x_shape[-1]).astype(dtype) if bias else None
    code = kernels.ACTIVATION_CODES[activation]
    y = kernels.maxpool_bias_activation(z, k, s, pads, b, code)
    assert y.dtype == dtype
    np.testing.assert_array_equal(y, kernels.maxpool_bias_activation_reference(z, k, s, pads, b, code))
    before = z if b is None else z + b
    before = np.maximum(before, 0) if activation == "relu" else before
    np.testing.assert_array_equal(y, reference.maxpool_forward(before, k, s, padding)[0])


def test_pooling_with_bias_after_it_refuses_an_activation_that_does_not_commute_with_max():
    z = np.zeros((1, 2, 2, 1), np.float32)
    with pytest.raises(ValueError, match="linear .0. or relu .1.*received code 2"):
        kernels.maxpool_bias_activation(z, (2, 2), (2, 2), (0, 0, 0, 0), None, 2)


@given(windows(max_size=7, max_k=3, max_c=3, max_n=2), st.integers(1, 4), st.integers(0, 2 ** 32 - 1))
def test_conv_kernels_equal_plain_loops(geometry, c_out, seed):
    x_shape, k, s, padding = geometry
    pads = _pads(x_shape, k, s, padding)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(x_shape)
    w = rng.standard_normal(k + (x_shape[-1], c_out))
    b = rng.standard_normal(c_out)
    y, _, cache = kernels.conv2d_forward(x, w, b, s, pads)        # linear activation
    z_ref = reference.conv2d_forward(x, w, b, s, padding)
    np.testing.assert_allclose(y, z_ref, rtol=1e-10, atol=1e-10)
    dy = rng.standard_normal(y.shape)
    dx, dw, db = kernels.conv2d_backward(dy, cache)
    dx_ref, dw_ref, db_ref = reference.conv2d_backward(x, w, dy, s, padding)
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(dw, dw_ref, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(db, db_ref, rtol=1e-10, atol=1e-10)


@given(windows(max_k=3, max_c=3), st.sampled_from([np.float32, np.float64]), st.integers(0, 2 ** 32 - 1))
def test_pooling_backward_through_relu_equals_pooling_then_relu_backward(geometry, dtype, seed):
    # The fused pass against its NumPy twin and against the two kernels it replaces.
    x_shape, k, s, padding = geometry
    pads = _pads(x_shape, k, s, padding)
    rng = np.random.default_rng(seed)
    z = rng.standard_normal(x_shape).astype(dtype)
    x = np.maximum(z, 0)                                   # a ReLU's output: many exact zeros
    y, argmax = kernels.maxpool_forward(x, k, s, pads)
    dy = rng.standard_normal(y.shape).astype(dtype)
    dz, db = kernels.maxpool_backward_relu(dy, y, argmax, x_shape)
    dz_ref, db_ref = kernels.maxpool_backward_relu_reference(dy, y, argmax, x_shape)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(dz, dz_ref, rtol=tol, atol=tol)
    np.testing.assert_allclose(db, db_ref, rtol=tol, atol=tol)
    if tuple(s) == tuple(k):                # windows that tile X: the select path
        dz_tiled, db_tiled = kernels.maxpool_backward_relu(dy, y, argmax, x_shape, (k, pads))
        np.testing.assert_array_equal(dz_tiled, dz)
        np.testing.assert_allclose(db_tiled, db, rtol=tol, atol=tol)
    dx = kernels.maxpool_backward(dy, argmax, x_shape)
    dz_two, db_two = kernels.activation_backward_and_bias_grad(
        dx.reshape(-1, x_shape[-1]), x.reshape(-1, x_shape[-1]), kernels.ACTIVATION_CODES["relu"])
    np.testing.assert_allclose(dz, dz_two.reshape(x_shape), rtol=tol, atol=tol)
    np.testing.assert_allclose(db, db_two, rtol=tol, atol=tol)


@given(windows(max_k=3, max_c=3, max_n=2), st.integers(0, 2 ** 32 - 1))
def test_maxpool_kernels_equal_plain_loops(geometry, seed):
    x_shape, k, s, padding = geometry
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(x_shape)
    y, argmax = kernels.maxpool_forward(x, k, s, _pads(x_shape, k, s, padding))
    y_ref, where = reference.maxpool_forward(x, k, s, padding)
    np.testing.assert_array_equal(y, y_ref)
    dy = rng.standard_normal(y.shape)
    np.testing.assert_allclose(kernels.maxpool_backward(dy, argmax, x_shape),
                               reference.maxpool_backward(x_shape, dy, where), rtol=1e-12)


def test_maxpool_routes_ties_to_the_first_maximum_in_row_major_order():
    x = np.zeros((1, 2, 2, 1))
    y, argmax = kernels.maxpool_forward(x, (2, 2), (2, 2), (0, 0, 0, 0))
    assert argmax[0, 0, 0, 0] == 0
    dx = kernels.maxpool_backward(np.ones_like(y), argmax, x.shape)
    np.testing.assert_array_equal(dx[0, :, :, 0], [[1, 0], [0, 0]])


@pytest.mark.parametrize("code", [0, 1, 2, 3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bias_activation_and_its_backward_equal_their_numpy_twins(code, dtype):
    rng = np.random.default_rng(code)
    z = (rng.standard_normal((37, 5)) * 30).astype(dtype)     # large |z|: sigmoid must not overflow
    b = rng.standard_normal(5).astype(dtype)
    y, logits = kernels.bias_activation(z.copy(), b, code, keep_logits=True)
    y_ref, logits_ref = kernels.bias_activation_reference(z.copy(), b, code, keep_logits=True)
    np.testing.assert_allclose(y, y_ref, rtol=1e-6)
    assert np.all(np.isfinite(y))
    if code == 2:
        np.testing.assert_allclose(logits, z + b, rtol=1e-6)
    else:
        assert logits is None
    dy = rng.standard_normal(z.shape).astype(dtype)
    dy_before = dy.copy()
    # atol: softmax's backward, y * (dy - sum(dy y)), cancels; the kernel sums in float64
    atol = 1e-6 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(kernels.activation_backward(dy, y, code),
                               kernels.activation_backward_reference(dy, y, code),
                               rtol=1e-6, atol=atol)
    np.testing.assert_array_equal(dy, dy_before)


def test_relu_derivative_at_zero_is_zero():
    y, _ = kernels.bias_activation(np.array([[0.0, -1.0, 2.0]]), np.zeros(3), 1)
    np.testing.assert_array_equal(kernels.activation_backward(np.ones((1, 3)), y, 1), [[0, 0, 1]])


@given(st.integers(1, 300), st.integers(1, 9), st.sampled_from([0, 1, 2, 3]),
       st.sampled_from([np.float32, np.float64]), st.integers(0, 2 ** 32 - 1))
def test_fused_activation_backward_and_bias_grad_equal_their_numpy_twin(m, c, code, dtype, seed):
    rng = np.random.default_rng(seed)
    y, _ = kernels.bias_activation(rng.standard_normal((m, c)).astype(dtype), np.zeros(c, dtype), code)
    dy = rng.standard_normal((m, c)).astype(dtype)
    dz, db = kernels.activation_backward_and_bias_grad(dy, y, code)
    dz_ref, db_ref = kernels.activation_backward_and_bias_grad_reference(dy, y, code)
    np.testing.assert_allclose(dz, dz_ref, rtol=1e-6, atol=1e-6 if dtype == np.float32 else 1e-12)
    np.testing.assert_allclose(db, db_ref, rtol=1e-5, atol=1e-5)
    assert db.dtype == dtype


@pytest.mark.parametrize("momentum", [0.0, 0.5])
@pytest.mark.parametrize("inside", [True, False])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_rmsprop_kernel_equals_its_numpy_twin(momentum, inside, dtype):
    rng = np.random.default_rng(0)
    state = [rng.standard_normal((7, 5)).astype(dtype), None,
             rng.random((7, 5)).astype(dtype), rng.standard_normal((7, 5)).astype(dtype)]
    fast = [a.copy() if a is not None else None for a in state]
    slow = [a.copy() if a is not None else None for a in state]
    for step in range(3):
        g = rng.standard_normal((7, 5)).astype(dtype)
        kernels.rmsprop_update(fast[0], g, fast[2], fast[3], 1e-3, 0.9, 1e-7, momentum, inside)
        kernels.rmsprop_update_reference(slow[0], g, slow[2], slow[3], 1e-3, 0.9, 1e-7, momentum, inside)
    tol = 1e-6 if dtype == np.float32 else 1e-13
    for a, b in zip(fast, slow):
        if a is not None:
            np.testing.assert_allclose(a, b, rtol=tol, atol=tol)
