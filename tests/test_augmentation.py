"""Affine warp kernel and ImageDataGenerator: NumPy twin, scipy and Keras parity, batching.

Keras and scipy are optional oracles (skipped when missing). The lecture's photo test reads
$MINICNN_DATA (the cats_and_dogs_small folder): skipped when it is unset, failed when it is
set but the folder is missing or incomplete (tests/realdata.py).
"""
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from hypothesis import given, strategies as st

from minicnn import kernels
from minicnn.preprocessing import generator, image
from minicnn.preprocessing.image import ImageDataGenerator, transform_matrix
from realdata import data_dir

# Keras calls scipy.ndimage.interpolation.affine_transform, a deprecated scipy namespace
pytestmark = pytest.mark.filterwarnings(
    "ignore:Please import `affine_transform`:DeprecationWarning")

FILL_MODES = ["nearest", "constant", "reflect", "wrap"]
LECTURE = dict(rotation_range=40, width_shift_range=0.2, height_shift_range=0.2,
               shear_range=0.2, zoom_range=0.2, horizontal_flip=True, fill_mode="nearest")


@pytest.fixture(scope="module")
def keras_image():
    """Keras's legacy preprocessing module (ImageDataGenerator, apply_affine_transform)."""
    os.environ["TF_ENABLE_ONEDNN_OPTS"] = "0"
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    pytest.importorskip("scipy")
    pytest.importorskip("keras")
    from keras.src.legacy.preprocessing import image as keras_image
    return keras_image


def _scipy_warp(x, matrices, mode, cval):
    ndimage = pytest.importorskip("scipy.ndimage")
    n, _, _, c = x.shape
    return np.stack([np.stack([ndimage.affine_transform(
        x[k, :, :, ch], matrices[k, :2, :2], matrices[k, :2, 2], order=1, mode=mode,
        cval=cval, prefilter=False) for ch in range(c)], axis=-1) for k in range(n)])


@st.composite
def warp_cases(draw):
    """(x, matrices): small batches and affine matrices, from gentle to far outside."""
    n = draw(st.integers(1, 3))
    h, w, c = draw(st.integers(1, 9)), draw(st.integers(1, 9)), draw(st.integers(1, 4))
    seed = draw(st.integers(0, 2 ** 32 - 1))
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, h, w, c))
    m = np.zeros((n, 3, 3))
    m[:, 2, 2] = 1
    m[:, :2, :2] = rng.normal(0, draw(st.sampled_from([0.3, 1.0, 3.0])), (n, 2, 2))
    m[:, :2, 2] = rng.normal(0, draw(st.sampled_from([1.0, 10.0, 200.0])), (n, 2))
    if draw(st.booleans()):          # half-integers: points exactly on pixels and edges
        m[:, :2] = np.round(m[:, :2] * 2) / 2
    return x, m


@given(warp_cases(), st.sampled_from(FILL_MODES), st.sampled_from([np.float32, np.float64]),
       st.sampled_from([0.0, -1.5]))
def test_affine_warp_equals_its_numpy_twin_and_scipy(case, mode, dtype, cval):
    x, m = case
    x = x.astype(dtype)
    y = kernels.affine_warp(x, m, mode, cval)
    assert y.dtype == dtype and y.shape == x.shape
    np.testing.assert_array_equal(y, kernels.affine_warp_reference(x, m, mode, cval))
    tol = 1e-6 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(y, _scipy_warp(x, m, mode, cval), rtol=tol, atol=tol)


@pytest.mark.parametrize("mode, left, right", [
    # samples at columns -3..0 and 3..6 of the row [1, 2, 3, 4] (cval 9)
    ("nearest", [1, 1, 1, 1], [4, 4, 4, 4]),     # a a a | a b c d | d d d
    ("constant", [9, 9, 9, 1], [4, 9, 9, 9]),
    ("reflect", [3, 2, 1, 1], [4, 4, 3, 2]),     # c b a | a b c d | d c b
    ("wrap", [4, 2, 3, 1], [4, 2, 3, 1]),        # scipy's wrap: period L - 1 = 3
])
def test_fill_modes_on_a_row(mode, left, right):
    x = np.array([1.0, 2.0, 3.0, 4.0]).reshape(1, 1, 4, 1).repeat(2, axis=0)
    m = np.stack([np.eye(3), np.eye(3)])
    m[0, 1, 2], m[1, 1, 2] = -3, 3               # v = j - 3 and v = j + 3
    y = kernels.affine_warp(x, m, mode, cval=9.0)
    np.testing.assert_array_equal(y[0, 0, :, 0], left)
    np.testing.assert_array_equal(y[1, 0, :, 0], right)


def test_bilinear_interpolation_by_hand():
    x = np.array([[0.0, 10.0], [20.0, 30.0]]).reshape(1, 2, 2, 1)
    m = np.eye(3)[None].copy()
    m[0, :2, 2] = (0.25, 0.5)                     # every output samples (i + 0.25, j + 0.5)
    y = kernels.affine_warp(x, m, "nearest")
    # (0.25, 0.5): 0.75*0.5*0 + 0.75*0.5*10 + 0.25*0.5*20 + 0.25*0.5*30 = 10
    assert y[0, 0, 0, 0] == pytest.approx(10.0)
    assert y[0, 1, 1, 0] == pytest.approx(30.0)   # clamped to the corner


def test_identity_and_integer_shift_are_exact():
    x = np.random.default_rng(0).standard_normal((2, 5, 6, 3)).astype(np.float32)
    np.testing.assert_array_equal(kernels.affine_warp(x, np.stack([np.eye(3)] * 2)), x)
    m = np.stack([np.eye(3)] * 2)
    m[:, 0, 2] = 1                                # output row i samples input row i + 1
    y = kernels.affine_warp(x, m, "constant", cval=7.0)
    np.testing.assert_array_equal(y[:, :-1], x[:, 1:])
    np.testing.assert_array_equal(y[:, -1], 7.0)


def test_affine_warp_runs_in_threads():
    rng = np.random.default_rng(1)
    xs = [rng.random((4, 20, 20, 3)).astype(np.float32) for _ in range(4)]
    m = np.stack([transform_matrix(theta=30, zx=0.9, zy=1.1, h=20, w=20)] * 4)
    expected = [kernels.affine_warp(x, m, "reflect") for x in xs]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda x: kernels.affine_warp(x, m, "reflect"), xs))
    for e, g in zip(expected, got):
        np.testing.assert_array_equal(e, g)


@pytest.mark.parametrize("x, m, mode, match", [
    (np.zeros((2, 3, 3)), np.zeros((2, 3, 3)), "nearest", r"shape \(N, H, W, C\)"),
    (np.zeros((1, 3, 3, 1), np.uint8), np.eye(3)[None], "nearest", "float32 or float64"),
    (np.zeros((2, 3, 3, 1)), np.eye(3)[None], "nearest", r"\(2, 3, 3\).*Received: \(1, 3, 3\)"),
    (np.zeros((1, 3, 3, 1)), np.eye(3)[None], "mirror", "'nearest', 'constant', 'reflect', 'wrap'"),
    (np.zeros((1, 3, 3, 1)), np.full((1, 3, 3), np.nan), "nearest", "finite"),
])
def test_affine_warp_rejects_bad_input(x, m, mode, match):
    for warp in (kernels.affine_warp, kernels.affine_warp_reference):
        with pytest.raises(ValueError, match=match):
            warp(x, m, mode)


# ------------------------------------------------------------------ parameters vs Keras

@st.composite
def generator_configs(draw):
    shift = st.one_of(st.sampled_from([0.0, 0.1, 0.2, 0.5]), st.integers(0, 6),
                      st.sampled_from([2.5, [0.1, 0.3], [1, 2, 3]]))
    return dict(rotation_range=draw(st.sampled_from([0, 10, 40, 180])),
                width_shift_range=draw(shift), height_shift_range=draw(shift),
                shear_range=draw(st.sampled_from([0.0, 0.2, 20.0])),
                zoom_range=draw(st.sampled_from([0.0, 0.2, [0.5, 1.0], [1, 1]])),
                horizontal_flip=draw(st.booleans()), vertical_flip=draw(st.booleans()))


@given(generator_configs(), st.integers(0, 2 ** 32 - 1), st.integers(1, 300), st.integers(1, 300))
def test_random_parameters_equal_keras_for_the_same_seed(keras_image, config, seed, h, w):
    ours = ImageDataGenerator(**config).get_random_transform((h, w, 3), seed=seed)
    theirs = keras_image.ImageDataGenerator(**config).get_random_transform((h, w, 3), seed=seed)
    assert ours == theirs


def test_random_parameters_leave_the_global_rng_alone():
    np.random.seed(5)
    before = np.random.random()
    np.random.seed(5)
    ImageDataGenerator(**LECTURE).get_random_transform((150, 150, 3), seed=1)
    assert np.random.random() == before
    a = ImageDataGenerator(**LECTURE).get_random_transform((150, 150, 3))   # unseeded: works
    assert set(a) >= {"theta", "tx", "ty", "shear", "zx", "zy", "flip_horizontal",
                      "flip_vertical"}


@st.composite
def transforms(draw):
    return {"theta": draw(st.floats(-180, 180)), "tx": draw(st.floats(-20, 20)),
            "ty": draw(st.floats(-20, 20)), "shear": draw(st.floats(-45, 45)),
            "zx": draw(st.floats(0.5, 1.5)), "zy": draw(st.floats(0.5, 1.5)),
            "flip_horizontal": draw(st.booleans()), "flip_vertical": draw(st.booleans())}


@given(transforms(), st.sampled_from(FILL_MODES), st.integers(2, 24), st.integers(2, 24),
       st.integers(1, 4), st.integers(0, 2 ** 32 - 1))
def test_apply_transform_equals_keras(keras_image, params, mode, h, w, c, seed):
    x = np.random.default_rng(seed).random((h, w, c)).astype(np.float32)
    ours = ImageDataGenerator(fill_mode=mode, cval=0.5).apply_transform(x, params)
    theirs = keras_image.ImageDataGenerator(fill_mode=mode, cval=0.5).apply_transform(x, params)
    assert ours.dtype == np.float32
    np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-6)


def test_transform_matrix_equals_keras_composition(keras_image):
    # a non-square image: the centre and the swapped axes must be Keras's
    h, w = 7, 11
    a = transform_matrix(theta=17, tx=1.5, ty=-2, shear=8, zx=0.9, zy=1.2, h=h, w=w)
    x = np.random.default_rng(3).random((h, w, 1)).astype(np.float32)
    theirs = keras_image.apply_affine_transform(x, 17, 1.5, -2, 8, 0.9, 1.2, row_axis=0,
                                                col_axis=1, channel_axis=2, order=1)
    ours = kernels.affine_warp(x[None], a[None], "nearest")[0]
    np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-6)
    assert transform_matrix(h=h, w=w) is None


IDENTITIES = [{}, {"theta": 0, "tx": 0, "ty": 0, "shear": 0, "zx": 1, "zy": 1,
                   "flip_horizontal": 0, "flip_vertical": 0},
              {"theta": 0.0, "tx": -0.0, "ty": 0.0, "shear": 0.0, "zx": 1.0, "zy": 1.0,
               "flip_horizontal": False, "flip_vertical": False,
               "channel_shift_intensity": None, "brightness": None}]


@st.composite
def images(draw, max_side=12):
    h, w, c = draw(st.integers(1, max_side)), draw(st.integers(1, max_side)), draw(
        st.integers(1, 4))
    dtype = draw(st.sampled_from([np.float32, np.float64, np.uint8]))
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    return (rng.random((h, w, c)) * 255).astype(dtype)


@given(images(), st.sampled_from(IDENTITIES), st.sampled_from(FILL_MODES),
       st.sampled_from([0.0, 7.5]))
def test_the_identity_transform_returns_the_image(x, params, mode, cval):
    y = ImageDataGenerator(fill_mode=mode, cval=cval).apply_transform(x, params)
    assert y.shape == x.shape and y is not x
    assert y.dtype == (x.dtype if x.dtype != np.uint8 else np.float32)
    np.testing.assert_array_equal(y, x)


@given(images(), st.sampled_from(["flip_horizontal", "flip_vertical"]),
       st.sampled_from(FILL_MODES))
def test_a_flip_applied_twice_is_the_identity(x, flip, mode):
    gen = ImageDataGenerator(fill_mode=mode)
    once = gen.apply_transform(x, {flip: 1})
    np.testing.assert_array_equal(once, x[:, ::-1] if flip == "flip_horizontal" else x[::-1])
    np.testing.assert_array_equal(gen.apply_transform(once, {flip: 1}), x)


def test_height_shift_moves_columns_as_in_keras():
    # Keras's quirk, reproduced: tx (drawn from height_shift_range) moves along columns.
    x = np.zeros((4, 8, 1), np.float32)
    x[1, 2, 0] = 1
    y = ImageDataGenerator().apply_transform(x, {"tx": 1})
    assert np.argwhere(y[..., 0] > 0.5).tolist() == [[1, 1]]
    y = ImageDataGenerator().apply_transform(x, {"ty": 1})
    assert np.argwhere(y[..., 0] > 0.5).tolist() == [[0, 2]]


def test_random_transform_and_standardize():
    gen = ImageDataGenerator(rescale=1 / 255, **LECTURE)
    x = np.random.default_rng(0).integers(0, 256, (20, 30, 3)).astype(np.float32)
    params = gen.get_random_transform(x.shape, seed=7)
    np.testing.assert_array_equal(gen.random_transform(x, seed=7), gen.apply_transform(x, params))
    before = x.copy()
    s = gen.standardize(x)
    np.testing.assert_array_equal(x, before)                       # not in place
    np.testing.assert_array_equal(s, x * np.float32(1 / 255))
    assert s.dtype == np.float32
    np.testing.assert_array_equal(ImageDataGenerator().standardize(x), x)


# ------------------------------------------------------------------ the batched hot path

def _one_by_one(gen, x, seeds):
    return np.stack([gen.standardize(gen.random_transform(x[i], seeds[i]))
                     for i in range(len(x))])


@pytest.mark.parametrize("config", [
    dict(rescale=1 / 255, **LECTURE),
    dict(rotation_range=90, vertical_flip=True, fill_mode="reflect"),
    dict(width_shift_range=2, fill_mode="constant", cval=3.0),     # some images do not move
    dict(horizontal_flip=True, vertical_flip=True, rescale=0.5),   # no warp at all
    dict(zoom_range=[0.5, 0.8], fill_mode="wrap"),
    dict(),
])
def test_augment_batch_equals_image_by_image(config):
    gen = ImageDataGenerator(**config)
    x = np.random.default_rng(2).integers(0, 256, (9, 13, 17, 3)).astype(np.float32)
    before = x.copy()
    seeds = list(range(100, 109))
    y = gen.augment_batch(x, seeds)
    assert y.dtype == np.float32 and y.shape == x.shape
    np.testing.assert_array_equal(y, _one_by_one(gen, x, seeds))
    np.testing.assert_array_equal(x, before)


def test_augment_batch_warps_once_or_not_at_all(monkeypatch):
    calls = []
    real = generator.affine_warp

    def counting(x, *args, **kwargs):
        calls.append(x.shape[0])
        return real(x, *args, **kwargs)

    monkeypatch.setattr(generator, "affine_warp", counting)
    x = np.random.default_rng(0).random((8, 10, 10, 3)).astype(np.float32)
    ImageDataGenerator(**LECTURE).augment_batch(x, range(8))
    assert calls == [8]
    calls.clear()
    ImageDataGenerator(width_shift_range=2).augment_batch(x, range(8))
    n_moved = sum(ImageDataGenerator(width_shift_range=2).get_random_transform(
        x.shape[1:], s)["ty"] != 0 for s in range(8))
    assert 0 < n_moved < 8 and calls == [n_moved]
    calls.clear()
    ImageDataGenerator(horizontal_flip=True, rescale=0.1).augment_batch(x, range(8))
    assert calls == []


def test_augment_batch_flips_then_rescales():
    x = np.random.default_rng(0).integers(0, 256, (6, 4, 5, 1)).astype(np.float32)
    gen = ImageDataGenerator(horizontal_flip=True, rescale=1 / 255)
    y = gen.augment_batch(x, range(6))
    for i in range(6):
        flipped = gen.get_random_transform(x.shape[1:], seed=i)["flip_horizontal"]
        expected = (x[i, :, ::-1] if flipped else x[i]) * np.float32(1 / 255)
        np.testing.assert_array_equal(y[i], expected)


def test_augment_batch_of_nothing():
    y = ImageDataGenerator(**LECTURE).augment_batch(np.zeros((0, 5, 5, 3), np.float32), [])
    assert y.shape == (0, 5, 5, 3) and y.dtype == np.float32


def test_parameters_drawn_in_threads_equal_serial_draws():
    gen = ImageDataGenerator(**LECTURE)
    serial = [gen.get_random_transform((150, 150, 3), seed=s) for s in range(200)]
    with ThreadPoolExecutor(4) as pool:
        threaded = list(pool.map(lambda s: gen.get_random_transform((150, 150, 3), seed=s),
                                 range(200)))
    assert threaded == serial


def test_augment_batch_accepts_uint8_and_returns_float32():
    x = np.random.default_rng(0).integers(0, 256, (3, 6, 6, 3)).astype(np.uint8)
    y = ImageDataGenerator(rotation_range=20).augment_batch(x, [1, 2, 3])
    assert y.dtype == np.float32
    np.testing.assert_array_equal(
        y, ImageDataGenerator(rotation_range=20).augment_batch(x.astype(np.float32), [1, 2, 3]))


# ------------------------------------------------------------------ the lecture's photo

def test_lecture_generator_on_a_real_photo_equals_keras(keras_image):
    path = data_dir("train", "cats", "cat.2.jpg")
    cat_photo = image.img_to_array(image.load_img(path, target_size=(150, 150)))
    ours = ImageDataGenerator(**LECTURE)
    theirs = keras_image.ImageDataGenerator(**LECTURE)
    assert cat_photo.shape == (150, 150, 3)
    for seed in range(4):                        # the lecture's 2x2 preview
        p = ours.get_random_transform(cat_photo.shape, seed=seed)
        assert p == theirs.get_random_transform(cat_photo.shape, seed=seed)
        y = ours.apply_transform(cat_photo, p)
        np.testing.assert_allclose(y, theirs.apply_transform(cat_photo, p), rtol=1e-6, atol=1e-4)
        assert y.shape == (150, 150, 3) and 0 <= y.min() and y.max() <= 255
        assert not np.array_equal(y, cat_photo)
    batch = np.stack([cat_photo] * 4)
    rescaled = ImageDataGenerator(rescale=1 / 255, **LECTURE).augment_batch(batch, range(4))
    k = keras_image.ImageDataGenerator(rescale=1 / 255, **LECTURE)
    expected = np.stack([k.standardize(k.random_transform(cat_photo.copy(), seed=s))
                         for s in range(4)])
    np.testing.assert_allclose(rescaled, expected, rtol=1e-6, atol=1e-6)


# ------------------------------------------------------------------ bad input, iterators

@pytest.mark.parametrize("kwargs, match", [
    (dict(rotation_range=-1), "rotation_range.*>= 0.*-1"),
    (dict(shear_range=-0.2), "shear_range"),
    (dict(width_shift_range=-0.1), "width_shift_range.*>= 0"),
    (dict(height_shift_range="a lot"), "height_shift_range"),
    (dict(height_shift_range=[]), "non-empty list"),
    (dict(zoom_range=-0.2), "zoom_range"),
    (dict(zoom_range=[0.9]), "pair"),
    (dict(zoom_range=(1.2, 0.8)), "lower <= upper"),
    (dict(zoom_range="0.2"), "zoom_range"),
    (dict(fill_mode="mirror"), "'nearest', 'constant', 'reflect', 'wrap'.*'mirror'"),
    (dict(horizontal_flip="yes"), "horizontal_flip"),
    (dict(rescale="1/255"), "rescale"),
    (dict(cval=None), "cval"),
])
def test_generator_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ImageDataGenerator(**kwargs)


def test_generator_methods_reject_bad_input():
    gen = ImageDataGenerator(**LECTURE)
    with pytest.raises(ValueError, match=r"\(H, W, C\).*\(4, 4\)"):
        gen.apply_transform(np.zeros((4, 4)), {})
    with pytest.raises(ValueError, match=r"\(N, H, W, C\)"):
        gen.augment_batch(np.zeros((4, 4, 3)), [1, 2, 3, 4])
    with pytest.raises(ValueError, match="expected 2 seeds.*received 3"):
        gen.augment_batch(np.zeros((2, 4, 4, 3)), [1, 2, 3])
    with pytest.raises(ValueError, match="seed"):
        gen.get_random_transform((4, 4, 3), seed=-1)
    with pytest.raises(ValueError, match="img_shape"):
        gen.get_random_transform((4,))
    with pytest.raises(ValueError, match="channel_shift_intensity"):
        gen.apply_transform(np.zeros((4, 4, 3)), {"channel_shift_intensity": 0.3})


def test_iterators_are_reexported_lazily():
    iterators = pytest.importorskip("minicnn.preprocessing.iterators")
    from minicnn.preprocessing.image import DirectoryIterator, NumpyArrayIterator, generator_next
    assert DirectoryIterator is iterators.DirectoryIterator
    assert NumpyArrayIterator is iterators.NumpyArrayIterator
    assert generator_next is iterators.generator_next
    with pytest.raises(AttributeError, match="no_such_thing"):
        image.no_such_thing


def test_flow_methods_report_bad_input_clearly(tmp_path):
    gen = ImageDataGenerator(rescale=0.5)
    with pytest.raises(ValueError, match=r"same length.*\(6, 4, 4, 3\).*\(5,\)"):
        gen.flow(np.zeros((6, 4, 4, 3)), np.arange(5))
    with pytest.raises(ValueError, match=r"same length"):
        gen.flow(np.zeros((6, 4, 4, 3)), np.zeros((7, 2)))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="is empty; expected one subfolder per class"):
        gen.flow_from_directory(tmp_path / "empty")
    (tmp_path / "flat").mkdir()
    image.save_img(tmp_path / "flat" / "cat.0.png", np.zeros((4, 4, 3)))
    with pytest.raises(ValueError, match=r"no class subfolders \(it holds 1 image files"):
        gen.flow_from_directory(tmp_path / "flat")
    (tmp_path / "flat" / "cats").mkdir()
    for kwargs, match in [(dict(class_mode="multiclass"), "class_mode.*'multiclass'"),
                          (dict(target_size=(0, 150)), r"target_size.*\(0, 150\)"),
                          (dict(target_size=(-150, 150)), r"target_size.*\(-150, 150\)"),
                          (dict(target_size=(150,)), r"target_size.*\(150,\)")]:
        with pytest.raises(ValueError, match=match):
            gen.flow_from_directory(tmp_path / "flat", **kwargs)


def test_flow_builds_a_numpy_array_iterator():
    iterators = pytest.importorskip("minicnn.preprocessing.iterators")
    x = np.random.default_rng(0).random((6, 8, 8, 3)).astype(np.float32)
    it = ImageDataGenerator(rescale=0.5).flow(x, np.arange(6), batch_size=4, shuffle=False, seed=1)
    try:
        assert isinstance(it, iterators.NumpyArrayIterator)
        assert it.batch_size == 4
    finally:
        close = getattr(it, "close", None)
        if close is not None:
            close()
