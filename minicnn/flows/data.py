"""The data of a flow: the iterators over the split's folders (augmented for training when
the flow says so), or, for the features flow, the VGG16 features of every split (kept in
features.npz and reused on resume), and the positions a resumed run skips the iterators to.
"""
from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass

import numpy as np

from minicnn.flows.catalog import (
    LECTURE_AUGMENTATION,
    REQUIRED_SPLITS,
    SPLITS,
    TARGET_SIZE,
    Run,
)


@dataclass
class Data:
    """What fit, evaluate and the checkpoint need: iterators or arrays."""
    train: object                 # an iterator of (x, y) batches, or (x, y) arrays
    validation: object
    test: object | None           # the same, or None when there is no test/
    test_steps: int | None = None
    extraction_seconds: float | None = None


def check_data(data) -> list[str]:
    """The splits present in `data` (train and validation at least, test optional), each with
    the same two class subfolders; otherwise an error naming what is missing."""
    data = os.fspath(data)
    if not os.path.isdir(data):
        raise FileNotFoundError(f"--data {data}: " + ("is not a folder" if os.path.exists(data)
                                                      else "no such folder"))
    present = [s for s in SPLITS if os.path.isdir(os.path.join(data, s))]
    missing = [f"{s}/" for s in REQUIRED_SPLITS if s not in present]
    if missing:
        found = ", ".join(f"{s}/" for s in present) or "neither"
        raise FileNotFoundError(
            f"--data {data} has no {' and no '.join(missing)} folder (found: {found}); expected "
            f"train/ and validation/, and optionally test/, each with one subfolder per class "
            f"(cats/, dogs/) as 'minicnn data split' makes them")
    classes = {s: sorted(e for e in os.listdir(os.path.join(data, s))
                         if os.path.isdir(os.path.join(data, s, e))) for s in present}
    if len(classes["train"]) != 2:
        raise ValueError(f"--data {data}: train/ has {len(classes['train'])} class subfolders "
                         f"{classes['train']}; the lecture's models have one sigmoid output, so "
                         f"expected exactly 2 (e.g. cats/ and dogs/)")
    for split in present[1:]:
        if classes[split] != classes["train"]:
            raise ValueError(f"--data {data}: {split}/ has the class subfolders "
                             f"{classes[split]}; expected those of train/, {classes['train']}")
    return present


def _directory(run: Run, split: str, augment: bool, shuffle: bool = True):
    from minicnn.preprocessing.image import ImageDataGenerator

    datagen = ImageDataGenerator(rescale=1 / 255, **(LECTURE_AUGMENTATION if augment else {}))
    return datagen.flow_from_directory(os.path.join(run.data, split), target_size=TARGET_SIZE,
                                       batch_size=run.hyper.batch_size, class_mode="binary",
                                       shuffle=shuffle, seed=run.seed)


def image_data(run: Run) -> Data:
    """Training images (augmented when the flow says so), validation and test only rescaled."""
    train = _directory(run, "train", run.hyper.augment)
    validation = _directory(run, "validation", augment=False)
    test = test_steps = None
    if os.path.isdir(os.path.join(run.data, "test")):
        test = _directory(run, "test", augment=False, shuffle=False)
        test_steps = len(test)
    return Data(Counted(train), validation, test, test_steps)


def extract_features(conv_base, data, splits, batch_size=20, verbose=1) -> dict:
    """The lecture's extract_features: the conv base run once over every image of each split
    (rescale 1/255, 150x150, in file order). Returns {split}_features (N, 4, 4, 512),
    {split}_labels (N,) and {split}_filenames (N,) for each split."""
    from minicnn.preprocessing.image import ImageDataGenerator

    datagen = ImageDataGenerator(rescale=1 / 255)
    arrays = {}
    for split in splits:
        flow = datagen.flow_from_directory(os.path.join(data, split), target_size=TARGET_SIZE,
                                           batch_size=batch_size, class_mode="binary",
                                           shuffle=False)
        steps = len(flow)
        print(f"{split}: extracting {flow.samples} images in {steps} batches", flush=True)
        with flow:
            arrays[f"{split}_features"] = conv_base.predict(flow, steps=steps, verbose=verbose)
        arrays[f"{split}_labels"] = flow.classes.astype(np.float32)
        arrays[f"{split}_filenames"] = np.array(flow.filenames)
    return arrays


def save_npz(path, arrays: dict) -> None:
    """np.savez under a temporary name, renamed into place."""
    from minicnn.atomic import atomic_path

    with writing(path, "the features"):
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, **arrays)


def feature_data(run: Run, reuse: bool) -> Data:
    """The features flow's arrays: extracted once (features.npz), flattened to 8192."""
    from minicnn.applications import VGG16

    path = os.path.join(run.out, "features.npz")
    splits = check_data(run.data)
    arrays, seconds = None, None
    if reuse and os.path.isfile(path):
        with np.load(path) as saved:
            if all(f"{s}_features" in saved.files for s in splits):
                arrays = {k: saved[k] for k in saved.files}
                print(f"features: reusing {path}")
    if arrays is None:
        start = time.perf_counter()
        conv_base = VGG16(weights="imagenet", include_top=False, input_shape=TARGET_SIZE + (3,))
        arrays = extract_features(conv_base, run.data, splits, run.hyper.batch_size)
        seconds = time.perf_counter() - start
        save_npz(path, arrays)
        print(f"features: {path}")

    def pair(split):
        features = arrays[f"{split}_features"]
        return features.reshape(len(features), -1), arrays[f"{split}_labels"]

    test = pair("test") if "test" in splits else None
    return Data(pair("train"), pair("validation"), test, extraction_seconds=seconds)


class Counted:
    """An iterator of (x, y) batches that counts the images it hands out."""

    def __init__(self, iterator):
        self.iterator = iterator
        self.images = 0

    def __iter__(self):
        return self

    def __next__(self):
        batch = next(self.iterator)
        self.images += len(batch[0])
        return batch

    def __len__(self):
        return len(self.iterator)

    def close(self):
        self.iterator.close()


def _inner(iterator):
    return iterator.iterator if isinstance(iterator, Counted) else iterator


def skip_batches(iterator, count: int) -> None:
    """Move a fresh iterator `count` batches along its stream (Iterator.skip): the resumed
    run then draws exactly the batches the uninterrupted run drew next."""
    _inner(iterator).skip(count)


def positions(data: Data) -> dict:
    """Batches handed out so far by the training and validation iterators."""
    return {name: _inner(it).total_batches_seen for name, it in
            (("train", data.train), ("validation", data.validation)) if is_iterator(it)}


def is_iterator(x) -> bool:
    return hasattr(x, "__next__")


@contextlib.contextmanager
def writing(path, what):
    """Re-raise an OSError (a full disk, a read-only folder) with the file's name in it."""
    try:
        yield
    except OSError as error:
        if getattr(error, "minicnn_named", False):
            raise
        named = OSError(error.errno, f"could not write {what} {path}: "
                                     f"{error.strerror or error}")
        named.minicnn_named = True
        raise named from error
