"""VGG16: Keras's architecture, nesting in the lecture's classifier, freezing, fine-tuning."""

import numpy as np
import pytest

import minicnn as mc
from minicnn import gradcheck, layers, optimizers
from minicnn.applications import VGG16, preprocess_input


@pytest.fixture(autouse=True)
def fresh_names():
    mc.clear_session()


def _classifier(base):
    return mc.Sequential([base, layers.Flatten(), layers.Dense(256, activation="relu"),
                          layers.Dense(1, activation="sigmoid")], seed=0)


def _unfreeze_block5(base):
    base.trainable = True
    for layer in base.layers:
        layer.trainable = layer.name.startswith("block5")


def test_conv_base_at_150_and_the_lecture_counts():
    base = VGG16(weights=None, include_top=False, input_shape=(150, 150, 3))
    assert base.name == "vgg16" and base.output_shape == (None, 4, 4, 512)
    assert base.count_params() == 14_714_688
    assert [l.name for l in base.layers] == [
        "block1_conv1", "block1_conv2", "block1_pool", "block2_conv1", "block2_conv2", "block2_pool",
        "block3_conv1", "block3_conv2", "block3_conv3", "block3_pool",
        "block4_conv1", "block4_conv2", "block4_conv3", "block4_pool",
        "block5_conv1", "block5_conv2", "block5_conv3", "block5_pool"]
    model = _classifier(base)
    assert model.count_params() == 16_812_353
    lines = []
    model.summary(print_fn=lines.append)
    assert "vgg16 (Functional)           (None, 4, 4, 512)         14714688" in lines[0]
    base.trainable = False
    assert sum(w.size for w in model.trainable_weights) == 2_097_665
    _unfreeze_block5(base)
    assert sum(w.size for w in model.trainable_weights) == 9_177_089


def test_with_top_is_keras_vgg16():
    model = VGG16(weights=None, include_top=True)
    assert model.output_shape == (None, 1000) and model.count_params() == 138_357_544
    assert [l.name for l in model.layers[-4:]] == ["flatten", "fc1", "fc2", "predictions"]


@pytest.mark.parametrize("kwargs, message", [
    (dict(input_shape=(31, 64, 3)), r"too small: five 2x2 poolings need height and width of at least 32"),
    (dict(input_shape=(64, 64, 1), weights="imagenet"), r"ImageNet weights need 3 input channels"),
    (dict(include_top=True, input_shape=(150, 150, 3), weights=None), r"must be \(224, 224, 3\)"),
    (dict(include_top=True, weights="imagenet"), r"top .* not available here"),
])
def test_bad_vgg16_arguments(kwargs, message):
    kwargs.setdefault("weights", None)
    with pytest.raises(ValueError, match=message):
        VGG16(**kwargs)


def _step(model, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((3, 32, 32, 3), dtype=np.float32)
    model.train_on_batch(x, np.array([0, 1, 1]))


def test_a_frozen_base_is_bit_identical_after_training():
    base = VGG16(weights=None, input_shape=(32, 32, 3), seed=1)
    model = _classifier(base)
    base.trainable = False
    model.compile(optimizers.RMSprop(1e-3), "binary_crossentropy", ["acc"])
    before = model.get_weights()
    _step(model)
    after = model.get_weights()
    n_base = len(base.params)
    for b, a in zip(before[:n_base], after[:n_base]):
        assert np.array_equal(a, b)
    assert not any(np.array_equal(a, b) for a, b in zip(before[n_base:], after[n_base:]))
    # the frozen base kept no training caches
    assert all(getattr(l, "_cache", None) is None for l in base.layers)


def test_fine_tuning_changes_only_block5_and_the_head():
    base = VGG16(weights=None, input_shape=(32, 32, 3), seed=2)
    model = _classifier(base)
    _unfreeze_block5(base)
    model.compile(optimizers.RMSprop(1e-3), "binary_crossentropy", ["acc"])
    names = [f"{l.name}/{k}" for l in base.layers for k in ("kernel", "bias")[:len(l.params)]]
    before = model.get_weights()
    _step(model)
    after = model.get_weights()
    for name, b, a in zip(names, before, after):
        assert np.array_equal(a, b) != name.startswith("block5"), name
    for b, a in zip(before[len(names):], after[len(names):]):
        assert not np.array_equal(a, b)


def test_gradient_check_of_a_tiny_vgg_shaped_model_with_a_frozen_part():
    base = mc.Sequential([
        layers.Conv2D(2, 3, padding="same", activation="relu", input_shape=(8, 8, 2), name="b1c1"),
        layers.MaxPooling2D(2, name="b1p"),
        layers.Conv2D(3, 3, padding="same", activation="relu", name="b2c1"),
        layers.MaxPooling2D(2, name="b2p")], name="tiny_base", seed=3)
    base.layers[0].trainable = False
    model = _classifier(base)
    model.compile("rmsprop", "binary_crossentropy", ["acc"])
    x = np.random.default_rng(4).standard_normal((2, 8, 8, 2))
    result = gradcheck.check_model(model, x, [1, 0])
    assert result.max_error < 1e-6, str(result)
    assert "b1c1/kernel" not in result.errors and "b2c1/kernel" in result.errors


def test_preprocess_input_is_caffe_style():
    x = np.array([[[10.0, 20.0, 30.0]]])
    np.testing.assert_allclose(preprocess_input(x), [[[30 - 103.939, 20 - 116.779, 10 - 123.68]]],
                               rtol=1e-6)
    keras_app = pytest.importorskip("keras.applications.vgg16")
    img = np.random.default_rng(0).uniform(0, 255, (2, 5, 5, 3)).astype(np.float32)
    np.testing.assert_allclose(preprocess_input(img), keras_app.preprocess_input(img.copy()), rtol=1e-5)


def test_missing_imagenet_weights_print_the_command(tmp_path, monkeypatch):
    from minicnn.applications import vgg16
    monkeypatch.setattr("minicnn.io.convert.weights_dirs", lambda: [str(tmp_path)])
    with pytest.raises(FileNotFoundError, match=r"minicnn weights vgg16"):
        vgg16.imagenet_weights_path()
