"""Winograd's F(2x2, 3x3) and F(4x4, 3x3) against plain loops, their NumPy twins and im2col,
forward and backward, and the choice between them and im2col (what only F(4x4, 3x3) needs:
test_winograd4.py)."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from minicnn import layers
from minicnn.kernels import conv2d_forward, conv2d_inference, winograd, winograd4
from minicnn.kernels.winograd import F2
from minicnn.kernels.winograd4 import F4
from minicnn.model import Sequential

import reference
from strategies import conv3x3_case, conv3x3_geometries, fused_passes

ALGORITHMS = pytest.mark.parametrize("algorithm", [F2, F4], ids=["F2", "F4"])
TWINS = {2: winograd.conv3x3_winograd_reference, 4: winograd4.conv3x3_winograd4_reference}


@ALGORITHMS
@given(geometry=conv3x3_geometries(), seed=st.integers(0, 2 ** 32 - 1))
def test_winograd_equals_plain_loops(algorithm, geometry, seed):
    x, w, b, pads = conv3x3_case(geometry, seed)
    z_ref = reference.conv2d_forward(x, w, b, (1, 1), geometry[1])
    y, _ = winograd.conv3x3_winograd(x, w, b, pads, algorithm=algorithm)
    np.testing.assert_allclose(y, z_ref, rtol=1e-10, atol=1e-10)


@ALGORITHMS
@given(geometry=conv3x3_geometries(), activation=st.sampled_from([0, 1, 2]),
       seed=st.integers(0, 2 ** 32 - 1))
def test_winograd_kernel_equals_its_numpy_twin(algorithm, geometry, activation, seed):
    x, w, b, pads = conv3x3_case(geometry, seed)
    keep = activation == 2
    y, logits = winograd.conv3x3_winograd(x, w, b, pads, activation, keep_logits=keep,
                                          algorithm=algorithm)
    y_ref, logits_ref = TWINS[algorithm.m](x, w, b, pads, activation, keep)
    np.testing.assert_allclose(y, y_ref, rtol=1e-11, atol=1e-11)
    if keep:
        np.testing.assert_allclose(logits, logits_ref, rtol=1e-11, atol=1e-11)
    else:
        assert logits is None


@ALGORITHMS
@given(geometry=conv3x3_geometries(), activation=st.sampled_from([0, 1, 2]), chunk=st.integers(1, 4),
       seed=st.integers(0, 2 ** 32 - 1))
def test_inference_by_winograd_in_micro_batches_equals_im2col(algorithm, geometry, activation,
                                                               chunk, seed):
    # float32, as models run: the algorithms differ only by rounding, F(4x4, 3x3) by up to
    # a few millionths of the output's scale (test_winograd4.py)
    x, w, b, pads = conv3x3_case(geometry, seed, np.float32)
    y_ref, logits_ref, _ = conv2d_forward(x, w, b, (1, 1), pads, activation, keep_cache=False)
    per_image = winograd.winograd_workspace_per_image(*y_ref.shape[1:3], *w.shape[2:], 4,
                                                      algorithm)
    y, logits = conv2d_inference(x, w, b, (1, 1), pads, activation,
                                 max_workspace=chunk * per_image, winograd_min_channels=1,
                                 algorithm=algorithm)
    assert y.dtype == np.float32
    scale = float(np.abs(logits_ref if activation == 2 else y_ref).max())
    tol = 1e-5 * (1 if algorithm is F2 else max(1.0, scale))
    np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=tol)
    if activation == 2:
        np.testing.assert_allclose(logits, logits_ref, rtol=1e-5, atol=tol)
    else:
        assert logits is None


@ALGORITHMS
def test_kernel_transform_is_g_g_gt(algorithm):
    rng = np.random.default_rng(0)
    w = rng.standard_normal((3, 3, 2, 3))
    a, g = algorithm.m + 2, algorithm.g
    u = winograd.winograd_kernel(w, algorithm).reshape(a, a, 2, 3)
    for c in range(2):
        for o in range(3):
            np.testing.assert_allclose(u[:, :, c, o], g @ w[:, :, c, o] @ g.T,
                                       rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("strides, kernel, c_in, activation, expected", [
    ((1, 1), 3, 32, 1, True),
    ((1, 1), 3, 31, 1, False),          # too few channels for the thin products to gain
    ((2, 2), 3, 64, 1, False),
    ((1, 1), 5, 64, 1, False),
    ((1, 1), 3, 64, 3, False),          # softmax needs whole rows: im2col's fused pass
])
def test_which_convolutions_take_winograd(strides, kernel, c_in, activation, expected):
    from minicnn.kernels.conv import uses_winograd
    assert uses_winograd((kernel, kernel, c_in, 8), strides, activation) is expected


@pytest.mark.parametrize("tile", [2, 4])
def test_a_model_predicts_the_same_with_and_without_winograd(tile):
    model = Sequential([
        layers.Conv2D(8, 3, padding="same", activation="relu", input_shape=(12, 12, 3)),
        layers.Conv2D(8, 3, activation="relu"), layers.MaxPooling2D(2),
        layers.Conv2D(4, 3, padding="same", activation="relu"),
        layers.Flatten(), layers.Dense(3)], seed=3)   # linear: a sigmoid near 0.5 can round
    x = np.random.default_rng(1).random((5, 12, 12, 3), dtype=np.float32)  # the two ways alike
    convs = [layer for layer in model.layers if isinstance(layer, layers.Conv2D)]

    def predict(algorithm):
        for layer in convs:                            # each layer's choice, overridden
            layer.algorithm = algorithm
        assert {layer.plan.describe() for layer in convs} == {algorithm}
        return model.predict(x, verbose=0)

    expected = predict("im2col")
    got = predict(f"winograd{tile}")
    assert not np.array_equal(got, expected)          # computed another way
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "64", (64,), (64, 32, 16), (64, 0), [None, "32"]])
def test_set_winograd_min_channels_refuses_bad_values(bad):
    with pytest.raises(ValueError, match="set_winograd_min_channels"):
        layers.set_winograd_min_channels(bad)


@pytest.mark.parametrize("bad", [0, 3, 2.0, True, "4", None])
def test_set_winograd_tile_refuses_bad_values(bad):
    with pytest.raises(ValueError, match="set_winograd_tile"):
        layers.set_winograd_tile(bad)


def test_set_winograd_tile_returns_the_previous_tile():
    assert layers.set_winograd_tile(2) == 4               # F(4x4, 3x3) by default
    assert layers.set_winograd_tile(4) == 2


def test_set_winograd_min_channels_takes_one_number_or_a_pair_and_returns_the_pair():
    from minicnn.kernels.conv import WINOGRAD_MIN_CHANNELS
    previous = layers.set_winograd_min_channels(16)
    try:
        assert previous == (WINOGRAD_MIN_CHANNELS, WINOGRAD_MIN_CHANNELS) == (32, 32)
        assert layers.set_winograd_min_channels((None, 8)) == (16, 16)
        assert layers.set_winograd_min_channels([1, None]) == (None, 8)
    finally:
        assert layers.set_winograd_min_channels(previous) == (1, None)


def test_inference_and_training_take_their_own_threshold():
    # over 32 channels: Winograd only at inference with (64, 32), only in training with (32, 64)
    from minicnn.kernels import conv as conv_kernels
    calls = []
    x = np.random.default_rng(0).random((2, 14, 14, 32), dtype=np.float32)
    original = conv_kernels.conv3x3_winograd
    conv_kernels.conv3x3_winograd = lambda *a, **k: calls.append("winograd") or original(*a, **k)
    try:
        with layers.conv_settings(winograd_min_channels=(64, 32)):
            layer = layers.Conv2D(256, 3, activation="relu")   # over the bands
            layer.build((None, 14, 14, 32))
        assert layer.plan.describe() == "im2col (training), winograd4 (inference)"
        inferred = layer.forward(x)
        assert calls == ["winograd"]
        trained = layer.forward(x, training=True)
        assert calls == ["winograd"] and not isinstance(layer._cache, winograd.WinogradCache)
        # Settings changed later leave the built layer as it is, until it is re-planned.
        with layers.conv_settings(winograd_min_channels=(32, 64)):
            layer.forward(x)
            assert calls == ["winograd", "winograd"]
            layer.algorithm = "auto"
        assert layer.plan.describe() == "winograd4 (training), im2col (inference)"
        layer.forward(x)
        assert calls == ["winograd", "winograd"]
        layer.forward(x, training=True)
        assert isinstance(layer._cache, winograd.WinogradCache) and layer._cache.algorithm is F4
    finally:
        conv_kernels.conv3x3_winograd = original
    np.testing.assert_allclose(inferred, trained, rtol=1e-5, atol=1e-5)


@ALGORITHMS
@given(geometry=conv3x3_geometries(), activation=st.sampled_from([0, 1, 2]),
       seed=st.integers(0, 2 ** 32 - 1))
def test_training_forward_and_backward_equal_plain_loops(algorithm, geometry, activation, seed):
    x, w, b, pads = conv3x3_case(geometry, seed)
    y, logits, cache = winograd.winograd_forward(x, w, b, pads, activation, algorithm)
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


@ALGORITHMS
@given(geometry=conv3x3_geometries(), activation=st.sampled_from([0, 1, 2]),
       images=st.integers(1, 3), seed=st.integers(0, 2 ** 32 - 1))
def test_passes_in_blocks_of_images_equal_the_whole_batch_at_once(algorithm, geometry,
                                                                  activation, images, seed):
    # Blocks of `images` images (block_bytes the V and M of that many) against block_bytes
    # None: the transforms are per tile, so V is the same to the bit; the products differ at
    # most by BLAS's rounding on fewer rows.
    with fused_passes(False):       # (F4's fused passes take no blocks)
        x, w, b, pads = conv3x3_case(geometry, seed)
        n = x.shape[0]
        x = np.concatenate([x, x[::-1] * 0.5])                  # 2 to 6 images
        h_out, w_out, _, _, t = winograd._output_tiles(x.shape, pads, algorithm.m)
        per_image = winograd.winograd_workspace_per_image(h_out, w_out, *w.shape[2:], 8, algorithm)
        block_bytes = images * per_image
        assert winograd.images_per_block(2 * n, (h_out, w_out), w.shape[2:], 8, algorithm,
                                         block_bytes) == min(images, 2 * n)
        y, logits, cache = winograd.winograd_forward(x, w, b, pads, activation, algorithm,
                                                     block_bytes=block_bytes)
        y_all, logits_all, cache_all = winograd.winograd_forward(x, w, b, pads, activation,
                                                                 algorithm, block_bytes=None)
        np.testing.assert_array_equal(cache.v[:, :t], cache_all.v[:, :t])
        np.testing.assert_allclose(y, y_all, rtol=1e-13, atol=1e-13)
        if activation == 2:
            np.testing.assert_allclose(logits, logits_all, rtol=1e-13, atol=1e-13)
        z_ref = reference.conv2d_forward(x, w, b, (1, 1), geometry[1])
        np.testing.assert_allclose(logits if activation == 2 else y,
                                   z_ref if activation != 1 else np.maximum(z_ref, 0),
                                   rtol=1e-10, atol=1e-10)
        y_inf, logits_inf = winograd.conv3x3_winograd(x, w, b, pads, activation, activation == 2,
                                                      algorithm=algorithm, block_bytes=block_bytes)
        np.testing.assert_allclose(y_inf, y_all, rtol=1e-13, atol=1e-13)
        if activation == 2:
            np.testing.assert_allclose(logits_inf, logits_all, rtol=1e-13, atol=1e-13)
        dz = np.random.default_rng(seed + 1).standard_normal(y.shape)
        for got, want in zip(winograd.winograd_backward(dz, cache, from_logits=True),
                             winograd.winograd_backward(dz, cache_all, from_logits=True)):
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_a_block_holds_the_images_whose_workspace_fits_and_at_least_one():
    blocks = winograd.images_per_block
    mib = 2 ** 20
    assert blocks(32, (72, 72), (32, 64), 4, F4, 8 * mib) == 1        # 4.5 MB an image
    assert blocks(32, (72, 72), (32, 64), 4, F4, 16 * mib) == 3
    assert blocks(32, (34, 34), (64, 128), 4, F4, 8 * mib) == 3       # 2.2 MB an image
    assert blocks(32, (148, 148), (32, 64), 4, F4, 8 * mib) == 32     # 19 MB an image
    assert blocks(32, (148, 148), (32, 64), 4, F4, 40 * mib) == 2
    assert blocks(5, (8, 8), (3, 4), 4, F4, 8 * mib) == 5
    assert blocks(7, (72, 72), (32, 64), 4, F4, None) == 7
    # products that dominate the passes: no blocks
    assert blocks(32, (15, 15), (128, 128), 4, F4, 8 * mib) == 32
    assert blocks(20, (35, 35), (256, 512), 4, F4, 2 ** 30) == 20
    assert blocks(20, (35, 35), (127, 128), 4, F4, 6 * mib) == 2


@ALGORITHMS
@given(geometry=conv3x3_geometries(), seed=st.integers(0, 2 ** 32 - 1))
def test_each_backward_transform_is_the_adjoint_of_its_forward(algorithm, geometry, seed):
    # <T(a), b> == <a, T*(b)> for the input and the output transforms.
    x, _, _, pads = conv3x3_case(geometry, seed)
    rng = np.random.default_rng(seed)
    n, h, w, c = x.shape
    h_out, w_out = h + pads[0] + pads[1] - 2, w + pads[2] + pads[3] - 2
    tiles_h, tiles_w = winograd.tiles(h_out, w_out, algorithm.m)
    t, p = n * tiles_h * tiles_w, algorithm.positions
    v = algorithm.input(x, pads[0], pads[2], tiles_h, tiles_w, np.empty((p, t, c)))
    d = rng.standard_normal(v.shape)
    back = algorithm.input_adjoint(d, pads[0], pads[2], tiles_h, tiles_w, np.zeros(x.shape))
    assert np.sum(v * d) == pytest.approx(np.sum(x * back), rel=1e-10, abs=1e-10)
    m = rng.standard_normal((p, t, c))
    y = np.empty((n, h_out, w_out, c))
    algorithm.output(m, np.zeros(c), 0, tiles_h, tiles_w, y, y, False)
    dz = rng.standard_normal(y.shape)
    dm = algorithm.output_adjoint(dz, tiles_h, tiles_w, np.empty_like(m))
    assert np.sum(y * dz) == pytest.approx(np.sum(m * dm), rel=1e-10, abs=1e-10)


@pytest.mark.parametrize("tile", [2, 4])
@given(geometry=conv3x3_geometries(), activation=st.sampled_from(["linear", "relu", "sigmoid"]),
       seed=st.integers(0, 2 ** 32 - 1))
def test_conv2d_by_winograd_passes_the_gradient_check(tile, geometry, activation, seed):
    from minicnn import gradcheck

    x_shape, padding, c_out = geometry
    x = np.random.default_rng(seed).standard_normal(x_shape)
    previous, previous_tile = layers.set_winograd_min_channels(1), layers.set_winograd_tile(tile)
    try:
        layer = layers.Conv2D(c_out, 3, padding=padding, activation=activation)
        result = gradcheck.check_layer(layer, x, seed=seed % 1000)
    finally:
        layers.set_winograd_min_channels(previous)
        layers.set_winograd_tile(previous_tile)
    assert result.max_error < 1e-6, result


@pytest.mark.parametrize("tile", [2, 4])
def test_training_steps_with_and_without_winograd_agree(tile):
    # float32 training, as the lecture's: the algorithms differ only by rounding.
    def train(min_channels):
        previous, previous_tile = (layers.set_winograd_min_channels(min_channels),
                                   layers.set_winograd_tile(tile))
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
            layers.set_winograd_tile(previous_tile)

    losses, weights = train(1)
    losses_ref, weights_ref = train(None)
    np.testing.assert_allclose(losses, losses_ref, rtol=1e-5)
    for got, expected in zip(weights, weights_ref):
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)
