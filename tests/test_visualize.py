"""minicnn.visualize by the model's own backward, in float64 against central differences
and plain NumPy (Keras's GradientTape is in test_visualize_keras.py).

    input_gradient equals central differences of the logit (hypothesis draws the shapes,
    paddings and activations), per image, for a sigmoid output and a linear one, and through
    a frozen nested model; no weight, optimizer state or generator changes; saliency is its
    channel maximum;
    grad_cam: the gradient at a layer's output equals central differences of the logit
    through the layers after it, and the heatmap is the formula on it;
    filter_patterns: one step is the RMS-normalized central-difference gradient of the mean
    activation; more steps raise it;
    activations equal the layers called one after another;
    the pictures: activation grids, patterns, saliency and overlays;
    bad input: unknown layer names (the valid ones listed), a non-conv layer for Grad-CAM,
    the wrong image size (the size the model wants), bad filters and steps
"""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import minicnn as mc
from minicnn import layers, plotting, visualize


@pytest.fixture(autouse=True)
def fresh_names():
    mc.clear_session()


def _model(size, channels, padding, activation, out_activation, seed, dropout=False):
    stack = [layers.Conv2D(3, 3, padding=padding, activation=activation, dtype="float64",
                           input_shape=(size, size, channels)),
             layers.MaxPooling2D(2, padding="same", dtype="float64"),
             layers.Conv2D(2, 2, activation="relu", dtype="float64"),
             layers.Flatten(dtype="float64")]
    if dropout:
        stack.append(layers.Dropout(0.5, dtype="float64"))
    stack.append(layers.Dense(2, activation=out_activation, dtype="float64"))
    return mc.Sequential(stack, seed=seed)


def _numeric(model, x, index, eps=1e-6):
    grad = np.zeros_like(x)
    for pos in np.ndindex(x.shape):
        plus, minus = x.copy(), x.copy()
        plus[pos] += eps
        minus[pos] -= eps
        grad[pos] = (visualize.logit(model, plus, index)[pos[0]]
                     - visualize.logit(model, minus, index)[pos[0]]) / (2 * eps)
    return grad


@settings(max_examples=15, deadline=None)
@given(st.integers(6, 9), st.integers(1, 3), st.sampled_from(["valid", "same"]),
       st.sampled_from(["relu", "linear", "sigmoid"]), st.sampled_from(["sigmoid", "linear"]),
       st.integers(0, 1), st.integers(0, 2 ** 16))
def test_input_gradient_equals_central_differences_of_the_logit(size, channels, padding,
                                                                activation, out_activation,
                                                                index, seed):
    model = _model(size, channels, padding, activation, out_activation, seed)
    x = np.random.default_rng(seed).standard_normal((2, size, size, channels))
    grad = visualize.input_gradient(model, x, index)
    assert grad.shape == x.shape and grad.dtype == np.float64
    np.testing.assert_allclose(grad, _numeric(model, x, index), rtol=1e-5, atol=1e-7)


def test_nothing_changes_but_the_answer():
    model = _model(8, 3, "same", "relu", "sigmoid", 0, dropout=True)
    model.compile("rmsprop", "binary_crossentropy")
    x = np.random.default_rng(0).standard_normal((3, 8, 8, 3))
    y = np.array([[0, 1], [1, 0], [1, 1]], dtype=np.float64)
    model.train_on_batch(x, y)
    weights = [w.copy() for w in model.get_weights()]
    state = model.optimizer.get_state(model.trainable_weights)
    rngs = [l.rng.bit_generator.state for l in model.layers if isinstance(l, layers.Dropout)]
    first = visualize.input_gradient(model, x)
    second = visualize.input_gradient(model, x)
    np.testing.assert_array_equal(first, second)          # no dropout, nothing kept
    for a, b in zip(weights, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(state, model.optimizer.get_state(model.trainable_weights)):
        for slot in a:
            np.testing.assert_array_equal(a[slot], b[slot])
    assert rngs == [l.rng.bit_generator.state for l in model.layers
                    if isinstance(l, layers.Dropout)]
    # one image's gradient is its own; a single image gives a batch of one
    np.testing.assert_allclose(visualize.input_gradient(model, x[1]), first[1:2], rtol=1e-12)


def test_through_a_frozen_nested_base():
    base = mc.Sequential([layers.Conv2D(3, 3, activation="relu", dtype="float64",
                                        input_shape=(7, 7, 2)),
                          layers.MaxPooling2D(dtype="float64")], name="base", seed=1)
    base.trainable = False
    model = mc.Sequential([base, layers.Flatten(dtype="float64"),
                           layers.Dense(1, activation="sigmoid", dtype="float64")], seed=1)
    x = np.random.default_rng(1).standard_normal((2, 7, 7, 2))
    np.testing.assert_allclose(visualize.input_gradient(model, x), _numeric(model, x, 0),
                               rtol=1e-5, atol=1e-7)


def test_saliency_is_the_channel_maximum_of_the_absolute_gradient():
    model = _model(8, 3, "valid", "relu", "sigmoid", 2)
    x = np.random.default_rng(2).standard_normal((2, 8, 8, 3))
    np.testing.assert_array_equal(visualize.saliency(model, x),
                                  np.abs(visualize.input_gradient(model, x)).max(axis=-1))


@pytest.mark.parametrize("index", [2, -1, 0.5, True])
def test_an_output_index_the_model_lacks_is_named(index):
    model = _model(8, 3, "valid", "relu", "sigmoid", 0)
    with pytest.raises(ValueError, match=r"output_index must be an int in \[0, 2\)"):
        visualize.input_gradient(model, np.zeros((1, 8, 8, 3)), index)


def _tail_logit(model, k, a, index):
    """The logit computed from layer k's output a by the layers after it, called one by one."""
    leaves = model.leaf_layers()
    h = a
    for layer in leaves[k + 1:]:
        h = layer.forward(h, training=False)
    return leaves[-1].output_logits()[:, index] if leaves[-1].activation == "sigmoid" \
        else h[:, index]


@settings(max_examples=10, deadline=None)
@given(st.integers(7, 9), st.sampled_from(["valid", "same"]), st.integers(0, 1),
       st.sampled_from(["conv2d", "conv2d_1"]), st.sampled_from(["linear", "sigmoid"]),
       st.integers(0, 2 ** 16))
def test_grad_cam_is_the_formula_on_central_differences(size, padding, index, name,
                                                        activation, seed):
    # conv2d's activation has no flat part: a ReLU's zeros would tie in the pooling windows
    # after it, where central differences give half the gradient to each tied cell
    mc.clear_session()
    model = _model(size, 2, padding, activation, "sigmoid", seed)
    x = np.random.default_rng(seed).standard_normal((2, size, size, 2))
    k = [layer.name for layer in model.leaf_layers()].index(name)
    a = visualize.activations(model, x, [name])[name]
    g = np.zeros_like(a)
    for pos in np.ndindex(a.shape):
        plus, minus = a.copy(), a.copy()
        plus[pos] += 1e-6
        minus[pos] -= 1e-6
        g[pos] = (_tail_logit(model, k, plus, index)[pos[0]]
                  - _tail_logit(model, k, minus, index)[pos[0]]) / 2e-6
    cam = np.maximum((a * g.mean(axis=(1, 2))[:, None, None, :]).sum(axis=-1), 0)
    peak = cam.max(axis=(1, 2), keepdims=True)
    expected = np.where(peak > 0, cam / np.where(peak > 0, peak, 1), 0)
    ours = visualize.grad_cam(model, x, name, index)
    assert ours.shape == a.shape[:3] and ours.min() >= 0 and ours.max() <= 1
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-6)


def test_grad_cam_of_a_dead_layer_is_zero_not_nan():
    model = _model(8, 2, "valid", "relu", "sigmoid", 0)
    model.build((None, 8, 8, 2))
    first = model.get_layer("conv2d")
    first.set_weights([np.zeros_like(first.kernel), -np.ones_like(first.bias)])  # ReLU(-1) = 0
    cam = visualize.grad_cam(model, np.ones((1, 8, 8, 2)), "conv2d")
    assert cam.shape == (1, 6, 6) and not cam.any()


def _mean_activation(model, name, f, x):
    return visualize.activations(model, x, [name])[name][..., f].mean(axis=(1, 2))


def test_one_ascent_step_is_the_rms_normalized_gradient():
    mc.clear_session()
    model = _model(8, 3, "same", "relu", "sigmoid", 1)
    model.build((None, 8, 8, 3))
    x0 = visualize.filter_patterns(model, "conv2d_1", [0, 1], steps=0, seed=2)
    x1 = visualize.filter_patterns(model, "conv2d_1", [0, 1], steps=1, step_size=0.5, seed=2)
    assert x0.shape == (2, 8, 8, 3) and x0.min() >= 128 and x0.max() < 148   # gray noise
    for n, f in enumerate([0, 1]):
        g = np.zeros_like(x0[n])
        for pos in np.ndindex(g.shape):
            plus, minus = x0[n].copy(), x0[n].copy()
            plus[pos] += 1e-5
            minus[pos] -= 1e-5
            g[pos] = (_mean_activation(model, "conv2d_1", f, plus[None])[0]
                      - _mean_activation(model, "conv2d_1", f, minus[None])[0]) / 2e-5
        expected = x0[n] + 0.5 * g / (np.sqrt(np.mean(g ** 2)) + 1e-5)
        np.testing.assert_allclose(x1[n], expected, rtol=1e-7, atol=1e-6)


def test_the_ascent_raises_the_filter_s_mean_activation():
    mc.clear_session()
    model = _model(9, 3, "same", "relu", "sigmoid", 4)
    model.build((None, 9, 9, 3))
    start = visualize.filter_patterns(model, "conv2d", 3, steps=0)
    end = visualize.filter_patterns(model, "conv2d", 3, steps=20)
    for f in range(3):
        assert _mean_activation(model, "conv2d", f, end[f:f + 1])[0] > \
            _mean_activation(model, "conv2d", f, start[f:f + 1])[0]


def test_activations_are_the_layers_called_one_after_another():
    mc.clear_session()
    model = _model(8, 3, "same", "relu", "sigmoid", 3, dropout=True)
    x = np.random.default_rng(3).standard_normal((2, 8, 8, 3))
    acts = visualize.activations(model, x)
    assert list(acts) == [layer.name for layer in model.layers]
    h = x
    for layer in model.layers:
        h = layer.forward(h, training=False)
        np.testing.assert_array_equal(acts[layer.name], h)
    np.testing.assert_array_equal(model.predict(x, verbose=0), h)
    assert list(visualize.activations(model, x[0], "flatten")) == ["flatten"]


def test_a_nested_model_s_layers_and_its_own_name():
    base = mc.Sequential([layers.Conv2D(3, 3, activation="relu", dtype="float64",
                                        input_shape=(7, 7, 2), name="inner_conv"),
                          layers.MaxPooling2D(dtype="float64", name="inner_pool")],
                         name="base", seed=1)
    model = mc.Sequential([base, layers.Flatten(dtype="float64"),
                           layers.Dense(1, activation="sigmoid", dtype="float64")], seed=1)
    x = np.random.default_rng(1).standard_normal((1, 7, 7, 2))
    acts = visualize.activations(model, x, ["base", "inner_conv"])
    np.testing.assert_array_equal(acts["base"], base.predict(x, verbose=0))
    assert acts["inner_conv"].shape == (1, 5, 5, 3)
    assert visualize.grad_cam(model, x, "inner_conv").shape == (1, 5, 5)
    with pytest.raises(ValueError, match=r"'base' .* is a Sequential, not a convolution"):
        visualize.grad_cam(model, x, "base")


def test_pictures():
    a = np.random.default_rng(0).standard_normal((5, 4, 20))
    a[..., 3] = 7.0                                        # a constant channel
    grid = visualize.activation_image(a)
    assert grid.shape == (10, 64) and grid.dtype == np.uint8       # 2 rows of 16, 4 wide
    assert (grid[0:5, 12:16] == 128).all()                  # channel 3: gray
    assert not grid[5:10, 16:].any()                        # past the last channel: black
    z = (a[..., 0] - a[..., 0].mean()) / a[..., 0].std()
    np.testing.assert_array_equal(grid[:5, :4], np.clip(128 + 64 * z, 0, 255).astype(np.uint8))

    patterns = np.random.default_rng(1).random((3, 6, 6, 3)) * 20 + 128
    row = visualize.pattern_grid(patterns, margin=2)
    assert row.shape == (6, 3 * 6 + 2 * 2, 3) and not row[:, 6:8].any()
    tile = visualize.pattern_image(patterns[0])
    assert abs(tile.mean() - 0.5 * 255) < 3 and tile.std() > 10

    s = visualize.saliency_image(np.array([[0.0, 1.0], [2.0, 4.0]]), percentile=100)
    np.testing.assert_array_equal(s, [[0, 63], [127, 255]])
    assert not visualize.saliency_image(np.zeros((2, 2))).any()

    pytest.importorskip("matplotlib")
    photo = np.full((20, 30, 3), 100.0)
    cam = np.zeros((5, 5))
    cam[2, 2] = 1
    overlay = visualize.heatmap_overlay(photo, cam, alpha=0.4)
    assert overlay.shape == (20, 30, 3) and overlay.dtype == np.uint8
    jet_low = np.array(plotting.colormap("jet")(0.0)[:3]) * 255      # jet(0): dark blue
    np.testing.assert_allclose(overlay[0, 0], 0.6 * 100 + 0.4 * jet_low, atol=1)
    assert overlay[10, 15, 0] > overlay[0, 0, 0]          # the hot centre: more red


def test_unknown_layer_names_list_the_valid_ones():
    model = _model(8, 3, "valid", "relu", "sigmoid", 0)
    x = np.zeros((1, 8, 8, 3))
    for call in (lambda: visualize.activations(model, x, ["conv2d", "nope"]),
                 lambda: visualize.grad_cam(model, x, "nope"),
                 lambda: visualize.filter_patterns(model, "nope", 2)):
        with pytest.raises(ValueError, match=r"no layer named 'nope'; its layers are "
                                             r"\['conv2d', 'max_pooling2d', 'conv2d_1'"):
            call()


@pytest.mark.parametrize("name, kind", [("max_pooling2d", "MaxPooling2D"),
                                        ("flatten", "Flatten")])
def test_grad_cam_wants_a_convolution(name, kind):
    model = _model(8, 3, "valid", "relu", "sigmoid", 0)
    with pytest.raises(ValueError, match=rf"'{name}' .* is a {kind}, not a convolution; .*"
                                         r"Conv2D layers are \['conv2d', 'conv2d_1'\]"):
        visualize.grad_cam(model, np.zeros((1, 8, 8, 3)), name)


def test_an_image_of_the_wrong_size_says_the_size_the_model_wants():
    model = _model(8, 3, "valid", "relu", "sigmoid", 0)
    model.build((None, 8, 8, 3))
    for call in (visualize.input_gradient, visualize.saliency, visualize.activations,
                 lambda m, x: visualize.grad_cam(m, x, "conv2d")):
        with pytest.raises(ValueError, match=r"takes images of shape \(8, 8, 3\) \(8x8x3\); "
                                             r"received an array of shape \(1, 9, 8, 3\)"):
            call(model, np.zeros((1, 9, 8, 3)))
    with pytest.raises(ValueError, match="NaN or infinite"):
        visualize.saliency(model, np.full((1, 8, 8, 3), np.nan))
    with pytest.raises(ValueError, match="takes 8x8 inputs; received size=10"):
        visualize.filter_patterns(model, "conv2d", 1, size=10)


@pytest.mark.parametrize("kwargs, message", [
    ({"filters": 4}, r"has 3 filters; .* received \[3\]"),
    ({"filters": [0, -1]}, r"received \[-1\]"),
    ({"filters": 0}, r"received \[\]"),
    ({"filters": 1, "steps": -1}, "steps must be a non-negative number"),
    ({"filters": 1, "steps": 2.5}, "steps must be a non-negative number"),
    ({"filters": 1, "step_size": float("nan")}, "step_size must be"),
])
def test_bad_filter_pattern_arguments(kwargs, message):
    model = _model(8, 3, "valid", "relu", "sigmoid", 0)
    model.build((None, 8, 8, 3))
    with pytest.raises(ValueError, match=message):
        visualize.filter_patterns(model, "conv2d", **kwargs)
    with pytest.raises(ValueError, match="outputs .* not feature maps"):
        visualize.filter_patterns(model, "flatten", 1)
