"""Where the tests find the lecture's real photos: $MINICNN_DATA, checked once.

    MINICNN_DATA unset                      the real-data tests skip
    MINICNN_DATA set, folder as expected    they run
    MINICNN_DATA set, folder missing or     they FAIL, saying what is wrong: a CI job that
        incomplete                          sets the variable must not pass by skipping

The expected folder is the lecture's cats_and_dogs_small split: train/, validation/ and
test/, each with cats/ and dogs/ holding 1000, 500 and 500 JPEGs per class.
"""
import functools
import os

import pytest

ENV = "MINICNN_DATA"
EXPECTED = {"train": 1000, "validation": 500, "test": 500}     # JPEGs per class folder
CLASSES = ("cats", "dogs")


def data_dir(*parts):
    """The path $MINICNN_DATA/parts... ; skips the test when MINICNN_DATA is unset and
    fails it (pytest.fail) when MINICNN_DATA is set but the folder is missing or incomplete.
    """
    root = os.environ.get(ENV)
    if not root:
        pytest.skip(f"{ENV} is not set (the lecture's cats_and_dogs_small folder)")
    problem = _check(root)
    if problem:
        pytest.fail(f"{ENV}={root!r} is set but {problem}; expected the cats_and_dogs_small "
                    f"folder ({', '.join(f'{s}/' for s in EXPECTED)} each with "
                    f"{' and '.join(f'{c}/' for c in CLASSES)}). Unset {ENV} to skip the "
                    f"real-data tests.", pytrace=False)
    return os.path.join(root, *parts)


@functools.lru_cache(maxsize=None)
def _check(root):
    """What is wrong with the folder root, or None; listed once per test session."""
    if not os.path.isdir(root):
        return "is not a folder" if os.path.exists(root) else "does not exist"
    for split, count in EXPECTED.items():
        for name in CLASSES:
            folder = os.path.join(root, split, name)
            if not os.path.isdir(folder):
                return f"has no {split}/{name}/ folder"
            found = sum(f.lower().endswith(".jpg") for f in os.listdir(folder))
            if found != count:
                return f"{split}/{name}/ holds {found} JPEGs instead of {count}"
    return None


def tiny_split(dest, per_class=4):
    """A tiny copy of the real split at dest: per_class JPEGs of each class in each of
    train/, validation/ and test/ (the first ones in name order). Skips or fails as data_dir.
    Returns dest as a str.
    """
    import shutil

    root = data_dir()
    for split in EXPECTED:
        for name in CLASSES:
            source = os.path.join(root, split, name)
            folder = os.path.join(str(dest), split, name)
            os.makedirs(folder, exist_ok=True)
            for file in sorted(f for f in os.listdir(source) if f.lower().endswith(".jpg"))[:per_class]:
                shutil.copyfile(os.path.join(source, file), os.path.join(folder, file))
    return str(dest)
