"""VGG16 with the real ImageNet weights: Keras's forward on real photos, the checksum check
on load, feature extraction. (The probe values are checked in test_weights_io.py.)

The weights file is made by `minicnn weights vgg16`; the imagenet_weights fixture runs it
once when no weights folder has the file.
"""
import os

import numpy as np
import pytest

from minicnn import datasets
from minicnn.applications import VGG16, vgg16

@pytest.fixture(scope="module")
def conv_base(imagenet_weights):
    return VGG16(weights="imagenet", include_top=False, input_shape=(150, 150, 3))


def _photos():
    from minicnn.preprocessing.image import img_to_array, load_img
    root = datasets.sample_dir() / "validation"
    paths = [root / "cats" / "cat.1000.jpg", root / "cats" / "cat.1001.jpg",
             root / "dogs" / "dog.1000.jpg", root / "dogs" / "dog.1001.jpg"]
    return np.stack([img_to_array(load_img(p, target_size=(150, 150))) for p in paths]) / 255


def test_forward_on_real_photos_equals_keras(conv_base):
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    keras = pytest.importorskip("keras")
    reference = keras.applications.VGG16(weights=None, include_top=False, input_shape=(150, 150, 3))
    reference.set_weights(conv_base.get_weights())
    x = _photos().astype(np.float32)
    ours = conv_base.predict(x, verbose=0)
    theirs = np.asarray(reference.predict_on_batch(x))
    assert ours.shape == theirs.shape == (4, 4, 4, 512)
    relative = np.linalg.norm(ours - theirs) / np.linalg.norm(theirs)
    assert relative < 1e-4, relative


def test_a_tampered_imagenet_file_is_refused(conv_base, tmp_path, monkeypatch):
    import shutil

    import h5py
    copy = tmp_path / vgg16.NOTOP_FILE
    shutil.copyfile(vgg16.imagenet_weights_path(), copy)
    with h5py.File(copy, "r+") as f:
        def bump(name, obj):
            if isinstance(obj, h5py.Dataset) and "block3_conv1" in name and obj.ndim == 1:
                obj[0] = obj[0] + 1
        f.visititems(bump)
    monkeypatch.setattr("minicnn.io.convert.weights_dirs", lambda: [str(tmp_path)])
    with pytest.raises(ValueError, match="differ from the ImageNet weights"):
        VGG16(weights="imagenet", include_top=False, input_shape=(150, 150, 3))


def test_features_extract_command_on_a_few_real_photos(conv_base, tmp_path, capsys):
    import shutil

    from minicnn import cli
    data = tmp_path / "data"
    for split, numbers in (("train", (0, 1, 2)), ("validation", (1000,))):
        for folder, prefix in (("cats", "cat"), ("dogs", "dog")):
            (data / split / folder).mkdir(parents=True)
            for i in numbers:
                source = datasets.sample_dir() / split / folder / f"{prefix}.{i}.jpg"
                shutil.copyfile(source, data / split / folder / source.name)
    out = tmp_path / "features.npz"
    assert cli.main(["features", "extract", "--data", str(data), "--out", str(out),
                     "--batch-size", "4"]) == 0
    saved = np.load(out)
    assert saved["train_features"].shape == (6, 4, 4, 512)
    assert saved["validation_features"].shape == (2, 4, 4, 512)
    np.testing.assert_array_equal(saved["train_labels"], [0, 0, 0, 1, 1, 1])
    x = _photos_at(data / "validation", ["cats/cat.1000.jpg", "dogs/dog.1000.jpg"])
    expected = conv_base.predict(x, verbose=0)
    # the same features up to float32 rounding, which depends on how the images are batched
    # (BLAS blocks Winograd's products by their size; F(4x4, 3x3) rounds to a few
    # millionths of the output's scale): another photo would be off by the scale itself
    np.testing.assert_allclose(saved["validation_features"], expected, rtol=1e-5,
                               atol=1e-5 * float(np.abs(expected).max()))
    assert "test_features" not in saved.files            # no test/ folder, no test features
    assert f"wrote {out}" in capsys.readouterr().out


def _photos_at(root, names):
    from minicnn.preprocessing.image import img_to_array, load_img
    return np.stack([img_to_array(load_img(root / n, target_size=(150, 150))) for n in names]) / 255


def test_weights_round_trip_through_the_model_methods(conv_base, tmp_path):
    path = tmp_path / "base.h5"
    conv_base.save_weights(path)
    other = VGG16(weights=None, include_top=False, input_shape=(150, 150, 3))
    other.load_weights(path)
    for a, b in zip(conv_base.get_weights(), other.get_weights()):
        np.testing.assert_array_equal(a, b)
