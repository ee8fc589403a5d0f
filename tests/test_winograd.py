"""Winograd F(2x2, 3x3) convolution against plain loops, its NumPy twin and im2col (and
the choice between Winograd's algorithms and im2col; F(4x4, 3x3): test_winograd4.py)."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from minicnn import layers
from minicnn.kernels import conv2d_forward, conv2d_inference, winograd, winograd4
from minicnn.model import Sequential
from minicnn.shapes import window_2d

import reference


@st.composite
def geometries(draw):
    """(x_shape, padding, c_out) for a 3x3 stride-1 kernel that fits its input."""
    padding = draw(st.sampled_from(["valid", "same"]))
    low = 3 if padding == "valid" else 1
    shape = (draw(st.integers(1, 3)), draw(st.integers(low, 11)), draw(st.integers(low, 11)),
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
def test_winograd_equals_plain_loops(geometry, seed):
    x, w, b, pads = _case(geometry, seed)
    z_ref = reference.conv2d_forward(x, w, b, (1, 1), geometry[1])
    y, _ = winograd.conv3x3_winograd(x, w, b, pads)
    np.testing.assert_allclose(y, z_ref, rtol=1e-10, atol=1e-10)


@given(geometries(), st.sampled_from([0, 1, 2]), st.integers(0, 2 ** 32 - 1))
def test_winograd_kernel_equals_its_numpy_twin(geometry, activation, seed):
    x, w, b, pads = _case(geometry, seed)
    keep = activation == 2
    y, logits = winograd.conv3x3_winograd(x, w, b, pads, activation, keep_logits=keep)
    y_ref, logits_ref = winograd.conv3x3_winograd_reference(x, w, b, pads, activation, keep)
    np.testing.assert_allclose(y, y_ref, rtol=1e-12, atol=1e-12)
    if keep:
        np.testing.assert_allclose(logits, logits_ref, rtol=1e-12, atol=1e-12)
    else:
        assert logits is None


@given(geometries(), st.sampled_from([0, 1, 2]), st.integers(1, 4), st.sampled_from([2, 4]),
       st.integers(0, 2 ** 32 - 1))
def test_inference_by_winograd_in_micro_batches_equals_im2col(geometry, activation, chunk, tile,
                                                               seed):
    # float32, as models run: the algorithms differ only by rounding, F(4x4, 3x3) by up to
    # a few millionths of the output's scale (test_winograd4.py)
    x, w, b, pads = _case(geometry, seed, np.float32)
    y_ref, logits_ref, _ = conv2d_forward(x, w, b, (1, 1), pads, activation, keep_cache=False)
    per_image = (winograd4.winograd4_workspace_per_image if tile == 4
                 else winograd.winograd_workspace_per_image)
    y, logits = conv2d_inference(x, w, b, (1, 1), pads, activation,
                                 max_workspace=chunk * per_image(*y_ref.shape[1:3], *w.shape[2:], 4),
                                 winograd_min_channels=1, winograd_tile=tile)
    assert y.dtype == np.float32
    tol = 1e-5 * (1 if tile == 2 else max(1.0, float(np.abs(logits_ref if activation == 2 else y_ref).max())))
    np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=tol)
    if activation == 2:
        np.testing.assert_allclose(logits, logits_ref, rtol=1e-5, atol=tol)
    else:
        assert logits is None


def test_kernel_transform_is_g_g_gt():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((3, 3, 2, 3))
    u = winograd.winograd_kernel(w).reshape(4, 4, 2, 3)
    for c in range(2):
        for o in range(3):
            np.testing.assert_allclose(u[:, :, c, o], winograd.G @ w[:, :, c, o] @ winograd.G.T,
                                       rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("strides, kernel, c_in, activation, expected", [
    ((1, 1), 3, 64, 1, True),
    ((1, 1), 3, 63, 1, False),          # too few channels for the thin products to gain
    ((2, 2), 3, 64, 1, False),
    ((1, 1), 5, 64, 1, False),
    ((1, 1), 3, 64, 3, False),          # softmax needs whole rows: im2col's fused pass
])
def test_which_convolutions_take_winograd(strides, kernel, c_in, activation, expected):
    from minicnn.kernels.conv import uses_winograd
    assert uses_winograd((kernel, kernel, c_in, 8), strides, activation) is expected


def test_a_model_predicts_the_same_with_and_without_winograd():
    model = Sequential([
        layers.Conv2D(8, 3, padding="same", activation="relu", input_shape=(12, 12, 3)),
        layers.Conv2D(8, 3, activation="relu"), layers.MaxPooling2D(2),
        layers.Conv2D(4, 3, padding="same", activation="sigmoid"),
        layers.Flatten(), layers.Dense(1, activation="sigmoid")], seed=3)
    x = np.random.default_rng(1).random((5, 12, 12, 3), dtype=np.float32)
    previous = layers.set_winograd_min_channels(None)
    try:
        expected = model.predict(x, verbose=0)
        layers.set_winograd_min_channels(1)
        got = model.predict(x, verbose=0)
    finally:
        layers.set_winograd_min_channels(previous)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "64", (64,), (64, 32, 16), (64, 0), [None, "32"]])
def test_set_winograd_min_channels_refuses_bad_values(bad):
    with pytest.raises(ValueError, match="set_winograd_min_channels"):
        layers.set_winograd_min_channels(bad)


def test_set_winograd_min_channels_takes_one_number_or_a_pair_and_returns_the_pair():
    from minicnn.kernels.conv import WINOGRAD4_MIN_CHANNELS, WINOGRAD_MIN_CHANNELS
    previous = layers.set_winograd_min_channels(16)
    try:
        assert previous == (WINOGRAD_MIN_CHANNELS, WINOGRAD4_MIN_CHANNELS) == (64, 32)
        assert layers.set_winograd_min_channels((None, 8)) == (16, 16)
        assert layers.set_winograd_min_channels([1, None]) == (None, 8)
    finally:
        assert layers.set_winograd_min_channels(previous) == (1, None)


def test_inference_and_training_take_their_own_threshold():
    # a Conv2D over 32 channels: F(4x4, 3x3) at inference, im2col in training (by default)
    from minicnn.kernels import conv as conv_kernels
    calls = []
    layer = layers.Conv2D(4, 3, activation="relu")
    layer.build((None, 8, 8, 32))
    x = np.random.default_rng(0).random((2, 8, 8, 32), dtype=np.float32)
    original = conv_kernels.conv3x3_winograd4
    conv_kernels.conv3x3_winograd4 = lambda *a, **k: calls.append("f4") or original(*a, **k)
    try:
        inferred = layer.forward(x)
        assert calls == ["f4"]
        trained = layer.forward(x, training=True)
        assert calls == ["f4"] and not isinstance(layer._cache, winograd.WinogradCache)
    finally:
        conv_kernels.conv3x3_winograd4 = original
    np.testing.assert_allclose(inferred, trained, rtol=1e-5, atol=1e-5)


@given(geometries(), st.sampled_from([0, 1, 2]), st.integers(0, 2 ** 32 - 1))
def test_training_forward_and_backward_equal_plain_loops(geometry, activation, seed):
    x, w, b, pads = _case(geometry, seed)
    y, logits, cache = winograd.winograd_forward(x, w, b, pads, activation)
    z_ref = reference.conv2d_forward(x, w, b, (1, 1), geometry[1])
    np.testing.assert_allclose(logits if activation == 2 else y,
                               z_ref if activation != 1 else np.maximum(z_ref, 0),
                               rtol=1e-10, atol=1e-10)
    dz = np.random.default_rng(seed + 1).standard_normal(y.shape)
    dx, dw, db = winograd.winograd_backward(dz, cache, from_logits=True)   # dz is dL/dZ
    dx_ref, dw_ref, db_ref = reference.conv2d_backward(x, w, dz, (1, 1), geometry[1])
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(dw, dw_ref, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(db, db_ref, rtol=1e-10, atol=1e-10)


@given(geometries(), st.integers(0, 2 ** 32 - 1))
def test_each_backward_transform_is_the_adjoint_of_its_forward(geometry, seed):
    # <T(a), b> == <a, T*(b)> for the input and the output transforms.
    x, _, _, pads = _case(geometry, seed)
    rng = np.random.default_rng(seed)
    n, h, w, c = x.shape
    h_out, w_out = h + pads[0] + pads[1] - 2, w + pads[2] + pads[3] - 2
    tiles_h, tiles_w = winograd.tiles(h_out, w_out)
    t = n * tiles_h * tiles_w
    v = winograd._winograd_input(x, pads[0], pads[2], tiles_h, tiles_w, np.empty((16, t, c)))
    d = rng.standard_normal(v.shape)
    back = winograd._winograd_input_adjoint(d, pads[0], pads[2], tiles_h, tiles_w, np.zeros(x.shape))
    assert np.sum(v * d) == pytest.approx(np.sum(x * back), rel=1e-10, abs=1e-10)
    m = rng.standard_normal((16, t, c))
    y = np.empty((n, h_out, w_out, c))
    winograd._winograd_output(m, np.zeros(c), 0, tiles_h, tiles_w, y, y, False)
    dz = rng.standard_normal(y.shape)
    dm = winograd._winograd_output_adjoint(dz, tiles_h, tiles_w, np.empty_like(m))
    assert np.sum(y * dz) == pytest.approx(np.sum(m * dm), rel=1e-10, abs=1e-10)


@given(geometries(), st.sampled_from(["linear", "relu", "sigmoid"]), st.integers(0, 2 ** 32 - 1))
def test_conv2d_by_winograd_passes_the_gradient_check(geometry, activation, seed):
    from minicnn import gradcheck

    x_shape, padding, c_out = geometry
    x = np.random.default_rng(seed).standard_normal(x_shape)
    previous = layers.set_winograd_min_channels(1)
    try:
        layer = layers.Conv2D(c_out, 3, padding=padding, activation=activation)
        result = gradcheck.check_layer(layer, x, seed=seed % 1000)
    finally:
        layers.set_winograd_min_channels(previous)
    assert result.max_error < 1e-6, result


def test_training_steps_with_and_without_winograd_agree():
    # float32 training, as the lecture's: the two algorithms differ only by rounding.
    def train(min_channels):
        previous = layers.set_winograd_min_channels(min_channels)
        try:
            model = Sequential([
                layers.Conv2D(8, 3, activation="relu", input_shape=(14, 14, 3)),
                layers.Conv2D(8, 3, padding="same", activation="relu"), layers.MaxPooling2D(2),
                layers.Conv2D(4, 3, activation="relu"),
                layers.Flatten(), layers.Dense(1, activation="sigmoid")], seed=5)
            model.compile("rmsprop", "binary_crossentropy", ["acc"])
            rng = np.random.default_rng(2)
            x = rng.random((6, 14, 14, 3), dtype=np.float32)
            y = rng.integers(0, 2, 6).astype(np.float32)
            losses = [model.train_on_batch(x, y)[0] for _ in range(3)]
            return losses, model.get_weights()
        finally:
            layers.set_winograd_min_channels(previous)

    losses, weights = train(1)
    losses_ref, weights_ref = train(None)
    np.testing.assert_allclose(losses, losses_ref, rtol=1e-5)
    for got, expected in zip(weights, weights_ref):
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)
