"""load_img / img_to_array / array_to_img / save_img: Keras parity, atomic saving, errors.

Real photos come from $MINICNN_DATA (the cats_and_dogs_small folder; skipped when unset,
failed when set but missing or incomplete: tests/realdata.py); Keras is an optional oracle
(skipped when missing).
"""
import io
import os

import numpy as np
import pytest
from PIL import Image

from minicnn.preprocessing.image import array_to_img, img_to_array, load_img, save_img
from realdata import data_dir

PHOTOS = ["train/cats/cat.2.jpg", "train/dogs/dog.0.jpg", "test/cats/cat.1500.jpg"]


@pytest.fixture(scope="module")
def keras_utils():
    os.environ["TF_ENABLE_ONEDNN_OPTS"] = "0"
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    pytest.importorskip("keras")
    from keras.src.utils import image_utils
    return image_utils


@pytest.fixture
def sample_files(tmp_path):
    """A small RGB PNG, an RGBA PNG, an 8-bit and a 16-bit grayscale PNG."""
    rng = np.random.default_rng(0)
    files = {}
    for name, array, mode in [
            ("rgb.png", rng.integers(0, 256, (13, 17, 3), dtype=np.uint8), "RGB"),
            ("rgba.png", rng.integers(0, 256, (9, 11, 4), dtype=np.uint8), "RGBA"),
            ("gray.png", rng.integers(0, 256, (10, 7), dtype=np.uint8), "L")]:
        Image.fromarray(array, mode).save(tmp_path / name)
        files[name] = tmp_path / name
    Image.fromarray(rng.integers(0, 65536, (6, 5), dtype=np.uint16)).save(tmp_path / "gray16.png")
    files["gray16.png"] = tmp_path / "gray16.png"
    return files


@pytest.mark.parametrize("photo", PHOTOS)
@pytest.mark.parametrize("target_size, interpolation", [
    (None, "nearest"), ((150, 150), "nearest"), ((150, 150), "bilinear"),
    ((224, 180), "bicubic"), ((64, 96), "lanczos"), ((100, 100), "box"), ((31, 47), "hamming")])
def test_load_img_equals_keras_on_real_photos(keras_utils, photo, target_size, interpolation):
    path = data_dir(photo)
    ours = img_to_array(load_img(path, target_size=target_size, interpolation=interpolation))
    theirs = keras_utils.img_to_array(keras_utils.load_img(
        path, target_size=target_size, interpolation=interpolation))
    assert ours.dtype == np.float32
    if target_size is not None:
        assert ours.shape == target_size + (3,)
    np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize("color_mode", ["rgb", "rgba", "grayscale"])
def test_load_img_color_modes_equal_keras_on_a_real_photo(keras_utils, color_mode):
    path = data_dir(PHOTOS[0])
    ours = img_to_array(load_img(path, (150, 150), color_mode))
    theirs = keras_utils.img_to_array(keras_utils.load_img(path, color_mode, (150, 150)))
    assert ours.shape == (150, 150, {"rgb": 3, "rgba": 4, "grayscale": 1}[color_mode])
    np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize("name", ["rgb.png", "rgba.png", "gray.png", "gray16.png"])
@pytest.mark.parametrize("color_mode", ["rgb", "rgba", "grayscale"])
def test_load_img_equals_keras_on_every_kind_of_file(keras_utils, sample_files, name,
                                                     color_mode):
    path = sample_files[name]
    for target_size, interpolation in [(None, "nearest"), ((8, 12), "bilinear")]:
        ours = img_to_array(load_img(path, target_size, color_mode, interpolation))
        theirs = keras_utils.img_to_array(
            keras_utils.load_img(path, color_mode, target_size, interpolation))
        np.testing.assert_array_equal(ours, theirs)


@pytest.fixture(scope="module")
def source_modes(tmp_path_factory):
    """One file per Pillow source mode: {mode: path}; CMYK is a JPEG, the others PNGs."""
    folder = tmp_path_factory.mktemp("modes")
    rgba = np.random.default_rng(3).integers(0, 256, (9, 11, 4), dtype=np.uint8)
    rgb = Image.fromarray(rgba[..., :3], "RGB")
    images = {
        "L": (Image.fromarray(rgba[..., 0], "L"), "png"),
        "LA": (Image.fromarray(rgba[..., :2].copy(), "LA"), "png"),
        "I;16": (Image.fromarray(rgba[..., 0].astype(np.uint16) * 257), "png"),
        "RGBA": (Image.fromarray(rgba, "RGBA"), "png"),
        "P": (rgb.quantize(16), "png"),
        "CMYK": (rgb.convert("CMYK"), "jpg"),
    }
    files = {}
    for mode, (img, ext) in images.items():
        files[mode] = folder / f"{mode.replace(';', '_')}.{ext}"
        if ext == "jpg":
            img.save(files[mode], quality=95)
        else:
            img.save(files[mode])
        with Image.open(files[mode]) as check:
            assert check.mode == mode                      # the file really is in that mode
    return files


MODES = ["L", "LA", "I;16", "RGBA", "P", "CMYK"]
CHANNELS = {"rgb": 3, "grayscale": 1, "rgba": 4}


@pytest.mark.parametrize("source", MODES)
@pytest.mark.parametrize("color_mode", ["rgb", "grayscale", "rgba"])
def test_every_source_mode_is_converted_to_the_color_mode(source_modes, source, color_mode):
    """load_img and the DirectoryIterator's reader give the same pixels: Pillow's own
    conversion, except that 16-bit grayscale stays 16-bit in 'grayscale' (as Keras)."""
    from minicnn.preprocessing.iterators import _load_image
    path = source_modes[source]
    x = img_to_array(load_img(path, color_mode=color_mode))
    assert x.shape == (9, 11, CHANNELS[color_mode]) and x.dtype == np.float32
    np.testing.assert_array_equal(_load_image(str(path), color_mode, (9, 11), "nearest"), x)
    with Image.open(path) as img:
        kept = color_mode == "grayscale" and source == "I;16"
        expected = np.asarray(img if kept else img.convert(
            {"rgb": "RGB", "grayscale": "L", "rgba": "RGBA"}[color_mode]), np.float32)
    np.testing.assert_array_equal(x, expected.reshape(x.shape))
    if kept:
        assert x.max() > 255                               # not squeezed into 8 bits
    resized = _load_image(str(path), color_mode, (5, 7), "bilinear")
    assert resized.shape == (5, 7, CHANNELS[color_mode])
    np.testing.assert_array_equal(
        img_to_array(load_img(path, (5, 7), color_mode, "bilinear")), resized)


@pytest.mark.parametrize("source", MODES)
@pytest.mark.parametrize("color_mode", ["rgb", "grayscale", "rgba"])
def test_every_source_mode_equals_keras_load_img(keras_utils, source_modes, source,
                                                 color_mode):
    path = source_modes[source]
    for target_size, interpolation in [(None, "nearest"), ((5, 7), "bilinear")]:
        theirs = keras_utils.img_to_array(
            keras_utils.load_img(path, color_mode, target_size, interpolation))
        np.testing.assert_array_equal(
            img_to_array(load_img(path, target_size, color_mode, interpolation)), theirs)


def test_load_img_keeps_16_bit_grayscale_and_reads_file_objects(sample_files):
    img = load_img(sample_files["gray16.png"], color_mode="grayscale")
    assert img.mode in ("I;16", "I")
    x = img_to_array(img)
    assert x.shape == (6, 5, 1) and x.max() > 255
    with open(sample_files["rgb.png"], "rb") as f:
        from_object = img_to_array(load_img(io.BytesIO(f.read())))
    np.testing.assert_array_equal(from_object, img_to_array(load_img(str(sample_files["rgb.png"]))))


def test_img_to_array_shapes_and_dtype(sample_files):
    gray = img_to_array(load_img(sample_files["gray.png"], color_mode="grayscale"))
    assert gray.shape == (10, 7, 1) and gray.dtype == np.float32
    rgb = img_to_array(load_img(sample_files["rgb.png"]), dtype="float64")
    assert rgb.shape == (13, 17, 3) and rgb.dtype == np.float64
    with pytest.raises(ValueError, match=r"\(H, W, C\).*\(2, 3, 4, 5\)"):
        img_to_array(np.zeros((2, 3, 4, 5)))


@pytest.mark.parametrize("channels", [1, 3, 4])
@pytest.mark.parametrize("scale", [True, False])
def test_array_to_img_equals_keras(keras_utils, channels, scale):
    x = np.random.default_rng(channels).uniform(-3, 200, (5, 6, channels)).astype(np.float32)
    ours, theirs = array_to_img(x, scale=scale), keras_utils.array_to_img(x, scale=scale)
    assert ours.mode == theirs.mode
    np.testing.assert_array_equal(np.asarray(ours), np.asarray(theirs))


def test_array_to_img_modes_and_errors():
    assert array_to_img(np.full((3, 3, 1), 1000.0), scale=False).mode == "I"
    assert array_to_img(np.zeros((3, 3, 1))).mode == "L"       # constant: no division by 0
    assert array_to_img(np.zeros((3, 3, 4))).mode == "RGBA"
    with pytest.raises(ValueError, match=r"C = 1, 3 or 4.*\(3, 3, 2\)"):
        array_to_img(np.zeros((3, 3, 2)))
    with pytest.raises(ValueError, match=r"\(3, 3\)"):
        array_to_img(np.zeros((3, 3)))


@pytest.mark.parametrize("ext", [".png", ".bmp", ".tiff"])
def test_save_img_round_trip_is_exact_for_lossless_formats(tmp_path, ext):
    x = np.random.default_rng(0).integers(0, 256, (12, 9, 3)).astype(np.float32)
    path = tmp_path / f"out{ext}"
    save_img(path, x, scale=False)
    np.testing.assert_array_equal(img_to_array(load_img(path)), x)
    assert os.listdir(tmp_path) == [f"out{ext}"]                  # no temporary file left


def test_save_img_jpeg_rgba_and_scaling(tmp_path):
    x = np.random.default_rng(1).random((16, 16, 4)).astype(np.float32)
    with pytest.warns(UserWarning, match="RGBA"):
        save_img(str(tmp_path / "a.jpg"), x)
    back = img_to_array(load_img(tmp_path / "a.jpg", color_mode="rgba"))
    assert back.shape == (16, 16, 4)
    gray = np.linspace(0, 1, 16, dtype=np.float32).reshape(4, 4, 1)
    save_img(tmp_path / "g.png", gray)                               # scale=True: 0..255
    y = img_to_array(load_img(tmp_path / "g.png", color_mode="grayscale"))
    assert y.min() == 0 and y.max() == 255
    buffer = io.BytesIO()
    save_img(buffer, gray, file_format="png")
    buffer.seek(0)
    np.testing.assert_array_equal(img_to_array(load_img(buffer, color_mode="grayscale")), y)
    with pytest.raises(ValueError, match="file_format"):
        save_img(io.BytesIO(), gray)


def test_save_img_failure_leaves_the_existing_file_intact(tmp_path, monkeypatch):
    path = tmp_path / "keep.png"
    old = np.full((4, 4, 3), 77, np.float32)
    save_img(path, old, scale=False)
    content = path.read_bytes()

    def broken_save(self, fp, *args, **kwargs):
        fp.write(b"\x89PNG half an image")
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(OSError, match="simulated"):
        save_img(path, np.zeros((4, 4, 3), np.float32), scale=False)
    monkeypatch.undo()
    assert path.read_bytes() == content
    assert os.listdir(tmp_path) == ["keep.png"]
    np.testing.assert_array_equal(img_to_array(load_img(path)), old)


def test_save_img_replaces_an_existing_file(tmp_path):
    path = tmp_path / "x.png"
    save_img(path, np.zeros((3, 3, 3)), scale=False)
    save_img(path, np.full((3, 3, 3), 9.0), scale=False)
    np.testing.assert_array_equal(img_to_array(load_img(path)), 9.0)
    assert os.listdir(tmp_path) == ["x.png"]


# ------------------------------------------------------------------ bad input

def test_load_img_missing_file_names_the_path(tmp_path):
    missing = tmp_path / "nope" / "cat.9999.jpg"
    with pytest.raises(FileNotFoundError, match="cat.9999.jpg"):
        load_img(missing)


def test_load_img_not_an_image_names_the_path(tmp_path):
    fake = tmp_path / "notes.jpg"
    fake.write_text("this is not a JPEG")
    with pytest.raises(ValueError, match="notes.jpg.*not an image"):
        load_img(fake)
    truncated = tmp_path / "truncated.png"
    Image.fromarray(np.zeros((64, 64, 3), np.uint8) + 5).save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:60])
    with pytest.raises(ValueError, match="truncated.png"):
        load_img(truncated)
    with pytest.raises(ValueError, match="folder"):
        load_img(tmp_path)


@pytest.mark.parametrize("kwargs, match", [
    (dict(color_mode="bgr"), "'grayscale', 'rgb', 'rgba'.*'bgr'"),
    (dict(interpolation="area"),
     "'nearest', 'bilinear', 'bicubic', 'hamming', 'box', 'lanczos'.*'area'"),
    (dict(target_size=(150,)), "target_size"),
    (dict(target_size=(0, 150)), "target_size"),
    (dict(target_size=(150, -2)), r"target_size.*\(150, -2\)"),
    (dict(target_size=(150, 150, 3)), r"target_size.*\(150, 150, 3\)"),
    (dict(target_size=150), "target_size.*150"),
])
def test_load_img_rejects_bad_arguments_before_reading(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        load_img(tmp_path / "never-read.jpg", **kwargs)


def test_load_img_rejects_a_non_path():
    with pytest.raises(TypeError, match="path"):
        load_img(42)


def test_save_img_rejects_an_unknown_extension(tmp_path):
    with pytest.raises(ValueError, match="out.xyz"):
        save_img(tmp_path / "out.xyz", np.zeros((2, 2, 3)))
    with pytest.raises(ValueError, match="extension"):
        save_img(tmp_path / "no_extension", np.zeros((2, 2, 3)))
    assert os.listdir(tmp_path) == []
