"""`minicnn train` and `minicnn data preview` end to end on real photos."""
import json

import pytest

from minicnn import cli, datasets
from realdata import data_dir

pytest.importorskip("matplotlib")


def test_train_on_the_bundled_sample_writes_history_and_plot(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(["train", "--epochs", "2", "--steps-per-epoch", "2", "--validation-steps", "1",
                     "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "(the bundled sample)" in printed and "Found 1000 images belonging to 2 classes." in printed
    assert "Found 500 images belonging to 2 classes." in printed
    history = json.loads((out / "history.json").read_text())["history"]
    assert set(history) == {"loss", "acc", "val_loss", "val_acc"} and len(history["loss"]) == 2
    assert (out / "history.png").read_bytes()[:4] == b"\x89PNG"
    assert f"plot: {out / 'history.png'}" in printed
    import minicnn as mc
    model = mc.load_model(out / "model.h5")
    assert model.count_params() == 3_453_121 and model.optimizer.iterations == 4
    metrics = json.loads((out / "metrics.json").read_text())     # the scratch flow's outputs
    assert metrics["flow"] == "scratch" and metrics["epochs_run"] == 2


def test_train_with_augmentation_on_the_real_split(tmp_path, capsys):
    data = data_dir()
    out = tmp_path / "aug"
    assert cli.main(["train", "--data", data, "--augment", "--epochs", "1", "--batch-size", "32",
                     "--steps-per-epoch", "2", "--validation-steps", "1", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "Found 2000 images belonging to 2 classes." in printed
    assert "dropout (Dropout)" in printed
    assert (out / "history.png").exists()


def test_train_refuses_a_folder_without_the_split(tmp_path, capsys):
    assert cli.main(["train", "--data", str(tmp_path), "--out", str(tmp_path / "o")]) == 1
    assert "has no train/ and no validation/ folder (found: neither)" in capsys.readouterr().err


def test_preview_draws_four_augmented_versions(tmp_path, capsys):
    image = datasets.sample_dir() / "train" / "cats" / "cat.2.jpg"
    out = tmp_path / "preview.png"
    assert cli.main(["data", "preview", str(image), "--out", str(out), "--seed", "1"]) == 0
    assert out.read_bytes()[:4] == b"\x89PNG" and "wrote" in capsys.readouterr().out


def test_preview_of_a_missing_image_names_it(tmp_path, capsys):
    assert cli.main(["data", "preview", str(tmp_path / "nope.jpg"), "--out", str(tmp_path / "p.png")]) == 1
    assert "nope.jpg" in capsys.readouterr().err
