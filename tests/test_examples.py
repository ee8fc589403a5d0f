"""The lecture's five flows in examples/ run end to end, on a few real photos; the sixth
script (what the convnet learned) draws its three figures.

Each script runs as a subprocess, as a reader would run it, on tiny_split's copy of a few
photos per class and split, for one epoch of one or two small batches, and must exit 0 and
write its outputs. The VGG16 flows also need the ImageNet weights (the imagenet_weights
fixture obtains them once).
These check that the scripts work with the API as it is, not what they learn.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from realdata import tiny_split

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SCRIPTS = ["1_cnn_from_scratch.py", "2_data_augmentation.py", "3_feature_extraction.py",
           "4_feature_extraction_augmentation.py", "5_fine_tuning.py"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return tiny_split(tmp_path_factory.mktemp("cats_and_dogs_small"), per_class=2)


def _run(script, *args, cwd):
    result = subprocess.run([sys.executable, str(EXAMPLES / script), *map(str, args)],
                            cwd=cwd, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "MPLBACKEND": "Agg"})
    assert result.returncode == 0, (f"{script} exited with {result.returncode}\n"
                                    f"--- stdout\n{result.stdout[-3000:]}\n"
                                    f"--- stderr\n{result.stderr[-3000:]}")
    return result.stdout


def _history(path, epochs, accuracy):
    with open(path) as f:
        history = json.load(f)["history"]
    assert sorted(history) == sorted(["loss", accuracy, "val_loss", f"val_{accuracy}"])
    assert all(len(values) == epochs for values in history.values())


def test_every_flow_has_a_script():
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == \
        sorted(SCRIPTS + ["6_what_the_convnet_learned.py"])


@pytest.mark.parametrize("script", SCRIPTS)
def test_help(script, tmp_path):
    out = _run(script, "--help", cwd=tmp_path)
    for option in ("--data", "--epochs", "--batch-size", "--out"):
        assert option in out


def test_cnn_from_scratch(data, tmp_path):
    out = tmp_path / "out"
    stdout = _run("1_cnn_from_scratch.py", "--data", data, "--epochs", 1, "--steps-per-epoch", 2,
                  "--batch-size", 4, "--validation-steps", 1, "--test-steps", 1, "--seed", 0,
                  "--out", out, cwd=tmp_path)
    assert "Total params: 3,453,121" in stdout
    _history(out / "history.json", 1, "acc")
    for name in ("cats_and_dogs_small_1.h5", "history.png", "test.json"):
        assert (out / name).is_file(), name


def test_data_augmentation(data, tmp_path):
    out = tmp_path / "out"
    _run("2_data_augmentation.py", "--data", data, "--epochs", 1, "--steps-per-epoch", 2,
         "--batch-size", 4, "--validation-steps", 1, "--test-steps", 1, "--seed", 0,
         "--out", out, cwd=tmp_path)
    _history(out / "history.json", 1, "acc")
    for name in ("augmented.png", "cats_and_dogs_small_2.h5", "history.png", "test.json"):
        assert (out / name).is_file(), name


def test_feature_extraction(data, tmp_path, imagenet_weights):
    out = tmp_path / "out"
    _run("3_feature_extraction.py", "--data", data, "--max-images", 3, "--epochs", 2,
         "--batch-size", 2, "--seed", 0, "--out", out, cwd=tmp_path)
    _history(out / "history.json", 2, "accuracy")
    import numpy as np
    with np.load(out / "features.npz") as features:
        for split in ("train", "validation", "test"):      # 3 images: batches of 2 and 1
            assert features[f"{split}_features"].shape == (3, 4, 4, 512)
            assert features[f"{split}_features"].any(axis=(1, 2, 3)).all()
            assert set(features[f"{split}_labels"]) <= {0, 1}
    assert (out / "history.png").is_file() and (out / "test.json").is_file()


def test_feature_extraction_augmentation(data, tmp_path, imagenet_weights):
    out = tmp_path / "out"
    stdout = _run("4_feature_extraction_augmentation.py", "--data", data, "--epochs", 1,
                  "--steps-per-epoch", 1, "--batch-size", 2, "--validation-steps", 1,
                  "--test-steps", 1, "--seed", 0, "--out", out, cwd=tmp_path)
    assert "Total params: 16,812,353" in stdout and "Trainable params: 2,097,665" in stdout
    _history(out / "history.json", 1, "accuracy")
    assert (out / "history.png").is_file() and (out / "test.json").is_file()


def test_fine_tuning(data, tmp_path, imagenet_weights):
    out = tmp_path / "out"
    stdout = _run("5_fine_tuning.py", "--data", data, "--head-epochs", 1, "--epochs", 1,
                  "--steps-per-epoch", 1, "--batch-size", 2, "--validation-steps", 1,
                  "--test-steps", 1, "--seed", 0, "--out", out, cwd=tmp_path)
    assert "Trainable params: 9,177,089" in stdout
    _history(out / "history_head.json", 1, "accuracy")
    _history(out / "history.json", 1, "accuracy")
    for name in ("history_head.png", "history.png", "test.json"):
        assert (out / name).is_file(), name


def test_what_the_convnet_learned(tmp_path, imagenet_weights):
    import minicnn as mc
    from minicnn.applications import lecture
    from PIL import Image

    mc.clear_session()
    lecture.cnn(seed=0).save(tmp_path / "cnn.h5")
    out = tmp_path / "out"
    stdout = _run("6_what_the_convnet_learned.py", "--cnn", tmp_path / "cnn.h5",
                  "--filters", 2, "--steps", 2, "--size", 64, "--out", out, cwd=tmp_path)
    for name in ("activations.png", "filters.png", "heatmaps.png"):
        assert f"wrote {out / name}" in stdout
        picture = Image.open(out / name)
        assert min(picture.size) > 200, (name, picture.size)
