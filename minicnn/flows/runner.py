"""Running a flow: `resolve(name, ...)` makes a Run (the flow, its data and folder, the
settings with any overrides), `run_flow(run, resume=...)` trains it with a checkpoint after
every epoch and reports what it did.

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

import numpy as np

from minicnn.callbacks import Callback, History
from minicnn.flows.catalog import (
    FLOWS,
    MODELS,
    SAMPLE_FLOW_OVERRIDES,
    SAMPLE_OVERRIDES,
    Hyper,
    Run,
    compile_model,
)
from minicnn.flows.data import (
    Counted,
    Data,
    check_data,
    feature_data,
    image_data,
    is_iterator,
    positions,
    skip_batches,
    writing,
)
from minicnn.progress import CompileNotice

RUN_STATE = "minicnn_run"         # the dataset in the checkpoint that holds the run's state


# The settings a resumed run must share with the run it continues (epochs may grow).
RESUME_KEYS = ("flow", "data", "batch_size", "steps_per_epoch", "validation_steps",
               "learning_rate", "seed")


class Interrupted(Exception):
    """Training stopped by Ctrl-C; the checkpoint holds the finished epochs."""

    def __init__(self, flow, epochs_done, epochs, checkpoint):
        self.flow, self.epochs_done, self.epochs, self.checkpoint = flow, epochs_done, epochs, checkpoint
        super().__init__(f"{flow}: interrupted after {epochs_done} of {epochs} epochs; "
                         f"{checkpoint} holds them")


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

    from minicnn.atomic import atomic_path

    with writing(path, "the checkpoint"):
        with atomic_path(path) as tmp:
            model.save(tmp)
            with h5py.File(tmp, "r+") as f:
                f[RUN_STATE] = json.dumps(state)


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
                 "history": history.history, "positions": positions(self.data),
                 "sessions": self.sessions}
        write_checkpoint(self.model, self.run.checkpoint, state)
        self.history.append(epoch, logs or {})
        path = os.path.join(self.run.out, "history.json")
        with writing(path, "the history"):
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
    from minicnn.io.model_file import load_model
    from minicnn.layers import clear_session
    from minicnn.validation_cache import ValidationCache

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
    with writing(os.path.join(run.out, "metrics.json"), "(removing) the old metrics"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(run.out, "metrics.json"))
    if state is not None:
        model = load_model(run.checkpoint)
        print(f"resuming {flow.name} from {run.checkpoint} after epoch {state['epochs_done']}")
    else:
        clear_session()                  # layer names from conv2d, dense, ... in every run
        model = compile_model(MODELS[flow.name](run), run)
    data = feature_data(run, reuse=state is not None) if flow.name == "features" \
        else image_data(run)
    if state is not None:
        for name, count in (state.get("positions") or {}).items():
            skip_batches(getattr(data, name), count)
    model.summary()

    history = History({"epochs": hyper.epochs})
    initial_epoch = 0
    if state is not None:
        history.history = {k: [float(v) for v in vs] for k, vs in state["history"].items()}
        initial_epoch = state["epochs_done"]
        history.epoch = list(range(initial_epoch))
    checkpoint = _Checkpoint(run, data, history, (state or {}).get("sessions", []))
    cache = ValidationCache(folder=run.out) if validation_cache else None
    train_start = time.perf_counter()
    try:
        if is_iterator(data.train):
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
    with writing(history_path, "the history"):
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
    write_json(metrics_path, metrics)
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
    if is_iterator(data.test):
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
    if isinstance(data.train, Counted):
        return data.train.images
    n = len(data.train[0])
    per_epoch = n if hyper.steps_per_epoch is None else min(n, hyper.steps_per_epoch * hyper.batch_size)
    return per_epoch * epochs


def _plot(history, path, title) -> None:
    if not history.epoch:
        return
    try:
        with writing(path, "the plot"):
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


def write_json(path, value) -> None:
    from minicnn.atomic import atomic_path

    with writing(path, "the metrics"):
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

    from minicnn.version import __version__
    return {"python": platform.python_version(), "numpy": np.__version__,
            "numba": numba.__version__, "minicnn": __version__,
            "platform": sys.platform}
