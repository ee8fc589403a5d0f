"""Sequential: the lecture's summaries, training, optimizers, and every bad input."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import minicnn as mc
from minicnn import gradcheck, layers, optimizers
from minicnn.applications import lecture
from minicnn.kernels import blas


@pytest.fixture(autouse=True)
def fresh_names():
    mc.clear_session()


# -- the lecture's summaries ---------------------------------------------------------

def test_no_max_pool_summary_matches_the_lecture():
    model = lecture.no_max_pool()
    assert [l.output_shape for l in model.layers] == [
        (None, 26, 26, 32), (None, 24, 24, 64), (None, 22, 22, 64)]
    assert [l.count_params() for l in model.layers] == [320, 18496, 36928]
    assert model.count_params() == 55744


def test_cnn_summary_matches_the_lecture():
    model = lecture.cnn()
    assert [l.output_shape for l in model.layers] == [
        (None, 148, 148, 32), (None, 74, 74, 32), (None, 72, 72, 64), (None, 36, 36, 64),
        (None, 34, 34, 128), (None, 17, 17, 128), (None, 15, 15, 128), (None, 7, 7, 128),
        (None, 6272), (None, 512), (None, 1)]
    assert [l.count_params() for l in model.layers] == [
        896, 0, 18496, 0, 73856, 0, 147584, 0, 0, 3211776, 513]
    assert model.count_params() == 3453121
    assert sum(w.size for w in model.trainable_weights) == 3453121


def test_cnn_with_dropout_has_the_same_parameters():
    model = lecture.cnn_dropout()
    assert model.count_params() == 3453121
    assert model.layers[9].name == "dropout" and model.layers[9].output_shape == (None, 6272)


def test_printed_summary_text():
    lines = []
    lecture.no_max_pool().summary(print_fn=lines.append)
    assert lines[0].splitlines() == [
        'Model: "sequential"',
        "_" * 65,
        "Layer (type)                 Output Shape              Param #",
        "=" * 65,
        "conv2d (Conv2D)              (None, 26, 26, 32)        320",
        "_" * 65,
        "conv2d_1 (Conv2D)            (None, 24, 24, 64)        18496",
        "_" * 65,
        "conv2d_2 (Conv2D)            (None, 22, 22, 64)        36928",
        "=" * 65,
        "Total params: 55,744",
        "Trainable params: 55,744",
        "Non-trainable params: 0",
        "_" * 65,
    ]


def test_summary_widens_for_long_names_and_counts_frozen_weights():
    model = lecture.cnn()
    model.layers[0].trainable = False
    lines = []
    model.summary(print_fn=lines.append)
    text = lines[0]
    assert "max_pooling2d_1 (MaxPooling2D) (None, 36, 36, 64)" in text
    assert "Trainable params: 3,452,225" in text and "Non-trainable params: 896" in text


def test_default_names_follow_keras():
    model = mc.Sequential([layers.Conv2D(2, 3, input_shape=(5, 5, 1)), layers.Conv2D(2, 1),
                           layers.MaxPooling2D(), layers.Flatten(), layers.Dense(1)])
    assert [l.name for l in model.layers] == ["conv2d", "conv2d_1", "max_pooling2d", "flatten", "dense"]
    assert model.get_layer("conv2d_1") is model.layers[1]
    assert model.get_layer(index=-1) is model.layers[-1]
    with pytest.raises(ValueError, match="no layer named 'nope'.*conv2d"):
        model.get_layer("nope")


def test_add_builds_incrementally_and_list_equals_add():
    a = mc.Sequential([layers.Dense(3, input_shape=(4,)), layers.Dense(2)], seed=1)
    b = mc.Sequential(seed=1)
    b.add(layers.Dense(3, input_shape=(4,)))
    b.add(layers.Dense(2))
    assert b.output_shape == (None, 2)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)


def test_unbuilt_model_builds_on_first_data():
    model = mc.Sequential([layers.Flatten(), layers.Dense(1, activation="sigmoid")])
    with pytest.raises(ValueError, match="not been built"):
        model.summary()
    out = model.predict(np.zeros((3, 2, 2, 1)), verbose=0)
    assert out.shape == (3, 1) and model.count_params() == 5


# -- gradients of a whole model ------------------------------------------------------

@pytest.mark.parametrize("dropout, workspace_limit", [(False, None), (True, None), (False, 1)])
def test_whole_model_gradient_check(dropout, workspace_limit):
    # The lecture's pattern (conv/pool pairs, flatten, [dropout], dense relu, dense sigmoid),
    # small; with a workspace limit of 1 byte every convolution trains one image at a time.
    previous = layers.set_workspace_limit(workspace_limit)
    try:
        _whole_model_gradient_check(dropout)
    finally:
        layers.set_workspace_limit(previous)


def _whole_model_gradient_check(dropout):
    model = mc.Sequential(
        [layers.Conv2D(4, 3, activation="relu", input_shape=(14, 14, 2)), layers.MaxPooling2D(2),
         layers.Conv2D(3, 3, activation="relu"), layers.MaxPooling2D(2), layers.Flatten()]
        + ([layers.Dropout(0.5)] if dropout else [])
        + [layers.Dense(3, activation="relu"), layers.Dense(1, activation="sigmoid")], seed=0)
    model.compile(optimizers.RMSprop(1e-4), "binary_crossentropy", ["acc"])
    x = np.random.default_rng(1).standard_normal((2, 14, 14, 2))
    result = gradcheck.check_model(model, x, [1, 0])
    assert result.max_error < 1e-6, str(result)
    assert len(result.errors) == 1 + 8                  # input + 4 layers' kernel and bias


# -- optimizers -----------------------------------------------------------------------

def test_rmsprop_several_steps_against_the_formula_by_hand():
    w = np.array([0.5, -1.0, 2.0], dtype=np.float64)
    grads = [np.array([0.1, -0.2, 0.3]), np.array([-0.4, 0.0, 0.5]), np.array([1.0, 2.0, -3.0])]
    opt = optimizers.RMSprop(learning_rate=0.01)            # rho 0.9, eps 1e-7
    keras2 = optimizers.RMSprop(learning_rate=0.01, epsilon_inside_sqrt=False)
    w2 = w.copy()
    v = np.zeros(3)
    expected, expected2 = w.copy(), w.copy()
    for g in grads:
        opt.apply([w], [g])
        keras2.apply([w2], [g])
        v = 0.9 * v + 0.1 * g ** 2
        expected = expected - 0.01 * g / np.sqrt(v + 1e-7)
        expected2 = expected2 - 0.01 * g / (np.sqrt(v) + 1e-7)
    np.testing.assert_allclose(w, expected, rtol=1e-14)
    np.testing.assert_allclose(w2, expected2, rtol=1e-14)
    assert opt.iterations == 3


def test_rmsprop_defaults_are_keras_defaults():
    opt = optimizers.RMSprop()
    assert (opt.learning_rate, opt.rho, opt.epsilon) == (0.001, 0.9, 1e-7)


def test_sgd_and_adam_against_the_formula_by_hand():
    g = np.array([0.3, -0.6])
    w = np.array([1.0, 2.0])
    optimizers.SGD(0.1).apply([w], [g])
    np.testing.assert_allclose(w, [1.0 - 0.03, 2.0 + 0.06])
    w = np.array([1.0, 2.0])
    sgd = optimizers.SGD(0.1, momentum=0.9)
    sgd.apply([w], [g])
    sgd.apply([w], [g])
    m1 = -0.1 * g
    m2 = 0.9 * m1 - 0.1 * g
    np.testing.assert_allclose(w, np.array([1.0, 2.0]) + m1 + m2)
    w = np.array([1.0, 2.0])
    adam = optimizers.Adam(0.01)
    m = v = np.zeros(2)
    expected = w.copy()
    for t in (1, 2):
        adam.apply([w], [g])
        m = m + (g - m) * 0.1
        v = v + (g * g - v) * 0.001
        alpha = 0.01 * np.sqrt(1 - 0.999 ** t) / (1 - 0.9 ** t)
        expected = expected - alpha * m / (np.sqrt(v) + 1e-7)
    np.testing.assert_allclose(w, expected, rtol=1e-12)


def test_frozen_layers_receive_no_update():
    model = lecture.cnn(input_shape=(46, 46, 3), seed=0)
    model.layers[0].trainable = False
    model.layers[-2].trainable = False
    model.compile(optimizers.RMSprop(1e-2), "binary_crossentropy", ["acc"])
    before = model.get_weights()
    x = np.random.default_rng(0).random((4, 46, 46, 3), dtype=np.float32)
    model.train_on_batch(x, [0, 1, 1, 0])
    after = model.get_weights()
    frozen = {0, 1, len(before) - 4, len(before) - 3}
    for i, (b, a) in enumerate(zip(before, after)):
        assert np.array_equal(a, b) == (i in frozen), i


# -- training --------------------------------------------------------------------------

def _bright_side_images(n, seed):
    """Label 1 when the left half is brighter than the right half."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 0.5, (n, 12, 12, 1)).astype(np.float32)
    y = rng.integers(0, 2, n)
    x[y == 1, :, :6] += 0.4
    x[y == 0, :, 6:] += 0.4
    return x, y


def _small_cnn(seed):
    return mc.Sequential([
        layers.Conv2D(4, 3, activation="relu", input_shape=(12, 12, 1)),
        layers.MaxPooling2D(2),
        layers.Flatten(),
        layers.Dense(8, activation="relu"),
        layers.Dense(1, activation="sigmoid"),
    ], seed=seed)


def test_small_cnn_learns_bright_left_vs_right_deterministically():
    x, y = _bright_side_images(300, seed=0)
    xv, yv = _bright_side_images(100, seed=1)
    runs = []
    for _ in range(2):
        model = _small_cnn(seed=42)
        model.compile(optimizers.RMSprop(3e-3), "binary_crossentropy", ["acc"])
        history = model.fit(x, y, batch_size=20, epochs=8, validation_data=(xv, yv), verbose=0)
        runs.append((history.history, model.get_weights()))
    history = runs[0][0]
    assert set(history) == {"loss", "acc", "val_loss", "val_acc"}
    assert all(len(v) == 8 for v in history.values())
    assert history["val_acc"][-1] > 0.95
    assert history["loss"][-1] < history["loss"][0]
    assert runs[0][0] == runs[1][0]                      # same seed, same run
    for a, b in zip(runs[0][1], runs[1][1]):
        np.testing.assert_array_equal(a, b)


def test_metric_names_follow_the_compile_call():
    x, y = _bright_side_images(30, seed=0)
    model = _small_cnn(seed=0)
    model.compile("rmsprop", "binary_crossentropy", metrics=["accuracy"])
    history = model.fit(x, y, batch_size=16, epochs=1, validation_data=(x, y), verbose=0)
    assert set(history.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    model.compile("rmsprop", "binary_crossentropy")
    assert isinstance(model.train_on_batch(x, y), float)


def test_epoch_metrics_are_size_weighted_means_including_the_last_partial_batch():
    x, y = _bright_side_images(23, seed=3)
    model = _small_cnn(seed=0)
    model.compile("rmsprop", "binary_crossentropy", ["acc"])
    loss, acc = model.evaluate(x, y, batch_size=5, verbose=0)
    per_batch = [model.test_on_batch(x[i:i + 5], y[i:i + 5]) for i in range(0, 23, 5)]
    sizes = [5, 5, 5, 5, 3]
    assert loss == pytest.approx(sum(l * n for (l, _), n in zip(per_batch, sizes)) / 23, rel=1e-6)
    assert acc == pytest.approx(sum(a * n for (_, a), n in zip(per_batch, sizes)) / 23, rel=1e-6)
    p = model.predict(x, batch_size=5, verbose=0)
    assert acc == pytest.approx(np.mean((p[:, 0] > 0.5) == y))


def test_predict_batches_do_not_change_the_result():
    x, _ = _bright_side_images(13, seed=0)
    model = _small_cnn(seed=0)
    np.testing.assert_allclose(model.predict(x, batch_size=4, verbose=0),
                               model.predict(x, batch_size=13, verbose=0), rtol=1e-5, atol=1e-7)


@given(st.sampled_from(["relu", "linear", "sigmoid"]), st.booleans(),
       st.sampled_from(["valid", "same"]), st.sampled_from(["im2col", "winograd4"]),
       st.sampled_from([(2, 2), (3, 3)]), st.integers(0, 2 ** 32 - 1))
def test_inference_through_conv_and_pooling_equals_the_layers_one_by_one(
        activation, use_bias, padding, algorithm, pool, seed):
    # predict pools a linear or ReLU convolution's Z and applies its bias and activation
    # after the pooling; the layers run one by one (the training path: bias and activation
    # on the full output, argmax pooling) give the same numbers.
    rng = np.random.default_rng(seed)
    model = mc.Sequential([
        layers.Conv2D(3, 3, activation=activation, use_bias=use_bias, padding=padding,
                      algorithm=algorithm, input_shape=(12, 12, 2)),
        layers.MaxPooling2D(pool, padding=padding),
        layers.Conv2D(2, 2, activation="relu"),
        layers.MaxPooling2D(),
        layers.Flatten(), layers.Dense(1, activation="sigmoid")], seed=seed % 1000)
    for layer in model.layers:
        if getattr(layer, "bias", None) is not None:
            layer.bias[:] = rng.standard_normal(layer.bias.shape)     # not all zero
    x = rng.standard_normal((3, 12, 12, 2)).astype(np.float32)
    one_by_one = x
    for layer in model.layers:
        one_by_one = layer.forward(one_by_one, training=False, keep_cache=True)
    exact = algorithm == "im2col"           # Winograd adds the bias inside its transform
    np.testing.assert_allclose(model.predict(x, verbose=0), one_by_one,
                               rtol=0 if exact else 1e-6, atol=0 if exact else 1e-6)


@given(st.sampled_from(["relu", "linear"]), st.booleans(), st.sampled_from(["valid", "same"]),
       st.sampled_from([(2, 2), (4, 4), (2, 3)]), st.integers(0, 2 ** 32 - 1))
def test_a_winograd_convolution_that_pools_in_its_output_pass_predicts_the_same_numbers(
        activation, use_bias, padding, pool, seed):
    # Conv2D.pools: the pooling runs inside F(4x4)'s output transform; with that turned
    # off, predict writes Z and pools it: the same numbers, bit for bit
    rng = np.random.default_rng(seed)
    model = mc.Sequential([
        layers.Conv2D(3, 3, activation=activation, use_bias=use_bias, padding="same",
                      algorithm="winograd4", input_shape=(17, 15, 2)),
        layers.MaxPooling2D(pool, padding=padding),
        layers.Conv2D(2, 3, activation="relu", padding="same", algorithm="winograd4"),
        layers.MaxPooling2D(),
        layers.Flatten(), layers.Dense(1, activation="sigmoid")], seed=seed % 1000)
    for layer in model.layers:
        if getattr(layer, "bias", None) is not None:
            layer.bias[:] = rng.standard_normal(layer.bias.shape)
    assert model.layers[0].pools(model.layers[1]) == (padding == "valid" or pool != (4, 4))
    x = rng.standard_normal((3, 17, 15, 2)).astype(np.float32)
    fused = model.predict(x, verbose=0)
    conv_type = type(model.layers[0])
    original = conv_type.pools
    try:
        conv_type.pools = lambda layer, pooling: False
        apart = model.predict(x, verbose=0)
    finally:
        conv_type.pools = original
    np.testing.assert_array_equal(fused, apart)


def test_the_lecture_cnn_pools_in_the_output_pass_of_each_convolution():
    # the first two in im2col's bands (minicnn.kernels.im2col_bands: kernels of up to 64 K
    # values), the others in F(4x4)'s output transform
    model = lecture.cnn(seed=0)
    convs = [layer for layer in model.layers if isinstance(layer, layers.Conv2D)]
    pooled = [conv.pools(model.layers[model.layers.index(conv) + 1]) for conv in convs]
    second = "im2col" if blas.AVAILABLE else "winograd4"
    assert [conv.plan.inference.name for conv in convs] == ["im2col", second] + ["winograd4"] * 2
    assert [conv.plan.training.name for conv in convs] == ["im2col"] + ["winograd4"] * 3
    assert pooled == [blas.AVAILABLE, True, True, True]


def test_labels_may_be_n_or_n_by_1():
    x, y = _bright_side_images(8, seed=0)
    a, b = _small_cnn(seed=5), _small_cnn(seed=5)
    for m in (a, b):
        m.compile(optimizers.RMSprop(1e-3), "binary_crossentropy", ["acc"])
    assert a.train_on_batch(x, y) == b.train_on_batch(x, y.reshape(-1, 1))


def test_fit_prints_one_keras_like_line_per_epoch(capsys):
    x, y = _bright_side_images(20, seed=0)
    model = _small_cnn(seed=0)
    model.compile("rmsprop", "binary_crossentropy", ["acc"])
    model.fit(x, y, batch_size=10, epochs=2, validation_data=(x, y), verbose=2)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("Epoch 1/2 2/2 - ")
    for key in ("loss: ", "acc: ", "val_loss: ", "val_acc: ", "ms/step"):
        assert key in lines[1]


def test_sigmoid_output_loss_is_computed_from_logits():
    model = mc.Sequential([layers.Dense(1, activation="sigmoid", input_shape=(1,))])
    model.set_weights([np.array([[1.0]]), np.array([0.0])])
    model.compile("sgd", "binary_crossentropy")
    x = np.array([[40.0], [-40.0]])                 # saturated sigmoid: p rounds to 1 and 0
    loss = model.test_on_batch(x, [0, 1])           # both wrong by a logit of 40
    assert loss == pytest.approx(40.0, rel=1e-5)    # clipped probabilities would give ~16.1


# -- bad input -------------------------------------------------------------------------

def test_wrong_input_shape_names_the_layer():
    model = lecture.cnn()
    with pytest.raises(ValueError, match=r"expected input of shape \(N, 150, 150, 3\) \(what its first layer .conv2d. \(Conv2D\) was built for\); received \(2, 150, 150\)"):
        model.predict(np.zeros((2, 150, 150)))
    conv = layers.Conv2D(4, 3)
    with pytest.raises(ValueError, match=r"Conv2D 'conv2d_\d+'.*rank 4"):
        conv.build((None, 10, 10))


def test_kernel_or_pool_larger_than_input():
    with pytest.raises(ValueError, match=r"Conv2D.*kernel_size \(5, 5\) is larger than its input"):
        mc.Sequential([layers.Conv2D(2, 5, input_shape=(4, 4, 1))])
    with pytest.raises(ValueError, match=r"MaxPooling2D.*pool_size \(2, 2\) is larger"):
        mc.Sequential([layers.Conv2D(2, 3, input_shape=(4, 4, 1)), layers.MaxPooling2D(),
                       layers.MaxPooling2D()])
    # 'same' padding fits any kernel
    assert mc.Sequential([layers.Conv2D(2, 5, padding="same", input_shape=(4, 4, 1))]).output_shape == (None, 4, 4, 2)


@pytest.mark.parametrize("make, message", [
    (lambda: layers.Conv2D(2, 3, strides=0), r"`strides` must be positive; received strides=0"),
    (lambda: layers.Conv2D(2, (3, -1)), r"`kernel_size` must be positive"),
    (lambda: layers.MaxPooling2D(2, strides=(1, 0)), r"`strides` must be positive"),
    (lambda: layers.Conv2D(2, 3, padding="full"), r"`padding` must be one of \('valid', 'same'\); received padding='full'"),
    (lambda: layers.Conv2D(2, 3, activation="tanhh"), r"unknown activation 'tanhh'"),
    (lambda: layers.Dense(2, activation="softmaxx"), r"unknown activation"),
    (lambda: layers.Activation("swish"), r"unknown activation 'swish'"),
    (lambda: layers.Conv2D(0, 3), r"`filters` must be a positive int"),
    (lambda: layers.Dense(-1), r"`units` must be a positive int"),
    (lambda: layers.Dropout(1.0), r"`rate` must be a number in \[0, 1\)"),
    (lambda: layers.Conv2D(2, 3, kernel_initializer="magic"), r"unknown initializer 'magic'"),
])
def test_bad_layer_arguments(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_unknown_loss_optimizer_metric():
    model = _small_cnn(seed=0)
    with pytest.raises(ValueError, match=r"unknown loss 'hinge'"):
        model.compile("rmsprop", "hinge")
    with pytest.raises(ValueError, match=r"unknown optimizer 'adagrad'"):
        model.compile("adagrad", "binary_crossentropy")
    with pytest.raises(ValueError, match=r"unknown metric 'auc'"):
        model.compile("rmsprop", "binary_crossentropy", ["auc"])


def test_fit_before_compile():
    x, y = _bright_side_images(4, seed=0)
    with pytest.raises(RuntimeError, match=r"call compile\(optimizer, loss, metrics\) before fit\(\)"):
        _small_cnn(seed=0).fit(x, y)
    with pytest.raises(RuntimeError, match=r"before train_on_batch\(\)"):
        _small_cnn(seed=0).train_on_batch(x, y)


def test_labels_whose_shape_does_not_match_the_output():
    x, _ = _bright_side_images(4, seed=0)
    model = _small_cnn(seed=0)
    model.compile("rmsprop", "binary_crossentropy", ["acc"])
    before = model.get_weights()
    with pytest.raises(ValueError, match=r"`y` has shape \(4, 2\) but the model outputs \(None, 1\)"):
        model.fit(x, np.zeros((4, 2)), verbose=0)
    with pytest.raises(ValueError, match=r"has 4 samples but its labels have 3"):
        model.fit(x, np.zeros(3), verbose=0)
    with pytest.raises(ValueError, match=r"validation_data"):
        model.fit(x, np.zeros(4), validation_data=(x[:2], np.zeros((2, 3))), verbose=0)
    for a, b in zip(before, model.get_weights()):          # nothing trained
        np.testing.assert_array_equal(a, b)


def test_set_weights_with_wrong_count_or_shapes():
    model = _small_cnn(seed=0)
    weights = model.get_weights()
    with pytest.raises(ValueError, match=r"expected 6 arrays.*received 5"):
        model.set_weights(weights[:5])
    bad = list(weights)
    bad[2] = np.zeros((3, 3))
    with pytest.raises(ValueError, match=r"array 2 \(for Dense 'dense'\) expected shape \(100, 8\); received \(3, 3\)"):
        model.set_weights(bad)
    np.testing.assert_array_equal(model.get_weights()[0], weights[0])   # nothing was set
    with pytest.raises(ValueError, match=r"weight 0 expected shape \(3, 3, 1, 4\)"):
        model.layers[0].set_weights([np.zeros((3, 3, 1, 5)), np.zeros(4)])


def test_a_loss_that_becomes_nan_stops_training_with_epoch_and_step():
    x, y = _bright_side_images(40, seed=0)
    x[25] = np.nan                                   # in the second batch of 20 when not shuffled
    model = _small_cnn(seed=0)
    model.compile("rmsprop", "binary_crossentropy", ["acc"])
    with pytest.raises(FloatingPointError, match=r"loss became nan at epoch 1, step 2"):
        model.fit(x, y, batch_size=20, epochs=2, shuffle=False, verbose=0)
    assert all(np.isfinite(w).all() for w in model.get_weights())


def test_duplicate_layer_names_and_non_layers_are_refused():
    with pytest.raises(ValueError, match="already in the model"):
        mc.Sequential([layers.Dense(2, name="a", input_shape=(3,)), layers.Dense(2, name="a")])
    with pytest.raises(TypeError, match="expects a minicnn layer; received str"):
        mc.Sequential(["conv"])


# -- training from iterators -----------------------------------------------------------------

class _Batches:
    """An endless, sized iterator of (x, y) batches, as flow_from_directory is."""

    def __init__(self, x, y, batch_size):
        self.x, self.y, self.batch_size, self.position, self.served = x, y, batch_size, 0, []

    def __len__(self):
        return -(-len(self.x) // self.batch_size)

    def __iter__(self):
        return self

    def __next__(self):
        start = self.position
        stop = min(start + self.batch_size, len(self.x))
        self.position = 0 if stop == len(self.x) else stop
        self.served.append((start, stop))
        return self.x[start:stop], self.y[start:stop]


def test_fit_from_an_iterator_equals_fit_from_arrays_without_shuffling():
    x, y = _bright_side_images(50, seed=0)
    a, b = _small_cnn(seed=9), _small_cnn(seed=9)
    for m in (a, b):
        m.compile(optimizers.RMSprop(1e-3), "binary_crossentropy", ["acc"])
    ha = a.fit(x, y, batch_size=16, epochs=2, shuffle=False, validation_data=(x, y), verbose=0)
    hb = b.fit(_Batches(x, y, 16), epochs=2, validation_data=_Batches(x, y, 16), verbose=0)
    for key in ha.history:
        np.testing.assert_allclose(ha.history[key], hb.history[key], rtol=1e-6)
    assert hb.params["steps"] == 4                       # len(iterator): 3 batches of 16 + 2


def test_steps_per_epoch_crosses_the_end_of_a_pass_and_validation_keeps_its_place():
    x, y = _bright_side_images(10, seed=0)
    model = _small_cnn(seed=0)
    model.compile("rmsprop", "binary_crossentropy", ["acc"])
    train, val = _Batches(x, y, 4), _Batches(x, y, 4)
    model.fit_generator(train, steps_per_epoch=4, epochs=2, validation_data=val,
                        validation_steps=2, verbose=0)
    assert train.served == [(0, 4), (4, 8), (8, 10), (0, 4), (4, 8), (8, 10), (0, 4), (4, 8)]
    assert val.served == [(0, 4), (4, 8), (8, 10), (0, 4)]


def test_evaluate_and_predict_on_iterators():
    x, y = _bright_side_images(10, seed=0)
    model = _small_cnn(seed=0)
    model.compile("rmsprop", "binary_crossentropy", ["acc"])
    np.testing.assert_allclose(model.evaluate(_Batches(x, y, 4), verbose=0),
                               model.evaluate(x, y, batch_size=4, verbose=0), rtol=1e-6)
    np.testing.assert_allclose(model.predict(_Batches(x, y, 3), verbose=0),
                               model.predict(x, verbose=0), rtol=1e-6)
    assert model.predict(_Batches(x, y, 3), steps=2, verbose=0).shape == (6, 1)


def test_iterator_errors():
    x, y = _bright_side_images(10, seed=0)
    model = _small_cnn(seed=0)
    model.compile("rmsprop", "binary_crossentropy", ["acc"])
    with pytest.raises(ValueError, match="without a length; give steps_per_epoch"):
        model.fit((b for b in [(x, y)]), verbose=0)
    with pytest.raises(ValueError, match="y must not be given separately"):
        model.fit(_Batches(x, y, 4), y, verbose=0)
    with pytest.raises(ValueError, match="yields batches without labels"):
        model.fit(_forever(x[:4]), steps_per_epoch=1, verbose=0)
    with pytest.raises(ValueError, match=r"`y` has shape \(4, 3\)"):
        model.fit(_forever((x[:4], np.zeros((4, 3)))), steps_per_epoch=1, verbose=0)


def _forever(batch):
    while True:
        yield batch


def test_accuracy_of_several_units_is_categorical_as_in_keras_3():
    model = mc.Sequential([layers.Dense(3, activation="sigmoid", input_shape=(4,))], seed=0)
    model.compile("sgd", "binary_crossentropy", ["acc", "binary_accuracy"])
    x = np.random.default_rng(0).standard_normal((6, 4))
    y = np.eye(3)[[0, 1, 2, 0, 1, 2]]
    _, acc, binary = model.test_on_batch(x, y)
    p = model.predict(x, verbose=0)
    assert acc == pytest.approx(np.mean(p.argmax(1) == y.argmax(1)))
    assert binary == pytest.approx(np.mean((p > 0.5) == (y > 0.5)))


@given(st.sampled_from(["valid", "same"]), st.sampled_from([(2, None), (3, 2), (2, 1)]),
       st.sampled_from([None, 1]), st.booleans(), st.integers(0, 2 ** 31 - 1))
def test_fused_pooling_and_relu_backward_gives_the_layer_by_layer_gradients(
        padding, pool, winograd_min_channels, freeze_first, seed):
    # Sequential runs MaxPooling2D's backward and the ReLU convolution's before it as one
    # pass; the gradients must be those of calling each layer's backward in turn.
    import minicnn.model as model_module

    def gradients(fused):
        previous = layers.set_winograd_min_channels(winograd_min_channels)
        rule = model_module._pool_after_relu_conv
        if not fused:
            model_module._pool_after_relu_conv = lambda before, layer: False
        try:
            model = mc.Sequential([
                layers.Conv2D(3, 3, padding=padding, activation="relu", input_shape=(9, 9, 2)),
                layers.MaxPooling2D(pool[0], pool[1], padding=padding),
                layers.Conv2D(4, 3, padding="same", activation="relu"),
                layers.MaxPooling2D(2, padding="same"),
                layers.Flatten(), layers.Dense(1, activation="sigmoid")], seed=seed % 1000)
            model.layers[0].trainable = not freeze_first
            model.compile("rmsprop", "binary_crossentropy", ["acc"])
            x = np.random.default_rng(seed).standard_normal((3, 9, 9, 2))
            model.input_grad_needed = True
            out = model.forward(x, training=True)
            dx = model.backward(np.random.default_rng(seed + 1).standard_normal(out.shape))
            return dx, [g.copy() for layer in model.layers for g in layer.grads]
        finally:
            model_module._pool_after_relu_conv = rule
            layers.set_winograd_min_channels(previous)

    dx, grads = gradients(fused=True)
    dx_ref, grads_ref = gradients(fused=False)
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-5, atol=1e-7)
    assert len(grads) == len(grads_ref)
    for got, expected in zip(grads, grads_ref):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)
