"""Speed of the image input pipeline: flow_from_directory, minicnn vs Keras, and data waits in fit.

The data are the lecture's: the `train` folder of cats_and_dogs_small (2,000 JPEGs in
cats/ and dogs/), read as in the lecture's augmentation flow:

    flow_from_directory(train_dir, target_size=(150, 150), batch_size=32, class_mode="binary")

with two generators:

    augmented   ImageDataGenerator(rescale=1/255, rotation_range=40, width_shift_range=0.2,
                height_shift_range=0.2, shear_range=0.2, zoom_range=0.2,
                horizontal_flip=True, fill_mode="nearest")
    rescale     ImageDataGenerator(rescale=1/255)

Part 1, throughput: images/second produced by the iterator when the consumer does nothing
but call next(). The loaders:

    minicnn            ImageDataGenerator.flow_from_directory of this repository: batches
                       prepared ahead in prefetching threads (the defaults, workers=2,
                       max_queue_size=4)
    minicnn-workers0   the same DirectoryIterator built with workers=0: every batch is
                       prepared inside next(), in the calling thread
    keras              Keras 3's own ImageDataGenerator
                       (keras.src.legacy.preprocessing.image; needs scipy): each batch is
                       prepared inside next(), image by image (Pillow, then
                       scipy.ndimage.affine_transform per channel)

Every iterator has shuffle=True and the same seed, so minicnn and Keras read the same images
in the same order. Both frameworks decode and resize with Pillow (nearest, as
flow_from_directory's default); minicnn then warps the whole batch in one Numba kernel
call (parallel over the image rows), Keras one image at a time with scipy.

Method: the one of harness.py (worker processes driven over stdin/stdout, warm-up,
interleaved rounds in rotating order, medians with min-max). Keras runs in its own worker
process (`--worker keras`, TF_ENABLE_ONEDNN_OPTS=0, TF_CPP_MIN_LOG_LEVEL=2), minicnn in
another (`--worker minicnn`), so that TensorFlow's thread pools do not share a process
with minicnn's. Each worker builds its iterators once and pulls `--warmup` untimed batches
from each (Numba compilation or cache load, Pillow's first decode, the page cache). Then
`--rounds` rounds: in each round, for each generator, every loader in turn pulls 2 untimed
lead-in batches and then `--batches` batches, timed as a whole. The prefetching iterator
is closed after its timed batches (outside the timing), which stops its threads and drops
the batches prepared ahead: every round starts with an empty queue, so the idle time
between rounds does not hand out ready batches, and no thread keeps working while another
loader is timed. The lead-in restarts the threads and brings them to the steady state
(both busy, the consumer waiting for the oldest batch), so the timed window neither pays
the first batch's latency nor counts batches prepared before it; the CPU time of the
window is then the work of the batches it returns. Each iterator keeps its position
between rounds, so all loaders see the same stretch of the stream in a round (it crosses a
pass boundary now and then: 2,000 = 62 x 32 + 16, the short batch is counted by its size).

Per (generator, loader) and round: images/s = images / wall seconds of the `--batches`
next() calls. The table shows the median over the rounds (min-max), milliseconds per batch
of 32 at the median, CPU milliseconds per image (process CPU time over the timed pulls, all
threads: the work, whatever the parallelism), and

    x Keras = loader images/s / Keras images/s        (> 1: the loader is faster than Keras)

Part 2, does a training step wait for data? The lecture's CNN with dropout
(minicnn.applications.lecture.cnn(dropout=True), RMSprop lr 1e-4, binary_crossentropy,
metrics ['acc']) is trained with model.fit on the augmented iterator, `--epochs` epochs of
`--steps` steps at batch 32, verbose=0, once with the default prefetching iterator and once
with workers=0, each time a fresh model (seed 0) and a fresh iterator. The iterator is
wrapped in a small class that forwards __next__ and __len__ and records the wall time of
each next() call: that is the time the training loop waited for its data. Before both
runs, a throwaway model of the same architecture trains on two batches, so that Numba's
compilation (or cache load) is not counted. Reported per loader:

    step s           median time from one next() to the next (data + forward/backward/update)
    first wait       the very first next(): the prefetching threads start there and no
                     batch is ready yet
    wait median/max  over the other steps
    steps > 10 ms    how many of the other steps waited more than 10 ms
    wait %           all waits / the sum of the epochs' wall times (an epoch runs from its
                     first next() to the next epoch's first next(), the last to the end of fit)
    epoch s          mean epoch wall time

With prefetching, the batches are prepared while the model trains, so the waits vanish, but
the preparing threads share the cores with the training step, which then takes longer:
compare the epoch times, not the waits alone.

Usage:

    python benchmarks/bench_pipeline.py [--data DIR] [--rounds 5] [--batches 20] [--steps 15]
                                        [--epochs 2] [--quick] [--markdown OUT.md] [--json OUT.json]

DIR holds train/cats and train/dogs; by default $MINICNN_DATA, else
../shared/data/cats_and_dogs_small relative to the repository. Run it on an otherwise idle
machine.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import harness

DEFAULT_DATA = os.path.normpath(os.path.join(harness.REPO, "..", "shared", "data",
                                            "cats_and_dogs_small"))

TARGET_SIZE = (150, 150)
BATCH_SIZE = 32
SEED = 1
LEARNING_RATE = 1e-4
WAIT_THRESHOLD = 0.010                  # seconds: a step "waited" when next() took longer
LEAD_IN = 2                             # untimed batches before each timed pull (steady state)

GENERATORS = {
    "augmented": dict(rescale=1 / 255, rotation_range=40, width_shift_range=0.2,
                      height_shift_range=0.2, shear_range=0.2, zoom_range=0.2,
                      horizontal_flip=True, fill_mode="nearest"),
    "rescale": dict(rescale=1 / 255),
}

LOADERS = {                              # name -> worker kind
    "minicnn": "minicnn",               # flow_from_directory, default prefetching
    "minicnn-workers0": "minicnn",      # DirectoryIterator(..., workers=0)
    "keras": "keras",
}
WORKER_ENV = {"minicnn": {},
              "keras": {"TF_ENABLE_ONEDNN_OPTS": "0", "TF_CPP_MIN_LOG_LEVEL": "2"}}
FIT_LOADERS = ("minicnn", "minicnn-workers0")


# ----------------------------------------------------------------------------- workers
def _pillow_info():
    import PIL
    from PIL import features
    try:
        turbo = bool(features.check_feature("libjpeg_turbo"))
    except Exception:                           # older Pillow: no such feature name
        turbo = None
    return {"pillow": PIL.__version__, "libjpeg_turbo": turbo}


class _TimedIterator:
    """Forwards next() and len() to an iterator; records when each next() starts and ends."""

    def __init__(self, iterator):
        self.iterator = iterator
        self.starts, self.ends = [], []

    def __iter__(self):
        return self

    def __next__(self):
        t0 = time.perf_counter()
        batch = next(self.iterator)
        self.starts.append(t0)
        self.ends.append(time.perf_counter())
        return batch

    def __len__(self):
        return len(self.iterator)


class PipelineBench:
    """Base of the workers: iterators built once per (generator, loader), pulled on demand."""

    loaders: tuple = ()

    def __init__(self, train_dir):
        self.train_dir = train_dir
        self.iterators = {}

    def iterator(self, generator, loader):
        key = (generator, loader)
        if key not in self.iterators:
            self.iterators[key] = self.make_iterator(generator, loader)
        return self.iterators[key]

    def make_iterator(self, generator, loader):
        raise NotImplementedError

    def after_pull(self, it):
        """Called after the timed pulls (outside the timing)."""

    def pull(self, generator, loader, batches, lead_in=0):
        it = self.iterator(generator, loader)
        for _ in range(lead_in):                   # untimed: reach the steady state
            next(it)
        images = 0
        c0, t0 = time.process_time(), time.perf_counter()
        for _ in range(batches):
            x, _ = next(it)
            images += len(x)
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        self.after_pull(it)
        return {"images": images, "seconds": seconds, "cpu_seconds": cpu}


class MinicnnBench(PipelineBench):
    loaders = ("minicnn", "minicnn-workers0")

    def __init__(self, train_dir):
        super().__init__(train_dir)
        harness.import_minicnn_from_repo()
        import numba
        import numpy as np
        import scipy
        import minicnn as mc
        from minicnn.preprocessing.image import ImageDataGenerator
        from minicnn.preprocessing.iterators import DirectoryIterator
        self._numba, self._mc = numba, mc
        self._idg, self._dir_iterator = ImageDataGenerator, DirectoryIterator
        self._warm = False
        self.versions = {"numpy": np.__version__, "numba": numba.__version__,
                         "minicnn": mc.__version__, "scipy": scipy.__version__,
                         **_pillow_info()}

    def make_iterator(self, generator, loader):
        gen = self._idg(**GENERATORS[generator])
        if loader == "minicnn":                      # the public path, default prefetching
            return gen.flow_from_directory(self.train_dir, target_size=TARGET_SIZE,
                                           batch_size=BATCH_SIZE, class_mode="binary",
                                           seed=SEED)
        if loader == "minicnn-workers0":             # flow_from_directory has no workers arg
            return self._dir_iterator(self.train_dir, gen, target_size=TARGET_SIZE,
                                      batch_size=BATCH_SIZE, class_mode="binary", seed=SEED,
                                      workers=0)
        raise ValueError(f"unknown loader {loader!r}")

    def after_pull(self, it):
        it.close()          # stop the threads, drop the batches prepared ahead

    def threads(self):
        it = self.iterator("augmented", "minicnn")
        return {"prefetch_workers": it.workers, "max_queue_size": it.max_queue_size,
                **harness.numba_threads(self._numba), **harness.thread_env()}

    def _model(self):
        from minicnn import optimizers
        from minicnn.applications import lecture
        model = lecture.cnn(dropout=True, seed=0)
        model.compile(optimizer=optimizers.RMSprop(learning_rate=LEARNING_RATE),
                      loss="binary_crossentropy", metrics=["acc"])
        return model

    def fit(self, loader, epochs, steps):
        if not self._warm:      # Numba compilation / cache load of the model's kernels
            x, y = next(self._dir_iterator(self.train_dir, self._idg(rescale=1 / 255),
                                           target_size=TARGET_SIZE, batch_size=BATCH_SIZE,
                                           class_mode="binary", seed=SEED, workers=0))
            warm = self._model()
            for _ in range(2):
                warm.train_on_batch(x, y)
            del warm
            self._warm = True
        model = self._model()
        it = self.make_iterator("augmented", loader)
        timed = _TimedIterator(it)
        t0 = time.perf_counter()
        history = model.fit(timed, epochs=epochs, steps_per_epoch=steps, verbose=0)
        t_end = time.perf_counter()
        it.close()
        return {"starts": [t - t0 for t in timed.starts], "ends": [t - t0 for t in timed.ends],
                "fit_seconds": t_end - t0, "epochs": epochs, "steps": steps,
                "workers": it.workers,
                "history": {k: [float(v) for v in vals] for k, vals in history.history.items()}}


class KerasBench(PipelineBench):
    loaders = ("keras",)

    def __init__(self, train_dir):
        super().__init__(train_dir)
        import keras                                # lazily: only in this worker
        import numpy as np
        import scipy
        import tensorflow as tf
        from keras.src.legacy.preprocessing.image import ImageDataGenerator
        self._idg = ImageDataGenerator
        self.versions = {"numpy": np.__version__, "keras": keras.__version__,
                         "tensorflow": tf.__version__, "scipy": scipy.__version__,
                         **_pillow_info()}

    def make_iterator(self, generator, loader):
        if loader != "keras":
            raise ValueError(f"unknown loader {loader!r}")
        return self._idg(**GENERATORS[generator]).flow_from_directory(
            self.train_dir, target_size=TARGET_SIZE, batch_size=BATCH_SIZE,
            class_mode="binary", seed=SEED)

    def threads(self):
        return {"batches": "prepared in next(), in the calling thread",
                "TF_ENABLE_ONEDNN_OPTS": os.environ.get("TF_ENABLE_ONEDNN_OPTS"),
                **harness.thread_env()}


BENCHES = {"minicnn": MinicnnBench, "keras": KerasBench}


def worker_main(kind: str, train_dir: str) -> None:
    harness.serve(lambda: BENCHES[kind](train_dir),
                  {"pull": lambda bench, **kw: bench.pull(**kw),       # also the warm-up
                   "fit": lambda bench, **kw: bench.fit(**kw),
                   "threads": lambda bench: bench.threads()})


# ----------------------------------------------------------------------------- parent
def count_images(train_dir):
    exts = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".tif", ".tiff")
    classes, total = [], 0
    for entry in sorted(os.listdir(train_dir)):
        path = os.path.join(train_dir, entry)
        if os.path.isdir(path):
            n = sum(f.lower().endswith(exts) for _, _, files in os.walk(path) for f in files)
            classes.append(entry)
            total += n
    return classes, total


# ----------------------------------------------------------------------------- summaries
def summarise_throughput(raw):
    """Per (generator, loader): per-round images/s, median, min, max, CPU ms/image, x Keras."""
    rows = {}
    for generator, by_loader in raw.items():
        for loader, runs in by_loader.items():
            if not runs:
                continue
            row = rows[(generator, loader)] = harness.median_row(
                [r["images"] / r["seconds"] for r in runs])
            row["ms_per_batch"] = 1e3 * BATCH_SIZE / row["images_per_second"]
            row["cpu_ms_per_image"] = statistics.median(1e3 * r["cpu_seconds"] / r["images"]
                                                        for r in runs)
    harness.add_ratios(rows, lambda key: (key[0], "keras"), "vs_keras")
    return rows


def summarise_fit(run):
    """Data waits and step/epoch times of one fit, from the next() start/end times."""
    starts, ends = run["starts"], run["ends"]
    steps, epochs = run["steps"], run["epochs"]
    waits = [e - s for s, e in zip(starts, ends)]
    firsts = [starts[k * steps] for k in range(epochs)] + [run["fit_seconds"]]
    epoch_seconds = [b - a for a, b in zip(firsts, firsts[1:])]
    step_seconds = [starts[i + 1] - starts[i] for i in range(len(starts) - 1)
                    if (i + 1) % steps != 0]            # both in the same epoch
    rest = waits[1:]
    return {
        "loader": run["loader"], "workers": run["workers"],
        "steps_total": len(waits),
        "step_seconds_median": statistics.median(step_seconds) if step_seconds else None,
        "first_wait": waits[0],
        "wait_median": statistics.median(rest) if rest else None,
        "wait_max": max(rest) if rest else None,
        "steps_waiting": sum(w > WAIT_THRESHOLD for w in rest), "steps_counted": len(rest),
        "wait_total": sum(waits), "epoch_seconds": epoch_seconds,
        "wait_percent": 100 * sum(waits) / sum(epoch_seconds),
        "wait_percent_per_epoch": [
            100 * sum(waits[k * steps:(k + 1) * steps]) / epoch_seconds[k]
            for k in range(epochs)],
        "fit_seconds": run["fit_seconds"], "history": run["history"]}


def format_throughput(rows, loaders, markdown=False):
    head = ["generator", "loader", "img/s", "ms/batch", "CPU ms/img", "x Keras"]
    body = []
    for generator in GENERATORS:
        for loader in loaders:
            r = rows.get((generator, loader))
            if r is None:
                continue
            body.append([generator, loader, harness.median_range(r),
                         f"{r['ms_per_batch']:.0f}",
                         f"{r['cpu_ms_per_image']:.2f}",
                         f"{r['vs_keras']:.2f}" if r["vs_keras"] is not None else "-"])
    return harness.table(head, body, 2, markdown)


def format_fit(fits, markdown=False):
    head = ["loader", "steps", "step s", "first wait ms", "wait median ms", "wait max ms",
            f"steps > {WAIT_THRESHOLD * 1e3:.0f} ms", "wait % of epochs", "epoch s"]
    ms = lambda v: "-" if v is None else f"{1e3 * v:.1f}"             # noqa: E731
    body = [[f["loader"], str(f["steps_total"]),
             "-" if f["step_seconds_median"] is None else f"{f['step_seconds_median']:.2f}",
             ms(f["first_wait"]), ms(f["wait_median"]), ms(f["wait_max"]),
             f"{f['steps_waiting']} of {f['steps_counted']}", f"{f['wait_percent']:.1f}",
             f"{statistics.mean(f['epoch_seconds']):.1f}"] for f in fits]
    return harness.table(head, body, 1, markdown)


def details_lines(report):
    v = report["versions"]
    lines = [harness.cpu_line(report["machine"]),
             harness.versions_line(v, ("python", "numpy", "numba", "scipy", "pillow", "keras",
                                       "tensorflow"))
             + f"; libjpeg-turbo: {v.get('libjpeg_turbo')}",
             f"Data: {report['data']['train_dir']}: {report['data']['images']} images, classes "
             f"{', '.join(report['data']['classes'])}"]
    for name, info in report["workers"].items():
        lines.append(f"{name} worker: setup {info['setup_seconds']:.1f} s; "
                     + ", ".join(f"{k}={val}" for k, val in info["threads"].items()))
    for f in report["fit"]:
        hist = ", ".join(f"{k} {vals[-1]:.3f}" for k, vals in f["history"].items())
        lines.append(f"fit {f['loader']} (workers={f['workers']}): {f['fit_seconds']:.1f} s, "
                     f"epochs " + ", ".join(f"{s:.1f} s" for s in f["epoch_seconds"])
                     + ", wait % per epoch " + ", ".join(f"{p:.1f}"
                                                         for p in f["wait_percent_per_epoch"])
                     + f"; last epoch {hist}")
    return lines + harness.note_lines(report["notes"])


def write_markdown(path, report, throughput_md, fit_md):
    a = report["args"]
    harness.append_markdown(
        path, f"## Input pipeline, {report['date']}",
        [f"`{report['command']}` — flow_from_directory on the lecture's train folder, "
         f"150×150, batch {BATCH_SIZE}, class_mode binary. Throughput: {a['rounds']} "
         f"round(s) of {a['batches']} timed batches per loader (each after {LEAD_IN} "
         f"untimed lead-in batches; {a['warmup']} warm-up batch(es) per iterator at the "
         f"start); median images/s over the rounds (min-max); CPU ms/img = process CPU "
         f"time per image, all threads; x Keras = images/s / Keras images/s (> 1: "
         f"faster than Keras).", throughput_md,
         f"Data waits in `model.fit` (lecture CNN with dropout, RMSprop 1e-4, augmented "
         f"iterator, {a['epochs']} epoch(s) × {a['steps']} steps): wait = wall time of "
         f"next(); median and max over the steps after the first; wait % = all waits / "
         f"epoch wall times.", fit_md],
        details_lines(report))


# ----------------------------------------------------------------------------- main
def parse_args(argv=None):
    p = harness.argument_parser(__doc__)
    p.add_argument("--data", metavar="DIR",
                   help="folder holding train/<class>/ (default: $MINICNN_DATA, else "
                        "../shared/data/cats_and_dogs_small next to the repository)")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    p.add_argument("--batches", type=int, default=20,
                   help="timed batches per loader and generator in a round (default 20)")
    p.add_argument("--warmup", type=int, default=3,
                   help="untimed batches per iterator when a worker starts (default 3)")
    p.add_argument("--steps", type=int, default=15, help="fit: steps per epoch (default 15)")
    p.add_argument("--epochs", type=int, default=2, help="fit: epochs (default 2)")
    p.add_argument("--pause", type=float, default=0.5,
                   help="seconds of rest before each measurement (default 0.5)")
    p.add_argument("--quick", action="store_true",
                   help="smoke test: 1 round of 3 batches, 1 warm-up batch, fit 2 x 3 steps")
    p.add_argument("--skip-keras", action="store_true", help="minicnn only (no x Keras)")
    p.add_argument("--skip-fit", action="store_true", help="throughput only (no part 2)")
    harness.add_output_options(p, "the tables")
    p.add_argument("--data-train", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.rounds, args.batches, args.warmup, args.steps = 1, 3, 1, 3
    harness.check_counts(p, args, ("rounds", "batches", "steps", "epochs"),
                         "the first batches compile / fill caches")
    return args


def resolve_train_dir(args):
    data = args.data or os.environ.get("MINICNN_DATA") or DEFAULT_DATA
    train_dir = os.path.join(os.path.abspath(data), "train")
    if not os.path.isdir(train_dir):
        sys.exit(f"bench_pipeline: no folder {train_dir!r}; give --data DIR (or MINICNN_DATA) "
                 f"with DIR/train/cats and DIR/train/dogs (the lecture's cats_and_dogs_small)")
    return train_dir


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        return worker_main(args.worker, args.data_train)

    started = time.perf_counter()
    log = harness.log
    train_dir = resolve_train_dir(args)
    classes, n_images = count_images(train_dir)
    notes = []
    machine = harness.machine_at_start(notes, log)
    log(f"CPU {machine['cpu_model']}, {machine['usable_cpus']} usable CPUs; data {train_dir} "
        f"({n_images} images, {len(classes)} classes); {args.rounds} round(s) x "
        f"{args.batches} batch(es) of {BATCH_SIZE}, {args.warmup} warm-up batch(es); fit "
        f"{args.epochs} x {args.steps} steps")

    loaders = [n for n in LOADERS if not (args.skip_keras and n == "keras")]
    kinds = sorted({LOADERS[n] for n in loaders}, key=list(WORKER_ENV).index)
    log_dir = tempfile.mkdtemp(prefix="bench_pipeline-")
    workers, info = {}, {}
    fits = []

    def spawn(kind):
        return harness.Worker(kind, __file__, ["--worker", kind, "--data-train", train_dir],
                              WORKER_ENV[kind], os.path.join(log_dir, f"{kind}.stderr.log"))

    def ready(kind, hello):
        info[kind] = {"setup_seconds": hello["setup_seconds"],
                      "versions": hello["versions"], "python": hello["python"]}
        log(f"{kind} worker: ready in {hello['setup_seconds']:.1f} s")

    try:
        workers = harness.start_workers(kinds, spawn, ready, log, notes)
        kinds = list(workers)
        loaders = [n for n in loaders if LOADERS[n] in workers]
        raw = {g: {n: [] for n in loaders} for g in GENERATORS}

        log("warm-up ...")
        for generator in GENERATORS:
            for loader in loaders:
                r = workers[LOADERS[loader]].call("pull", generator=generator, loader=loader,
                                                  batches=args.warmup)
                log(f"  {generator:9s} {loader:16s} {r['images'] / r['seconds']:.1f} img/s "
                    f"(warm-up, {r['seconds']:.2f} s)")
        for kind in kinds:
            info[kind]["threads"] = workers[kind].call("threads")

        for rnd in range(args.rounds):
            for generator in GENERATORS:
                parts = []
                for loader in harness.turns(loaders, rnd, args.pause):
                    r = workers[LOADERS[loader]].call("pull", generator=generator,
                                                      loader=loader, batches=args.batches,
                                                      lead_in=LEAD_IN)
                    raw[generator][loader].append({k: r[k] for k in
                                                   ("images", "seconds", "cpu_seconds")})
                    parts.append(f"{loader} {r['images'] / r['seconds']:.1f}")
                log(f"round {rnd + 1}/{args.rounds} {generator:9s} img/s: " + ", ".join(parts))

        if "keras" in workers:                    # part 2 is minicnn only: free the cores
            workers.pop("keras").close()
        if not args.skip_fit:
            for loader in FIT_LOADERS:
                time.sleep(args.pause)
                log(f"fit {loader}: {args.epochs} epoch(s) x {args.steps} steps ...")
                run = workers["minicnn"].call("fit", loader=loader, epochs=args.epochs,
                                              steps=args.steps)
                run["loader"] = loader
                fits.append(run)
                s = summarise_fit(run)
                log(f"  {run['fit_seconds']:.1f} s, data wait {s['wait_total']:.2f} s "
                    f"({s['wait_percent']:.1f} % of the epochs)")
    finally:
        harness.close_all(workers)

    machine["load_average_end"] = harness.load_average()
    versions = {"python": machine["python"]}
    for kind in ("keras", "minicnn"):             # minicnn's numpy/scipy/Pillow win
        if kind in info:
            versions.update(info[kind]["versions"])
    rows = summarise_throughput(raw)
    fit_rows = [summarise_fit(run) for run in fits]
    report = {
        **harness.report_header(__file__, argv),
        "args": {"rounds": args.rounds, "batches": args.batches, "warmup": args.warmup,
                 "steps": args.steps, "epochs": args.epochs, "pause": args.pause,
                 "loaders": loaders},
        "data": {"train_dir": train_dir, "images": n_images, "classes": classes},
        "generators": GENERATORS, "machine": machine, "versions": versions,
        "workers": info, "notes": notes,
        "throughput": {f"{g}/{n}": row for (g, n), row in rows.items()},
        "fit": fit_rows, "raw_pulls": raw, "raw_fits": fits,
    }
    report["total_seconds"] = time.perf_counter() - started

    log("")
    log(f"flow_from_directory throughput, batch {BATCH_SIZE}, 150x150: median images/s over "
        f"rounds (min-max); x Keras = images/s / Keras images/s (> 1: faster than Keras)")
    log(format_throughput(rows, loaders))
    if fit_rows:
        log("")
        log(f"data waits in model.fit (augmented, {args.epochs} x {args.steps} steps): wait = "
            f"wall time of next(); median/max over the steps after the first")
        log(format_fit(fit_rows))
    log("")
    for line in details_lines(report):
        log(line)
    log(f"total time {report['total_seconds']:.0f} s; worker logs in {log_dir}")
    harness.write_outputs(args, report, lambda path: write_markdown(
        path, report, format_throughput(rows, loaders, True),
        format_fit(fit_rows, True) if fit_rows else "(not run)"), log)


if __name__ == "__main__":
    sys.exit(main())
