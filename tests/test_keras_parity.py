"""Parity with real Keras 3 / TensorFlow CPU: same models, same weights, same numbers.

Each architecture is written once as a function of a layers namespace, so the very same
code builds `keras.layers.*` and `minicnn.layers.*` (the two share names and arguments).
Keras initialises the weights (keras.utils.set_random_seed), minicnn receives them with
set_weights(keras_model.get_weights()), and then, in float32:

    predictions                   max |keras - minicnn| < 1e-5
    binary cross-entropy          test_on_batch / evaluate, relative < 1e-5
    after 1 and 3 optimizer steps every weight max |diff| < 1e-5, [loss, acc] agree

Single layers (Conv2D, MaxPooling2D) are checked on hypothesis-drawn geometries against
tf.GradientTape for Y, dX, dW and db with a random upstream gradient.

The module skips when Keras (TensorFlow backend) is not installed, and when TensorFlow was
already loaded with oneDNN on (whose convolution is wrong for some geometries; see below).
Run it with `-s` to see the largest difference observed per kind, printed at the end.
"""
import copy
import os
import re
from collections import defaultdict
from typing import Callable, NamedTuple

os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
# TensorFlow 2.21's oneDNN convolution (on by default on x86) is itself wrong for some
# geometries: C_in = 1, N >= 2, S_h = 1, S_w > 1, W_out = 1 (e.g. X (2, 2, 3, 1), K (1, 2),
# strides (1, 2), 'valid') returns zeros for every image after the first. The plain Eigen
# kernels are right, so the reference runs without oneDNN (read when TensorFlow loads).
os.environ["TF_ENABLE_ONEDNN_OPTS"] = "0"

import numpy as np
import pytest

keras = pytest.importorskip("keras")
if keras.backend.backend() != "tensorflow":
    pytest.skip("the Keras parity tests need the TensorFlow backend (tf.GradientTape, "
                "Keras's loss-from-logits after a sigmoid)", allow_module_level=True)
tf = pytest.importorskip("tensorflow")


def _tf_conv_is_sound() -> bool:
    """False when TensorFlow was loaded (by someone else) before this module could switch
    oneDNN off: its conv bug then shows on the smallest known case."""
    x = np.arange(1, 13, dtype=np.float32).reshape(2, 2, 3, 1)
    k = np.array([1.0, 10.0], dtype=np.float32).reshape(1, 2, 1, 1)
    y = tf.nn.conv2d(x, k, strides=(1, 2), padding="VALID").numpy().ravel()
    return np.array_equal(y, [21.0, 54.0, 87.0, 120.0])


if not _tf_conv_is_sound():
    # Not only wrong numbers: with oneDNN, Conv2DBackpropFilter on small hypothesis-drawn
    # geometries also corrupts the heap now and then (segfault, "munmap_chunk(): invalid
    # pointer"), which would take the whole test session down.
    pytest.skip("TensorFlow runs with oneDNN, whose conv is unreliable here; run this file "
                "with TF_ENABLE_ONEDNN_OPTS=0 or before anything imports TensorFlow",
                allow_module_level=True)

from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

import minicnn as mc  # noqa: E402
from minicnn import layers as mc_layers, optimizers as mc_optimizers  # noqa: E402

from strategies import windows  # noqa: E402

pytestmark = pytest.mark.keras

# Weights are O(0.1..1) float32 (one ulp ~ 6e-8). Gradients computed by im2col + sgemm and by
# TensorFlow's Eigen convolutions sum in different orders and differ by ~1e-7 relative.
# RMSprop's first step lr*g/sqrt(0.1 g^2 + eps) amplifies a gradient difference by at most
# lr/sqrt(eps) ~ 3.2, Adam's by at most lr*sqrt(1 - beta_2)/eps ~ 316, but only
# for gradients of order eps ~ 1e-7; so an absolute 1e-5 on the weights leaves a margin of
# well over 10x and still catches any wrong formula (one step moves a weight by ~lr = 1e-3).
ATOL = 1e-5
LOSS_RTOL = 1e-5

_MAX_ERR: dict = defaultdict(float)

# Each example builds a Keras layer, which is slow next to minicnn's.
_HEALTH = [HealthCheck.too_slow, HealthCheck.data_too_large]


def _record(kind: str, err: float) -> float:
    _MAX_ERR[kind] = max(_MAX_ERR[kind], float(err))
    return float(err)


@pytest.fixture(scope="module", autouse=True)
def _report_max_errors():
    yield
    if _MAX_ERR:
        print("\nKeras parity, largest differences observed:")
        for kind in sorted(_MAX_ERR):
            print(f"  {kind:<28} {_MAX_ERR[kind]:.3g}")


def _max_abs(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape, f"shapes differ: keras {a.shape} vs minicnn {b.shape}"
    return float(np.max(np.abs(a - b))) if a.size else 0.0


def _assert_close(kind, keras_value, minicnn_value, atol=ATOL, what=""):
    err = _record(kind, _max_abs(keras_value, minicnn_value))
    assert err < atol, f"{kind}{what}: max |keras - minicnn| = {err:.3g} (tolerance {atol:g})"


def _assert_loss_close(kind, keras_loss, minicnn_loss, what=""):
    rel = abs(keras_loss - minicnn_loss) / max(abs(keras_loss), 1e-12)
    _record(kind, rel)
    assert rel < LOSS_RTOL, (f"{kind}{what}: keras {keras_loss!r} vs minicnn {minicnn_loss!r} "
                             f"(relative {rel:.3g})")


def _assert_weights_close(km, mm, what=""):
    kw, mw = km.get_weights(), mm.get_weights()
    assert len(kw) == len(mw)
    for i, (a, b) in enumerate(zip(kw, mw)):
        _assert_close("weights after steps", a, b, what=f"{what}, weight {i} {a.shape}")


# -- the architectures ---------------------------------------------------------------

class Arch(NamedTuple):
    name: str
    input_shape: tuple
    make: Callable            # make(L) -> list of layers, L = keras.layers or minicnn.layers
    batch: int = 7
    dropout: bool = False     # training steps differ (masks); checked by a replayed-mask test


def _lecture_small(L):
    # The lecture's Conv/MaxPool blocks + Flatten + Dense relu + Dense sigmoid, scaled down:
    # 16 -> 14 -> 7 -> 5 -> 2 (valid pooling floors 5 -> 2).
    return [L.Conv2D(4, (3, 3), activation="relu"), L.MaxPooling2D((2, 2)),
            L.Conv2D(8, (3, 3), activation="relu"), L.MaxPooling2D((2, 2)),
            L.Flatten(), L.Dense(16, activation="relu"), L.Dense(1, activation="sigmoid")]


def _conv_same_strides(L):
    # 'same' with S = 2: 16 -> 8, total pad 1 (0 before, 1 after: the asymmetric case);
    # 'same' with S = 3 and K = 4: 8 -> 3, pad (1, 1).
    return [L.Conv2D(4, 3, strides=2, padding="same", activation="relu"),
            L.Conv2D(6, 4, strides=3, padding="same", activation="relu"),
            L.Flatten(), L.Dense(8, activation="relu"), L.Dense(1, activation="sigmoid")]


def _conv_valid_strides(L):
    # S = 3 valid on 16 rows: floor(13 / 3) + 1 = 5, the last input row is never read.
    return [L.Conv2D(3, 3, strides=3),
            L.Conv2D(4, (2, 3), strides=(2, 1), activation="relu"),
            L.Flatten(), L.Dense(1, activation="sigmoid")]


def _conv_kernels(L):
    # Even and odd, square and not: (2, 3) valid; 5 'same' (pad (1, 2) rows, (2, 2) cols);
    # (2, 2) 'same' S = 2 (pad (0, 1)); (2, 3) 'same' S = 3.
    return [L.Conv2D(4, (2, 3), activation="relu"),
            L.Conv2D(5, 5, strides=(2, 1), padding="same"),
            L.Conv2D(3, (2, 2), strides=2, padding="same", activation="relu"),
            L.Conv2D(4, (2, 3), strides=3, padding="same"),
            L.Flatten(), L.Dense(1, activation="sigmoid")]


def _pool_same_strides(L):
    # The first pool sees a linear conv's negative values at the border: with 'same'
    # padding the padded cells must never win (TensorFlow pads with -inf).
    return [L.Conv2D(4, 3, padding="same"),
            L.MaxPooling2D(pool_size=3, strides=2, padding="same"),       # 15 -> 8
            L.Activation("relu"),
            L.MaxPooling2D((2, 3), strides=(1, 2)),                        # 8 -> (7, 3)
            L.MaxPooling2D(2, strides=3, padding="same"),                  # -> (3, 1)
            L.Flatten(), L.Dense(1, activation="sigmoid")]


def _dropout(L):
    return [L.Conv2D(4, 3, activation="relu"), L.MaxPooling2D(2), L.Flatten(),
            L.Dropout(0.5), L.Dense(8, activation="relu"), L.Dropout(0.25),
            L.Dense(1, activation="sigmoid")]


def _activation_layers(L):
    # The output sigmoid is an Activation layer: both libraries still compute the loss
    # from the logits before it.
    return [L.Conv2D(4, 3), L.Activation("relu"), L.MaxPooling2D(2), L.Flatten(),
            L.Dense(6), L.Activation("sigmoid"), L.Dense(4), L.Activation("linear"),
            L.Dense(1), L.Activation("sigmoid")]


def _no_bias(L):
    return [L.Conv2D(4, 3, activation="relu", use_bias=False),
            L.Conv2D(5, (2, 2), strides=2, use_bias=False), L.MaxPooling2D(2), L.Flatten(),
            L.Dense(6, activation="relu", use_bias=False),
            L.Dense(1, activation="sigmoid", use_bias=False)]


ARCHS = [
    Arch("lecture_small", (16, 16, 3), _lecture_small),
    Arch("conv_same_strides", (16, 16, 2), _conv_same_strides, batch=5),
    Arch("conv_valid_strides", (16, 15, 2), _conv_valid_strides),
    Arch("conv_kernels", (11, 10, 3), _conv_kernels, batch=5),
    Arch("pool_same_strides", (15, 15, 2), _pool_same_strides),
    Arch("dropout", (10, 10, 3), _dropout, dropout=True),
    Arch("activation_layers", (9, 9, 2), _activation_layers, batch=5),
    Arch("no_bias", (10, 10, 3), _no_bias),
]
TRAINABLE_ARCHS = [a for a in ARCHS if not a.dropout]


def _ids(archs):
    return [a.name for a in archs]


def _build_pair(arch: Arch, seed: int = 0):
    """(keras_model, minicnn_model) with identical weights.

    Keras's biases start at zero, which would leave bias addition untested by the forward
    comparisons; they are set to small random values in both models.
    """
    keras.utils.set_random_seed(seed)
    km = keras.Sequential([keras.Input(arch.input_shape)] + arch.make(keras.layers))
    weights = km.get_weights()
    rng = np.random.default_rng(seed + 1000)
    weights = [w if w.ndim > 1 else (0.1 * rng.standard_normal(w.shape)).astype(w.dtype)
               for w in weights]
    km.set_weights(weights)
    mm = mc.Sequential(arch.make(mc_layers), seed=seed)
    mm.build((None,) + tuple(arch.input_shape))
    mm.set_weights(km.get_weights())
    return km, mm


def _batch(arch: Arch, rng, n=None):
    n = arch.batch if n is None else n
    x = rng.standard_normal((n,) + tuple(arch.input_shape)).astype(np.float32)
    y = rng.integers(0, 2, size=(n, 1)).astype(np.float32)
    return x, y


def _compile_pair(km, mm, keras_opt, minicnn_opt):
    km.compile(optimizer=keras_opt, loss="binary_crossentropy", metrics=["acc"],
               jit_compile=False)
    mm.compile(optimizer=minicnn_opt, loss="binary_crossentropy", metrics=["acc"])


def _check_train_steps(km, mm, arch, rng, steps, what):
    """`steps` train_on_batch calls on fresh batches; compare [loss, acc] and all weights."""
    for step in range(1, steps + 1):
        x, y = _batch(arch, rng)
        k_loss, k_acc = km.train_on_batch(x, y)
        m_loss, m_acc = mm.train_on_batch(x, y)
        where = f" ({what}, step {step})"
        _assert_loss_close("train loss", k_loss, m_loss, where)
        _record("train acc", abs(k_acc - m_acc))
        assert m_acc == pytest.approx(k_acc, abs=1e-6), where
        _assert_weights_close(km, mm, where)


# -- shapes and parameter counts -------------------------------------------------------

def _summary_counts(model):
    lines = []
    model.summary(print_fn=lines.append)
    text = "\n".join(lines)
    counts = {}
    for key in ("Total", "Trainable", "Non-trainable"):
        match = re.search(rf"^{key} params: ([\d,]+)", text, flags=re.M)
        assert match, f"no '{key} params' line in the summary:\n{text}"
        counts[key] = int(match.group(1).replace(",", ""))
    return counts


def _model_no_max_pool(L):
    # Flow 0 of the lecture, at full size: 55,744 parameters.
    return [L.Conv2D(32, (3, 3), activation="relu"), L.Conv2D(64, (3, 3), activation="relu"),
            L.Conv2D(64, (3, 3), activation="relu")]


def _lecture_cnn(L):
    # Flows 1-2 of the lecture, at full size (150x150x3 -> 7x7x128): 3,453,121 parameters.
    return [L.Conv2D(32, (3, 3), activation="relu"), L.MaxPooling2D((2, 2)),
            L.Conv2D(64, (3, 3), activation="relu"), L.MaxPooling2D((2, 2)),
            L.Conv2D(128, (3, 3), activation="relu"), L.MaxPooling2D((2, 2)),
            L.Conv2D(128, (3, 3), activation="relu"), L.MaxPooling2D((2, 2)),
            L.Flatten(), L.Dropout(0.5), L.Dense(512, activation="relu"),
            L.Dense(1, activation="sigmoid")]


SHAPE_ARCHS = ARCHS + [Arch("model_no_max_pool", (28, 28, 1), _model_no_max_pool),
                       Arch("lecture_cnn", (150, 150, 3), _lecture_cnn)]
LECTURE_TOTALS = {"model_no_max_pool": 55_744, "lecture_cnn": 3_453_121}


@pytest.mark.parametrize("arch", SHAPE_ARCHS, ids=_ids(SHAPE_ARCHS))
def test_shapes_and_parameter_counts(arch):
    km, mm = _build_pair(arch)
    assert len(km.layers) == len(mm.layers)
    for kl, ml in zip(km.layers, mm.layers):
        assert tuple(ml.output_shape) == tuple(kl.output.shape), (kl.name, ml.name)
        assert ml.count_params() == kl.count_params(), (kl.name, ml.name)
    assert tuple(mm.output_shape) == tuple(km.output_shape)
    counts = _summary_counts(mm)
    assert counts["Total"] == km.count_params() == mm.count_params()
    trainable = sum(int(np.prod(w.shape)) for w in km.trainable_weights)
    assert counts["Trainable"] == trainable
    assert counts["Non-trainable"] == km.count_params() - trainable
    if arch.name in LECTURE_TOTALS:
        assert counts["Total"] == LECTURE_TOTALS[arch.name]


# Keras accepts ints for kernel_size, pool_size and strides; so must minicnn.
SINGLE_LAYERS = [
    ("Conv2D(32, 3)", lambda L: L.Conv2D(32, 3)),
    ("Conv2D(32, 3, strides=2)", lambda L: L.Conv2D(32, 3, strides=2)),
    ("Conv2D(32, 3, strides=2, same)", lambda L: L.Conv2D(32, 3, strides=2, padding="same")),
    ("Conv2D(8, 4, strides=3, same)", lambda L: L.Conv2D(8, 4, strides=3, padding="same")),
    ("Conv2D(8, (2, 5), strides=(3, 1))", lambda L: L.Conv2D(8, (2, 5), strides=(3, 1))),
    ("MaxPooling2D()", lambda L: L.MaxPooling2D()),
    ("MaxPooling2D(3)", lambda L: L.MaxPooling2D(3)),
    ("MaxPooling2D(3, strides=2)", lambda L: L.MaxPooling2D(3, strides=2)),
    ("MaxPooling2D(2, strides=3, same)", lambda L: L.MaxPooling2D(2, strides=3, padding="same")),
    ("MaxPooling2D((2, 3), strides=1)", lambda L: L.MaxPooling2D((2, 3), strides=1)),
]


@pytest.mark.parametrize("make", [m for _, m in SINGLE_LAYERS], ids=[n for n, _ in SINGLE_LAYERS])
@pytest.mark.parametrize("input_shape", [(15, 15, 3), (16, 13, 2)], ids=["15x15", "16x13"])
def test_integer_arguments_give_keras_output_shapes(make, input_shape):
    km = keras.Sequential([keras.Input(input_shape), make(keras.layers)])
    mm = mc.Sequential([make(mc_layers)])
    mm.build((None,) + input_shape)
    assert tuple(mm.output_shape) == tuple(km.output_shape)
    assert mm.count_params() == km.count_params()


# -- forward, loss, training steps --------------------------------------------------

@pytest.mark.parametrize("arch", ARCHS, ids=_ids(ARCHS))
def test_predictions_agree(arch):
    km, mm = _build_pair(arch)
    x, _ = _batch(arch, np.random.default_rng(1))
    k_pred = km(x, training=False).numpy()
    m_pred = mm.predict(x, verbose=0)
    assert m_pred.dtype == np.float32
    _assert_close("prediction", k_pred, m_pred)
    # predict in batches (the last one partial) gives the same outputs.
    _assert_close("prediction", km.predict(x, batch_size=3, verbose=0),
                  mm.predict(x, batch_size=3, verbose=0))


@pytest.mark.parametrize("arch", ARCHS, ids=_ids(ARCHS))
def test_loss_agrees(arch):
    km, mm = _build_pair(arch)
    _compile_pair(km, mm, keras.optimizers.RMSprop(learning_rate=1e-3),
                  mc_optimizers.RMSprop(learning_rate=1e-3))
    x, y = _batch(arch, np.random.default_rng(2))
    k_loss, k_acc = km.test_on_batch(x, y)
    m_loss, m_acc = mm.test_on_batch(x, y)
    _assert_loss_close("loss", k_loss, m_loss, " (test_on_batch)")
    assert m_acc == pytest.approx(k_acc, abs=1e-6)
    # evaluate with a last partial batch (7 = 3 + 3 + 1): batch-size-weighted in both.
    k_loss, k_acc = km.evaluate(x, y, batch_size=3, verbose=0)
    m_loss, m_acc = mm.evaluate(x, y, batch_size=3, verbose=0)
    _assert_loss_close("loss", k_loss, m_loss, " (evaluate, batch_size=3)")
    assert m_acc == pytest.approx(k_acc, abs=1e-6)


@pytest.mark.parametrize("arch", TRAINABLE_ARCHS, ids=_ids(TRAINABLE_ARCHS))
def test_rmsprop_steps_agree(arch):
    km, mm = _build_pair(arch)
    _compile_pair(km, mm, keras.optimizers.RMSprop(learning_rate=1e-3),
                  mc_optimizers.RMSprop(learning_rate=1e-3))
    rng = np.random.default_rng(3)
    _check_train_steps(km, mm, arch, rng, steps=1, what="RMSprop")
    _check_train_steps(km, mm, arch, rng, steps=2, what="RMSprop, steps 2-3")
    # and the trained models still predict alike
    x, _ = _batch(arch, rng)
    _assert_close("prediction", km(x, training=False).numpy(), mm.predict(x, verbose=0))


OPTIMIZERS = [
    ("sgd", lambda: keras.optimizers.SGD(learning_rate=0.1),
     lambda: mc_optimizers.SGD(learning_rate=0.1)),
    ("sgd_momentum", lambda: keras.optimizers.SGD(learning_rate=0.05, momentum=0.9),
     lambda: mc_optimizers.SGD(learning_rate=0.05, momentum=0.9)),
    ("sgd_nesterov", lambda: keras.optimizers.SGD(learning_rate=0.05, momentum=0.9,
                                                  nesterov=True),
     lambda: mc_optimizers.SGD(learning_rate=0.05, momentum=0.9, nesterov=True)),
    ("adam", lambda: keras.optimizers.Adam(learning_rate=1e-3),
     lambda: mc_optimizers.Adam(learning_rate=1e-3)),
    ("rmsprop_momentum", lambda: keras.optimizers.RMSprop(learning_rate=1e-3, momentum=0.5),
     lambda: mc_optimizers.RMSprop(learning_rate=1e-3, momentum=0.5)),
]


@pytest.mark.parametrize("make_keras, make_minicnn", [o[1:] for o in OPTIMIZERS],
                         ids=[o[0] for o in OPTIMIZERS])
def test_other_optimizers_agree(make_keras, make_minicnn):
    arch = ARCHS[0]
    km, mm = _build_pair(arch, seed=4)
    _compile_pair(km, mm, make_keras(), make_minicnn())
    _check_train_steps(km, mm, arch, np.random.default_rng(5), steps=3, what="optimizer")


@pytest.mark.parametrize("frozen", [[0], [2], [5], [0, 2]],
                         ids=["first_conv", "second_conv", "dense", "both_convs"])
def test_frozen_layers_agree(frozen):
    """trainable = False (the lecture freezes its conv base): same counts, frozen weights
    untouched, and the gradient still flows through a frozen layer to those before it."""
    arch = ARCHS[0]
    km, mm = _build_pair(arch, seed=9)
    for i in frozen:
        km.layers[i].trainable = False
        mm.layers[i].trainable = False
    counts = _summary_counts(mm)
    trainable = sum(int(np.prod(w.shape)) for w in km.trainable_weights)
    assert counts["Trainable"] == trainable
    assert counts["Non-trainable"] == km.count_params() - trainable
    before = mm.get_weights()
    _compile_pair(km, mm, keras.optimizers.RMSprop(learning_rate=1e-3),
                  mc_optimizers.RMSprop(learning_rate=1e-3))
    _check_train_steps(km, mm, arch, np.random.default_rng(10), steps=2, what=f"frozen {frozen}")
    start = 0
    for i, layer in enumerate(mm.layers):
        n = len(layer.params)
        for w0, w1 in zip(before[start:start + n], mm.get_weights()[start:start + n]):
            assert np.array_equal(w0, w1) == (i in frozen), f"layer {i} ({layer.name})"
        start += n


# -- dropout at training, with minicnn's masks replayed in Keras ---------------------------

class _FixedScale(keras.layers.Layer):
    """Keras stand-in for a Dropout whose mask is given: Y = X * S at training, X otherwise.

    S lives in a tf.Variable reached through a closure, so Keras neither tracks it as a
    weight (get_weights keeps the Keras order) nor bakes it into the traced train step.
    """

    def __init__(self, shape, **kwargs):
        super().__init__(**kwargs)
        scale = tf.Variable(tf.ones(shape), trainable=False)
        self._scale = lambda: scale

    def assign(self, s):
        self._scale().assign(s)

    def call(self, x, training=None):
        return x * self._scale() if training else x


def test_dropout_training_step_with_replayed_masks():
    """Inverted dropout at training (scale 1/(1 - rate), dX = dY * S) against Keras.

    Keras's own masks cannot be reproduced, so its Dropout layers are replaced by fixed
    masks with the keep pattern M minicnn is about to draw (a copy of each minicnn Dropout's
    Generator, given to a fresh Dropout and run on ones, shows which units it keeps) and
    Keras's scale: S = M / (1 - rate).
    """
    arch = next(a for a in ARCHS if a.dropout)
    _, mm = _build_pair(arch)
    shapes = [(arch.batch,) + tuple(layer.input_shape[1:]) for layer in mm.layers
              if isinstance(layer, mc_layers.Dropout)]
    fixed = [_FixedScale(s) for s in shapes]
    keras.utils.set_random_seed(0)
    made = iter(fixed)
    k_layers = [next(made) if isinstance(layer, keras.layers.Dropout) else layer
                for layer in arch.make(keras.layers)]
    km = keras.Sequential([keras.Input(arch.input_shape)] + k_layers)
    km.set_weights(mm.get_weights())
    _compile_pair(km, mm, keras.optimizers.RMSprop(learning_rate=1e-3),
                  mc_optimizers.RMSprop(learning_rate=1e-3))
    dropouts = [layer for layer in mm.layers if isinstance(layer, mc_layers.Dropout)]
    rng = np.random.default_rng(6)
    kept = []
    for step in range(1, 4):
        for d, f, shape in zip(dropouts, fixed, shapes):
            probe = mc_layers.Dropout(d.rate)
            probe.rng = copy.deepcopy(d.rng)
            keep = probe.forward(np.ones(shape, np.float32), training=True) > 0
            kept.append(np.mean(keep))
            # Keras's inverted dropout, built from the keep pattern alone.
            f.assign(keep.astype(np.float32) / np.float32(1.0 - d.rate))
        x, y = _batch(arch, rng)
        k_loss, k_acc = km.train_on_batch(x, y)
        m_loss, m_acc = mm.train_on_batch(x, y)
        where = f" (dropout replayed, step {step})"
        _assert_loss_close("train loss", k_loss, m_loss, where)
        assert m_acc == pytest.approx(k_acc, abs=1e-6), where
        _assert_weights_close(km, mm, where)
    # The replay really dropped something (rates 0.5 and 0.25).
    assert 0.3 < np.mean(kept) < 0.95


# -- sigmoid + binary cross-entropy from the logits ---------------------------------------

def _softplus(z):
    return np.logaddexp(0.0, z)


@pytest.mark.parametrize("output", ["dense_sigmoid", "activation_sigmoid"])
@pytest.mark.parametrize("logits", ["plus30", "minus30", "spread30"])
def test_sigmoid_loss_from_large_logits(output, logits):
    """|Z| ~ 30: sigmoid rounds to exactly 0 or 1 in float32, so a loss on clipped
    probabilities would give -log(1e-7) ~ 16.1 for a confidently wrong sample where the
    true loss is ~30. Both libraries take the logits and agree with a float64 reference."""
    def make(L):
        if output == "dense_sigmoid":
            return [L.Flatten(), L.Dense(1, activation="sigmoid")]
        return [L.Flatten(), L.Dense(1), L.Activation("sigmoid")]

    arch = Arch(f"logits_{output}", (6, 6, 2), make)
    km, mm = _build_pair(arch, seed=7)
    rng = np.random.default_rng(8)
    kernel = km.get_weights()[0]
    if logits == "spread30":
        kernel = (30.0 / np.sqrt(kernel.shape[0]) * rng.standard_normal(kernel.shape))
        bias = np.zeros(1)
    else:
        kernel = 0.02 * rng.standard_normal(kernel.shape)
        bias = np.full(1, 30.0 if logits == "plus30" else -30.0)
    weights = [kernel.astype(np.float32), bias.astype(np.float32)]
    km.set_weights(weights)
    mm.set_weights(weights)
    x, y = _batch(arch, rng, n=9)

    z = x.reshape(len(x), -1).astype(np.float64) @ weights[0].astype(np.float64) + weights[1]
    if logits != "spread30":
        assert np.all(np.abs(z) > 25)
    reference = float(np.mean(_softplus(z) - z * y))
    assert reference > 5.0          # several confidently wrong samples

    _compile_pair(km, mm, keras.optimizers.RMSprop(learning_rate=1e-3),
                  mc_optimizers.RMSprop(learning_rate=1e-3))
    k_loss, _ = km.test_on_batch(x, y)
    m_loss, _ = mm.test_on_batch(x, y)
    assert np.isfinite(k_loss) and np.isfinite(m_loss)
    _assert_loss_close("loss, |logits|~30", reference, k_loss, " (keras vs float64 reference)")
    _assert_loss_close("loss, |logits|~30", k_loss, m_loss)
    k_loss, _ = km.evaluate(x, y, batch_size=4, verbose=0)
    m_loss, _ = mm.evaluate(x, y, batch_size=4, verbose=0)
    _assert_loss_close("loss, |logits|~30", k_loss, m_loss, " (evaluate)")
    # Logits of ~30 summed in float32 differ by ~1e-6; sigmoid' <= 1/4 keeps that below ATOL.
    _assert_close("prediction, |logits|~30", km(x, training=False).numpy(),
                  mm.predict(x, verbose=0))

    # A training step from such logits: finite gradients (sigmoid(z) - y) / N, same update.
    k_loss, k_acc = km.train_on_batch(x, y)
    m_loss, m_acc = mm.train_on_batch(x, y)
    _assert_loss_close("loss, |logits|~30", k_loss, m_loss, " (train_on_batch)")
    assert m_acc == pytest.approx(k_acc, abs=1e-6)
    assert all(np.all(np.isfinite(w)) for w in mm.get_weights())
    _assert_weights_close(km, mm, " (large logits)")


# -- single layers: forward and backward against tf.GradientTape -------------------------

def _tape_grads(klayer, x, dy):
    """Keras Y and the vector-Jacobian products of sum(Y * dy) w.r.t. X and the weights."""
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        yt = klayer(xt)
        s = tf.reduce_sum(yt * tf.constant(dy))
    grads = tape.gradient(s, [xt] + list(klayer.trainable_weights))
    return yt.numpy(), [g.numpy() for g in grads]


def _assert_scaled_close(kind, ref, got, what):
    # Sums over up to N*H_out*W_out ~ 400 float32 products: compare relative to the size
    # of the reference (and absolutely below 1).
    scale = max(1.0, float(np.max(np.abs(ref))) if ref.size else 1.0)
    err = _record(kind, _max_abs(ref, got) / scale)
    assert err < ATOL, f"{kind} {what}: max |keras - minicnn| / scale = {err:.3g}"


@st.composite
def conv_geometries(draw):
    (n, h, w, c), k, s, padding = draw(windows(max_size=12, max_k=5, max_c=3, max_n=3))
    filters = draw(st.integers(1, 4))
    activation = draw(st.sampled_from(["linear", "relu", "sigmoid"]))
    use_bias = draw(st.booleans())
    seed = draw(st.integers(0, 2 ** 32 - 1))
    return (n, h, w, c), k, s, padding, filters, activation, use_bias, seed


@settings(max_examples=15, deadline=None, suppress_health_check=_HEALTH)
@given(conv_geometries())
def test_conv2d_forward_backward_match_gradient_tape(case):
    (n, h, w, c), k, s, padding, filters, activation, use_bias, seed = case
    what = f"{case[:-1]}"
    rng = np.random.default_rng(seed)
    klayer = keras.layers.Conv2D(filters, k, strides=s, padding=padding, activation=activation,
                                 use_bias=use_bias)
    klayer.build((None, h, w, c))
    weights = [(0.5 * rng.standard_normal(v.shape)).astype(np.float32)
               for v in klayer.get_weights()]
    klayer.set_weights(weights)
    mlayer = mc_layers.Conv2D(filters, k, strides=s, padding=padding, activation=activation,
                              use_bias=use_bias)
    mlayer.build((None, h, w, c))
    mlayer.set_weights(weights)

    x = rng.standard_normal((n, h, w, c)).astype(np.float32)
    y_m = mlayer.forward(x, training=True)
    dy = rng.standard_normal(y_m.shape).astype(np.float32)
    y_k, (dx_k, *dparams_k) = _tape_grads(klayer, x, dy)
    _assert_scaled_close("single-layer Y", y_k, y_m, what)

    dx_m = mlayer.backward(dy.copy())
    _assert_scaled_close("gradient dX", dx_k, dx_m, what)
    assert len(mlayer.grads) == len(dparams_k) == (2 if use_bias else 1)
    _assert_scaled_close("gradient dW", dparams_k[0], mlayer.grads[0], what)
    if use_bias:
        _assert_scaled_close("gradient db", dparams_k[1], mlayer.grads[1], what)


@st.composite
def pool_geometries(draw):
    (n, h, w, c), k, s, padding = draw(windows(max_size=12, max_k=4, max_c=3, max_n=3))
    # strides independent of the pool (smaller, equal or larger), or the default.
    strides = draw(st.one_of(st.none(), st.just(s),
                             st.tuples(st.integers(1, 4), st.integers(1, 4))))
    # 'negative': a padded cell winning ('same') would show as a 0; 'ties': small integers,
    # whose gradient goes to the first maximum of the window in both libraries.
    values = draw(st.sampled_from(["normal", "negative", "ties"]))
    seed = draw(st.integers(0, 2 ** 32 - 1))
    return (n, h, w, c), k, strides, padding, values, seed


@settings(max_examples=15, deadline=None, suppress_health_check=_HEALTH)
@given(pool_geometries())
def test_maxpool_forward_backward_match_gradient_tape(case):
    (n, h, w, c), k, strides, padding, values, seed = case
    what = f"{case[:-1]}"
    rng = np.random.default_rng(seed)
    klayer = keras.layers.MaxPooling2D(k, strides=strides, padding=padding)
    mlayer = mc_layers.MaxPooling2D(k, strides=strides, padding=padding)
    mlayer.build((None, h, w, c))
    x = rng.standard_normal((n, h, w, c)).astype(np.float32)
    if values == "negative":
        x = -np.abs(x) - 0.1
    elif values == "ties":
        x = rng.integers(0, 3, size=x.shape).astype(np.float32)
    y_m = mlayer.forward(x, training=True)
    dy = rng.standard_normal(y_m.shape).astype(np.float32)
    y_k, (dx_k,) = _tape_grads(klayer, x, dy)
    _assert_scaled_close("single-layer Y", y_k, y_m, what)
    dx_m = mlayer.backward(dy.copy())
    _assert_scaled_close("gradient dX", dx_k, dx_m, what)


def test_accuracy_of_several_sigmoid_units_matches_keras():
    # Keras 3 resolves "acc" to categorical accuracy when the output has several units.
    rng = np.random.default_rng(4)
    keras.utils.set_random_seed(4)
    km = keras.Sequential([keras.Input((5,)), keras.layers.Dense(3, activation="sigmoid")])
    mm = mc.Sequential([mc_layers.Dense(3, activation="sigmoid", input_shape=(5,))])
    mm.set_weights(km.get_weights())
    km.compile(keras.optimizers.SGD(0.1), "binary_crossentropy", metrics=["acc"])
    mm.compile(mc_optimizers.SGD(0.1), "binary_crossentropy", metrics=["acc"])
    x = rng.standard_normal((9, 5)).astype("float32")
    y = np.eye(3, dtype="float32")[rng.integers(0, 3, 9)]
    k_loss, k_acc = km.test_on_batch(x, y)
    m_loss, m_acc = mm.test_on_batch(x, y)
    assert m_acc == pytest.approx(float(k_acc), abs=1e-6)
    assert m_loss == pytest.approx(float(k_loss), rel=1e-5)


def test_softmax_output_and_its_gradient_match_keras():
    rng = np.random.default_rng(11)
    keras.utils.set_random_seed(11)
    km = keras.Sequential([keras.Input((6,)), keras.layers.Dense(4, activation="softmax")])
    mm = mc.Sequential([mc_layers.Dense(4, activation="softmax", input_shape=(6,))])
    mm.set_weights(km.get_weights())
    x = rng.standard_normal((7, 6)).astype("float32") * 3
    np.testing.assert_allclose(mm.predict(x, verbose=0), np.asarray(km.predict_on_batch(x)),
                               rtol=1e-5, atol=1e-6)
    dy = rng.standard_normal((7, 4)).astype("float32")
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        out = km(xt)
        objective = tf.reduce_sum(out * dy)
    dx_keras, dw_keras = tape.gradient(objective, [xt, km.layers[0].kernel])
    layer = mm.layers[0]
    layer.forward(x, training=True)
    dx = layer.backward(dy)
    np.testing.assert_allclose(dx, dx_keras.numpy(), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(layer.grads[0], np.asarray(dw_keras), rtol=1e-4, atol=1e-6)
