"""minicnn.visualize against Keras/TensorFlow: the same model and weights (minicnn writes a
.keras archive, Keras reads it), the same gradients by tf.GradientTape, on real photos.

    lecture CNN: activations of every layer, input_gradient, saliency, grad_cam at two
                 convolutions
    VGG16 (ImageNet weights) nested in a model with a small head: grad_cam at block5_conv3
                 inside 'vgg16', input_gradient, activations by a nested model's name
    VGG16 conv base: filter_patterns at block1_conv1 and block3_conv1 (gradient ascent, the
                 gradient normalized by its RMS), from the same gray noise

Each array within 1e-10 of the largest |Keras| value, in float64 on both sides: in float32 a
ReLU output of 1e-8 on one side and 0 on the other sends a max-pooling's gradient to another
cell of the window, a legitimate difference of rounding that would hide real ones. For the
same reason the photos get a dither of 1e-4 (uniform): a flat patch of a photo (a white wall,
a saturated sky) makes windows whose values are equal in exact arithmetic, and then 1 ulp
decides where the gradient goes, differently in each engine.
"""
import numpy as np
import pytest

import minicnn as mc
from minicnn import datasets, layers, visualize
from minicnn.applications import VGG16, lecture

keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")
pytestmark = pytest.mark.keras

RTOL = 1e-10      # measured: at most 1.2e-14 (float64); the issue asked 1e-4


def _close(ours, theirs, what):
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    assert ours.shape == theirs.shape, f"{what}: {ours.shape} vs Keras {theirs.shape}"
    scale = np.abs(theirs).max()
    assert scale > 0, f"{what}: Keras gives all zeros; the comparison would prove nothing"
    err = np.abs(ours - theirs).max() / scale
    assert err < RTOL, f"{what}: max |minicnn - Keras| / max |Keras| = {err:.3g}"


def _photos(*names, size=150):
    from minicnn.preprocessing.image import img_to_array, load_img
    root = datasets.sample_dir() / "validation"
    x = np.stack([img_to_array(load_img(root / f"{n.split('.')[0]}s" / n,
                                        target_size=(size, size)))
                  for n in names]).astype(np.float64) / 255
    return x + np.random.default_rng(0).random(x.shape) * 1e-4


def _keras_twin(model, tmp_path):
    """Keras's copy of a minicnn model, read from the .keras archive minicnn writes, as its
    chain of leaf layers (a nested model opened up), the output's sigmoid left out."""
    path = tmp_path / "model.keras"
    model.save(path)
    km = keras.saving.load_model(path, compile=False)
    leaves = []
    for layer in km.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        inner = getattr(layer, "layers", None)
        leaves += [l for l in inner if not isinstance(l, keras.layers.InputLayer)] \
            if inner else [layer]
    if getattr(leaves[-1], "activation", None) is keras.activations.sigmoid:
        leaves[-1].activation = keras.activations.linear
    return leaves


def _keras_pass(leaves, x, stop=None):
    """(outputs of every leaf layer, d(score)/d(input), d(score)/d(output of leaves[stop]))."""
    x = tf.constant(x)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        outs, h = [], x
        for layer in leaves:
            h = layer(h)
            outs.append(h)
        score = tf.reduce_sum(h[:, 0])
    dx = tape.gradient(score, x).numpy()
    da = tape.gradient(score, outs[stop]).numpy() if stop is not None else None
    return [o.numpy() for o in outs], dx, da


def _keras_cam(a, g):
    w = g.mean(axis=(1, 2))
    cam = np.maximum(np.einsum("nijc,nc->nij", a, w), 0)
    return cam / cam.max(axis=(1, 2), keepdims=True)


def test_lecture_cnn_equals_keras(tmp_path):
    mc.clear_session()
    model = lecture.cnn(seed=3)
    model.set_dtype("float64")
    x = _photos("cat.1000.jpg", "dog.1000.jpg")
    leaves = _keras_twin(model, tmp_path)
    names = [l.name for l in model.leaf_layers()]
    k1, k3 = names.index("conv2d_1"), names.index("conv2d_3")

    outs, dx, da3 = _keras_pass(leaves, x, stop=k3)
    _, _, da1 = _keras_pass(leaves, x, stop=k1)
    acts = visualize.activations(model, x)
    assert list(acts) == names
    for name, theirs in zip(names, outs[:-1]):
        _close(acts[name], theirs, f"activations[{name!r}]")
    _close(visualize.logit(model, x), outs[-1][:, 0], "logit")
    _close(visualize.input_gradient(model, x), dx, "input_gradient")
    _close(visualize.saliency(model, x), np.abs(dx).max(axis=-1), "saliency")
    _close(visualize.grad_cam(model, x, "conv2d_3"), _keras_cam(outs[k3], da3),
           "grad_cam at conv2d_3")
    _close(visualize.grad_cam(model, x, "conv2d_1"), _keras_cam(outs[k1], da1),
           "grad_cam at conv2d_1")


@pytest.fixture(scope="module")
def vgg16_base(imagenet_weights):
    base = VGG16(weights="imagenet", include_top=False, input_shape=(150, 150, 3))
    base.set_dtype("float64")
    return base


def test_vgg16_with_a_head_equals_keras_through_the_nested_base(vgg16_base, tmp_path):
    mc.clear_session()
    vgg16_base.trainable = False
    model = mc.Sequential([vgg16_base, layers.Flatten(dtype="float64"),
                           layers.Dense(16, activation="relu", dtype="float64"),
                           layers.Dense(1, activation="sigmoid", dtype="float64")], seed=5)
    x = _photos("cat.1002.jpg", "dog.1003.jpg")
    leaves = _keras_twin(model, tmp_path)
    k = [l.name for l in model.leaf_layers()].index("block5_conv3")
    outs, dx, da = _keras_pass(leaves, x, stop=k)

    cam = visualize.grad_cam(model, x, "block5_conv3")
    assert cam.shape == (2, 9, 9)
    _close(cam, _keras_cam(outs[k], da), "grad_cam at block5_conv3 inside vgg16")
    _close(visualize.input_gradient(model, x), dx, "input_gradient through vgg16")
    acts = visualize.activations(model, x, ["vgg16", "block3_conv1", "dense"])
    _close(acts["vgg16"], outs[k + 1], "activations['vgg16'] (the nested model's output)")
    _close(acts["block3_conv1"], outs[[l.name for l in leaves].index("block3_conv1")],
           "activations['block3_conv1']")
    assert vgg16_base.trainable is False and all(not l.trainable for l in vgg16_base.layers)


@pytest.mark.parametrize("layer_name", ["block1_conv1", "block3_conv1"])
def test_filter_patterns_equal_keras_gradient_ascent(vgg16_base, tmp_path, layer_name):
    mc.clear_session()
    filters, steps = [0, 7], 8
    ours = visualize.filter_patterns(vgg16_base, layer_name, filters, steps=steps, seed=4)

    leaves = _keras_twin(vgg16_base, tmp_path)
    leaves = leaves[:[l.name for l in leaves].index(layer_name) + 1]
    x = (np.random.default_rng(4).random((2, 150, 150, 3)) * 20 + 128).astype(np.float64)
    mask = np.zeros((2, leaves[-1].filters))
    mask[[0, 1], filters] = 1
    for _ in range(steps):
        xt = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(xt)
            h = xt
            for layer in leaves:
                h = layer(h)
            # image n ascends filter filters[n]: the sum of the images' own means
            loss = tf.reduce_sum(tf.reduce_mean(h, axis=(1, 2)) * mask)
        g = tape.gradient(loss, xt).numpy()
        rms = np.sqrt(np.mean(np.square(g, dtype=np.float64), axis=(1, 2, 3)))
        x = x + (1.0 / (rms + 1e-5))[:, None, None, None] * g
    _close(ours - 128, x - 128, f"filter_patterns at {layer_name}")
    assert np.abs(ours - (np.random.default_rng(4).random(ours.shape) * 20 + 128)).max() > 1
