"""The lecture's five training flows, as `minicnn lecture FLOW` runs them.

    flow               model                                        data                      lecture's settings
    scratch            cnn: 4 x (Conv2D 3x3 + MaxPooling2D),         rescale 1/255             batch 20, 100 steps x 30 epochs,
                       Dense 512, Dense 1 (3,453,121 params)                                   validation 50 steps, RMSprop lr 1e-4
    augment            the same + Dropout(0.5) after Flatten         + the augmentation        batch 32, 100 steps x 100 epochs,
                                                                                               validation 50 steps, RMSprop lr 1e-4
    features           VGG16 conv base run once over every split;    the (N, 4, 4, 512)        batch 20, 30 epochs over all
                       Dense 256 + Dropout(0.5) + Dense 1 on the     features, flattened       features, RMSprop lr 2e-5
                       4*4*512 = 8192 features
    features-augment   frozen VGG16 base + Flatten + Dense 256 +     + the augmentation        batch 20, 100 steps x 30 epochs,
                       Dense 1 (16,812,353 params, 2,097,665 train.)                           validation 50 steps, RMSprop lr 2e-5
    finetune           the features-augment model, with block5 of    + the augmentation        batch 20, 100 steps x 100 epochs,
                       the base unfrozen (from block5_conv1 on)                                validation 50 steps, RMSprop lr 1e-5

The augmentation is the lecture's: rotation 40, shifts 0.2, shear 0.2, zoom 0.2, horizontal
flip, fill 'nearest'; validation and test images are only rescaled. Images are resized to
150x150 whatever their size, and the split may have any number of images: a step count
larger than a pass simply runs on into the next pass, as Keras's generators do.

A run writes into its folder:

    model.h5       the model (Keras's HDF5 model file), checkpointed after every epoch under a
                   temporary name and renamed into place; it also holds the run's state (the
                   history so far, the settings, how far the data iterators went) under
                   'minicnn_run', so that `resume=True` continues from the next epoch and
                   ends with the history an uninterrupted run would have had
    history.json   loss, acc, val_loss, val_acc per epoch (History.save; `minicnn plot` reads it)
    history.png    the lecture's loss and accuracy panels (needs matplotlib; skipped without)
    metrics.json   final and best val_acc, test_acc on test/ (null, with the reason, when the
                   data has no test/), times (epoch_seconds: each epoch this run trained,
                   validation included, checkpoint writing not; sessions: the same for every
                   run that trained this model, resumed ones too, with each run's start time
                   and CPU, so that a schedule spread over days still has its wall time),
                   images per second, versions, settings
    features.npz   (features only) the conv base's features of every split, with the labels
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import platform
import sys
import time
from dataclasses import dataclass

import numpy as np

from minicnn.callbacks import Callback, History
from minicnn.progress import CompileNotice

LECTURE_AUGMENTATION = dict(rotation_range=40, width_shift_range=0.2, height_shift_range=0.2,
                            shear_range=0.2, zoom_range=0.2, horizontal_flip=True,
                            fill_mode="nearest")
TARGET_SIZE = (150, 150)
SPLITS = ("train", "validation", "test")
REQUIRED_SPLITS = ("train", "validation")
CHECKPOINT = "model.h5"
RUN_STATE = "minicnn_run"         # the dataset in the checkpoint that holds the run's state
FINETUNE_FROM = "block5_conv1"    # the lecture: unfreeze_weights(conv_base, from = "block5_conv1")
# The settings a resumed run must share with the run it continues (epochs may grow).
RESUME_KEYS = ("flow", "data", "batch_size", "steps_per_epoch", "validation_steps",
               "learning_rate", "seed")


@dataclass(frozen=True)
class Hyper:
    """The training settings of a flow. steps_per_epoch / validation_steps None: one pass."""
    batch_size: int
    steps_per_epoch: int | None
    epochs: int
    validation_steps: int | None
    learning_rate: float
    augment: bool


@dataclass(frozen=True)
class Flow:
    name: str
    title: str                    # above the history plot
    hyper: Hyper
    uses_vgg16: bool
    compile_seconds: float        # Numba's first-run compile of the flow's kernels, as
                                  # measured by benchmarks/bench_cold_start.py on 2 cores
    book_val_acc: float           # the validation accuracy the book reports for the flow
    seconds_per_image: float      # an epoch's seconds per training image, validation included,
                                  # on the lecture's data on 2 cores (benchmarks/lecture/RESULTS.md):
                                  # `minicnn lecture all`'s first guess of the time left


FLOWS = {flow.name: flow for flow in (
    Flow("scratch", "CNN from scratch", Hyper(20, 100, 30, 50, 1e-4, False), False,
         compile_seconds=16, book_val_acc=0.71, seconds_per_image=0.014),
    Flow("augment", "CNN + augmentation + dropout", Hyper(32, 100, 100, 50, 1e-4, True), False,
         compile_seconds=16, book_val_acc=0.82, seconds_per_image=0.013),
    # features: 0.7 s per epoch of 2000 feature vectors, after ~300 s extracting 4000 images
    Flow("features", "VGG16 features + dense classifier", Hyper(20, None, 30, None, 2e-5, False),
         True, compile_seconds=10, book_val_acc=0.90, seconds_per_image=0.0054),
    Flow("features-augment", "VGG16 base (frozen) + augmentation", Hyper(20, 100, 30, 50, 2e-5, True),
         True, compile_seconds=12, book_val_acc=0.96, seconds_per_image=0.067),
    Flow("finetune", "VGG16 fine-tuning (block5)", Hyper(20, 100, 100, 50, 1e-5, True), True,
         compile_seconds=18, book_val_acc=0.97, seconds_per_image=0.062),
)}
# Without --data the flows run on the bundled sample (1000 train, 500 validation photos) as
# quick demos of one pass per epoch. The CNN from scratch shows the lecture's point in about
# two minutes on two cores: 10 epochs at 3x the lecture's learning rate take it from chance
# to ~0.70 validation accuracy while training accuracy runs ahead (overfitting); at the
# lecture's 1e-4 the same 10 epochs end near 0.65. The other flows run two epochs.
SAMPLE_OVERRIDES = dict(epochs=2, steps_per_epoch=None, validation_steps=None)
SAMPLE_FLOW_OVERRIDES = {"scratch": dict(epochs=10, learning_rate=3e-4)}


class Interrupted(Exception):
    """Training stopped by Ctrl-C; the checkpoint holds the finished epochs."""

    def __init__(self, flow, epochs_done, epochs, checkpoint):
        self.flow, self.epochs_done, self.epochs, self.checkpoint = flow, epochs_done, epochs, checkpoint
        super().__init__(f"{flow}: interrupted after {epochs_done} of {epochs} epochs; "
                         f"{checkpoint} holds them")


@dataclass
class Run:
    """One run of one flow: where, on what, with which settings."""
    flow: Flow
    data: str
    out: str
    hyper: Hyper
    seed: int
    sample: bool                  # data is the bundled sample
    base_model: str | None = None  # finetune: the features-augment model to start from

    @property
    def checkpoint(self) -> str:
        return os.path.join(self.out, CHECKPOINT)

    def settings(self) -> dict:
        """The settings recorded in the checkpoint and in metrics.json."""
        return {"flow": self.flow.name, "data": os.path.abspath(self.data), "seed": self.seed,
                **dataclasses.asdict(self.hyper)}


@dataclass
class Data:
    """What fit, evaluate and the checkpoint need: iterators or arrays."""
    train: object                 # an iterator of (x, y) batches, or (x, y) arrays
    validation: object
    test: object | None           # the same, or None when there is no test/
    test_steps: int | None = None
    extraction_seconds: float | None = None


# -- data ---------------------------------------------------------------------------

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


def _image_data(run: Run) -> Data:
    """Training images (augmented when the flow says so), validation and test only rescaled."""
    train = _directory(run, "train", run.hyper.augment)
    validation = _directory(run, "validation", augment=False)
    test = test_steps = None
    if os.path.isdir(os.path.join(run.data, "test")):
        test = _directory(run, "test", augment=False, shuffle=False)
        test_steps = len(test)
    return Data(_Counted(train), validation, test, test_steps)


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
    from minicnn.io.atomic import atomic_path

    with _writing(path, "the features"):
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, **arrays)


def _feature_data(run: Run, reuse: bool) -> Data:
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


class _Counted:
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
    return iterator.iterator if isinstance(iterator, _Counted) else iterator


def _skip_batches(iterator, count: int) -> None:
    """Move a fresh iterator `count` batches along its stream (Iterator.skip): the resumed
    run then draws exactly the batches the uninterrupted run drew next."""
    _inner(iterator).skip(count)


def _positions(data: Data) -> dict:
    """Batches handed out so far by the training and validation iterators."""
    return {name: _inner(it).total_batches_seen for name, it in
            (("train", data.train), ("validation", data.validation)) if _is_iterator(it)}


def _is_iterator(x) -> bool:
    return hasattr(x, "__next__")


# -- models -------------------------------------------------------------------------

def _compile(model, run: Run):
    from minicnn import optimizers

    model.compile(optimizer=optimizers.RMSprop(learning_rate=run.hyper.learning_rate),
                  loss="binary_crossentropy", metrics=["acc"])
    return model


def _conv_base():
    from minicnn.applications import VGG16

    return VGG16(weights="imagenet", include_top=False, input_shape=TARGET_SIZE + (3,))


def scratch_model(run: Run):
    from minicnn.applications import lecture
    return lecture.cnn(TARGET_SIZE + (3,), dropout=False, seed=run.seed)


def augment_model(run: Run):
    from minicnn.applications import lecture
    return lecture.cnn(TARGET_SIZE + (3,), dropout=True, seed=run.seed)


def features_model(run: Run):
    """Dense 256 relu on the 4*4*512 features, Dropout 0.5, Dense 1 sigmoid."""
    from minicnn.layers import Dense, Dropout
    from minicnn.model import Sequential
    return Sequential([Dense(256, activation="relu", input_shape=(4 * 4 * 512,)),
                       Dropout(0.5), Dense(1, activation="sigmoid")], seed=run.seed)


def features_augment_model(run: Run, conv_base=None):
    """The frozen conv base + Flatten + Dense 256 relu + Dense 1 sigmoid."""
    from minicnn.layers import Dense, Flatten
    from minicnn.model import Sequential
    conv_base = conv_base or _conv_base()
    model = Sequential([conv_base, Flatten(), Dense(256, activation="relu"),
                        Dense(1, activation="sigmoid")], seed=run.seed)
    conv_base.trainable = False
    return model


def finetune_model(run: Run):
    """The features-augment model (its last checkpoint, when the run has one; else a fresh
    base and head), with the base trainable from block5_conv1 on."""
    import minicnn as mc

    if run.base_model and os.path.isfile(run.base_model):
        print(f"finetune: starting from {run.base_model}")
        model = mc.load_model(run.base_model, compile=False)
    else:
        print(f"finetune: no features-augment model at {run.base_model}; starting from the "
              f"ImageNet base and an untrained head (the lecture fine-tunes the model that "
              f"'minicnn lecture features-augment' trains: run that first)")
        model = features_augment_model(run)
    unfreeze_from(model, FINETUNE_FROM)
    return model


def unfreeze_from(model, layer_name: str) -> None:
    """The lecture's unfreeze_weights(conv_base, from = layer_name): in the conv base (the
    model's first layer), layer_name and every layer after it train, the ones before not."""
    conv_base = model.layers[0]
    names = [layer.name for layer in getattr(conv_base, "layers", [])]
    if layer_name not in names:
        raise ValueError(f"finetune: expected a model whose first layer is the VGG16 conv base "
                         f"with a layer {layer_name!r}; its first layer is "
                         f"{conv_base.name!r} with layers {names}")
    conv_base.trainable = True
    start = names.index(layer_name)
    for i, layer in enumerate(conv_base.layers):
        layer.trainable = i >= start


MODELS = {"scratch": scratch_model, "augment": augment_model, "features": features_model,
          "features-augment": features_augment_model, "finetune": finetune_model}


# -- the checkpoint and its run state ------------------------------------------------

def read_state(path) -> dict:
    """The run state stored in a checkpoint, or an error saying the file has none."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            if RUN_STATE not in f:
                raise ValueError(f"{path} is a model file without a run state (not written by "
                                 f"'minicnn lecture'), so it cannot be resumed; start afresh "
                                 f"without --resume")
            raw = f[RUN_STATE][()]
    except OSError as error:
        raise OSError(f"cannot read the checkpoint {path}: {error}") from None
    return json.loads(raw.decode("utf8") if isinstance(raw, bytes) else raw)


def write_checkpoint(model, path, state: dict) -> None:
    """model.save plus the run state, renamed into place as one file."""
    import h5py

    from minicnn.io.atomic import atomic_path

    with _writing(path, "the checkpoint"):
        with atomic_path(path) as tmp:
            model.save(tmp)
            with h5py.File(tmp, "r+") as f:
                f[RUN_STATE] = json.dumps(state)


@contextlib.contextmanager
def _writing(path, what):
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


class _Checkpoint(Callback):
    """After every epoch: the model and the run state (one file), then history.json.

    `history` holds every epoch so far, the resumed ones too; an epoch joins it only once
    the checkpoint holds it, so a Ctrl-C during the write loses nothing already saved."""

    def __init__(self, run: Run, data: Data, history, sessions: list):
        super().__init__()
        self.run, self.data, self.history = run, data, history
        self.seconds = 0.0                # spent writing, left out of the training speed
        self.session = {"first_epoch": len(history.epoch) + 1, "started": _utc_now(),
                        "cpu": cpu_model(), "epoch_seconds": []}
        self.sessions = [*sessions, self.session]    # every run of this model, this one last
        self.epoch_seconds = self.session["epoch_seconds"]  # each epoch of this run
        self._epoch_start = None

    def on_train_begin(self, logs=None):
        self._epoch_start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        start = time.perf_counter()
        if self._epoch_start is not None:
            self.epoch_seconds.append(round(start - self._epoch_start, 3))
        history = _copy_history(self.history)
        history.append(epoch, logs or {})
        state = {**self.run.settings(), "epochs_done": len(history.epoch),
                 "history": history.history, "positions": _positions(self.data),
                 "sessions": self.sessions}
        write_checkpoint(self.model, self.run.checkpoint, state)
        self.history.append(epoch, logs or {})
        path = os.path.join(self.run.out, "history.json")
        with _writing(path, "the history"):
            self.history.save(path)
        self.seconds += time.perf_counter() - start
        self._epoch_start = time.perf_counter()


def _copy_history(history):
    copy = History(history.params)
    copy.history = {k: list(v) for k, v in history.history.items()}
    copy.epoch = list(history.epoch)
    return copy


def _check_resumable(state: dict, run: Run, path) -> None:
    settings = run.settings()
    for key in RESUME_KEYS:
        if state.get(key) != settings[key]:
            option = "--data" if key == "data" else \
                "the flow" if key == "flow" else f"--{key.replace('_', '-')}"
            raise ValueError(f"--resume: {path} was made with {option} {state.get(key)!r}; "
                             f"this run has {settings[key]!r}. Resume with the same settings "
                             f"(only --epochs may change), or start afresh without --resume")
    if run.hyper.epochs < state["epochs_done"]:
        raise ValueError(f"--resume: {path} already holds {state['epochs_done']} epochs; "
                         f"received --epochs {run.hyper.epochs}, expected at least that many")


# -- running a flow -----------------------------------------------------------------

def resolve(name: str, data=None, out=None, overrides=None, seed=0, base_model=None) -> Run:
    """The Run of flow `name`: the lecture's settings, the sample's quick ones without data,
    then `overrides` (a dict of Hyper fields; a None step count means one pass)."""
    from minicnn import datasets

    if name not in FLOWS:
        raise ValueError(f"unknown flow {name!r}; expected one of {list(FLOWS)}")
    flow = FLOWS[name]
    sample = data is None
    hyper = flow.hyper
    if sample:
        demo = {**SAMPLE_OVERRIDES, **SAMPLE_FLOW_OVERRIDES.get(name, {})}
        hyper = dataclasses.replace(hyper, **demo)
    hyper = dataclasses.replace(hyper, **(overrides or {}))
    for field in ("batch_size", "epochs", "steps_per_epoch", "validation_steps"):
        value = getattr(hyper, field)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or value < 1):
            raise ValueError(f"{field} must be a positive int; received {value!r}")
    data = str(datasets.sample_dir()) if sample else os.fspath(data)
    out = os.fspath(out) if out is not None else os.path.join("runs", "lecture", name)
    return Run(flow, data, out, hyper, seed, sample, base_model)


def run_flow(run: Run, resume: bool = False, verbose: int = 1,
             validation_cache: bool = True, callbacks=()) -> dict:
    """Train one flow end to end and write its outputs; returns the metrics it wrote.

    validation_cache: run each validation pass from the stored outputs of the frozen layers
    (minicnn.ValidationCache; the same numbers, spilled to OUT/FLOW/validation_cache.npy when
    large); False runs every validation image through the whole model every epoch.
    callbacks: more minicnn.callbacks.Callback objects for fit (after the checkpoint's).
    Raises Interrupted after Ctrl-C (the checkpoint keeps the finished epochs). A first run
    says so before Numba compiles the kernels the flow uses (CompileNotice)."""
    with CompileNotice(run.flow.compile_seconds) as compiling:
        return _run_flow(run, resume, verbose, compiling, validation_cache, list(callbacks))


def _run_flow(run: Run, resume: bool, verbose: int, compiling: CompileNotice,
              validation_cache: bool, callbacks: list) -> dict:
    import minicnn as mc
    from minicnn.layers import clear_session

    start = time.perf_counter()
    flow, hyper = run.flow, run.hyper
    splits = check_data(run.data)
    if flow.uses_vgg16:
        from minicnn.applications.vgg16 import imagenet_weights_path
        imagenet_weights_path()          # before any work: the error says how to get them
    _make_folder(run.out)
    print(f"== {flow.name}: {flow.title}")
    print(f"data: {run.data}" + (" (the bundled sample)" if run.sample else ""))

    state = None
    if resume and os.path.isfile(run.checkpoint):
        state = read_state(run.checkpoint)
        _check_resumable(state, run, run.checkpoint)
        metrics_path = os.path.join(run.out, "metrics.json")
        if state["epochs_done"] >= hyper.epochs and os.path.isfile(metrics_path):
            print(f"{flow.name}: already finished ({state['epochs_done']} epochs in "
                  f"{run.checkpoint}); nothing to do")
            with open(metrics_path) as f:
                return json.load(f)
    elif resume:
        print(f"--resume: no checkpoint at {run.checkpoint}; starting afresh")
    elif os.path.isfile(run.checkpoint):
        print(f"note: starting afresh; {run.checkpoint} will be replaced after the first epoch "
              f"(--resume continues it instead)")

    # metrics.json says "finished": a stale one must not outlive the run that trains now.
    with _writing(os.path.join(run.out, "metrics.json"), "(removing) the old metrics"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(run.out, "metrics.json"))
    if state is not None:
        model = mc.load_model(run.checkpoint)
        print(f"resuming {flow.name} from {run.checkpoint} after epoch {state['epochs_done']}")
    else:
        clear_session()                  # layer names from conv2d, dense, ... in every run
        model = _compile(MODELS[flow.name](run), run)
    data = _feature_data(run, reuse=state is not None) if flow.name == "features" \
        else _image_data(run)
    if state is not None:
        for name, count in (state.get("positions") or {}).items():
            _skip_batches(getattr(data, name), count)
    model.summary()

    history = History({"epochs": hyper.epochs})
    initial_epoch = 0
    if state is not None:
        history.history = {k: [float(v) for v in vs] for k, vs in state["history"].items()}
        initial_epoch = state["epochs_done"]
        history.epoch = list(range(initial_epoch))
    checkpoint = _Checkpoint(run, data, history, (state or {}).get("sessions", []))
    cache = mc.ValidationCache(folder=run.out) if validation_cache else None
    train_start = time.perf_counter()
    try:
        if _is_iterator(data.train):
            model.fit(data.train, steps_per_epoch=hyper.steps_per_epoch, epochs=hyper.epochs,
                      verbose=verbose, validation_data=data.validation,
                      validation_steps=hyper.validation_steps, initial_epoch=initial_epoch,
                      callbacks=[checkpoint, *callbacks], validation_cache=cache)
        else:
            model.fit(*data.train, batch_size=hyper.batch_size, epochs=hyper.epochs,
                      verbose=verbose, validation_data=data.validation,
                      steps_per_epoch=hyper.steps_per_epoch,
                      validation_steps=hyper.validation_steps, initial_epoch=initial_epoch,
                      callbacks=[checkpoint, *callbacks], validation_cache=cache)
        train_seconds = time.perf_counter() - train_start - checkpoint.seconds
        epochs_done = len(history.epoch)
        if epochs_done < hyper.epochs and not model.stop_training:
            raise Interrupted(flow.name, epochs_done, hyper.epochs, run.checkpoint)
        if epochs_done:
            print(f"model: {run.checkpoint}")
        test = _evaluate_test(model, data, splits, hyper.batch_size, verbose)
    finally:
        if cache is not None:
            cache.close()
        for iterator in (data.train, data.validation, data.test):
            if hasattr(iterator, "close"):
                iterator.close()
    if cache is not None and cache.fills:
        print(f"validation: every pass ran from {cache.from_layer} on; the frozen layers below "
              f"it ran once per image ({cache.fills} fill{'s' * (cache.fills > 1)})")
    if compiling.kernels:
        print(f"compiled {len(compiling.kernels)} kernels in {compiling.seconds:.1f} s "
              f"(Numba's cache keeps them for the next runs)")

    history_path = os.path.join(run.out, "history.json")
    with _writing(history_path, "the history"):
        history.save(history_path)
    print(f"history: {history_path}")
    _plot(history, os.path.join(run.out, "history.png"), flow.title)
    images = _images_trained(data, hyper, len(history.epoch) - initial_epoch)
    metrics = {
        "flow": flow.name, "title": flow.title, "data": os.path.abspath(run.data),
        "sample": run.sample, "seed": run.seed, "hyperparameters": dataclasses.asdict(hyper),
        "epochs_run": len(history.epoch), "resumed_from_epoch": initial_epoch or None,
        **_val_metrics(history), **test,
        "seconds": round(time.perf_counter() - start, 3),
        "train_seconds": round(train_seconds, 3),
        "checkpoint_seconds": round(checkpoint.seconds, 3),
        "epoch_seconds": checkpoint.epoch_seconds,
        "sessions": [s for s in checkpoint.sessions if s["epoch_seconds"]],
        "compile_seconds": round(compiling.seconds, 3),
        "images_trained": images,
        "images_per_second": round(images / train_seconds, 2) if train_seconds > 0 and images
        else None,
        "feature_extraction_seconds": None if data.extraction_seconds is None
        else round(data.extraction_seconds, 3),
        "validation_cache": _cache_record(cache),
        "params": model.count_params(),
        "trainable_params": int(sum(w.size for w in model.trainable_weights)),
        "versions": versions(),
    }
    metrics_path = os.path.join(run.out, "metrics.json")
    _write_json(metrics_path, metrics)
    print(f"metrics: {metrics_path}")
    return metrics


def _cache_record(cache) -> dict:
    """What metrics.json says about the validation cache: used or not, and why not."""
    if cache is None:
        return {"used": False, "reason": "turned off (--no-validation-cache)"}
    return {"used": cache.used, "reason": cache.reason, "fills": cache.fills,
            "runs_from": cache.from_layer}


def _evaluate_test(model, data: Data, splits, batch_size, verbose) -> dict:
    if data.test is None:
        return {"test_loss": None, "test_acc": None,
                "test_note": "the data has no test/ folder" if "test" not in splits else None}
    if _is_iterator(data.test):
        loss, acc = model.evaluate(data.test, steps=data.test_steps, verbose=verbose)
    else:
        loss, acc = model.evaluate(*data.test, batch_size=batch_size, verbose=verbose)
    print(f"test: loss {loss:.4f} - acc {acc:.4f}")
    return {"test_loss": float(loss), "test_acc": float(acc), "test_note": None}


def _val_metrics(history) -> dict:
    val_acc = history.history.get("val_acc") or []
    best = int(np.argmax(val_acc)) if val_acc else None
    return {"final_acc": (history.history.get("acc") or [None])[-1],
            "final_val_acc": val_acc[-1] if val_acc else None,
            "best_val_acc": val_acc[best] if val_acc else None,
            "best_epoch": None if best is None else best + 1}


def _images_trained(data: Data, hyper: Hyper, epochs: int) -> int:
    if isinstance(data.train, _Counted):
        return data.train.images
    n = len(data.train[0])
    per_epoch = n if hyper.steps_per_epoch is None else min(n, hyper.steps_per_epoch * hyper.batch_size)
    return per_epoch * epochs


def _plot(history, path, title) -> None:
    if not history.epoch:
        return
    try:
        with _writing(path, "the plot"):
            history.plot(path, title=title)
        print(f"plot: {path}")
    except ImportError as error:
        print(f"no plot: {error}")


def _make_folder(path) -> None:
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as error:
        raise OSError(error.errno, f"cannot create the output folder {path}: "
                                   f"{error.strerror or error}") from None


def _write_json(path, value) -> None:
    from minicnn.io.atomic import atomic_path

    with _writing(path, "the metrics"):
        with atomic_path(path) as tmp:
            with open(tmp, "w") as f:
                json.dump(value, f, indent=2)
                f.write("\n")


def _utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def cpu_model() -> str:
    """The CPU's model name (Linux's /proc/cpuinfo), else what the platform module says."""
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    return value.strip()
    return platform.processor() or platform.machine() or "unknown"


def versions() -> dict:
    import numba

    import minicnn
    return {"python": platform.python_version(), "numpy": np.__version__,
            "numba": numba.__version__, "minicnn": minicnn.__version__,
            "platform": sys.platform}
