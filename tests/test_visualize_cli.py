"""`minicnn visualize activations|filters|heatmap|saliency` on model files and real photos:
the PNGs they write (sizes, modes, what is in them) and the errors they give."""
import numpy as np
import pytest
from PIL import Image

import minicnn as mc
from minicnn import cli, datasets, visualize
from minicnn.applications import lecture
from minicnn.preprocessing.image import img_to_array, load_img

CAT = datasets.sample_dir() / "validation" / "cats" / "cat.1003.jpg"    # 150x150


@pytest.fixture(scope="module")
def cnn_file(tmp_path_factory):
    mc.clear_session()
    path = tmp_path_factory.mktemp("model") / "cnn.h5"
    lecture.cnn(seed=1).save(path)
    return path


@pytest.fixture
def small_photo():
    return CAT


@pytest.fixture
def big_photo(tmp_path):
    """A real photo at another size than the model's, 389 wide and 500 high."""
    path = tmp_path / "cat389x500.png"
    load_img(CAT).resize((389, 500)).save(path)
    return path


def test_activations_writes_a_grid_per_conv_and_pool_layer(cnn_file, small_photo, tmp_path,
                                                           capsys):
    out = tmp_path / "acts"
    assert cli.main(["visualize", "activations", str(cnn_file), str(small_photo),
                     "--out", str(out)]) == 0
    names = ["conv2d", "max_pooling2d", "conv2d_1", "max_pooling2d_1", "conv2d_2",
             "max_pooling2d_2", "conv2d_3", "max_pooling2d_3"]
    assert sorted(p.name for p in out.iterdir()) == [f"{i:02d}_{n}.png"
                                                     for i, n in enumerate(names)]
    first = Image.open(out / "00_conv2d.png")
    assert first.mode == "RGB" and first.size == (16 * 148, 2 * 148)       # 32 channels
    assert Image.open(out / "06_conv2d_3.png").size == (16 * 15, 8 * 15)   # 128 channels
    assert "conv2d_3, 128 channels of 15x15" in capsys.readouterr().out


def test_heatmap_over_the_photo_at_its_own_size(cnn_file, big_photo, tmp_path, capsys):
    out = tmp_path / "cam.png"
    assert cli.main(["visualize", "heatmap", str(cnn_file), str(big_photo), "--resize",
                     "--out", str(out)]) == 0
    photo = Image.open(big_photo)
    overlay = Image.open(out)
    assert overlay.size == photo.size and overlay.mode == "RGB"
    printed = capsys.readouterr().out
    assert "Grad-CAM at conv2d_3 (15x15) towards class" in printed and "sigmoid" in printed

    # the picture is the blend of the photo and jet(cam) of the model's own grad_cam
    model = mc.load_model(cnn_file)
    x = img_to_array(load_img(big_photo, target_size=(150, 150), interpolation="bilinear")) \
        * (1 / 255)
    z = visualize.logit(model, x)[0]
    cam = visualize.grad_cam(model, x, "conv2d_3", class_index=int(z >= 0))[0]
    expected = visualize.heatmap_overlay(img_to_array(photo), cam)
    np.testing.assert_array_equal(np.asarray(overlay), expected)


def test_heatmap_class_and_layer_choices(cnn_file, small_photo, tmp_path, capsys):
    for cls in ("0", "1"):
        assert cli.main(["visualize", "heatmap", str(cnn_file), str(small_photo),
                         "--class", cls, "--layer", "conv2d_2",
                         "--out", str(tmp_path / f"{cls}.png")]) == 0
        assert f"Grad-CAM at conv2d_2 (34x34) towards class {cls}" in capsys.readouterr().out
    zero, one = (np.asarray(Image.open(tmp_path / f"{c}.png")) for c in "01")
    assert (zero != one).any()                # the two classes' evidence differs


def test_saliency_is_a_grayscale_map_of_the_model_s_input_size(cnn_file, small_photo,
                                                               tmp_path):
    out = tmp_path / "s.png"
    assert cli.main(["visualize", "saliency", str(cnn_file), str(small_photo),
                     "--out", str(out)]) == 0
    picture = np.asarray(Image.open(out))
    assert picture.shape == (150, 150) and picture.max() == 255 and picture.min() < 50
    model = mc.load_model(cnn_file)
    x = img_to_array(load_img(small_photo)) * (1 / 255)
    np.testing.assert_array_equal(picture,
                                  visualize.saliency_image(visualize.saliency(model, x)[0]))


def test_filters_of_a_model_file(cnn_file, tmp_path, capsys):
    out = tmp_path / "f"
    assert cli.main(["visualize", "filters", "--model", str(cnn_file), "--layers", "conv2d",
                     "conv2d_1", "--filters", "3", "--steps", "2", "--out", str(out)]) == 0
    for name in ("conv2d", "conv2d_1"):
        grid = Image.open(out / f"{name}.png")
        assert grid.mode == "RGB" and grid.size == (3 * 150 + 2 * 5, 150)
    assert "filters 0-2 of conv2d_1" in capsys.readouterr().out


def test_filters_of_vgg16_by_default(imagenet_weights, tmp_path):
    out = tmp_path / "f"
    assert cli.main(["visualize", "filters", "--layers", "block1_conv1", "--filters", "2",
                     "--steps", "2", "--size", "64", "--out", str(out)]) == 0
    assert Image.open(out / "block1_conv1.png").size == (2 * 64 + 5, 64)


def test_bad_input_is_named(cnn_file, small_photo, big_photo, tmp_path, capsys):
    def error(*argv):
        assert cli.main(["visualize", *map(str, argv)]) == 1
        return capsys.readouterr().err

    assert "the image is 389x500 (width x height); the model takes 150x150; pass --resize" \
        in error("saliency", cnn_file, big_photo, "--out", tmp_path / "s.png")
    assert "no layer named 'conv9'; its layers are ['conv2d', 'max_pooling2d'" \
        in error("activations", cnn_file, small_photo, "--layers", "conv9")
    assert "outputs (512,), not feature maps" \
        in error("activations", cnn_file, small_photo, "--layers", "dense")
    assert "is a MaxPooling2D, not a convolution" \
        in error("heatmap", cnn_file, small_photo, "--layer", "max_pooling2d")
    assert f"model file {tmp_path / 'none.h5'} does not exist" \
        in error("heatmap", tmp_path / "none.h5", small_photo)
    (tmp_path / "bad.jpg").write_text("not a photo")
    assert "is not an image Pillow can read" \
        in error("saliency", cnn_file, tmp_path / "bad.jpg")
    assert not (tmp_path / "s.png").exists()
    with pytest.raises(SystemExit):
        cli.main(["visualize", "saliency", str(cnn_file), str(small_photo), "--rescale", "x"])
    assert "expected a number such as 1/255" in capsys.readouterr().err
