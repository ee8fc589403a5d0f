"""DirectoryIterator, NumpyArrayIterator and the endless index stream, against Keras.

Most tests run on a small folder of generated PNG/JPEG images (13 images of different sizes
and colour modes, two classes, a nested folder, an upper-case extension and files that are
not images) with a stand-in generator whose augment_batch rescales and, when asked, adds a
value computed from each image's seed, so that the seeds become visible in the batch.

With MINICNN_DATA pointing at the lecture's cats_and_dogs_small folder, the same properties
are checked on the real photos (2000 / 1000 / 1000 images); those tests skip when it is
unset and fail when it is set but the folder is missing or incomplete (tests/realdata.py).
Keras comparisons skip when Keras is not installed; the tests of the real ImageDataGenerator
skip until minicnn.preprocessing.image is importable.
"""
import gc
import os
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import warnings
import weakref

os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
os.environ["TF_ENABLE_ONEDNN_OPTS"] = "0"

import numpy as np
import pytest
from hypothesis import given, strategies as st
from PIL import Image

from minicnn.preprocessing.image import ImageDataGenerator
from minicnn.preprocessing.iterators import (
    DirectoryIterator, Iterator, NumpyArrayIterator, generator_next)
from realdata import data_dir

RESCALE = 1.0 / 255


class StandIn:
    """A stand-in ImageDataGenerator: rescale, plus (seed % 1000) / 1000 when `show_seeds`.

    Records the shape of every batch it receives and the seeds, under a lock (it runs in
    worker threads).
    """

    def __init__(self, rescale=RESCALE, show_seeds=False, delay=0.0):
        self.rescale, self.show_seeds, self.delay = rescale, show_seeds, delay
        self.calls = []
        self._lock = threading.Lock()

    def augment_batch(self, x, seeds):
        if x.dtype != np.float32 or seeds.shape != (len(x),):
            raise AssertionError(f"augment_batch got {x.dtype} {x.shape}, seeds {seeds.shape}")
        with self._lock:
            self.calls.append(seeds.copy())
        if self.delay:
            time.sleep(self.delay)
        out = x * np.float32(self.rescale) if self.rescale is not None else x.copy()
        if self.show_seeds:
            out += (seeds % 1000).astype(np.float32)[:, None, None, None] / 1000
        return out


def take(iterator, count):
    return [next(iterator) for _ in range(count)]


def index_batches(iterator, count):
    """The sample indices of the next `count` batches, without loading anything.

    Works on our iterators and on Keras's: the per-batch hook is replaced on the instance.
    """
    if isinstance(iterator, Iterator):
        iterator._get_batches_of_transformed_samples = lambda idx, seeds: np.array(idx)
    else:
        iterator._get_batches_of_transformed_samples = lambda idx: np.array(idx)
    return [next(iterator) for _ in range(count)]


def minicnn_threads():
    return [t for t in threading.enumerate() if t.name.startswith("minicnn-")]


def wait_until(predicate, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


# ----------------------------------------------------------------------------- fixtures

def _noise(rng, width, height, channels):
    shape = (height, width) if channels == 1 else (height, width, channels)
    return rng.integers(0, 256, size=shape, dtype=np.uint8)


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory):
    """train/{cats,dogs}: 13 images, sizes around the 10x12 target, several modes."""
    rng = np.random.default_rng(0)
    root = tmp_path_factory.mktemp("images") / "train"
    cats, dogs = root / "cats", root / "dogs"
    (cats / "nested").mkdir(parents=True)
    dogs.mkdir()
    sizes = [(13, 9), (12, 10), (9, 17), (20, 20), (7, 7), (12, 10), (31, 15)]   # (W, H)
    for k, size in enumerate(sizes[:5]):
        Image.fromarray(_noise(rng, *size, 3)).save(cats / f"cat.{k}.png")
    Image.fromarray(_noise(rng, 16, 14, 3)).save(cats / "cat.10.png")
    Image.fromarray(_noise(rng, 18, 11, 3)).save(cats / "nested" / "cat.n.png")
    Image.fromarray(_noise(rng, 25, 19, 3)).save(cats / "CAT.UPPER.JPG", quality=90)
    (cats / "notes.txt").write_text("not an image")
    Image.fromarray(_noise(rng, 8, 8, 3)).save(cats / "ignored.gif")
    Image.fromarray(_noise(rng, 14, 13, 3)).save(dogs / "dog.0.jpg", quality=85)
    Image.fromarray(_noise(rng, 12, 10, 1)).save(dogs / "dog.1.png")              # L
    Image.fromarray(_noise(rng, 11, 15, 4)).save(dogs / "dog.2.png")              # RGBA
    Image.fromarray(_noise(rng, 10, 12, 1)).convert("P").save(dogs / "dog.3.png")  # palette
    Image.fromarray(_noise(rng, 22, 9, 3)).save(dogs / "dog.4.bmp")
    return root


N_IMAGES = 13          # 8 cats (with the nested and the .JPG one), 5 dogs
TARGET = (10, 12)


@pytest.fixture
def keep_global_rng():
    """Keras seeds the global NumPy RNG; restore it for the other tests."""
    state = np.random.get_state()
    yield
    np.random.set_state(state)


@pytest.fixture(scope="module")
def keras_image():
    """Keras's legacy image preprocessing module (ImageDataGenerator, Iterator)."""
    pytest.importorskip("keras")
    pytest.importorskip("scipy")
    from keras.src.legacy.preprocessing import image as keras_image
    return keras_image


@pytest.fixture(scope="module")
def real_idg():
    """minicnn's ImageDataGenerator, once minicnn/preprocessing/image.py exists."""
    module = pytest.importorskip("minicnn.preprocessing.image")
    return module.ImageDataGenerator


# ----------------------------------------------------------------------------- the stream

@st.composite
def stream_cases(draw):
    n = draw(st.integers(1, 60))
    batch_size = draw(st.integers(1, 25))
    shuffle = draw(st.booleans())
    seed = draw(st.integers(0, 2 ** 31))
    ops = draw(st.lists(st.sampled_from(["next"] * 6 + ["reset"]), min_size=1, max_size=40))
    return n, batch_size, shuffle, seed, ops


@given(stream_cases())
def test_index_stream_equals_keras_including_reset(keras_image, case):
    n, batch_size, shuffle, seed, ops = case
    state = np.random.get_state()
    try:
        for workers in (0, 2):
            ours = Iterator(n, batch_size, shuffle, seed, workers=workers, max_queue_size=3)
            ours._get_batches_of_transformed_samples = lambda idx, seeds: np.array(idx)
            reference = keras_image.Iterator(n, batch_size, shuffle, seed)
            reference._get_batches_of_transformed_samples = lambda idx: np.array(idx)
            for op in ops:
                if op == "reset":
                    ours.reset()
                    reference.reset()
                else:
                    np.testing.assert_array_equal(next(ours), next(reference))
                    assert ours.batch_index == reference.batch_index
                    assert ours.total_batches_seen == reference.total_batches_seen
            ours.close()
    finally:
        np.random.set_state(state)


def test_pass_boundary_2000_at_32_is_62_full_batches_then_16():
    x = np.arange(2000, dtype=np.float32).reshape(2000, 1, 1, 1)
    it = NumpyArrayIterator(x, None, None, batch_size=32, seed=3, workers=0)
    assert len(it) == 63
    batches = [next(it)[:, 0, 0, 0].astype(int) for _ in range(63 + 63 + 1)]
    sizes = [len(b) for b in batches]
    assert sizes[:62] == [32] * 62 and sizes[62] == 16
    assert sizes[63:125] == [32] * 62 and sizes[125] == 16 and sizes[126] == 32
    first_pass, second_pass = np.concatenate(batches[:63]), np.concatenate(batches[63:126])
    np.testing.assert_array_equal(np.sort(first_pass), np.arange(2000))
    np.testing.assert_array_equal(np.sort(second_pass), np.arange(2000))
    assert not np.array_equal(first_pass, second_pass)          # reshuffled for pass 2


def test_stream_does_not_touch_the_global_rng_and_seed_none_is_fresh():
    state = np.random.get_state()
    x = np.zeros((50, 1, 1, 1), np.float32)
    for seed in (7, None):
        it = NumpyArrayIterator(x, None, StandIn(), batch_size=8, seed=seed, workers=0)
        take(it, 20)
    after = np.random.get_state()
    assert state[0] == after[0] and np.array_equal(state[1], after[1]) and state[2] == after[2]
    orders = [index_batches(NumpyArrayIterator(x, None, None, seed=None, workers=0), 1)[0]
              for _ in range(2)]
    assert not np.array_equal(orders[0], orders[1])


def test_unshuffled_stream_and_len():
    x = np.arange(10, dtype=np.float32).reshape(10, 1, 1, 1)
    it = NumpyArrayIterator(x, np.arange(10) * 10, None, batch_size=4, shuffle=False, workers=0)
    assert len(it) == 3
    got = [(bx[:, 0, 0, 0].astype(int).tolist(), by.tolist()) for bx, by in take(it, 4)]
    assert got == [([0, 1, 2, 3], [0, 10, 20, 30]), ([4, 5, 6, 7], [40, 50, 60, 70]),
                   ([8, 9], [80, 90]), ([0, 1, 2, 3], [0, 10, 20, 30])]


@given(st.integers(0, 40), st.integers(1, 5), st.sampled_from([0, 2]))
def test_skip_continues_the_stream_where_next_would_have(skipped, batch_size, workers):
    # Augmentation seeds included (StandIn(show_seeds=True) marks each image with its seed).
    x = np.arange(23, dtype=np.float32).reshape(23, 1, 1, 1)
    walked = NumpyArrayIterator(x, None, StandIn(show_seeds=True), batch_size=batch_size,
                                seed=3, workers=workers)
    jumped = NumpyArrayIterator(x, None, StandIn(show_seeds=True), batch_size=batch_size,
                                seed=3, workers=workers)
    with walked, jumped:
        take(walked, skipped)
        jumped.skip(skipped)
        assert jumped.total_batches_seen == walked.total_batches_seen == skipped
        for a, b in zip(take(walked, 6), take(jumped, 6)):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("bad", [-1, 1.5, True, "2"])
def test_skip_refuses_what_is_not_a_count(bad):
    it = NumpyArrayIterator(np.zeros((4, 1, 1, 1), np.float32), None, None, workers=0)
    with pytest.raises(ValueError, match="skip"):
        it.skip(bad)


@given(st.integers(0, 30), st.integers(1, 30), st.integers(1, 5), st.booleans())
def test_advance_moves_as_next_would_and_returns_the_batches_indices(before, count,
                                                                     batch_size, shuffle):
    x = np.arange(17, dtype=np.float32).reshape(17, 1, 1, 1)
    walked = NumpyArrayIterator(x, None, None, batch_size=batch_size, shuffle=shuffle, seed=4,
                                workers=0)
    jumped = NumpyArrayIterator(x, None, None, batch_size=batch_size, shuffle=shuffle, seed=4,
                                workers=0)
    take(walked, before)
    jumped.skip(before)
    expected = [b[:, 0, 0, 0].astype(int) for b in take(walked, count)]
    got = jumped.advance(count)
    assert len(got) == count
    for a, b in zip(expected, got):
        np.testing.assert_array_equal(a, b)
    assert (jumped.batch_index, jumped.total_batches_seen) == \
        (walked.batch_index, walked.total_batches_seen)
    for a, b in zip(take(walked, 3), take(jumped, 3)):
        np.testing.assert_array_equal(a, b)


def test_load_samples_builds_the_batch_without_moving_the_stream(image_dir, capsys):
    datagen = ImageDataGenerator(rescale=1 / 255)
    it = datagen.flow_from_directory(image_dir, target_size=TARGET, batch_size=4,
                                     class_mode="categorical", shuffle=True, seed=2, workers=0)
    it.skip(2)
    (x, y), kept = it.load_samples(it._plan(it._cursor).index_array)
    assert it.total_batches_seen == 2
    x_next, y_next = next(it)
    np.testing.assert_array_equal(kept, it.index_array[8:12])
    np.testing.assert_array_equal(x, x_next)
    np.testing.assert_array_equal(y, y_next)
    with pytest.raises(ValueError, match=r"load_samples: expected \(N,\) sample indices"):
        it.load_samples([0, N_IMAGES])


def test_validation_iterator_keeps_its_position_between_epochs():
    # 1000 validation images at batch 32: a pass is 31 batches of 32 and one of 8.
    # validation_steps = 50: the second epoch starts in the middle of pass 2, at batch 18.
    x = np.arange(1000, dtype=np.float32).reshape(1000, 1, 1, 1)
    continuous = NumpyArrayIterator(x, None, None, batch_size=32, seed=5, workers=0)
    reference = [b[:, 0, 0, 0] for b in take(continuous, 100)]
    val = NumpyArrayIterator(x, None, None, batch_size=32, seed=5, workers=2)
    for epoch in range(2):
        for step in range(50):
            np.testing.assert_array_equal(next(val)[:, 0, 0, 0], reference[epoch * 50 + step])
        val.on_epoch_end()                   # what a training loop calls; moves nothing
        if epoch == 0:
            assert (val.batch_index, val.total_batches_seen) == (18, 50)
    val.close()


# ----------------------------------------------------------------------------- folders

def test_directory_listing_equals_keras(image_dir, keras_image, keep_global_rng, capsys):
    ours = DirectoryIterator(image_dir, StandIn(), target_size=TARGET, workers=0)
    assert capsys.readouterr().out == f"Found {N_IMAGES} images belonging to 2 classes.\n"
    theirs = keras_image.ImageDataGenerator().flow_from_directory(image_dir, target_size=TARGET)
    assert ours.samples == theirs.samples == N_IMAGES
    assert ours.filenames == theirs.filenames
    assert ours.filepaths == theirs.filepaths
    np.testing.assert_array_equal(ours.classes, theirs.classes)
    assert ours.classes.dtype == np.int32
    assert ours.class_indices == theirs.class_indices == {"cats": 0, "dogs": 1}
    assert ours.num_classes == 2 and ours.image_shape == TARGET + (3,)
    assert os.path.join("cats", "nested", "cat.n.png") in ours.filenames
    assert os.path.join("cats", "CAT.UPPER.JPG") in ours.filenames
    assert not any(f.endswith((".txt", ".gif")) for f in ours.filenames)


def test_classes_argument_sets_order_and_subset(image_dir, capsys):
    it = DirectoryIterator(image_dir, None, target_size=TARGET, classes=["dogs"], workers=0)
    assert capsys.readouterr().out == "Found 5 images belonging to 1 classes.\n"
    assert it.class_indices == {"dogs": 0} and set(it.classes) == {0}
    it = DirectoryIterator(image_dir, None, target_size=TARGET, classes=["dogs", "cats"],
                           class_mode="sparse", workers=0)
    assert it.class_indices == {"dogs": 0, "cats": 1}
    assert it.filenames[0].startswith("dogs") and it.classes[-1] == 1


@pytest.mark.parametrize("class_mode, color_mode, interpolation", [
    ("binary", "rgb", "nearest"),
    ("categorical", "rgb", "bilinear"),
    ("sparse", "grayscale", "nearest"),
    ("input", "rgba", "bicubic"),
    (None, "rgb", "nearest"),
])
def test_batches_equal_keras_over_two_passes(image_dir, keras_image, keep_global_rng,
                                             class_mode, color_mode, interpolation):
    kwargs = dict(target_size=TARGET, color_mode=color_mode, class_mode=class_mode,
                  batch_size=5, seed=11, interpolation=interpolation)
    ours = DirectoryIterator(image_dir, StandIn(), workers=2, **kwargs)
    theirs = keras_image.ImageDataGenerator(rescale=RESCALE).flow_from_directory(
        image_dir, **kwargs)
    channels = {"rgb": 3, "rgba": 4, "grayscale": 1}[color_mode]
    for step in range(7):                                 # passes of 5, 5, 3 images
        a, b = next(ours), next(theirs)
        if class_mode is None:
            a, b = (a,), (b,)
        expected_n = 3 if step % 3 == 2 else 5
        assert a[0].shape == (expected_n,) + TARGET + (channels,)
        for mine, keras_array in zip(a, b):
            assert mine.dtype == np.float32 and mine.shape == keras_array.shape
            np.testing.assert_array_equal(mine, keras_array)
    if class_mode == "categorical":
        assert a[1].shape == (5, 2) and set(a[1].sum(axis=1)) == {1.0}
    ours.close()


def test_image_loading_equals_keras_load_img(image_dir, keras_image):
    from keras.utils import img_to_array, load_img
    from minicnn.preprocessing.iterators import _load_image
    paths = sorted(str(p) for p in image_dir.rglob("*") if p.suffix.lower() in
                   (".png", ".jpg", ".bmp"))
    for path in paths:
        for color_mode in ("rgb", "grayscale", "rgba"):
            for interpolation in ("nearest", "bilinear", "lanczos"):
                for size in (TARGET, (17, 5)):
                    expected = img_to_array(load_img(path, color_mode=color_mode,
                                                     target_size=size,
                                                     interpolation=interpolation))
                    got = _load_image(path, color_mode, size, interpolation)
                    assert got.dtype == np.float32
                    np.testing.assert_array_equal(got, expected)


def test_prefetching_gives_the_same_batches_and_seeds(image_dir):
    kwargs = dict(target_size=TARGET, batch_size=4, seed=123, class_mode="categorical")
    reference = take(DirectoryIterator(image_dir, StandIn(show_seeds=True), workers=0,
                                       **kwargs), 10)
    for workers, queue in ((2, 3), (3, 1), (1, 4)):
        with DirectoryIterator(image_dir, StandIn(show_seeds=True), workers=workers,
                               max_queue_size=queue, **kwargs) as it:
            for (xa, ya), (xb, yb) in zip(reference, take(it, 10)):
                np.testing.assert_array_equal(xa, xb)
                np.testing.assert_array_equal(ya, yb)
    # The seeds are visible (different images get different offsets) and depend on the seed.
    other = take(DirectoryIterator(image_dir, StandIn(show_seeds=True), workers=0,
                                   **{**kwargs, "seed": 124}), 1)
    assert not np.array_equal(reference[0][0], other[0][0])


def test_augmentation_seeds_depend_only_on_seed_and_position(image_dir):
    gen_a, gen_b = StandIn(), StandIn()
    a = DirectoryIterator(image_dir, gen_a, target_size=TARGET, batch_size=4, seed=9,
                          workers=0)
    b = DirectoryIterator(image_dir, gen_b, target_size=TARGET, batch_size=4, seed=9,
                          workers=2, max_queue_size=2)
    take(a, 6)
    take(b, 6)
    b.close()
    # The workers may finish out of order (and two batches ahead), so compare as sets.
    assert {tuple(s) for s in gen_a.calls} <= {tuple(s) for s in gen_b.calls}
    assert len({tuple(s) for s in gen_a.calls}) == 6            # every batch has new seeds
    assert len(set(np.concatenate(gen_a.calls))) == sum(len(s) for s in gen_a.calls)


def test_reset_and_close_keep_the_stream():
    x = np.arange(13, dtype=np.float32).reshape(13, 1, 1, 1)
    reference = NumpyArrayIterator(x, None, None, batch_size=4, seed=2, workers=0)
    it = NumpyArrayIterator(x, None, None, batch_size=4, seed=2, workers=2)
    for _ in range(3):
        take(reference, 2)
        take(it, 2)
        it.close()                                # drops prefetched batches, keeps position
        reference.reset()
        it.reset()
        for a, b in zip(take(reference, 3), take(it, 3)):
            np.testing.assert_array_equal(a, b)
    it.close()


def test_a_batch_at_a_time_memory_is_bounded():
    gen = StandIn()
    it = NumpyArrayIterator(np.zeros((100, 2, 2, 1)), None, gen, batch_size=5, seed=0,
                            workers=2, max_queue_size=3)
    take(it, 10)
    # 10 batches returned, 3 prepared ahead, none beyond.
    assert wait_until(lambda: len(gen.calls) == 13)
    time.sleep(0.1)
    assert len(gen.calls) == 13 and len(it._pending) == 3
    it.close()


def test_close_and_with_block_stop_the_threads(image_dir):
    before = set(minicnn_threads())
    with DirectoryIterator(image_dir, StandIn(), target_size=TARGET, batch_size=4,
                           workers=2) as it:
        next(it)
        assert set(minicnn_threads()) - before
    assert wait_until(lambda: not set(minicnn_threads()) - before)
    next(it)                                      # usable again: threads restart
    it.close()
    assert wait_until(lambda: not set(minicnn_threads()) - before)


def test_a_dropped_iterator_is_collected_and_its_threads_exit():
    before = set(minicnn_threads())
    it = NumpyArrayIterator(np.zeros((40, 3, 3, 3)), None, StandIn(delay=0.01),
                            batch_size=4, workers=2)
    next(it)
    ref = weakref.ref(it)
    del it
    assert wait_until(lambda: (gc.collect(), ref() is None)[1])
    assert wait_until(lambda: not set(minicnn_threads()) - before)


def test_no_hang_at_interpreter_exit():
    code = textwrap.dedent("""
        import time
        import numpy as np
        from minicnn.preprocessing.iterators import NumpyArrayIterator

        class Slow:
            def augment_batch(self, x, seeds):
                time.sleep(0.05)
                return x

        keep = NumpyArrayIterator(np.zeros((1000, 4, 4, 3)), None, Slow(), batch_size=10,
                                  workers=2, max_queue_size=4)
        next(keep)
        print("done")
    """)
    start = time.monotonic()
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "done"
    assert time.monotonic() - start < 30


# ----------------------------------------------------------------------------- unreadable files

def _truncated_jpeg(path):
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(path, quality=90)
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2])


BAD_FILES = {                                # how each kind of broken file is written
    "truncated.jpg": _truncated_jpeg,
    "text.jpg": lambda path: path.write_text("this is not a JPEG"),
    "empty.png": lambda path: path.write_bytes(b""),
}


def _constant_png(path, value, size=(7, 9)):
    """A PNG whose every pixel is `value`: the batch tells which file a row came from."""
    Image.fromarray(np.full(size[::-1] + (3,), value, np.uint8)).save(path)


# The broken folder, in listing order; None marks a good file. Indices 1, 3 and 6 are bad.
BROKEN_LAYOUT = [("cats", "cat.0.png", None), ("cats", "cat.1.jpg", "truncated.jpg"),
                 ("cats", "cat.2.png", None), ("cats", "cat.3.jpg", "text.jpg"),
                 ("cats", "cat.4.png", None), ("dogs", "dog.0.png", None),
                 ("dogs", "dog.1.png", "empty.png"), ("dogs", "dog.2.png", None),
                 ("dogs", "dog.3.png", None)]
BAD = [k for k, (_, _, bad) in enumerate(BROKEN_LAYOUT) if bad]


def _value(k):
    return 20 * (k + 1)                       # pixel value of file k (good files)


@pytest.fixture(scope="module")
def broken_dirs(tmp_path_factory):
    """(broken, intact): the same file names; in `broken` three files cannot be decoded."""
    roots = []
    for which in ("broken", "intact"):
        root = tmp_path_factory.mktemp(which)
        for k, (label, name, bad) in enumerate(BROKEN_LAYOUT):
            (root / label).mkdir(exist_ok=True)
            if bad and which == "broken":
                BAD_FILES[bad](root / label / name)
            else:
                fmt = "JPEG" if name.endswith(".jpg") else "PNG"
                Image.fromarray(np.full((9, 7, 3), _value(k), np.uint8)).save(
                    root / label / name, fmt)
        roots.append(root)
    return tuple(roots)


def _file_of_row(x):
    """Index of the file each row of a batch (rescale=None, no seeds shown) came from."""
    return [int(round(v)) // 20 - 1 for v in x[:, 0, 0, 0]]


@pytest.mark.parametrize("workers", [0, 2])
def test_unreadable_files_are_warned_once_skipped_and_not_read_again(broken_dirs, workers,
                                                                      monkeypatch):
    from minicnn.preprocessing import iterators
    reads = []
    real_load = iterators._load_image
    monkeypatch.setattr(iterators, "_load_image",
                        lambda path, *args: (reads.append(os.path.basename(path)),
                                             real_load(path, *args))[1])
    broken, _ = broken_dirs
    it = DirectoryIterator(broken, StandIn(rescale=None), target_size=(9, 7), batch_size=4,
                           shuffle=False, class_mode="sparse", workers=workers)
    assert it.samples == 9 and len(it) == 3          # the listing is not changed
    expected = [[0, 2], [4, 5, 7], [8]]              # batches [0..3], [4..7], [8] minus 1, 3, 6
    warned = [[1, 3], [6], []]                       # the files reported with each batch
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for step in range(9):                        # three passes
            x, y = next(it)                          # never raises: no batch is all bad
            assert _file_of_row(x) == expected[step % 3]
            np.testing.assert_array_equal(y, it.classes[expected[step % 3]])
            new, caught[:] = list(caught), []
            files = warned[step] if step < 3 else []     # once per file, in the first pass
            assert len(new) == len(files)
            for warning, k in zip(new, files):
                assert warning.category is UserWarning
                assert warning.filename == __file__      # points at the caller of next()
                assert (f"skipped the unreadable image file '{it.filepaths[k]}'"
                        in str(warning.message))
    it.close()
    if workers == 0:     # with prefetching, batches of the next pass may be read meanwhile
        assert reads.count("cat.0.png") == 3             # a good file: once per pass
        assert [reads.count(BROKEN_LAYOUT[k][1]) for k in BAD] == [1, 1, 1]


@given(batch_size=st.integers(1, 5), shuffle=st.booleans(), seed=st.integers(0, 2 ** 32 - 1))
def test_skipping_is_deterministic_and_keeps_each_image_as_it_would_be(broken_dirs, batch_size,
                                                                       shuffle, seed):
    """Workers or not, a batch with unreadable files is the intact batch minus their rows
    (same images, same labels, same augmentation seeds), with the same warnings."""
    broken, intact = broken_dirs
    kwargs = dict(target_size=(9, 7), batch_size=batch_size, shuffle=shuffle, seed=seed,
                  class_mode="categorical")
    plans = Iterator(9, batch_size, shuffle, seed, workers=0)
    plans._get_batches_of_transformed_samples = lambda idx, seeds: np.array(idx)
    reference = DirectoryIterator(intact, StandIn(show_seeds=True), workers=0, **kwargs)
    runs = [DirectoryIterator(broken, StandIn(show_seeds=True), workers=w, max_queue_size=3,
                              **kwargs) for w in (0, 2)]
    messages = [[], []]
    for _ in range(2 * len(plans)):
        indices, (x_ref, y_ref) = next(plans), next(reference)
        good = ~np.isin(indices, BAD)
        for run, log in zip(runs, messages):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                if not good.any():
                    with pytest.raises(OSError, match="every image file of this batch"):
                        next(run)
                    continue
                x, y = next(run)
            log += [str(w.message) for w in caught]
            np.testing.assert_array_equal(x, x_ref[good])
            np.testing.assert_array_equal(y, y_ref[good])
    assert messages[0] == messages[1]
    assert len(messages[0]) == len(set(messages[0])) <= len(BAD)
    runs[1].close()


def test_a_batch_of_unreadable_files_only_raises_naming_them(tmp_path):
    cats = tmp_path / "all_bad" / "cats"
    cats.mkdir(parents=True)
    for name in ("a_empty.png", "b_text.jpg"):
        BAD_FILES[name.split("_")[1]](cats / name)
    _constant_png(cats / "c_good.png", 40)
    it = DirectoryIterator(cats.parent, None, target_size=(9, 7), batch_size=2, shuffle=False,
                           workers=0)
    for _ in range(2):                               # in every pass
        with pytest.raises(OSError, match=r"every image file of this batch is unreadable.*"
                                          r"a_empty\.png.*b_text\.jpg"):
            next(it)
        x, y = next(it)                              # the stream has moved on
        assert x.shape == (1, 9, 7, 3) and x[0, 0, 0, 0] == 40


def test_load_samples_leaves_out_unreadable_files_and_advance_warns_like_next(broken_dirs):
    broken, _ = broken_dirs
    it = DirectoryIterator(broken, None, target_size=(9, 7), batch_size=4, shuffle=False,
                           workers=0)
    (x, y), kept = it.load_samples(np.arange(4))
    np.testing.assert_array_equal(kept, [0, 2])
    assert _file_of_row(x) == [0, 2]
    batch, kept = it.load_samples([1, 3])
    assert batch is None and len(kept) == 0
    it.load_samples(np.arange(9))                 # every file read once: all three known
    with pytest.warns(UserWarning) as record:
        indices = it.advance(3)
    assert [list(i) for i in indices] == [[0, 1, 2, 3], [4, 5, 6, 7], [8]]
    warned = [str(w.message) for w in record if "skipped the unreadable" in str(w.message)]
    assert len(warned) == len(BAD)


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("bad", sorted(BAD_FILES))
def test_strict_raises_an_error_naming_the_file(tmp_path, workers, bad):
    cats = tmp_path / "broken" / "cats"
    cats.mkdir(parents=True)
    _constant_png(cats / "a_good.png", 10)
    BAD_FILES[bad](cats / f"b_{bad}")
    _constant_png(cats / "c_good.png", 30)
    it = DirectoryIterator(cats.parent, None, target_size=(8, 8), batch_size=2,
                           shuffle=False, workers=workers, strict=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")               # an error, not a warning
        with pytest.raises(OSError, match=f"cannot read image file '.*b_{bad}'"):
            next(it)
    assert next(it)[0].shape == (1, 8, 8, 3)         # the stream has moved past that batch
    it.close()


# ----------------------------------------------------------------------------- properties

def _write_folder(root, counts, sizes):
    """Class folders c0, c1, ... with counts[c] PNGs each; file k of the listing is the
    grayscale image of constant value k + 1 and size sizes[k] (W, H)."""
    k = 0
    for c, count in enumerate(counts):
        os.makedirs(os.path.join(root, f"c{c}"))
        for f in range(count):
            Image.fromarray(np.full(sizes[k][::-1], k + 1, np.uint8)).save(
                os.path.join(root, f"c{c}", f"{f:02d}.png"))
            k += 1


@st.composite
def folders(draw, max_per_class=4):
    counts = draw(st.lists(st.integers(0, max_per_class), min_size=1, max_size=3).filter(sum))
    sizes = draw(st.lists(st.tuples(st.integers(1, 12), st.integers(1, 12)),
                          min_size=sum(counts), max_size=sum(counts)))
    return counts, sizes


@given(folders(), st.integers(1, 6), st.tuples(st.integers(1, 8), st.integers(1, 8)),
       st.sampled_from(["categorical", "binary", "sparse", "input", None]),
       st.sampled_from(["rgb", "rgba", "grayscale"]), st.sampled_from([0, 2]))
def test_every_batch_has_the_right_shape(folder, batch_size, target_size, class_mode,
                                         color_mode, workers):
    counts, sizes = folder
    n, num_classes = sum(counts), len(counts)
    channels = {"rgb": 3, "rgba": 4, "grayscale": 1}[color_mode]
    with tempfile.TemporaryDirectory() as root:
        _write_folder(root, counts, sizes)
        with DirectoryIterator(root, StandIn(), target_size=target_size,
                               color_mode=color_mode, class_mode=class_mode,
                               batch_size=batch_size, seed=0, workers=workers) as it:
            assert it.samples == n and len(it) == -(-n // batch_size)
            for step in range(2 * len(it)):                    # two passes
                batch = next(it)
                size = min(batch_size, n - (step % len(it)) * batch_size)
                x = batch if class_mode is None else batch[0]
                assert x.shape == (size,) + tuple(target_size) + (channels,)
                assert x.dtype == np.float32
                if class_mode is None:
                    continue
                y = batch[1]
                assert y.dtype == np.float32
                if class_mode == "input":
                    np.testing.assert_array_equal(y, x)
                elif class_mode == "categorical":
                    assert y.shape == (size, num_classes)
                    np.testing.assert_array_equal(y.sum(axis=1), 1)
                else:
                    assert y.shape == (size,) and set(y) <= set(range(num_classes))


@given(folders(max_per_class=8), st.integers(1, 7), st.booleans(), st.integers(0, 2 ** 32 - 1))
def test_one_pass_visits_every_file_exactly_once(folder, batch_size, shuffle, seed):
    counts, _ = folder
    n = sum(counts)
    with tempfile.TemporaryDirectory() as root:
        _write_folder(root, counts, [(3, 2)] * n)
        it = DirectoryIterator(root, None, target_size=(2, 3), color_mode="grayscale",
                               class_mode="sparse", batch_size=batch_size, shuffle=shuffle,
                               seed=seed, workers=0)
        for _ in range(2):                                      # each of two passes
            batches = take(it, len(it))
            files = np.concatenate([x[:, 0, 0, 0] for x, _ in batches]).astype(int) - 1
            labels = np.concatenate([y for _, y in batches])
            if shuffle:
                np.testing.assert_array_equal(np.sort(files), np.arange(n))   # a permutation
            else:
                np.testing.assert_array_equal(files, np.arange(n))            # in order
            np.testing.assert_array_equal(labels, it.classes[files])


@given(st.integers(0, 2 ** 32 - 1), st.integers(1, 6), st.booleans(),
       st.sampled_from([(0, 0), (0, 2), (2, 1)]))
def test_the_same_seed_gives_the_same_batches(image_dir, seed, batch_size, shuffle, workers):
    kwargs = dict(target_size=TARGET, batch_size=batch_size, shuffle=shuffle, seed=seed,
                  class_mode="sparse")
    a = DirectoryIterator(image_dir, StandIn(show_seeds=True), workers=workers[0], **kwargs)
    b = DirectoryIterator(image_dir, StandIn(show_seeds=True), workers=workers[1], **kwargs)
    for _ in range(len(a) + 1):                           # into the second pass
        (xa, ya), (xb, yb) = next(a), next(b)
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    a.close()
    b.close()


def test_generator_next_is_next():
    x = np.arange(6, dtype=np.float32).reshape(6, 1, 1, 1)
    it = NumpyArrayIterator(x, None, None, batch_size=2, shuffle=False, workers=0)
    assert generator_next(it)[:, 0, 0, 0].tolist() == [0, 1]
    assert it.next()[:, 0, 0, 0].tolist() == [2, 3]
    assert next(iter(it))[:, 0, 0, 0].tolist() == [4, 5]


# ----------------------------------------------------------------------------- arrays

def test_numpy_iterator_equals_keras_flow(keras_image, keep_global_rng):
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, size=(23, 5, 6, 3)).astype(np.uint8)
    y = rng.integers(0, 2, size=23)
    ours = NumpyArrayIterator(x, y, StandIn(rescale=None), batch_size=6, seed=4, workers=2)
    theirs = keras_image.ImageDataGenerator().flow(x, y, batch_size=6, seed=4)
    for _ in range(9):                                    # passes of 6, 6, 6, 5
        (xa, ya), (xb, yb) = next(ours), next(theirs)
        assert xa.dtype == np.float32
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    ours.close()


def test_numpy_iterator_labels_follow_images_and_dtype():
    x = np.arange(17, dtype=np.uint8).reshape(17, 1, 1, 1) * np.ones((1, 2, 3, 1), np.uint8)
    y = np.arange(17) * 10
    it = NumpyArrayIterator(x, y, StandIn(rescale=1.0), batch_size=5, seed=0, workers=0)
    for bx, by in take(it, 8):
        assert bx.dtype == np.float32 and bx.shape[1:] == (2, 3, 1)
        np.testing.assert_array_equal(bx[:, 0, 0, 0] * 10, by)
    it64 = NumpyArrayIterator(x, None, StandIn(rescale=1.0), dtype="float64", workers=0)
    assert next(it64).dtype == np.float64                 # augment_batch still saw float32


def test_one_image_preview_gives_a_new_transformation_each_batch():
    image = np.random.default_rng(0).integers(0, 256, size=(1, 6, 6, 3)).astype(np.float32)
    it = NumpyArrayIterator(image, None, StandIn(show_seeds=True), batch_size=1, seed=0)
    previews = take(it, 4)                                 # the lecture's 2x2 grid
    assert all(p.shape == (1, 6, 6, 3) for p in previews)
    offsets = {float(p[0, 0, 0, 0] - image[0, 0, 0, 0] * RESCALE) for p in previews}
    assert len(offsets) == 4
    it.close()


# ----------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("kwargs, error, message", [
    ({"class_mode": "multiclass"}, ValueError,
     r"class_mode.*'categorical', 'binary', 'sparse', 'input', None.*'multiclass'"),
    ({"target_size": 150}, ValueError, r"target_size.*\(height, width\).*150"),
    ({"target_size": (150,)}, ValueError, r"target_size.*\(150,\)"),
    ({"target_size": (0, 150)}, ValueError, r"target_size.*\(0, 150\)"),
    ({"target_size": (150, -1)}, ValueError, r"target_size.*\(150, -1\)"),
    ({"target_size": (150, 150, 3)}, ValueError, r"target_size.*\(150, 150, 3\)"),
    ({"target_size": (150.5, 150)}, ValueError, r"target_size.*150.5"),
    ({"target_size": "150x150"}, ValueError, r"target_size.*'150x150'"),
    ({"batch_size": 0}, ValueError, r"batch_size.*positive integer.*0"),
    ({"batch_size": -3}, ValueError, r"batch_size.*-3"),
    ({"batch_size": 2.5}, ValueError, r"batch_size.*2.5"),
    ({"batch_size": True}, ValueError, r"batch_size.*True"),
    ({"classes": ["cats", "birds"]}, ValueError, r"classes.*\['birds'\].*\['cats', 'dogs'\]"),
    ({"classes": "cats"}, TypeError, r"classes.*list.*'cats'"),
    ({"color_mode": "bgr"}, ValueError, r"color_mode.*'rgb', 'rgba', 'grayscale'.*'bgr'"),
    ({"interpolation": "cubic"}, ValueError, r"interpolation.*'nearest'.*'cubic'"),
    ({"seed": -1}, ValueError, r"seed.*\[0, 2\*\*32\).*-1"),
    ({"workers": -1}, ValueError, r"workers.*>= 0.*-1"),
    ({"max_queue_size": 0}, ValueError, r"max_queue_size.*0"),
    ({"dtype": "int32"}, TypeError, r"dtype.*floating.*int32"),
    ({"image_data_generator": object()}, TypeError, r"augment_batch.*object"),
    ({"strict": "yes"}, TypeError, r"strict.*True or False.*'yes'"),
])
def test_directory_iterator_bad_arguments(image_dir, capsys, kwargs, error, message):
    args = {"image_data_generator": None, **kwargs}
    with pytest.raises(error, match=message):
        DirectoryIterator(image_dir, **args)
    assert capsys.readouterr().out == ""                  # raised before listing the images


def test_directory_iterator_bad_folders(tmp_path, capsys):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match=f"'{missing}' does not exist"):
        DirectoryIterator(missing, None)
    a_file = tmp_path / "file.png"
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(a_file)
    with pytest.raises(FileNotFoundError, match="is not a directory"):
        DirectoryIterator(a_file, None)
    bare = tmp_path / "bare"
    bare.mkdir()
    with pytest.raises(ValueError, match=r"'.*bare' is empty; expected one subfolder per class"):
        DirectoryIterator(bare, None)
    flat = tmp_path / "flat"
    flat.mkdir()
    for k in range(2):
        Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(flat / f"{k}.png")
    with pytest.raises(ValueError, match=r"no class subfolders \(it holds 2 image files"):
        DirectoryIterator(flat, None)
    empty = tmp_path / "empty"
    (empty / "cats").mkdir(parents=True)
    (empty / "dogs").mkdir()
    (empty / "cats" / "cat.gif").write_bytes(b"GIF89a")
    with pytest.raises(ValueError, match=r"found 0 images in the 2 class subfolders.*"
                                         r"cats, dogs.*png, jpg, jpeg, bmp, ppm, tif, tiff"):
        DirectoryIterator(empty, None)
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("x, y, kwargs, message", [
    (np.zeros((4, 5, 5)), None, {}, r"rank 4.*\(N, H, W, C\).*\(4, 5, 5\)"),
    (np.zeros((4, 5, 5, 3)), np.zeros(3), {}, r"same length.*\(4, 5, 5, 3\).*\(3,\)"),
    (np.zeros((4, 5, 5, 3)), 1.0, {}, r"same length"),
    (np.zeros((0, 5, 5, 3)), None, {}, r"no images.*\(0, 5, 5, 3\)"),
    (np.zeros((4, 5, 5, 3)), None, {"batch_size": 0}, r"batch_size.*0"),
    (np.zeros((4, 5, 5, 3)), None, {"seed": 2 ** 32}, r"seed"),
])
def test_numpy_iterator_bad_input(x, y, kwargs, message):
    with pytest.raises(ValueError, match=message):
        NumpyArrayIterator(x, y, None, **kwargs)


def test_numpy_iterator_warns_on_odd_channel_count():
    with pytest.warns(UserWarning, match="5 channels"):
        NumpyArrayIterator(np.zeros((2, 3, 3, 5)), None, None, workers=0)


# ----------------------------------------------------------------------------- real IDG

def test_real_generator_rescale_matches_keras(image_dir, real_idg, keras_image,
                                              keep_global_rng):
    kwargs = dict(target_size=TARGET, class_mode="binary", batch_size=5, seed=21)
    ours = DirectoryIterator(image_dir, real_idg(rescale=RESCALE), workers=2, **kwargs)
    theirs = keras_image.ImageDataGenerator(rescale=RESCALE).flow_from_directory(
        image_dir, **kwargs)
    for _ in range(4):
        (xa, ya), (xb, yb) = next(ours), next(theirs)
        np.testing.assert_allclose(xa, xb, rtol=1e-6, atol=1e-7)
        np.testing.assert_array_equal(ya, yb)
    ours.close()


def test_real_generator_flow_methods_build_these_iterators(image_dir, real_idg, keras_image,
                                                          keep_global_rng):
    kwargs = dict(target_size=TARGET, class_mode="binary", batch_size=5, seed=3)
    ours = real_idg(rescale=RESCALE).flow_from_directory(image_dir, **kwargs)
    theirs = keras_image.ImageDataGenerator(rescale=RESCALE).flow_from_directory(
        image_dir, **kwargs)
    assert isinstance(ours, DirectoryIterator)
    for _ in range(4):                                     # crosses the end of the pass
        (xa, ya), (xb, yb) = next(ours), next(theirs)
        np.testing.assert_allclose(xa, xb, rtol=1e-6, atol=1e-7)
        np.testing.assert_array_equal(ya, yb)
    ours.close()
    x = np.arange(7, dtype=np.float32).reshape(7, 1, 1, 1)
    flow = real_idg().flow(x, np.arange(7), batch_size=3, seed=0)
    assert isinstance(flow, NumpyArrayIterator)
    bx, by = next(flow)
    np.testing.assert_array_equal(bx[:, 0, 0, 0], by)
    flow.close()


def test_real_generator_flow_methods_pass_the_iterator_options(image_dir, real_idg, tmp_path):
    gen = real_idg(rescale=RESCALE)
    it = gen.flow_from_directory(image_dir, target_size=TARGET, batch_size=3, dtype="float64",
                                 workers=0, max_queue_size=2, strict=True)
    assert (it.dtype, it.workers, it.max_queue_size, it.strict) == (np.float64, 0, 2, True)
    x, y = next(it)
    assert x.dtype == y.dtype == np.float64
    default = gen.flow_from_directory(image_dir, target_size=TARGET)
    assert (default.dtype, default.workers, default.max_queue_size, default.strict) == (
        np.float32, 2, 4, False)
    # follow_links: a class folder holding a link to a folder of images elsewhere
    elsewhere, cats = tmp_path / "elsewhere", tmp_path / "linked" / "cats"
    elsewhere.mkdir()
    cats.mkdir(parents=True)
    _constant_png(cats / "cat.0.png", 1)
    _constant_png(elsewhere / "cat.1.png", 2)
    os.symlink(elsewhere, cats / "more", target_is_directory=True)
    assert gen.flow_from_directory(cats.parent, workers=0).samples == 1
    assert gen.flow_from_directory(cats.parent, follow_links=True, workers=0).samples == 2
    flow = gen.flow(np.zeros((5, 2, 2, 1)), batch_size=2, dtype="float64", workers=0,
                    max_queue_size=1)
    assert (flow.dtype, flow.workers, flow.max_queue_size) == (np.float64, 0, 1)
    assert next(flow).dtype == np.float64
    with pytest.raises(ValueError, match="workers"):
        gen.flow(np.zeros((5, 2, 2, 1)), workers=-1)


def test_real_generator_flow_from_directory_skips_or_raises(broken_dirs, real_idg):
    broken, _ = broken_dirs
    kwargs = dict(target_size=(9, 7), batch_size=4, shuffle=False, class_mode="binary")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        x, y = next(real_idg().flow_from_directory(broken, **kwargs))
    assert _file_of_row(x) == [0, 2] and y.tolist() == [0, 0]
    assert [os.path.basename(str(w.message).split("'")[1]) for w in caught] == [
        "cat.1.jpg", "cat.3.jpg"]
    with pytest.raises(OSError, match=r"cannot read image file '.*cat\.1\.jpg'"):
        next(real_idg().flow_from_directory(broken, strict=True, **kwargs))


def test_real_generator_augmentation_same_with_and_without_prefetch(image_dir, real_idg):
    def make():
        return real_idg(rescale=RESCALE, rotation_range=40, width_shift_range=0.2,
                        height_shift_range=0.2, shear_range=0.2, zoom_range=0.2,
                        horizontal_flip=True, fill_mode="nearest")
    kwargs = dict(target_size=TARGET, class_mode="binary", batch_size=4, seed=8)
    reference = take(DirectoryIterator(image_dir, make(), workers=0, **kwargs), 6)
    with DirectoryIterator(image_dir, make(), workers=2, max_queue_size=3, **kwargs) as it:
        for (xa, ya), (xb, yb) in zip(reference, take(it, 6)):
            np.testing.assert_array_equal(xa, xb)
            np.testing.assert_array_equal(ya, yb)
    preview = NumpyArrayIterator(reference[0][0][:1], None, make(), batch_size=1, seed=0)
    shots = take(preview, 4)
    assert len({s.tobytes() for s in shots}) == 4
    preview.close()


# ----------------------------------------------------------------------------- real photos

def test_real_folders_found_lines_and_classes(capsys):
    for split, count in (("train", 2000), ("validation", 1000), ("test", 1000)):
        it = DirectoryIterator(data_dir(split), StandIn(), target_size=(150, 150),
                               batch_size=20, class_mode="binary")
        assert capsys.readouterr().out == f"Found {count} images belonging to 2 classes.\n"
        assert it.samples == count and len(it.filenames) == count
        assert it.class_indices == {"cats": 0, "dogs": 1}
        assert np.count_nonzero(it.classes == 0) == count // 2
        assert it.filenames[:3] == [os.path.join("cats", f) for f in
                                    sorted(os.listdir(os.path.join(data_dir(split), "cats")))[:3]]


def test_real_batch_shapes_and_pixels_equal_keras(keras_image, keep_global_rng):
    train = data_dir("train")
    kwargs = dict(target_size=(150, 150), batch_size=20, class_mode="binary", seed=1)
    with DirectoryIterator(train, StandIn(), **kwargs) as ours:
        theirs = keras_image.ImageDataGenerator(rescale=RESCALE).flow_from_directory(
            train, **kwargs)
        assert ours.filenames == theirs.filenames
        for _ in range(3):
            (xa, ya), (xb, yb) = next(ours), next(theirs)
            assert xa.shape == (20, 150, 150, 3) and xa.dtype == np.float32
            assert ya.shape == (20,) and ya.dtype == np.float32
            assert 0.0 <= xa.min() and xa.max() <= 1.0 and set(ya) <= {0.0, 1.0}
            np.testing.assert_array_equal(xa, xb)
            np.testing.assert_array_equal(ya, yb)


def test_real_order_equals_keras_over_two_passes_at_batch_32(keras_image, keep_global_rng):
    train = data_dir("train")
    ours = DirectoryIterator(train, None, target_size=(150, 150), batch_size=32, seed=42,
                             class_mode="binary")
    theirs = keras_image.ImageDataGenerator().flow_from_directory(
        train, target_size=(150, 150), batch_size=32, seed=42, class_mode="binary")
    mine, keras_batches = index_batches(ours, 130), index_batches(theirs, 130)
    assert [len(b) for b in mine[:64]] == [32] * 62 + [16, 32]
    for a, b in zip(mine, keras_batches):
        assert [ours.filenames[i] for i in a] == [theirs.filenames[i] for i in b]
    ours.close()


def test_real_validation_keeps_position(keras_image, keep_global_rng):
    validation = data_dir("validation")
    ours = DirectoryIterator(validation, None, target_size=(150, 150), batch_size=32,
                             seed=0, class_mode="binary", workers=0)
    theirs = keras_image.ImageDataGenerator().flow_from_directory(
        validation, target_size=(150, 150), batch_size=32, seed=0, class_mode="binary")
    keras_stream = index_batches(theirs, 100)
    ours._get_batches_of_transformed_samples = lambda idx, seeds: np.array(idx)
    for epoch in range(2):
        for step in range(50):
            np.testing.assert_array_equal(next(ours), keras_stream[epoch * 50 + step])
        ours.on_epoch_end()
