"""The contract every layer keeps (STYLE habit 7), run over a table of layers.

For each registered layer (CASES: a case strategy per class, every registered convolution
algorithm drawn for the kernels it supports) and hypothesis-drawn input: output shape
equals the declared one, parameter count, float64 gradient check of input and weights, dy
unchanged by backward, a batch of N equals N batches of 1, grads assigned (not accumulated)
by a second backward, the config and the weights round-trip (the layer's own config, the
Keras config a model file holds, a Keras-layout weights file), and Keras's layer of that
config computes the same; no dropout at inference, Keras weight shapes.
"""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from minicnn import gradcheck, layers, registry
from minicnn.kernels import ACTIVATION_CODES, Conv2DCache, winograd
from minicnn.kernels.conv import RecomputeCache, micro_batches
from minicnn.layers.conv_algorithms import ALGORITHMS
from minicnn.shapes import window_2d

from strategies import windows

TOLERANCE = 1e-6


@st.composite
def conv_cases(draw):
    (n, h, w, c), k, s, padding = draw(windows(max_size=8, max_k=4, max_c=5))
    if draw(st.booleans()) and (padding == "same" or min(h, w) >= 3):
        k, s = (3, 3), (1, 1)                 # the kernels every algorithm computes
    activation = draw(st.sampled_from([None, "relu", "sigmoid", "linear"]))
    use_bias = draw(st.booleans())
    filters = draw(st.integers(1, 4))
    code = ACTIVATION_CODES[activation or "linear"]
    algorithm = draw(st.sampled_from(["auto"] + [
        name for name, a in ALGORITHMS.items()
        if a.unsupported(k + (c, filters), s, code) is None]))
    layer = layers.Conv2D(filters, k, strides=s, padding=padding, activation=activation,
                          use_bias=use_bias, dtype="float64", algorithm=algorithm)
    n_params = k[0] * k[1] * c * filters + (filters if use_bias else 0)
    return layer, (n, h, w, c), n_params


@st.composite
def pool_cases(draw):
    (n, h, w, c), k, s, padding = draw(windows(max_size=8, max_k=3, max_c=4))
    strides = draw(st.sampled_from([None, s]))
    return layers.MaxPooling2D(k, strides=strides, padding=padding, dtype="float64"), (n, h, w, c), 0


@st.composite
def dense_cases(draw):
    n, d_in, units = draw(st.integers(1, 4)), draw(st.integers(1, 12)), draw(st.integers(1, 6))
    activation = draw(st.sampled_from([None, "relu", "sigmoid", "softmax"]))
    use_bias = draw(st.booleans())
    layer = layers.Dense(units, activation=activation, use_bias=use_bias, dtype="float64")
    return layer, (n, d_in), d_in * units + (units if use_bias else 0)


@st.composite
def shape_only_cases(draw):
    shape = tuple(draw(st.lists(st.integers(1, 5), min_size=2, max_size=4)))
    kind = draw(st.sampled_from(["flatten", "dropout", "relu", "sigmoid", "linear", "softmax"]))
    if kind == "flatten":
        layer = layers.Flatten(dtype="float64")
    elif kind == "dropout":
        layer = layers.Dropout(draw(st.sampled_from([0.0, 0.3, 0.5, 0.9])), seed=draw(st.integers(0, 99)),
                               dtype="float64")
    else:
        layer = layers.Activation(kind, dtype="float64")
    return layer, shape, 0


# Every registered layer class (minicnn.registry) and the cases that draw it: a new layer
# joins this table and gets every check below.
CASES = {"Conv2D": conv_cases(), "MaxPooling2D": pool_cases(), "Dense": dense_cases(),
         "Flatten": shape_only_cases(), "Dropout": shape_only_cases(),
         "Activation": shape_only_cases()}
ALL_CASES = st.one_of(*dict.fromkeys(CASES.values()))


def test_every_registered_layer_is_in_the_table():
    from minicnn.model import Sequential
    layer_classes = {name for name, cls in registry.registered(layers.Layer).items()
                     if not issubclass(cls, Sequential)}
    assert layer_classes == set(CASES)


def test_every_conv_algorithm_is_drawn():
    drawn = set()

    @settings(max_examples=200, database=None)
    @given(conv_cases())
    def collect(case):
        drawn.add(case[0].algorithm)

    collect()
    assert drawn == {"auto", *ALGORITHMS}


def _input(shape, seed):
    return np.random.default_rng(seed).standard_normal(shape)


@given(ALL_CASES, st.integers(0, 2 ** 32 - 1))
def test_output_shape_and_parameter_count(case, seed):
    layer, shape, n_params = case
    declared = layer.build((None,) + shape[1:])
    y = layer.forward(_input(shape, seed))
    assert declared[0] is None and y.shape == (shape[0],) + declared[1:]
    assert layer.output_shape == declared
    assert layer.count_params() == n_params
    assert y.dtype == np.float64


@given(ALL_CASES, st.integers(0, 2 ** 32 - 1))
def test_gradient_check_in_float64(case, seed):
    layer, shape, _ = case
    result = gradcheck.check_layer(layer, _input(shape, seed), seed=seed)
    assert result.max_error < TOLERANCE, str(result)
    assert "input" in result.errors


@given(ALL_CASES, st.integers(0, 2 ** 32 - 1))
def test_backward_leaves_dy_alone_and_assigns_grads(case, seed):
    layer, shape, _ = case
    x = _input(shape, seed)
    y = layer.forward(x, training=True)
    dy = np.random.default_rng(seed + 1).standard_normal(y.shape)
    dy_before = dy.copy()
    dx = layer.backward(dy)
    assert dx.shape == x.shape
    np.testing.assert_array_equal(dy, dy_before)
    grads_first = [g.copy() for g in layer.grads]
    assert [g.shape for g in layer.grads] == [p.shape for p in layer.params]
    layer.forward(x, training=True)
    layer.backward(dy)
    for g, g0 in zip(layer.grads, grads_first):        # assigned, not accumulated
        np.testing.assert_allclose(g, g0, rtol=1e-12)
    with pytest.raises(RuntimeError, match="forward"):
        layer.backward(dy)                              # backward freed the cache


@given(ALL_CASES, st.integers(0, 2 ** 32 - 1))
def test_a_batch_of_n_equals_n_batches_of_one_at_inference(case, seed):
    layer, shape, _ = case
    x = _input(shape, seed)
    whole = layer.forward(x)
    parts = np.concatenate([layer.forward(x[i:i + 1]) for i in range(len(x))])
    np.testing.assert_allclose(whole, parts, rtol=1e-12, atol=1e-12)


@given(ALL_CASES, st.integers(0, 2 ** 32 - 1))
def test_config_and_weights_round_trip(case, seed):
    # Through the layer's own config, through the Keras config a model file holds for it,
    # and its weights through a Keras-layout HDF5 weights file: the same outputs.
    import os
    import tempfile

    from minicnn.io.architecture import layer_config, layer_from_config
    from minicnn.model import Sequential

    layer, shape, _ = case
    layer.build((None,) + shape[1:], rng=np.random.default_rng(seed))
    x = _input(shape, seed)
    y = layer.forward(x)
    clone = type(layer).from_config(layer.get_config())
    clone.build((None,) + shape[1:])
    clone.set_weights(layer.get_weights())
    np.testing.assert_array_equal(clone.forward(x), y)

    from_file = layer_from_config(layer_config(layer))
    assert type(from_file) is type(layer) and from_file.get_config() == \
        {**layer.get_config(), **({"algorithm": "auto"} if "algorithm" in layer.get_config() else {})}
    saved = Sequential([layer])
    loaded = Sequential([from_file])
    for model in (saved, loaded):
        model.build((None,) + shape[1:])
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "weights.h5")
        saved.save_weights(path)
        loaded.load_weights(path)
    np.testing.assert_array_equal(from_file.forward(x), y)


@pytest.mark.keras
@given(ALL_CASES, st.integers(0, 2 ** 32 - 1))
def test_keras_computes_what_the_layer_computes(case, seed):
    # The Keras layer a model file describes (the same config), with the same weights.
    keras = pytest.importorskip("keras")
    from minicnn.io.architecture import layer_config

    layer, shape, _ = case
    layer.build((None,) + shape[1:], rng=np.random.default_rng(seed))
    entry = layer_config(layer)
    theirs = keras.layers.deserialize({"module": "keras.layers", **entry})
    theirs.build((None,) + shape[1:])
    theirs.set_weights(layer.get_weights())
    x = _input(shape, seed)
    np.testing.assert_allclose(np.asarray(theirs(x, training=False)), layer.forward(x),
                               rtol=1e-9, atol=1e-9)


def test_dropout_is_inverted_at_training_and_the_identity_at_inference():
    layer = layers.Dropout(0.25, seed=3)
    x = np.ones((200, 50), dtype=np.float32)
    np.testing.assert_array_equal(layer.forward(x, training=False), x)
    y = layer.forward(x, training=True)
    assert set(np.unique(y)) <= {0.0, np.float32(1 / 0.75)}
    assert abs((y == 0).mean() - 0.25) < 0.02
    assert abs(y.mean() - 1.0) < 0.03                  # expectation preserved


def test_dropout_with_a_seed_repeats_its_masks():
    x = np.ones((4, 10), dtype=np.float32)
    a = layers.Dropout(0.5, seed=7).forward(x, training=True)
    b = layers.Dropout(0.5, seed=7).forward(x, training=True)
    np.testing.assert_array_equal(a, b)


def test_keras_weight_shapes_and_order():
    conv = layers.Conv2D(8, (3, 2), input_shape=(9, 9, 5))
    conv.build((None, 9, 9, 5))
    assert [w.shape for w in conv.get_weights()] == [(3, 2, 5, 8), (8,)]
    dense = layers.Dense(4)
    dense.build((None, 6))
    assert [w.shape for w in dense.get_weights()] == [(6, 4), (4,)]
    assert dense.get_weights()[0].dtype == np.float32


def test_glorot_uniform_limits_and_zero_bias():
    conv = layers.Conv2D(64, 3)
    conv.build((None, 10, 10, 32), rng=np.random.default_rng(0))
    limit = np.sqrt(6 / (3 * 3 * 32 + 3 * 3 * 64))
    kernel, bias = conv.get_weights()
    assert np.abs(kernel).max() <= limit and np.abs(kernel).max() > 0.95 * limit
    assert abs(kernel.std() - limit / np.sqrt(3)) < 0.02 * limit
    np.testing.assert_array_equal(bias, 0)


def test_integer_arguments_as_keras_accepts_them():
    conv = layers.Conv2D(32, 3, strides=2, padding="same")
    assert conv.kernel_size == (3, 3) and conv.strides == (2, 2)
    assert conv.build((None, 15, 15, 3)) == (None, 8, 8, 32)
    assert layers.MaxPooling2D(3).strides == (3, 3)


@pytest.mark.parametrize("h, k, s, padding, expected", [
    (150, 3, 1, "valid", 148), (15, 2, 2, "valid", 7), (7, 3, 2, "same", 4),
    (8, 3, 2, "same", 4), (5, 5, 1, "same", 5), (9, 4, 3, "valid", 2),
])
def test_output_size_arithmetic(h, k, s, padding, expected):
    assert window_2d(h, h, (k, k), (s, s), padding).h_out == expected


def test_same_padding_puts_the_smaller_half_before():
    win = window_2d(8, 7, (4, 4), (1, 2), "same")
    assert (win.pad_top, win.pad_bottom) == (1, 2)       # total 3
    assert (win.pad_left, win.pad_right) == (1, 2)       # out 4: total (4-1)*2+4-7 = 3


@given(windows(max_size=8, max_k=3, max_c=3, max_n=5), st.integers(1, 4),
       st.sampled_from([None, "relu", "sigmoid"]), st.integers(1, 3), st.integers(0, 2 ** 32 - 1))
def test_micro_batched_inference_equals_the_whole_batch(geometry, filters, activation, images, seed):
    x_shape, k, s, padding = geometry
    layer = layers.Conv2D(filters, k, strides=s, padding=padding, activation=activation, dtype="float64")
    x = _input(x_shape, seed)
    whole = layer.forward(x, training=True)                 # one matrix product, cached
    per_image = layer.output_shape[1] * layer.output_shape[2] * k[0] * k[1] * x_shape[-1] * 8
    assert layer.plan.workspace_limit >= x_shape[0] * per_image     # the default: no bound here
    layer.plan = layer.plan._replace(workspace_limit=images * per_image)   # this layer's own
    parts = layer.forward(x)                            # inference: micro-batches of `images`
    np.testing.assert_allclose(parts, whole, rtol=1e-12, atol=1e-12)
    if activation == "sigmoid":
        assert layer.output_logits().shape == whole.shape


@given(windows(max_size=8, max_k=3, max_c=3, max_n=5), st.integers(1, 4),
       st.sampled_from([None, "relu", "sigmoid"]), st.sampled_from([None, 1]),
       st.integers(1, 3), st.booleans(), st.integers(0, 2 ** 32 - 1))
def test_training_within_a_workspace_limit_equals_the_whole_batch(
        geometry, filters, activation, winograd_min_channels, images, need_dx, seed):
    # Under the limit the forward keeps X rather than the patches (or Winograd's tiles)
    # and the backward rebuilds them a few images at a time: the same output and gradients.
    x_shape, k, s, padding = geometry
    x = _input(x_shape, seed)
    out_shape = layers.Conv2D(filters, k, strides=s, padding=padding).compute_output_shape(x_shape)
    dy = np.random.default_rng(seed + 1).standard_normal((x_shape[0],) + out_shape[1:])

    def run(limit):
        previous = layers.set_workspace_limit(limit)
        previous_winograd = layers.set_winograd_min_channels(winograd_min_channels)
        try:
            layer = layers.Conv2D(filters, k, strides=s, padding=padding, activation=activation,
                                  dtype="float64")
            layer.build(x_shape)
            layer.set_weights([w.copy() for w in weights])
            y = layer.forward(x, training=True)
            cache = layer._cache
            logits = layer.output_logits() if activation == "sigmoid" else None
            dx = layer.backward(dy, need_dx=need_dx)
            return y, logits, dx, [g.copy() for g in layer.grads], cache
        finally:
            layers.set_workspace_limit(previous)
            layers.set_winograd_min_channels(previous_winograd)

    probe = layers.Conv2D(filters, k, strides=s, padding=padding, dtype="float64")
    probe.build(x_shape)
    weights = [np.random.default_rng(seed + 2).standard_normal(w.shape) for w in probe.get_weights()]
    plan = micro_batches(x_shape, probe.kernel.shape, probe.strides, probe._pads,
                         ACTIVATION_CODES[activation or "linear"], 8, None, winograd_min_channels)
    limit = images * plan.per_image
    y, logits, dx, grads, cache = run(limit)
    y_ref, logits_ref, dx_ref, grads_ref, cache_ref = run(None)
    assert isinstance(cache_ref, (Conv2DCache, winograd.WinogradCache))
    if images < x_shape[0]:
        assert isinstance(cache, RecomputeCache) and cache.chunk == images
        assert cache.chunk * plan.per_image <= limit
    np.testing.assert_allclose(y, y_ref, rtol=1e-12, atol=1e-12)
    if logits_ref is not None:
        np.testing.assert_allclose(logits, logits_ref, rtol=1e-12, atol=1e-12)
    if need_dx:
        np.testing.assert_allclose(dx, dx_ref, rtol=1e-10, atol=1e-10)
    else:
        assert dx is None and dx_ref is None
    for got, expected in zip(grads, grads_ref, strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-10)


def test_workspace_limit_must_be_positive():
    with pytest.raises(ValueError, match="positive number of bytes"):
        layers.set_workspace_limit(0)
