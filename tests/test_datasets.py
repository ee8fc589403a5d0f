"""The lecture's split tool and the bundled sample."""
import numpy as np
import pytest
from PIL import Image

from minicnn import cli, datasets


def _kaggle_folder(path, n):
    path.mkdir()
    rng = np.random.default_rng(0)
    for prefix in ("cat", "dog"):
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, (8, 10, 3), dtype=np.uint8)).save(path / f"{prefix}.{i}.jpg")
    return path


def test_split_copies_the_lecture_layout(tmp_path, capsys):
    source = _kaggle_folder(tmp_path / "kaggle", 7)
    dest = tmp_path / "small"
    assert cli.main(["data", "split", "--source", str(source), "--dest", str(dest),
                     "--train", "3", "--validation", "2", "--test", "1"]) == 0
    assert sorted(p.name for p in (dest / "train" / "cats").iterdir()) == ["cat.0.jpg", "cat.1.jpg", "cat.2.jpg"]
    assert sorted(p.name for p in (dest / "validation" / "dogs").iterdir()) == ["dog.3.jpg", "dog.4.jpg"]
    assert [p.name for p in (dest / "test" / "cats").iterdir()] == ["cat.5.jpg"]
    assert (dest / "test" / "cats" / "cat.5.jpg").read_bytes() == (source / "cat.5.jpg").read_bytes()
    assert "copied 12 images" in capsys.readouterr().out
    assert not list(dest.rglob(".*.tmp"))


def test_split_refuses_to_overwrite_and_copies_nothing(tmp_path, capsys):
    source = _kaggle_folder(tmp_path / "kaggle", 4)
    dest = tmp_path / "small"
    (dest / "test" / "dogs").mkdir(parents=True)
    (dest / "test" / "dogs" / "dog.3.jpg").write_bytes(b"mine")
    assert cli.main(["data", "split", "--source", str(source), "--dest", str(dest),
                     "--train", "2", "--validation", "1", "--test", "1"]) == 1
    assert "1 destination files already exist" in capsys.readouterr().err
    assert (dest / "test" / "dogs" / "dog.3.jpg").read_bytes() == b"mine"
    assert not (dest / "train").exists()


def test_split_names_missing_sources(tmp_path):
    source = _kaggle_folder(tmp_path / "kaggle", 2)
    with pytest.raises(FileNotFoundError, match=r"missing from .*kaggle, e.g. .*cat.2.jpg"):
        datasets.split(source, tmp_path / "out", train=2, validation=1, test=0)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        datasets.split(tmp_path / "nowhere", tmp_path / "out")


def test_bundled_sample_is_the_lecture_layout_at_150():
    root = datasets.sample_dir()
    counts = {f"{s}/{c}": len(list((root / s / c).glob("*.jpg")))
              for s in ("train", "validation") for c in ("cats", "dogs")}
    assert counts == {"train/cats": 500, "train/dogs": 500, "validation/cats": 250,
                      "validation/dogs": 250}
    assert (datasets.SAMPLE_TRAIN, datasets.SAMPLE_VALIDATION) == (500, 250)
    with Image.open(root / "train" / "dogs" / "dog.0.jpg") as img:
        assert img.size == (150, 150) and img.mode == "RGB"
