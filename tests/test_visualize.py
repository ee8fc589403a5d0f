"""minicnn.visualize: input gradients and saliency by the model's own backward.

    input_gradient equals central differences of the logit in float64 (hypothesis draws the
    shapes, paddings and activations), per image, for a sigmoid output and a linear one,
    and through a frozen nested model; no weight, optimizer state or generator changes;
    saliency is its channel maximum; bad output_index is a clear error
"""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import minicnn as mc
from minicnn import layers, visualize


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
