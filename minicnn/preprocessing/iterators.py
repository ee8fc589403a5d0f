"""Endless batch iterators over image folders and arrays, with Keras's semantics.

    DirectoryIterator      what ImageDataGenerator.flow_from_directory returns: one subfolder
                           per class, images decoded with Pillow and resized to target_size
    NumpyArrayIterator     what ImageDataGenerator.flow returns: batches of an array (N, H, W, C)
    Iterator               the shared base: the endless index stream and the prefetching
    generator_next(it)     the lecture's name for next(it)

The index stream (Keras's `Iterator._flow_index`)
-------------------------------------------------
The iterators loop forever over n samples in batches of batch_size. A *pass* is one walk
through all n samples; `len(it)` = ceil(n / batch_size) batches make one pass. When a pass
starts, the order of the samples (`index_array`) is drawn afresh: a permutation when
shuffle=True, 0 .. n-1 otherwise. The last batch of a pass takes what is left and may be
short, and the next batch starts the next pass. With n = 2000 and batch_size = 32:

    batches 0 .. 61    32 images each          pass 1
    batch   62         the remaining 16        pass 1 ends
    batch   63         32 images               pass 2 starts, newly shuffled

so a training loop whose `steps_per_epoch` does not divide a pass simply runs on across the
boundary, and a validation iterator keeps its position between epochs: nothing is reset
unless `reset()` is called.

Reproducibility. The permutation of a pass that starts at overall batch number t is
`np.random.RandomState(seed + t).permutation(n)`: exactly the draw Keras makes with
`np.random.seed(seed + total_batches_seen)`, so for a given seed the batches hold the same
samples as Keras's, batch by batch, but the global NumPy RNG is never touched. Each batch
also receives N augmentation seeds drawn from (seed, t), handed to
`image_data_generator.augment_batch(x, seeds)`; a batch's content therefore depends only on
the iterator's seed and its position in the stream. With seed=None a seed is drawn from
fresh entropy when the iterator is made.

Prefetching
-----------
Batches are prepared ahead in a small pool of worker threads (`workers`, default 2), at most
`max_queue_size` batches ahead (default 4). Decoding JPEGs in Pillow and the Numba warp
release the GIL, so the images of the next batches are read while the model trains on the
current one. The calling thread alone advances the index stream and draws the seeds, in
order; the workers only load and transform; `next()` returns batches strictly in order.
The result is therefore identical with `workers=0` (everything in the calling thread).
At most max_queue_size + 1 batches exist at any time. The threads start at the first
`next()`; `close()` (or leaving a `with` block) stops them and drops the batches prepared
ahead, keeping the position of the last batch returned, so the stream is unchanged if
iterated again (the threads then start anew). An iterator that is garbage-collected shuts
its threads down by itself. Warnings about the files of a batch (DirectoryIterator's
unreadable files) are issued in the calling thread as that batch is returned, so they too
come in the same order with and without prefetching.
"""
import collections
import os
import secrets
import threading
import warnings
import weakref
from concurrent.futures import ThreadPoolExecutor
from numbers import Integral
from typing import NamedTuple

import numpy as np

from minicnn.preprocessing.decoding import img_to_array, load_img

__all__ = ["Iterator", "DirectoryIterator", "NumpyArrayIterator", "generator_next",
           "WHITE_LIST_FORMATS", "CLASS_MODES", "COLOR_MODES", "INTERPOLATIONS"]

# Keras's Iterator.white_list_formats, compared with the lower-cased file name.
WHITE_LIST_FORMATS = ("png", "jpg", "jpeg", "bmp", "ppm", "tif", "tiff")
CLASS_MODES = ("categorical", "binary", "sparse", "input", None)
COLOR_MODES = {"rgb": 3, "rgba": 4, "grayscale": 1}        # mode -> C
INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "hamming", "box", "lanczos")

_SEED_LIMIT = 2 ** 32                    # np.random.RandomState accepts seeds in [0, 2**32)


def generator_next(iterator):
    """The next batch of an iterator: the lecture's `generator_next(train_generator)`."""
    return next(iterator)


# ----------------------------------------------------------------------------- validation

def _is_int(value):
    return isinstance(value, Integral) and not isinstance(value, bool)


def _check_positive_int(owner, name, value):
    if not _is_int(value) or value <= 0:
        raise ValueError(f"{owner}: `{name}` must be a positive integer; received "
                         f"{value!r}.")


def _check_common(owner, batch_size, shuffle, seed, workers, max_queue_size):
    _check_positive_int(owner, "batch_size", batch_size)
    if not isinstance(shuffle, (bool, np.bool_)):
        raise TypeError(f"{owner}: `shuffle` must be True or False; received {shuffle!r}.")
    if seed is not None and (not _is_int(seed) or not 0 <= seed < _SEED_LIMIT):
        raise ValueError(f"{owner}: `seed` must be None or an integer in [0, 2**32); "
                         f"received {seed!r}.")
    if not _is_int(workers) or workers < 0:
        raise ValueError(f"{owner}: `workers` must be an integer >= 0 (0 = no prefetching "
                         f"threads); received {workers!r}.")
    _check_positive_int(owner, "max_queue_size", max_queue_size)


def _check_generator(owner, image_data_generator):
    if image_data_generator is not None and not callable(
            getattr(image_data_generator, "augment_batch", None)):
        raise TypeError(f"{owner}: `image_data_generator` must be None or an object with a "
                        f"method augment_batch(x, seeds) (an ImageDataGenerator); received "
                        f"{type(image_data_generator).__name__}.")


def _check_dtype(owner, dtype):
    try:
        dtype = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"{owner}: `dtype` must name a NumPy floating dtype such as "
                        f"'float32'; received {dtype!r}.") from None
    if not np.issubdtype(dtype, np.floating):
        raise TypeError(f"{owner}: `dtype` must be a floating dtype such as 'float32'; "
                        f"received {dtype}.")
    return dtype


# ----------------------------------------------------------------------------- the stream

class _Cursor(NamedTuple):
    """A position in the endless index stream (the state of Keras's `_flow_index`)."""
    batch_index: int              # batch number inside the current pass; 0 = a pass starts
    total_batches_seen: int       # batches handed out since the iterator was made
    index_array: np.ndarray       # order of the current pass, (n,); None before the first


class _BatchPlan(NamedTuple):
    """What the calling thread decides for one batch; a worker then builds it."""
    index_array: np.ndarray       # (N,) sample indices of the batch
    seeds: np.ndarray             # (N,) int64 augmentation seeds, one per image
    after: _Cursor                # stream position once this batch is handed out


def _shutdown_executor(executor, wait):
    # Module-level so that weakref.finalize does not keep the iterator alive.
    executor.shutdown(wait=wait, cancel_futures=True)


class Iterator:
    """Endless iterator over n samples in batches, prefetched in worker threads (base class).

    Subclasses implement `_get_batches_of_transformed_samples(index_array, seeds)`, which
    turns the sample indices of one batch, ndarray of shape (N,), and their augmentation
    seeds, ndarray of shape (N,), into the batch. It runs in a worker thread, so it must not
    change the iterator.

    Args:
        n: number of samples, a positive integer.
        batch_size: N, the number of samples per batch (the last batch of a pass may be
            smaller, see the module docstring).
        shuffle: draw a new permutation of the samples at the start of every pass.
        seed: None or an integer in [0, 2**32): with the same seed the batches are the same
            as Keras's, and the same with or without prefetching.
        workers: threads that prepare batches ahead; 0 prepares each batch in `next()`.
        max_queue_size: how many batches are prepared ahead at most.

    Attributes (Keras's names): n, batch_size, shuffle, seed, and the position of the last
    batch returned: batch_index (batch number in the current pass, 0 when the next batch
    starts a pass), total_batches_seen, index_array (order of the current pass, (n,)).
    """

    white_list_formats = WHITE_LIST_FORMATS

    def __init__(self, n, batch_size, shuffle, seed, *, workers=2, max_queue_size=4):
        owner = type(self).__name__
        _check_positive_int(owner, "n (number of samples)", n)
        _check_common(owner, batch_size, shuffle, seed, workers, max_queue_size)
        self.n = int(n)
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.seed = seed
        self.workers = int(workers)
        self.max_queue_size = int(max_queue_size)
        # seed=None: one fresh seed now, then the same arithmetic as with a given seed.
        self._stream_seed = int(seed) if seed is not None else secrets.randbits(32)

        self._lock = threading.Lock()
        self._cursor = _Cursor(0, 0, None)        # after the last batch returned
        self._ahead = self._cursor                # after the last batch submitted
        self._pending = collections.deque()       # (future, plan), oldest first
        self._executor = None
        self._finalizer = None

    # -- Keras's attributes, read from the position of the last batch returned
    @property
    def batch_index(self):
        return self._cursor.batch_index

    @property
    def total_batches_seen(self):
        return self._cursor.total_batches_seen

    @property
    def index_array(self):
        return self._cursor.index_array

    def __len__(self):
        """Batches in one pass: ceil(n / batch_size)."""
        return (self.n + self.batch_size - 1) // self.batch_size

    def __iter__(self):
        return self

    def __next__(self):
        """The next batch of the endless stream (see the subclass for what it holds)."""
        with self._lock:
            if self.workers == 0:
                plan = self._plan(self._cursor)
                self._cursor = self._ahead = plan.after
                batch = self._get_batches_of_transformed_samples(plan.index_array, plan.seeds)
            else:
                self._submit_ahead()
                future, plan = self._pending.popleft()
                self._cursor = plan.after
                self._submit_ahead()  # keep the workers busy while the caller uses this batch
                # A failure while building the batch (an error the subclass raises) is raised
                # here; the stream has moved past that batch, as in Keras.
                batch = future.result()
            self._report_batch(plan.index_array)
            return batch

    next = __next__

    def reset(self):
        """Start a new pass at the next batch (Keras: batch_index = 0), reshuffled if shuffle.

        Batches prepared ahead are dropped; total_batches_seen is kept, so the new
        permutation is the one Keras draws after its own reset().
        """
        with self._lock:
            self._drop_prefetched()
            self._cursor = self._ahead = self._cursor._replace(batch_index=0)

    def skip(self, count):
        """Move `count` batches along the stream without building them (no image is read).

        A batch depends only on the seed and its place in the stream, so after skip(k) the
        iterator hands out exactly what it would have after k calls of next(): a resumed
        training run continues the stream where the interrupted one stopped.
        """
        self._walk("skip", count)

    def advance(self, count):
        """Move `count` batches along the stream as `count` calls of next() would, without
        building them; returns the sample indices of those batches, a list of (N,) arrays.

        What a caller that already holds the samples (the validation cache) uses in place
        of next(): the stream, and the warnings about the files of each batch, are exactly
        those of next(). load_samples(index_array) gives the samples a batch holds.
        """
        plans = self._walk("advance", count)
        for plan in plans:
            self._report_batch(plan.index_array)
        return [plan.index_array for plan in plans]

    def _walk(self, what, count):
        if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 0:
            raise ValueError(f"{what}: expected a number of batches >= 0; received {count!r}")
        with self._lock:
            self._drop_prefetched()
            plans, cursor = [], self._cursor
            for _ in range(count):
                plans.append(self._plan(cursor))
                cursor = plans[-1].after
            self._cursor = self._ahead = cursor
        return plans

    def load_samples(self, index_array):
        """The samples index_array (N,) built as one batch, without moving the stream.

        Returns (batch, kept): batch as next() returns it, kept the (M,) indices it holds,
        M <= N (DirectoryIterator leaves out unreadable files; batch is None when none is
        left). The augmentation seeds are zero: meant for iterators whose generator has no
        random transformation (ImageDataGenerator.is_random False), where they play no part.
        """
        index_array = np.asarray(index_array, dtype=np.int64)
        if index_array.ndim != 1 or (index_array.size and not (
                0 <= index_array.min() and index_array.max() < self.n)):
            raise ValueError(f"load_samples: expected (N,) sample indices in [0, {self.n}); "
                             f"received {index_array!r}")
        return self._load(index_array, np.zeros(len(index_array), dtype=np.int64))

    def _load(self, index_array, seeds):
        """(batch, kept) for load_samples; a subclass that leaves samples out overrides it."""
        return self._get_batches_of_transformed_samples(index_array, seeds), index_array

    def on_epoch_end(self):
        """Hook called by training loops at the end of an epoch; does nothing.

        Keras's Iterator redraws `index_array` here for its `__getitem__` (Sequence) access.
        This iterator has only the endless stream, whose order is redrawn when a pass starts;
        redrawing it at the end of a training epoch would reshuffle in the middle of a pass
        (steps_per_epoch need not match a pass) and move the validation iterator.
        """

    def close(self):
        """Stop the worker threads and drop the batches prepared ahead.

        The position stays that of the last batch returned: iterating again (which restarts
        the threads) continues the same stream.
        """
        with self._lock:
            self._drop_prefetched()
            if self._executor is not None:
                self._finalizer.detach()
                _shutdown_executor(self._executor, wait=True)
                self._executor = self._finalizer = None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    # -- the stream, computed in the calling thread only
    def _plan(self, cursor):
        """The batch at `cursor` and the position after it: Keras's `_flow_index`, one step."""
        batch_index, seen, index_array = cursor
        if batch_index == 0:
            index_array = self._pass_order(seen)
        start = batch_index * self.batch_size       # < n: batch_index restarts at 0 first
        if self.n > start + self.batch_size:
            next_batch_index = batch_index + 1
        else:                                        # the last (possibly short) batch
            next_batch_index = 0
        batch = index_array[start:start + self.batch_size]
        seeds = self._augmentation_seeds(seen, len(batch))
        return _BatchPlan(batch, seeds, _Cursor(next_batch_index, seen + 1, index_array))

    def _pass_order(self, total_batches_seen):
        """Order of the pass that starts at batch number total_batches_seen, (n,) int."""
        if not self.shuffle:
            return np.arange(self.n)
        # Keras: np.random.seed(seed + total_batches_seen); np.random.permutation(n).
        rng = np.random.RandomState((self._stream_seed + total_batches_seen) % _SEED_LIMIT)
        return rng.permutation(self.n)

    def _augmentation_seeds(self, batch_number, size):
        """(size,) int64 seeds for the images of batch `batch_number`, from (seed, batch)."""
        rng = np.random.default_rng([self._stream_seed, batch_number])
        return rng.integers(0, 2 ** 31 - 1, size=size, dtype=np.int64)

    # -- prefetching
    def _submit_ahead(self):
        if self._executor is None:
            self._executor = ThreadPoolExecutor(
                max_workers=self.workers, thread_name_prefix=f"minicnn-{type(self).__name__}")
            self._finalizer = weakref.finalize(self, _shutdown_executor, self._executor, False)
        while len(self._pending) < self.max_queue_size:
            plan = self._plan(self._ahead)
            self._ahead = plan.after
            future = self._executor.submit(
                self._get_batches_of_transformed_samples, plan.index_array, plan.seeds)
            self._pending.append((future, plan))

    def _drop_prefetched(self):
        # A batch already being built cannot be cancelled; it finishes and is discarded.
        for future, _ in self._pending:
            future.cancel()
        self._pending.clear()
        self._ahead = self._cursor

    def _report_batch(self, index_array):
        """Hook run in the calling thread as the batch of index_array (N,) is returned.

        Where a subclass warns about the samples of a batch: here the warnings come in the
        order of the batches returned, whatever the workers did ahead. Does nothing here.
        """

    def _get_batches_of_transformed_samples(self, index_array, seeds):
        """The batch for sample indices index_array (N,) with augmentation seeds (N,)."""
        raise NotImplementedError(f"{type(self).__name__} must implement "
                                  "_get_batches_of_transformed_samples(index_array, seeds)")


# ----------------------------------------------------------------------------- images

def _load_image(path, color_mode, target_size, interpolation):
    """One image file as float32, (H, W, C): load_img + img_to_array, so the pixels are
    Keras's. Raises OSError naming the file when it cannot be read or decoded (missing,
    empty, truncated, corrupt, not an image)."""
    try:
        return img_to_array(load_img(path, target_size, color_mode, interpolation))
    except (OSError, ValueError) as err:
        raise OSError(f"cannot read image file '{path}': {err}") from err


def _is_image_file(fname):
    return fname.lower().endswith(WHITE_LIST_FORMATS)


def _list_class_folder(directory, class_name, follow_links):
    """Relative paths 'class_name/...' of the images under one class folder, Keras's order.

    Keras walks the folder recursively, the folders sorted by path and the files of each
    sorted by name (plain string order: cat.0, cat.1, cat.10, cat.100, ...).
    """
    class_dir = os.path.join(directory, class_name)
    filenames = []
    for root, _, files in sorted(os.walk(class_dir, followlinks=follow_links),
                                 key=lambda entry: entry[0]):
        for fname in sorted(files):
            if _is_image_file(fname):
                filenames.append(os.path.join(
                    class_name, os.path.relpath(os.path.join(root, fname), class_dir)))
    if any(fname.lower().endswith(".tiff") for fname in filenames):
        warnings.warn("Using '.tiff' files with multiple bands will cause distortion. "
                      "Please verify your output.", stacklevel=3)
    return filenames


class DirectoryIterator(Iterator):
    """Batches of images read from one subfolder per class (Keras's flow_from_directory).

    The folder holds one subfolder per class, e.g. train/cats and train/dogs. Classes are
    the subfolders in sorted order (cats = 0, dogs = 1) unless `classes` lists them; the
    images are the files under each class folder (searched recursively) whose extension is
    one of png, jpg, jpeg, bmp, ppm, tif, tiff, in Keras's order. On creation it prints
    Keras's line "Found 2000 images belonging to 2 classes."

    Each `next()` returns, with N = batch_size (smaller for the last batch of a pass, see
    the module docstring), H, W = target_size and C = 3 (rgb), 4 (rgba) or 1 (grayscale):

        class_mode="binary"        (x, y): x (N, H, W, C), y (N,) class index 0./1.
        class_mode="categorical"   (x, y): y (N, num_classes) one-hot
        class_mode="sparse"        (x, y): y (N,) class index as a float
        class_mode="input"         (x, x.copy())   (autoencoders)
        class_mode=None            x only

    x and y have `dtype` (float32). Each image is decoded with Pillow and resized with
    `interpolation` (nearest by default) exactly as keras.utils.load_img does; the batch
    then goes through ONE call image_data_generator.augment_batch(x, seeds) (augmentation
    and rescaling), unless image_data_generator is None.

    Unreadable files. A file that cannot be decoded (truncated, corrupt, empty, not an image
    despite its extension, or gone since the folder was listed) never stops training
    halfway through an epoch by default (strict=False):

      - it is left out of its batch, which is built from the other images of that batch and
        is therefore shorter (N - 1 for one bad file); the labels are those of the images
        kept, and each kept image has the augmentation it would have had anyway;
      - it is reported once, with warnings.warn naming the file, when the first batch that
        held it is returned (so in the same order with and without prefetching);
      - it is remembered: in every later pass it is left out of its batch again without
        being read. The index stream is not changed (len(it), the order of the other files
        and their augmentation stay those of the folder as listed), so with the same seed
        the batches are the same, file for file, with workers=0 and with prefetching;
      - a batch is never empty: when every file of a batch is unreadable, next() raises
        OSError naming them all (the stream moves past that batch, as for any error). With
        batch_size=1 this is what any unreadable file does.

    With strict=True the first unreadable file raises OSError naming it, when its batch is
    returned. In both modes files are read only as their batches are built: the folder is
    not checked up front (that would decode every image before training starts), and
    `samples`, `filenames` and `classes` always describe the folder as listed.

    Args:
        directory: the folder of class subfolders.
        image_data_generator: an ImageDataGenerator (anything with augment_batch), or None.
        target_size: (H, W) of the images in a batch.
        color_mode: "rgb", "rgba" or "grayscale".
        classes: optional list of class subfolder names; their order gives the indices.
        class_mode: see above.
        batch_size, shuffle, seed, workers, max_queue_size: see Iterator.
        interpolation: Pillow resampling filter: nearest, bilinear, bicubic, hamming, box,
            lanczos.
        dtype: floating dtype of x and y.
        follow_links: follow symbolic links to subfolders when listing images.
        strict: raise on the first unreadable image file instead of warning and skipping it
            (see "Unreadable files" above).

    Attributes (Keras's): directory, samples (number of images), num_classes,
    class_indices ({'cats': 0, 'dogs': 1}), classes (int32 (samples,), the class of each
    image), labels (the same), filenames (paths relative to `directory`, 'cats/cat.0.jpg'),
    filepaths (full paths), image_shape (H, W, C), target_size, color_mode, class_mode,
    interpolation, dtype, image_data_generator.
    """

    allowed_class_modes = set(CLASS_MODES)

    def __init__(self, directory, image_data_generator, target_size=(256, 256),
                 color_mode="rgb", classes=None, class_mode="categorical", batch_size=32,
                 shuffle=True, seed=None, interpolation="nearest", dtype="float32",
                 follow_links=False, *, workers=2, max_queue_size=4, strict=False):
        owner = "DirectoryIterator"
        # Every argument is checked before the folder is listed.
        directory = os.fspath(directory)
        if not os.path.isdir(directory):
            what = "is not a directory" if os.path.exists(directory) else "does not exist"
            raise FileNotFoundError(f"{owner}: `directory` '{directory}' {what}; expected a "
                                    f"folder with one subfolder per class.")
        _check_generator(owner, image_data_generator)
        if (not isinstance(target_size, (tuple, list)) or len(target_size) != 2
                or not all(_is_int(s) and s > 0 for s in target_size)):
            raise ValueError(f"{owner}: `target_size` must be (height, width), two positive "
                             f"integers; received {target_size!r}.")
        if color_mode not in COLOR_MODES:
            raise ValueError(f"{owner}: `color_mode` must be one of {list(COLOR_MODES)}; "
                             f"received {color_mode!r}.")
        if class_mode not in CLASS_MODES:
            raise ValueError(f"{owner}: `class_mode` must be one of {list(CLASS_MODES)}; "
                             f"received {class_mode!r}.")
        if interpolation not in INTERPOLATIONS:
            raise ValueError(f"{owner}: `interpolation` must be one of {list(INTERPOLATIONS)}"
                             f"; received {interpolation!r}.")
        dtype = _check_dtype(owner, dtype)
        _check_common(owner, batch_size, shuffle, seed, workers, max_queue_size)
        if not isinstance(strict, (bool, np.bool_)):
            raise TypeError(f"{owner}: `strict` must be True or False; received {strict!r}.")
        if classes is not None and (isinstance(classes, str) or not all(
                isinstance(c, str) for c in classes)):
            raise TypeError(f"{owner}: `classes` must be None or a list of subfolder names; "
                            f"received {classes!r}.")

        subfolders = sorted(entry for entry in os.listdir(directory)
                            if os.path.isdir(os.path.join(directory, entry)))
        if classes:                                  # Keras: an empty list means "infer"
            missing = [c for c in classes if c not in subfolders]
            if missing:
                raise ValueError(f"{owner}: `classes` names folders that are not in "
                                 f"'{directory}': {missing}; its subfolders are {subfolders}.")
            classes = list(classes)
        else:
            if not subfolders:
                entries = os.listdir(directory)
                loose = sum(_is_image_file(f) for f in entries)
                what = ("is empty" if not entries else
                        f"has no class subfolders (it holds {loose} image files directly)")
                raise ValueError(
                    f"{owner}: '{directory}' {what}; expected one subfolder per class, e.g. "
                    f"{os.path.join(directory, 'cats')} and {os.path.join(directory, 'dogs')}.")
            classes = subfolders

        self.directory = directory
        self.image_data_generator = image_data_generator
        self.target_size = tuple(int(s) for s in target_size)
        self.color_mode = color_mode
        self.image_shape = self.target_size + (COLOR_MODES[color_mode],)
        self.class_mode = class_mode
        self.interpolation = interpolation
        self.dtype = dtype
        self.strict = bool(strict)
        self.num_classes = len(classes)
        self.class_indices = {name: index for index, name in enumerate(classes)}

        self.filenames = []
        class_of_file = []
        for name in classes:
            files = _list_class_folder(directory, name, follow_links)
            self.filenames += files
            class_of_file += [self.class_indices[name]] * len(files)
        self.samples = len(self.filenames)
        self.classes = np.array(class_of_file, dtype=np.int32)
        if self.samples == 0:
            raise ValueError(
                f"{owner}: found 0 images in the {self.num_classes} class subfolders of "
                f"'{directory}' ({', '.join(classes)}); accepted extensions: "
                f"{', '.join(WHITE_LIST_FORMATS)} (any case).")
        self.filepaths = [os.path.join(directory, fname) for fname in self.filenames]
        # Unreadable files found so far, index -> reason: written by the workers as they find
        # them (under the lock), read by them to skip a known file, and by the calling thread.
        self._unreadable = {}
        self._unreadable_lock = threading.Lock()
        self._reported = set()      # indices already warned about (calling thread only)
        print(f"Found {self.samples} images belonging to {self.num_classes} classes.")
        super().__init__(self.samples, batch_size, shuffle, seed,
                         workers=workers, max_queue_size=max_queue_size)

    @property
    def labels(self):
        """Class index of every image, int32 (samples,) (Keras's name)."""
        return self.classes

    def _get_batches_of_transformed_samples(self, index_array, seeds):
        batch, _ = self._load(index_array, seeds)
        if batch is None:
            files = "; ".join(f"'{self.filepaths[j]}' ({self._unreadable[j]})"
                              for j in index_array)
            raise OSError(f"DirectoryIterator: every image file of this batch is unreadable, "
                          f"and a batch cannot be empty: {files}. Remove or replace these "
                          f"files.")
        return batch

    def _load(self, index_array, seeds):
        # One file at a time: decoding is per image by nature (Pillow releases the GIL);
        # everything after it is one batched call.
        x = np.empty((len(index_array),) + self.image_shape, dtype=np.float32)
        kept = []                                    # positions in the batch that were read
        for i, j in enumerate(index_array):
            if j in self._unreadable:                # found in an earlier batch: not reread
                continue
            try:
                x[len(kept)] = _load_image(self.filepaths[j], self.color_mode,
                                           self.target_size, self.interpolation)
            except OSError as err:
                if self.strict:
                    raise
                with self._unreadable_lock:
                    self._unreadable.setdefault(int(j), str(err.__cause__ or err))
                continue
            kept.append(i)
        if len(kept) < len(index_array):
            x = x[:len(kept)]
            index_array, seeds = index_array[kept], seeds[kept]
        if not kept:
            return None, index_array
        if self.image_data_generator is not None:
            x = self.image_data_generator.augment_batch(x, seeds)
        x = np.asarray(x, dtype=self.dtype)
        if self.class_mode is None:
            return x, index_array
        if self.class_mode == "input":
            return (x, x.copy()), index_array
        batch_classes = self.classes[index_array]
        if self.class_mode == "categorical":
            y = np.zeros((len(index_array), self.num_classes), dtype=self.dtype)
            y[np.arange(len(index_array)), batch_classes] = 1
        else:                                        # binary, sparse
            y = batch_classes.astype(self.dtype)
        return (x, y), index_array

    def _report_batch(self, index_array):
        # Runs in the calling thread as the batch is returned: the workers recorded every
        # unreadable file of this batch before finishing it.
        for j in index_array:
            if j in self._unreadable and j not in self._reported:
                self._reported.add(j)
                warnings.warn(f"DirectoryIterator: skipped the unreadable image file "
                              f"'{self.filepaths[j]}' ({self._unreadable[j]}); it is left out "
                              f"of every batch from now on (strict=True makes this an error).",
                              stacklevel=3)     # the line that called next()


# ----------------------------------------------------------------------------- arrays

class NumpyArrayIterator(Iterator):
    """Batches of an image array (N_total, H, W, C) and its labels (Keras's flow(x, y)).

    Each `next()` returns (x, y) with x of shape (N, H, W, C) in `dtype` and y = the labels
    of the same samples, y[index] (N, ...) in y's own dtype; x alone when y is None.
    N = batch_size, smaller for the last batch of a pass (see the module docstring). The
    batch goes through ONE call image_data_generator.augment_batch(x, seeds) (augmentation
    and rescaling), unless image_data_generator is None.

    The lecture's augmentation preview is flow(one_image, batch_size=1): every batch then
    is that image with a new random transformation.

    Args:
        x: images, array-like of shape (N_total, H, W, C); copied to `dtype`.
        y: None or labels with len(y) == N_total.
        image_data_generator: an ImageDataGenerator (anything with augment_batch), or None.
        batch_size, shuffle, seed, workers, max_queue_size: see Iterator.
        dtype: floating dtype of x.

    Attributes: x, y, n, image_data_generator, dtype.
    """

    def __init__(self, x, y, image_data_generator, batch_size=32, shuffle=True, seed=None,
                 dtype="float32", *, workers=2, max_queue_size=4):
        owner = "NumpyArrayIterator"
        _check_generator(owner, image_data_generator)
        dtype = _check_dtype(owner, dtype)
        try:
            x = np.asarray(x, dtype=dtype)
        except (TypeError, ValueError) as err:
            raise TypeError(f"{owner}: `x` must be a numeric array of shape (N, H, W, C); "
                            f"it cannot be converted to {dtype}: {err}") from None
        if x.ndim != 4:
            raise ValueError(f"{owner}: `x` must have rank 4, shape (N, H, W, C); received "
                             f"an array of shape {x.shape}.")
        if len(x) == 0:
            raise ValueError(f"{owner}: `x` holds no images; received shape {x.shape}.")
        if x.shape[3] not in (1, 3, 4):
            warnings.warn(f"{owner}: `x` has {x.shape[3]} channels on its last axis (shape "
                          f"{x.shape}); expected 1, 3 or 4 (channels last, NHWC).",
                          stacklevel=2)
        if y is not None:
            y = np.asarray(y)
            if y.ndim == 0 or len(y) != len(x):
                raise ValueError(f"{owner}: `x` (images) and `y` (labels) must have the same "
                                 f"length; received x.shape = {x.shape}, y.shape = {y.shape}.")
        _check_common(owner, batch_size, shuffle, seed, workers, max_queue_size)
        self.x = x
        self.y = y
        self.image_data_generator = image_data_generator
        self.dtype = dtype
        super().__init__(len(x), batch_size, shuffle, seed,
                         workers=workers, max_queue_size=max_queue_size)

    def _get_batches_of_transformed_samples(self, index_array, seeds):
        batch_x = self.x[index_array]                # fancy indexing: a copy, (N, H, W, C)
        if self.image_data_generator is not None:
            # augment_batch works in float32 whatever `dtype` is.
            batch_x = self.image_data_generator.augment_batch(
                batch_x.astype(np.float32, copy=False), seeds)
            batch_x = np.asarray(batch_x, dtype=self.dtype)
        if self.y is None:
            return batch_x
        return batch_x, self.y[index_array]
