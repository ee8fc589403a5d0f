"""Bad input, one table per kind: each case ends in a clear error that names the file, layer
or argument, what was expected and what was received, or, where Keras goes on, in Keras's
behaviour with a warning. Never a traceback from deep inside NumPy, Numba or h5py, a silent
wrong number or a damaged file.

To add a case, add a row to the table of its kind: the tables hold what is built, and the
error type and message it must end in (or what it must do instead).

    model files   empty, random, cut-short .h5 files; HDF5 without a model; unknown,
                  missing and refused config keys; weights of another dtype or shape;
                  Keras-saved files with what minicnn lacks (refused, named) or has (the
                  same predictions as Keras); a save where a file is in the way
    images        empty, cut-short and non-image .jpg files, every colour mode, EXIF
                  orientation (not applied, as Keras), 1x1, animated GIF, hidden files,
                  non-ASCII names, symlinks, empty class folders: epochs go on, the bad
                  files are skipped and reported once, "Found N images" as Keras counts
    training      mismatched lengths, labels outside [0, 1] or not numbers, NaN/inf
                  inputs, batch sizes, epochs and steps out of range, wrong shapes, integer,
                  float64 and non-contiguous inputs, a NaN or huge learning rate
    layers        every argument out of range, in Keras's words, at construction or build
    the CLI       SIGTERM and SIGINT during fit stop after the step in progress; in the
                  middle of a `minicnn lecture` run: exit 130, the resume command
                  printed, the checkpoint intact, the resumed run finishes; --resume with a
                  corrupted checkpoint
"""
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings

os.environ["TF_ENABLE_ONEDNN_OPTS"] = "0"
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"

import h5py
import numpy as np
import pytest
from PIL import Image

import minicnn as mc
from minicnn import flows, layers, optimizers
from minicnn.io.model_file import load_model, save_model
from minicnn.preprocessing.decoding import load_img
from minicnn.preprocessing.image import ImageDataGenerator


@pytest.fixture(autouse=True)
def fresh_names():
    mc.clear_session()


def _small(seed=0, dropout=False):
    stack = [layers.Conv2D(4, 3, activation="relu", input_shape=(8, 8, 3)),
             layers.MaxPooling2D(), layers.Flatten()]
    if dropout:
        stack.append(layers.Dropout(0.5))
    stack.append(layers.Dense(1, activation="sigmoid"))
    model = mc.Sequential(stack, seed=seed)
    model.compile("rmsprop", "binary_crossentropy", ["acc"])
    return model


def _data(n=10, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, 8, 8, 3), dtype=np.float32), (np.arange(n) % 2).astype(np.float32)


def _not_from_deep_inside(error):
    """The error was raised by minicnn's own code, naming what went wrong."""
    origin = error.traceback[-1].path
    assert "minicnn" in str(origin) and "site-packages" not in str(origin), origin


# -- model files --------------------------------------------------------------------------

@pytest.fixture
def good_file(tmp_path):
    return save_model(_small(), tmp_path / "good.h5")


def _cut(fraction):
    def make(good, bad):
        data = open(good, "rb").read()
        size = fraction if isinstance(fraction, int) else int(len(data) * fraction)
        open(bad, "wb").write(data[:size])
    return make


def _edit(change):
    """A copy of the good file with its model_config (a dict) or its file (h5py) changed."""
    def make(good, bad):
        import json
        shutil.copy(good, bad)
        with h5py.File(bad, "r+") as f:
            config = json.loads(f.attrs["model_config"])
            change(config, f)
            f.attrs["model_config"] = json.dumps(config).encode()
    return make


def _conv_config(config):
    return config["config"]["layers"][1]["config"]


def _retype_weights(dtype):
    def change(config, f):
        group = f["model_weights/conv2d"]
        names = []
        group.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
        for name in names:
            value = group[name][()]
            del group[name]
            group[name] = value.astype(dtype)
    return change


BAD_MODEL_FILES = {
    "zero bytes": (lambda good, bad: open(bad, "wb").close(),
                   "neither an HDF5 file nor a zip archive"),
    "random bytes": (lambda good, bad: open(bad, "wb").write(np.random.default_rng(0).bytes(4096)),
                     "neither an HDF5 file nor a zip archive"),
    "cut at 8 bytes": (_cut(8), "damaged or cut short"),
    "cut at 1000 bytes": (_cut(1000), "damaged or cut short"),
    "cut in the middle": (_cut(0.5), "damaged or cut short"),
    "cut 10 bytes short": (_cut(-10), "damaged or cut short"),
    "HDF5 without a model": (lambda good, bad: h5py.File(bad, "w").create_dataset("x", data=[1]),
                             "no 'model_config' attribute"),
    "unknown layer class": (_edit(lambda c, f: c["config"]["layers"][1].update(
        class_name="BatchNormalization")), r"'conv2d' \(BatchNormalization\).*supports"),
    "a config key missing": (_edit(lambda c, f: _conv_config(c).pop("filters")),
                             r"Conv2D 'conv2d'.*KeyError\('filters'\)"),
    "an unknown config key": (_edit(lambda c, f: _conv_config(c).update(frobnicate=3)),
                              r"Conv2D 'conv2d'.*keys minicnn does not know: \['frobnicate'\]"),
    "kernel_size 0 in the config": (_edit(lambda c, f: _conv_config(c).update(
        kernel_size=[0, 3])), "`kernel_size` must be positive"),
    "dilation": (_edit(lambda c, f: _conv_config(c).update(dilation_rate=[2, 2])),
                 "dilation_rate=.*not supported"),
    "groups": (_edit(lambda c, f: _conv_config(c).update(groups=2)), "groups=2 is not supported"),
    "channels_first": (_edit(lambda c, f: _conv_config(c).update(data_format="channels_first")),
                       "data_format='channels_first' is not supported"),
    "tanh": (_edit(lambda c, f: _conv_config(c).update(activation="tanh")), "tanh"),
    "float16 compute": (_edit(lambda c, f: _conv_config(c).update(dtype="float16")),
                        "dtype 'float16' is not supported"),
    "integer weights": (_edit(_retype_weights(np.int32)),
                        r"layer 'conv2d' \(Conv2D\).*holds int32 values; expected floating"),
    "weights of another shape": (_edit(lambda c, f: _conv_config(c).update(filters=5)),
                                 r"layer 'conv2d'.*the file has shape \(3, 3, 3, 4\), the "
                                 r"model expects \(3, 3, 3, 5\)"),
}


@pytest.mark.parametrize("case", list(BAD_MODEL_FILES))
def test_bad_model_files_are_clear_errors_and_stay_unchanged(good_file, tmp_path, case):
    make, message = BAD_MODEL_FILES[case]
    bad = str(tmp_path / "bad.h5")
    make(good_file, bad)
    before = open(bad, "rb").read()
    with pytest.raises(ValueError, match=message) as error:
        load_model(bad)
    assert bad in str(error.value)
    _not_from_deep_inside(error)
    assert open(bad, "rb").read() == before


@pytest.mark.parametrize("dtype, exact", [(np.float64, True), (np.float16, False)])
def test_weights_of_another_precision_are_converted(good_file, tmp_path, dtype, exact):
    bad = str(tmp_path / "other.h5")
    _edit(_retype_weights(dtype))(good_file, bad)
    model, original = load_model(bad), load_model(good_file)
    assert model.layers[0].kernel.dtype == np.float32
    expected = original.layers[0].kernel.astype(dtype).astype(np.float32)
    np.testing.assert_array_equal(model.layers[0].kernel, expected)
    if exact:
        np.testing.assert_array_equal(model.layers[0].kernel, original.layers[0].kernel)


def _keras():
    keras = pytest.importorskip("keras")
    if keras.backend.backend() != "tensorflow":
        pytest.skip("the Keras comparisons run on the TensorFlow backend")
    keras.backend.clear_session()
    return keras


# Keras-saved files: what minicnn computes exactly (the same predictions), and what it
# refuses, naming the feature (never loaded with other numbers).
KERAS_FEATURES = {
    "use_bias=False": (lambda L: [L.Conv2D(3, 3, use_bias=False, activation="relu")], None),
    "softmax output": (lambda L: [L.Conv2D(3, 3, activation="relu"), L.Flatten(),
                                  L.Dense(3, activation="softmax")], None),
    "strides and same padding": (lambda L: [L.Conv2D(3, 3, strides=2, padding="same"),
                                            L.MaxPooling2D(2, padding="same")], None),
    "BatchNormalization": (lambda L: [L.Conv2D(3, 3), L.BatchNormalization()],
                           r"\(BatchNormalization\)"),
    "GlobalAveragePooling2D": (lambda L: [L.Conv2D(3, 3), L.GlobalAveragePooling2D()],
                               r"\(GlobalAveragePooling2D\)"),
    "dilation": (lambda L: [L.Conv2D(3, 3, dilation_rate=2)], "dilation_rate"),
    "groups": (lambda L: [L.Conv2D(4, 3), L.Conv2D(4, 3, groups=2)], "groups=2"),
    "tanh": (lambda L: [L.Conv2D(3, 3, activation="tanh")], "tanh"),
}


@pytest.mark.parametrize("case", list(KERAS_FEATURES))
def test_keras_files_load_exactly_or_name_what_minicnn_lacks(tmp_path, case):
    keras = _keras()
    stack, refused = KERAS_FEATURES[case]
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((9, 9, 3)), *stack(keras.layers)])
    path = str(tmp_path / "keras.h5")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")           # Keras's note that .h5 is its legacy format
        model.save(path)
    if refused:
        with pytest.raises(ValueError, match=refused):
            load_model(path)
        return
    x = np.random.default_rng(0).random((3, 9, 9, 3), dtype=np.float32)
    np.testing.assert_allclose(load_model(path).predict(x, verbose=0),
                               model.predict_on_batch(x), rtol=1e-5, atol=1e-6)


def test_a_save_into_a_missing_folder_makes_it(tmp_path):
    path = save_model(_small(), tmp_path / "new" / "deeper" / "model.h5")
    assert load_model(path).count_params() == _small().count_params()


def test_a_save_with_a_file_in_the_way_names_it_and_leaves_the_file(tmp_path):
    blocker = tmp_path / "notes"
    blocker.write_text("keep me")
    with pytest.raises(OSError, match=r"cannot write .*notes.*cannot be created"):
        save_model(_small(), blocker / "model.h5")
    assert blocker.read_text() == "keep me"
    with pytest.raises(IsADirectoryError, match="it is a folder"):
        save_model(_small(), tmp_path)


# -- images -------------------------------------------------------------------------------

def _photo(seed=0, size=(30, 20)):
    rng = np.random.default_rng(seed)
    return Image.fromarray((rng.random(size[::-1] + (3,)) * 255).astype(np.uint8))


def _write_truncated(path):
    buffer = path.with_suffix(".tmp")
    _photo().save(buffer, format="JPEG")
    data = buffer.read_bytes()
    buffer.unlink()
    path.write_bytes(data[:len(data) // 2])


def _exif_rotated(path):
    image = _photo()
    exif = image.getexif()
    exif[0x0112] = 6                         # "rotate 90 degrees clockwise to display"
    image.save(path, exif=exif)


def _animated(path):
    frames = [_photo(k) for k in range(3)]
    frames[0].save(path, save_all=True, append_images=frames[1:])


IMAGES = {                # file name -> (how it is written, readable?)
    "good.jpg": (lambda p: _photo().save(p), True),
    "zero.jpg": (lambda p: p.write_bytes(b""), False),
    "truncated.jpg": (_write_truncated, False),
    "text.jpg": (lambda p: p.write_text("not an image"), False),
    "rgba.png": (lambda p: Image.fromarray(np.dstack([np.asarray(_photo())] * 2)[..., :4]).save(p), True),
    "palette.png": (lambda p: _photo().convert("P").save(p), True),
    "gray.png": (lambda p: _photo().convert("L").save(p), True),
    "gray16.png": (lambda p: Image.fromarray(np.asarray(_photo().convert("L")).astype(np.uint16) * 257).save(p), True),
    "cmyk.jpg": (lambda p: _photo().convert("CMYK").save(p), True),
    "exif6.jpg": (_exif_rotated, True),
    "one-pixel.png": (lambda p: _photo(size=(1, 1)).save(p), True),
    "кошка-猫.jpg": (lambda p: _photo(3).save(p), True),
    "animated.gif": (_animated, None),          # not an extension Keras lists: not counted
    ".DS_Store": (lambda p: p.write_bytes(b"\0\1\2"), None),
}


@pytest.fixture
def messy_folder(tmp_path):
    root = tmp_path / "data"
    for name, (write, _) in IMAGES.items():
        (root / "cats").mkdir(parents=True, exist_ok=True)
        write(root / "cats" / name)
    (root / "dogs").mkdir()
    for k in range(3):
        _photo(10 + k).save(root / "dogs" / f"dog{k}.jpg")
    os.symlink(root / "cats" / "good.jpg", root / "dogs" / "link.jpg")
    return root


def test_an_epoch_goes_on_past_bad_photos_and_reports_each_once(messy_folder, capsys):
    counted = [n for n, (_, ok) in IMAGES.items() if ok is not None] + ["dog0", "dog1", "dog2",
                                                                          "link"]
    unreadable = sorted(n for n, (_, ok) in IMAGES.items() if ok is False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        iterator = ImageDataGenerator(rescale=1 / 255).flow_from_directory(
            messy_folder, target_size=(16, 16), batch_size=4, class_mode="binary",
            shuffle=False)
        assert f"Found {len(counted)} images belonging to 2 classes." in capsys.readouterr().out
        seen = 0
        for _ in range(2 * len(iterator)):               # two passes
            x, y = next(iterator)
            assert x.shape[1:] == (16, 16, 3) and np.isfinite(x).all()
            assert 0 <= x.min() and x.max() <= 1
            seen += len(x)
    assert seen == 2 * (len(counted) - len(unreadable))
    reported = [str(w.message) for w in caught if "skipped the unreadable" in str(w.message)]
    assert sorted(os.path.basename(m.split("'")[1]) for m in reported) == unreadable


def test_exif_orientation_is_not_applied_as_in_keras(messy_folder):
    # Keras's load_img reads the stored pixels; so does minicnn (docs/bad-input.md).
    image = load_img(messy_folder / "cats" / "exif6.jpg")
    assert image.size == (30, 20)


@pytest.mark.parametrize("make, error, message", [
    (lambda root: None, FileNotFoundError, "does not exist"),
    (lambda root: (root.mkdir(), (root / "cats").mkdir(), (root / "dogs").mkdir()),
     ValueError, r"found 0 images in the 2 class subfolders"),
    (lambda root: root.write_text("a file"), FileNotFoundError, "is not a directory"),
])
def test_a_folder_with_no_images_is_named(tmp_path, make, error, message):
    root = tmp_path / "folder"
    make(root)
    with pytest.raises(error, match=message):
        ImageDataGenerator().flow_from_directory(root, class_mode="binary")


def test_a_huge_image_keeps_pillows_decompression_bomb_guard(tmp_path):
    path = tmp_path / "huge.png"
    Image.new("L", (20000, 20000)).save(path)          # 400 M pixels: over twice the limit
    with pytest.raises(ValueError, match="huge.png"):
        load_img(path, target_size=(8, 8))


# -- training -----------------------------------------------------------------------------

X, Y = _data()
TRAINING = {       # name -> (fit arguments, error type, message)
    "x and y of different lengths": (dict(x=X, y=Y[:7]), ValueError,
                                     "`x` has 10 samples but its labels have 7"),
    "labels that are strings": (dict(x=X, y=np.array(["cat"] * 10)), ValueError,
                                "`y` must hold numbers.*dtype <U3"),
    "labels of another shape": (dict(x=X, y=np.zeros((10, 2))), ValueError,
                                r"`y` has shape \(10, 2\) but the model outputs"),
    "NaN inputs": (dict(x=np.where(X > 0.5, np.nan, X), y=Y), FloatingPointError,
                   "loss became nan at epoch 1, step 1.*input batch holds .* NaN or inf"),
    "inf inputs": (dict(x=np.where(X > 0.9, np.inf, X), y=Y), FloatingPointError,
                   "input batch holds .* NaN or inf"),
    "batch_size 0": (dict(x=X, y=Y, batch_size=0), ValueError,
                     "batch_size must be a positive int; received 0"),
    "batch_size -1": (dict(x=X, y=Y, batch_size=-1), ValueError, "received -1"),
    "batch_size 2.5": (dict(x=X, y=Y, batch_size=2.5), ValueError, "received 2.5"),
    "epochs -1": (dict(x=X, y=Y, epochs=-1), ValueError, "`epochs` must be an int >= 0"),
    "epochs '3'": (dict(x=X, y=Y, epochs="3"), ValueError, "received '3'"),
    "steps_per_epoch 0": (dict(x=X, y=Y, steps_per_epoch=0), ValueError,
                          "`steps_per_epoch` must be a positive int"),
    "an input of another size": (dict(x=np.zeros((10, 9, 8, 3)), y=Y), ValueError,
                                 r"expected input of shape \(N, 8, 8, 3\) \(what its first "
                                 r"layer 'conv2d' \(Conv2D\) was built for\); received \(10, 9, 8, 3\)"),
    "one channel instead of three": (dict(x=np.zeros((10, 8, 8, 1)), y=Y), ValueError,
                                     r"received \(10, 8, 8, 1\)"),
    "no channel axis": (dict(x=np.zeros((10, 8, 8)), y=Y), ValueError, r"received \(10, 8, 8\)"),
    "no samples axis": (dict(x=np.float32(1), y=Y), ValueError, "received a scalar"),
}


@pytest.mark.parametrize("case", list(TRAINING))
def test_bad_training_input_is_a_clear_error_before_any_update(case):
    kwargs, error_type, message = TRAINING[case]
    model = _small()
    before = model.get_weights()
    with pytest.raises(error_type, match=message) as error:
        model.fit(verbose=0, **kwargs)
    assert model._label() in str(error.value)
    _not_from_deep_inside(error)
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_labels_outside_0_1_train_as_in_keras_with_a_warning():
    with pytest.warns(UserWarning, match=r"`y` holds values outside \[0, 1\] \(from 0 to 3\)"):
        history = _small().fit(X, Y * 3, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def test_epochs_0_trains_nothing_and_says_so():
    model = _small()
    before = model.get_weights()
    with pytest.warns(UserWarning, match="no epoch to run"):
        history = model.fit(X, Y, epochs=0, verbose=0)
    assert history.history == {}
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("convert", [
    lambda x: (x * 255).astype(np.uint8), lambda x: (x * 255).astype(np.int64),
    lambda x: x.astype(np.float64)], ids=["uint8", "int64", "float64"])
def test_integer_and_float64_inputs_train_as_float32_of_their_values(convert):
    # As Keras: the values are cast, not rescaled (rescale=1/255 is the generator's job).
    a, b = _small(), _small()
    ha = a.fit(convert(X), Y, shuffle=False, verbose=0).history
    hb = b.fit(convert(X).astype(np.float32), Y, shuffle=False, verbose=0).history
    assert ha == hb


def test_non_contiguous_inputs_give_the_same_numbers():
    wide = np.concatenate([X, X], axis=2)[:, :, ::2]          # a strided view
    fortran = np.asfortranarray(X)
    assert not wide.flags.c_contiguous and not fortran.flags.c_contiguous
    for view in (wide, fortran):
        a, b = _small(), _small()
        ha = a.fit(view, Y, shuffle=False, verbose=0).history
        hb = b.fit(np.ascontiguousarray(view), Y, shuffle=False, verbose=0).history
        assert ha == hb
        np.testing.assert_array_equal(a.predict(view, verbose=0),
                                      b.predict(np.ascontiguousarray(view), verbose=0))


@pytest.mark.parametrize("learning_rate", [float("nan"), float("inf"), -1e-3, 0, "fast", True])
def test_a_learning_rate_that_is_no_positive_number_is_refused(learning_rate):
    with pytest.raises(ValueError, match="learning_rate must be a positive finite number"):
        optimizers.RMSprop(learning_rate=learning_rate)


@pytest.mark.parametrize("make, message", [
    (lambda: optimizers.RMSprop(rho=1.5), r"rho must be a number in \[0, 1\)"),
    (lambda: optimizers.RMSprop(epsilon=-1), "epsilon must be"),
    (lambda: optimizers.RMSprop(momentum="a lot"), "momentum must be"),
    (lambda: optimizers.Adam(beta_1=1), "beta_1 must be"),
    (lambda: optimizers.SGD(momentum=2), r"momentum must be a number in \[0, 1\]"),
])
def test_optimizer_arguments_out_of_range_are_refused(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_a_huge_learning_rate_stops_at_the_first_non_finite_loss_naming_the_layer():
    model = _small()
    model.compile(optimizers.RMSprop(learning_rate=1e30), "binary_crossentropy")
    with pytest.raises(FloatingPointError, match=r"loss became nan at epoch \d+, step \d+; "
                       r"training stopped before this step's update: the (weights|output) "
                       r"of layer '\w+'") as error:
        model.fit(X, Y, epochs=5, verbose=0)
    _not_from_deep_inside(error)


# -- layer arguments ----------------------------------------------------------------------

LAYER_ARGUMENTS = [
    (lambda: layers.Conv2D(4, 0), "`kernel_size` must be positive; received kernel_size=0"),
    (lambda: layers.Conv2D(4, -1), "`kernel_size` must be positive"),
    (lambda: layers.Conv2D(4, (3, 3, 3)), "`kernel_size` must be an int or a tuple of 2 ints"),
    (lambda: layers.Conv2D(4, 3, strides=0), "`strides` must be positive"),
    (lambda: layers.Conv2D(0, 3), "`filters` must be a positive int; received filters=0"),
    (lambda: layers.Conv2D(2.5, 3), "received filters=2.5"),
    (lambda: layers.Conv2D(4, 3, padding="full"), r"`padding` must be one of \('valid', 'same'\)"),
    (lambda: layers.Conv2D(4, 3, activation="swish2"), "unknown activation 'swish2'"),
    (lambda: layers.MaxPooling2D(0), "`pool_size` must be positive"),
    (lambda: layers.MaxPooling2D(2, strides=-2), "`strides` must be positive"),
    (lambda: layers.MaxPooling2D(2, padding="causal"), "`padding` must be one of"),
    (lambda: layers.Dropout(1.0), r"`rate` must be a number in \[0, 1\); received rate=1.0"),
    (lambda: layers.Dropout(-0.1), "received rate=-0.1"),
    (lambda: layers.Dropout("x"), "received rate='x'"),
    (lambda: layers.Dense(0), "`units` must be a positive int; received units=0"),
    (lambda: layers.Dense(None), "received units=None"),
    (lambda: mc.Sequential([layers.Conv2D(4, 9, input_shape=(8, 8, 3))]),
     r"kernel_size \(9, 9\) is larger than its input \(H, W\) = \(8, 8\)"),
    (lambda: mc.Sequential([layers.MaxPooling2D(9, input_shape=(8, 8, 3))]),
     r"pool_size \(9, 9\) is larger than its input"),
    (lambda: mc.Sequential([layers.Conv2D(4, 3, input_shape=(8, 8))]),
     r"expected input of rank 4 \(N, H, W, C_in\); received shape \(None, 8, 8\)"),
]


@pytest.mark.parametrize("make, message", LAYER_ARGUMENTS,
                         ids=[m.split(";")[0][:40] for _, m in LAYER_ARGUMENTS])
def test_layer_arguments_out_of_range_are_errors_in_keras_words(make, message):
    with pytest.raises(ValueError, match=message) as error:
        make()
    _not_from_deep_inside(error)


def test_no_assert_guards_user_input():
    import ast
    import pathlib

    package = pathlib.Path(mc.__file__).parent
    found = [f"{path.relative_to(package)}:{node.lineno}"
             for path in package.rglob("*.py")
             for node in ast.walk(ast.parse(path.read_text()))
             if isinstance(node, ast.Assert)]
    assert found == []


# -- the CLI: signals in the middle of a run -----------------------------------------------

def _lecture_process(out, epochs):
    return subprocess.Popen(
        [sys.executable, "-m", "minicnn.cli", "lecture", "scratch", "--epochs", str(epochs),
         "--steps-per-epoch", "2", "--validation-steps", "1", "--batch-size", "4",
         "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_mid_run_exits_cleanly_and_the_run_resumes(tmp_path, signum):
    checkpoint = tmp_path / "scratch" / "model.h5"
    process = _lecture_process(tmp_path, epochs=200)
    deadline = time.monotonic() + 300
    while not checkpoint.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert checkpoint.exists(), process.communicate()
    process.send_signal(signum)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "Traceback" not in err
    assert "interrupted after" in err and "Continue with" in err and "--resume" in err
    done = flows.read_state(checkpoint)["epochs_done"]            # the checkpoint is whole
    assert 1 <= done < 200
    result = subprocess.run(
        [sys.executable, "-m", "minicnn.cli", "lecture", "scratch", "--epochs", str(done + 1),
         "--steps-per-epoch", "2", "--validation-steps", "1", "--batch-size", "4",
         "--out", str(tmp_path), "--resume"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert f"after epoch {done}" in result.stdout
    assert flows.read_state(checkpoint)["epochs_done"] == done + 1


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_during_fit_stops_after_the_step_in_progress(monkeypatch, capsys, signum):
    model = _small()
    steps = []
    original = mc.Sequential._train_step

    def signalled_in_epoch_2(self, *args, **kwargs):
        steps.append(1)
        if len(steps) == 5:                  # epoch 2, step 1 (batches of 3: 4 per epoch)
            os.kill(os.getpid(), signum)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(mc.Sequential, "_train_step", signalled_in_epoch_2)
    before = signal.getsignal(signum)
    history = model.fit(X, Y, batch_size=3, epochs=3, verbose=0)
    assert len(history.epoch) == 1 and len(steps) == 5         # the step in progress finished
    assert "training stopped after 1 finished epoch" in capsys.readouterr().out
    assert signal.getsignal(signum) is before                    # the handler is given back


@pytest.mark.parametrize("damage, message", [
    (lambda path: path.write_bytes(path.read_bytes()[:500]), "damaged or cut short|cannot read"),
    (lambda path: path.write_text("garbage"), "cannot read|not an HDF5|neither"),
])
def test_resume_from_a_damaged_checkpoint_is_a_clear_error(tmp_path, capsys, damage, message):
    from minicnn import cli

    args = ["lecture", "scratch", "--epochs", "1", "--steps-per-epoch", "1",
            "--validation-steps", "1", "--batch-size", "2", "--out", str(tmp_path)]
    assert cli.main(args) == 0
    damage(tmp_path / "scratch" / "model.h5")
    capsys.readouterr()
    assert cli.main(args[:2] + ["--epochs", "2"] + args[4:] + ["--resume"]) == 1
    err = capsys.readouterr().err
    assert "model.h5" in err and "Traceback" not in err
    assert __import__("re").search(message, err), err
