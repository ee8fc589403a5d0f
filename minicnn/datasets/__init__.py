"""The lecture's data: the split tool, and the small sample bundled for the quick start.

The lecture copies the first 1000 cats and 1000 dogs of Kaggle's Dogs vs. Cats training
folder into train/, the next 500 of each into validation/ and the next 500 into test/:

    train/cats       cat.0    ... cat.999        train/dogs       dog.0 ... dog.999
    validation/cats  cat.1000 ... cat.1499       validation/dogs  ...
    test/cats        cat.1500 ... cat.1999       test/dogs        ...

`split` does exactly that (and refuses to overwrite a file). `sample_dir()` is a sample of
the same photos bundled with the package, resized to 150x150, in the same layout (train and
validation only), so that training runs with no download: the first 500 cats and 500 dogs
of train/ and the first 250 of each of validation/ (13 MB), enough for the CNN from scratch
to learn visibly in a two-minute demo.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

SPLITS = ("train", "validation", "test")
CLASSES = (("cats", "cat"), ("dogs", "dog"))


SAMPLE_TRAIN, SAMPLE_VALIDATION = 500, 250     # photos per class in the bundled sample


def sample_dir() -> Path:
    """The bundled sample: sample/{train,validation}/{cats,dogs}/*.jpg (150x150 JPEGs)."""
    return Path(__file__).resolve().parent / "sample"


def split_plan(source, dest, train=1000, validation=500, test=500):
    """[(source file, destination file)] of the lecture's split, checked before any copy."""
    source, dest = Path(source), Path(dest)
    if not source.is_dir():
        raise FileNotFoundError(f"data split: source folder {source} does not exist")
    counts = {"train": train, "validation": validation, "test": test}
    for name, count in counts.items():
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ValueError(f"data split: --{name} must be a non-negative int; received {count!r}")
    plan, start = [], 0
    for split in SPLITS:
        for folder, prefix in CLASSES:
            for i in range(start, start + counts[split]):
                plan.append((source / f"{prefix}.{i}.jpg", dest / split / folder / f"{prefix}.{i}.jpg"))
        start += counts[split]
    missing = [str(src) for src, _ in plan if not src.is_file()]
    if missing:
        raise FileNotFoundError(f"data split: {len(missing)} of the {len(plan)} source images are "
                                f"missing from {source}, e.g. {missing[0]}; expected Kaggle's "
                                f"train folder with cat.N.jpg and dog.N.jpg")
    existing = [str(dst) for _, dst in plan if dst.exists()]
    if existing:
        raise FileExistsError(f"data split: {len(existing)} destination files already exist, "
                              f"e.g. {existing[0]}; nothing was copied (choose an empty --dest)")
    return plan


def split(source, dest, train=1000, validation=500, test=500, progress=None) -> int:
    """Copy the lecture's split of Kaggle's train folder into dest; returns the file count.

    Every source file and every destination is checked first, so a bad call copies nothing.
    Each file is copied under a temporary name and renamed, so an interrupted run leaves
    only complete files (run it again into an empty folder).
    """
    plan = split_plan(source, dest, train, validation, test)
    for src, dst in (progress(plan) if progress else plan):
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst.with_name(f".{dst.name}.tmp")
        shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    return len(plan)


def make_sample(data_dir, dest, train=SAMPLE_TRAIN, validation=SAMPLE_VALIDATION, size=150,
                quality=85) -> int:
    """Build a sample like the bundled one from the lecture's split in data_dir.

    The first `train` cats and dogs of data_dir/train and the first `validation` of
    data_dir/validation (by number), resized to size x size with bicubic filtering and
    saved as JPEG. Returns the number of images written.
    """
    from PIL import Image

    data_dir, dest = Path(data_dir), Path(dest)
    written = 0
    for split_name, count in (("train", train), ("validation", validation)):
        for folder, prefix in CLASSES:
            files = sorted((data_dir / split_name / folder).glob(f"{prefix}.*.jpg"),
                           key=lambda p: int(p.stem.split(".")[1]))[:count]
            if len(files) < count:
                raise FileNotFoundError(f"make_sample: {data_dir / split_name / folder} has "
                                        f"{len(files)} images; {count} needed")
            out = dest / split_name / folder
            out.mkdir(parents=True, exist_ok=True)
            for path in files:
                with Image.open(path) as img:
                    small = img.convert("RGB").resize((size, size), Image.BICUBIC)
                small.save(out / path.name, quality=quality)
                written += 1
    return written
