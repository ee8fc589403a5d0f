"""Layer by layer, side by side: where minicnn's time goes next to Keras + oneDNN's.

The lecture's CNN from scratch (bench_train_step.py's model) at one batch size, or the VGG16
conv base at 150x150 (inference). For every layer, the milliseconds of its forward at
inference, and of its forward + backward in a training step, in each engine:

    minicnn  minicnn.profile: every layer's forward and backward methods timed inside real
             model.predict / train_on_batch calls, so the fused paths are timed as the
             model runs them (a pooling that applies its convolution's bias and ReLU at
             inference, a pooling backward that applies the ReLU's derivative); the
             first convolution computes no input gradient.
    keras    TensorFlow's profiler (tf.profiler.experimental) tracing the model's own
             predict_on_batch and train_on_batch: each traced op's time goes to the layer
             whose name scope it runs in, forward ops and gradient ops alike (oneDNN's fused
             convolution + bias + ReLU, its pooling, the backprop-filter/-input ops ...).
             Ops outside any layer (the loss, the optimizer, copies) are left out of the
             layer rows; the whole call's wall time is the last row. TensorFlow may run two
             ops at once, so its layer sum can exceed the wall time.

Method: harness.py's (a worker process per engine, warm-up, interleaved rounds in rotating
order, medians). In a round each engine times `--steps` steps of every layer, inference
and training. The ratio column is minicnn ms / Keras ms (< 1: minicnn is faster).

Usage:

    python benchmarks/bench_layers.py [--model cnn|vgg16] [--batch-size 32] [--rounds 3]
                                      [--steps 5] [--markdown OUT.md] [--json OUT.json]

Run it on an otherwise idle machine: both engines use all cores.
"""
from __future__ import annotations

import os
import statistics
import sys
import tempfile

import harness
from harness import FRAMEWORKS

ENGINES = ("minicnn", "keras-onednn-on")
MODELS = ("cnn", "vgg16")


# ----------------------------------------------------------------------------- workers
class MinicnnLayers:
    def __init__(self, model_name):
        harness.import_minicnn_from_repo()
        import numba
        import numpy as np
        import minicnn as mc
        from minicnn import profile
        self.profile = profile
        self.model = profile.model_for(model_name)
        self.train = model_name != "vgg16"       # the bare conv base is for inference
        self.sgemm = profile.sgemm_gflops()
        self.data = {}
        self.versions = {"numpy": np.__version__, "numba": numba.__version__,
                         "minicnn": mc.__version__}

    def run(self, batch, steps, warmup):
        if batch not in self.data:
            self.data[batch] = self.profile.random_batch(self.model, batch)
        x, y = self.data[batch]
        reply = {}
        for mode in ("predict", "train") if self.train else ("predict",):
            result = self.profile.profile(self.model, x, y, mode=mode, steps=steps,
                                          warmup=warmup, sgemm=self.sgemm)
            reply[mode] = {"step_ms": result.step_ms,
                           "layers": [{"name": r.name, "type": r.type,
                                       "ms": r.forward_ms + r.backward_ms}
                                      for r in result.layers]}
        return reply


class KerasLayers:
    """Keras's side, from TensorFlow's profiler: the model's own predict_on_batch and
    train_on_batch traced (tf.profiler.experimental), and each traced op's time credited
    to the layer whose name scope it runs in (forward ops and the gradient ops of the
    backward alike). The layers are named layerNN so that a scope names one layer only."""

    def __init__(self, model_name):
        import keras
        import numpy as np
        import tensorflow as tf
        from keras import layers
        from tensorflow.tsl.profiler.protobuf import xplane_pb2
        keras.utils.set_random_seed(0)
        self.np, self.tf, self.xplane_pb2 = np, tf, xplane_pb2
        names = (f"layer{i:02d}" for i in range(100))
        stack = [keras.Input(shape=(150, 150, 3))]
        if model_name == "vgg16":                 # keras.applications.VGG16's layers
            for convs, f in ((2, 64), (2, 128), (3, 256), (3, 512), (3, 512)):
                stack += [layers.Conv2D(f, (3, 3), activation="relu", padding="same",
                                        name=next(names)) for _ in range(convs)]
                stack.append(layers.MaxPooling2D((2, 2), name=next(names)))
            self.train = False
        else:
            for f in (32, 64, 128, 128):
                stack += [layers.Conv2D(f, (3, 3), activation="relu", name=next(names)),
                          layers.MaxPooling2D((2, 2), name=next(names))]
            stack += [layers.Flatten(name=next(names)),
                      layers.Dense(512, activation="relu", name=next(names)),
                      layers.Dense(1, activation="sigmoid", name=next(names))]
            self.train = True
        self.model = keras.Sequential(stack)
        self.model.compile(optimizer=keras.optimizers.RMSprop(learning_rate=1e-4),
                           loss="binary_crossentropy", metrics=["acc"])
        self.layers = self.model.layers
        self.data = {}
        self.onednn = harness.onednn_enabled()
        self.versions = {"numpy": np.__version__, "keras": keras.__version__,
                         "tensorflow": tf.__version__}

    def _traced(self, fn, steps):
        """(median wall ms of `steps` calls of fn, {layer index: op ms per call})."""
        import re
        import shutil
        logdir = tempfile.mkdtemp(prefix="bench_layers-trace-")
        try:
            self.tf.profiler.experimental.start(logdir)
            walls = harness.time_calls(fn, steps)
            self.tf.profiler.experimental.stop()
            space = self.xplane_pb2.XSpace()
            paths = [os.path.join(d, f) for d, _, files in os.walk(logdir) for f in files
                     if f.endswith(".xplane.pb")]
            with open(max(paths, key=os.path.getmtime), "rb") as f:
                space.ParseFromString(f.read())
        finally:
            shutil.rmtree(logdir, ignore_errors=True)
        scope = re.compile(r"(?:^|/)layer(\d\d)(?:_\d+)?/")
        per_layer = {}
        for plane in space.planes:
            names = plane.event_metadata
            for line in plane.lines:
                if not line.name.startswith("tf_Compute") and line.name != "python":
                    continue
                for event in line.events:
                    name = names[event.metadata_id].name
                    match = scope.search(name) if ":" in name else None
                    if match:                    # "scope/op:OpType": one kernel's run
                        i = int(match.group(1))
                        per_layer[i] = per_layer.get(i, 0.0) + event.duration_ps / 1e9
        return (1000 * statistics.median(walls),
                {i: ms / steps for i, ms in per_layer.items()})

    def run(self, batch, steps, warmup):
        if batch not in self.data:
            self.data[batch] = harness.random_batch(batch, (150, 150, 3))
        x, y = self.data[batch]
        calls = {"predict": lambda: self.model.predict_on_batch(x)}
        if self.train:
            calls["train"] = lambda: self.model.train_on_batch(x, y)
        reply = {}
        for mode, fn in calls.items():
            for _ in range(warmup):
                fn()
            step_ms, per_layer = self._traced(fn, steps)
            reply[mode] = {"step_ms": step_ms,
                           "layers": [{"name": layer.name, "ms": per_layer.get(i, 0.0)}
                                      for i, layer in enumerate(self.layers)]}
        return reply

    def threads(self):
        return harness.keras_threads(self.tf, self.model, self.onednn)


def worker_main(kind, model_name):
    bench = {"minicnn": MinicnnLayers, "keras": KerasLayers}[kind]
    harness.serve(lambda: bench(model_name),
                  {"run": lambda b, **kw: b.run(**kw),
                   "threads": lambda b: b.threads() if hasattr(b, "threads") else {}})


# ----------------------------------------------------------------------------- parent
def summarise(raw, modes):
    """{mode: [(layer name, type, {engine: median ms})], ...} and the steps' medians."""
    table, steps = {}, {}
    for mode in modes:
        first = raw["minicnn"][0][mode]["layers"]
        rows = []
        for i, layer in enumerate(first):          # the same layers, in order, in both
            ms = {e: statistics.median(r[mode]["layers"][i]["ms"] for r in raw[e])
                  for e in raw}
            rows.append((layer["name"], layer["type"], ms))
        table[mode] = rows
        steps[mode] = {e: statistics.median(r[mode]["step_ms"] for r in raw[e]) for e in raw}
    return table, steps


def format_tables(table, steps, markdown=False):
    out = []
    for mode, rows in table.items():
        what = "inference (forward)" if mode == "predict" else "training (forward + backward)"
        head = ["layer", f"{what}: minicnn ms", "Keras ms", "ratio"]
        body = []
        for name, kind, ms in rows:
            m, k = ms["minicnn"], ms.get("keras-onednn-on")
            body.append([f"{name} ({kind})", f"{m:.2f}", f"{k:.2f}" if k else "-",
                         f"{m / k:.2f}" if k else "-"])
        total = {e: sum(ms[e] for _, _, ms in rows) for e in rows[0][2]}
        k = total.get("keras-onednn-on")
        body.append(["sum of the layers", f"{total['minicnn']:.2f}",
                     f"{k:.2f}" if k else "-", f"{total['minicnn'] / k:.2f}" if k else "-"])
        s = steps[mode]
        k = s.get("keras-onednn-on")
        body.append([f"whole model ({'predict' if mode == 'predict' else 'train step'})",
                     f"{s['minicnn']:.2f}", f"{k:.2f}" if k else "-",
                     f"{s['minicnn'] / k:.2f}" if k else "-"])
        out.append(harness.table(head, body, left=1, markdown=markdown))
    return out


def parse_args(argv=None):
    p = harness.argument_parser(__doc__)
    p.add_argument("--model", choices=MODELS, default="cnn",
                   help="the lecture's CNN (inference and training) or the VGG16 conv base "
                        "(inference); default cnn")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    p.add_argument("--steps", type=int, default=5,
                   help="timed steps per layer, engine and mode in a round (default 5)")
    p.add_argument("--warmup", type=int, default=2,
                   help="untimed steps before each timing (default 2)")
    p.add_argument("--pause", type=float, default=0.5,
                   help="seconds of rest before each engine's turn (default 0.5)")
    p.add_argument("--quick", action="store_true", help="smoke test: 1 round, 1 step, 1 warm-up")
    harness.add_output_options(p, "the tables")
    args = p.parse_args(argv)
    if args.quick:
        args.rounds, args.steps, args.warmup = 1, 1, 1
    harness.check_counts(p, args, ("rounds", "steps", "batch_size"), "the first call compiles")
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        return worker_main(args.worker, args.model)
    log = harness.log
    notes = []
    machine = harness.machine_at_start(notes, log)
    log(f"CPU {machine['cpu_model']}, {machine['usable_cpus']} usable CPUs; {args.model}, "
        f"batch {args.batch_size}, {args.rounds} round(s) x {args.steps} step(s)")
    log_dir = tempfile.mkdtemp(prefix="bench_layers-")
    info = {}

    def spawn(name):
        kind, env = FRAMEWORKS[name]
        return harness.Worker(name, __file__, ["--worker", kind, "--model", args.model], env,
                              os.path.join(log_dir, f"{name}.stderr.log"))

    def ready(name, hello):
        info[name] = {"versions": hello["versions"], "python": hello["python"],
                      "setup_seconds": hello["setup_seconds"]}
        log(f"{name}: ready in {hello['setup_seconds']:.1f} s")

    workers = harness.start_workers(list(ENGINES), spawn, ready, log, notes)
    try:
        names = list(workers)
        raw = {n: [] for n in names}
        for name in names:                                    # warm-up: compile, trace
            workers[name].call("run", batch=args.batch_size, steps=1, warmup=args.warmup)
            info[name]["threads"] = workers[name].call("threads")
            harness.check_onednn(name, workers[name], info[name]["threads"], notes)
        for r in range(args.rounds):
            for name in harness.turns(names, r, args.pause):
                raw[name].append(workers[name].call("run", batch=args.batch_size,
                                                    steps=args.steps, warmup=1))
            log(f"round {r + 1}/{args.rounds} done")
        machine["load_average_end"] = harness.load_average()
    finally:
        harness.close_all(workers)
    modes = [m for m in ("predict", "train") if m in raw["minicnn"][0]]
    table, steps = summarise(raw, modes)
    for block in format_tables(table, steps):
        log("")
        log(block)
    versions = {}
    for name in info:
        versions.update(info[name]["versions"])
    versions["python"] = info["minicnn"]["python"]
    details = [harness.cpu_line(machine), harness.versions_line(versions),
               *harness.note_lines(notes), f"worker logs: {log_dir}"]
    log("")
    for line in details:
        log(line)
    report = {"args": vars(args), "machine": machine, "info": info, "raw": raw,
              "notes": notes}

    def write_markdown(path):
        heading = (f"bench_layers.py --model {args.model} --batch-size {args.batch_size}: "
                   f"{machine['cpu_model']}")
        harness.append_markdown(path, heading, format_tables(table, steps, markdown=True),
                                details)

    harness.write_outputs(args, report, write_markdown, log)


if __name__ == "__main__":
    sys.exit(main())
