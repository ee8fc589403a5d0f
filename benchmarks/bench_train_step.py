"""Side-by-side speed of one training step and of inference: minicnn vs Keras vs PyTorch.

The model is the lecture's CNN from scratch (flow 1 of DESIGN.md), 3,453,121 parameters:

    Conv2D(32, 3x3, relu) on 150x150x3 + MaxPool 2x2
    Conv2D(64, 3x3, relu) + MaxPool 2x2
    Conv2D(128, 3x3, relu) + MaxPool 2x2
    Conv2D(128, 3x3, relu) + MaxPool 2x2
    Flatten, Dense(512, relu), Dense(1, sigmoid)

trained with RMSprop (lr 1e-4) on binary cross-entropy, with an accuracy metric.

What is timed, per framework and batch size (20 and 32 by default), on one fixed random batch:

    train    one training step: minicnn and Keras `model.train_on_batch(x, y)`; PyTorch
             zero_grad, forward, BCEWithLogitsLoss, backward, RMSprop step, loss.item()
    predict  inference on the same batch: minicnn `model.predict(x, batch_size=N)`, Keras
             `model.predict_on_batch(x)` (Keras's `predict` adds a per-call data-pipeline
             setup that has nothing to do with the model), PyTorch `model(x)` under
             `torch.inference_mode()`.

The frameworks:

    minicnn            this repository (NumPy + Numba)
    minicnn-im2col     the same with Winograd's algorithm turned off: every convolution
                       by im2col, as before Winograd (what it gains, measured side by side)
    minicnn-numpy-first  minicnn imported after NumPy, as a notebook does
    minicnn-torch-first  minicnn imported after PyTorch (which brings its own OpenMP
                       runtime); skipped when torch is not installed
    minicnn-keras-first  minicnn imported after Keras (TensorFlow and its thread pools
                       loaded in the same process)
    keras-onednn-off   Keras 3 on TensorFlow CPU, TF_ENABLE_ONEDNN_OPTS=0
    keras-onednn-on    Keras 3 on TensorFlow CPU, TF_ENABLE_ONEDNN_OPTS=1
    torch              PyTorch CPU, channels_last, torch.optim.RMSprop(alpha=0.9, eps=1e-7);
                       skipped, with a note, when torch is not installed

Method: the one of harness.py (a worker process per framework, driven over stdin/stdout;
warm-up; interleaved rounds in rotating order; medians with min-max). Here every worker
builds its model and warms up each (mode, batch size) with `--warmup` steps; in a round,
for each batch size and mode, every framework in turn times `--steps` consecutive steps.

Each (framework, mode, batch) gets one throughput per round, images / second =
batch * steps / (sum of the step times); the table shows the median over the rounds (and
the min-max range), and the ratio

    ratio = minicnn time per image / framework time per image     (< 1: minicnn is faster)

Also recorded:

- Numba first-call compile time of minicnn: two fresh processes with NUMBA_CACHE_DIR set to
  a new empty directory each time the script runs; the first finds the cache empty (cold,
  compiles every kernel), the second finds the cache the first wrote (warm). Each times
  `import minicnn`, the very first train_on_batch (batch 20), and a second one (steady).
- Effective GFLOP/s = analytic FLOPs / median step time, with multiply-add = 2 FLOPs:
  forward conv 2*N*H_out*W_out*K_h*K_w*C_in*C_out, forward dense 2*N*D_in*D_out; backward
  = 2 x forward (dW and dX) except the first conv, which needs no input gradient (1 x).
  Bias, activations, pooling and the optimizer are not counted. The same count is used
  for every framework, whatever algorithm it runs.
- The machine's sgemm rate (np.matmul 2048x2048 float32, see harness.py), in the minicnn
  worker (the BLAS minicnn uses), before and after the rounds.
- Versions, CPU model, core count, thread settings of each framework.

Usage:

    python benchmarks/bench_train_step.py [--batch-sizes 20 32] [--rounds 5] [--steps 5]
                                          [--quick] [--markdown OUT.md] [--json OUT.json]

Run it on an otherwise idle machine: every framework uses all cores.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

import harness
from harness import FRAMEWORKS

INPUT_SHAPE = (150, 150, 3)
CONV_FILTERS = (32, 64, 128, 128)       # each Conv2D(f, 3x3, relu) + MaxPooling2D(2x2)
DENSE_UNITS = 512
EXPECTED_PARAMS = 3_453_121
LEARNING_RATE = 1e-4
MODES = ("train", "predict")


# ----------------------------------------------------------------------------- FLOPs
def layer_flops(batch: int) -> list[dict]:
    """Analytic FLOPs of the conv and dense layers for one batch: forward and backward."""
    h, w, c = INPUT_SHAPE
    rows = []
    for i, f in enumerate(CONV_FILTERS):
        h_out, w_out = h - 2, w - 2
        fwd = 2 * batch * h_out * w_out * 3 * 3 * c * f
        bwd = fwd if i == 0 else 2 * fwd          # dW only for the first conv; dW + dX after
        rows.append({"layer": f"conv{i + 1}", "forward": fwd, "backward": bwd})
        h, w, c = h_out // 2, w_out // 2, f
    d_in = h * w * c
    for i, units in enumerate((DENSE_UNITS, 1)):
        fwd = 2 * batch * d_in * units
        rows.append({"layer": f"dense{i + 1}", "forward": fwd, "backward": 2 * fwd})
        d_in = units
    return rows


def step_flops(batch: int, mode: str) -> int:
    rows = layer_flops(batch)
    fwd = sum(r["forward"] for r in rows)
    return fwd if mode == "predict" else fwd + sum(r["backward"] for r in rows)


# ----------------------------------------------------------------------------- workers
class MinicnnBench:
    def __init__(self):
        harness.import_minicnn_from_repo()
        import numba
        import numpy as np
        import minicnn as mc
        from minicnn import layers, optimizers
        stack = []
        for i, f in enumerate(CONV_FILTERS):
            extra = {"input_shape": INPUT_SHAPE} if i == 0 else {}
            stack += [layers.Conv2D(f, (3, 3), activation="relu", **extra),
                      layers.MaxPooling2D((2, 2))]
        stack += [layers.Flatten(), layers.Dense(DENSE_UNITS, activation="relu"),
                  layers.Dense(1, activation="sigmoid")]
        self.model = mc.Sequential(stack, seed=0)
        self.model.compile(optimizer=optimizers.RMSprop(learning_rate=LEARNING_RATE),
                           loss="binary_crossentropy", metrics=["acc"])
        self.params = self.model.count_params()
        self.data = {}
        self._numba = numba
        self.versions = {"numpy": np.__version__, "numba": numba.__version__,
                         "minicnn": mc.__version__}

    def prepare(self, batch):
        self.data[batch] = harness.random_batch(batch, INPUT_SHAPE)

    def train(self, batch):
        x, y = self.data[batch]
        return self.model.train_on_batch(x, y)

    def predict(self, batch):
        x, _ = self.data[batch]
        return self.model.predict(x, batch_size=batch, verbose=0)

    def threads(self):
        return {**harness.numba_threads(self._numba), **harness.thread_env()}


class KerasBench:
    def __init__(self):
        import keras
        import numpy as np
        import tensorflow as tf
        from keras import layers
        keras.utils.set_random_seed(0)
        stack = [keras.Input(shape=INPUT_SHAPE)]
        for f in CONV_FILTERS:
            stack += [layers.Conv2D(f, (3, 3), activation="relu"), layers.MaxPooling2D((2, 2))]
        stack += [layers.Flatten(), layers.Dense(DENSE_UNITS, activation="relu"),
                  layers.Dense(1, activation="sigmoid")]
        self.model = keras.Sequential(stack)
        self.model.compile(optimizer=keras.optimizers.RMSprop(learning_rate=LEARNING_RATE),
                           loss="binary_crossentropy", metrics=["acc"])
        self.params = self.model.count_params()
        self.data = {}
        self._tf = tf
        self.onednn = harness.onednn_enabled()
        self.versions = {"numpy": np.__version__, "keras": keras.__version__,
                         "tensorflow": tf.__version__}

    def prepare(self, batch):
        self.data[batch] = harness.random_batch(batch, INPUT_SHAPE)

    def train(self, batch):
        x, y = self.data[batch]
        return self.model.train_on_batch(x, y)

    def predict(self, batch):
        x, _ = self.data[batch]
        return self.model.predict_on_batch(x)

    def threads(self):
        return harness.keras_threads(self._tf, self.model, self.onednn)


class TorchBench:
    def __init__(self):
        import numpy as np
        import torch
        from torch import nn
        self.torch = torch
        torch.manual_seed(0)
        stack, c, h = [], INPUT_SHAPE[2], INPUT_SHAPE[0]
        for f in CONV_FILTERS:
            stack += [nn.Conv2d(c, f, 3), nn.ReLU(), nn.MaxPool2d(2)]
            c, h = f, (h - 2) // 2
        stack += [nn.Flatten(), nn.Linear(h * h * c, DENSE_UNITS), nn.ReLU(),
                  nn.Linear(DENSE_UNITS, 1)]            # sigmoid folded into the loss
        self.model = nn.Sequential(*stack).to(memory_format=torch.channels_last)
        self.opt = torch.optim.RMSprop(self.model.parameters(), lr=LEARNING_RATE,
                                       alpha=0.9, eps=1e-7)
        self.loss_fn = nn.BCEWithLogitsLoss()
        self.params = sum(p.numel() for p in self.model.parameters())
        self.data = {}
        self.versions = {"numpy": np.__version__, "torch": torch.__version__}

    def prepare(self, batch):
        self.data[batch] = harness.torch_batch(self.torch,
                                               *harness.random_batch(batch, INPUT_SHAPE))

    def train(self, batch):
        x, y = self.data[batch]
        self.model.train()
        self.opt.zero_grad(set_to_none=True)
        logits = self.model(x)
        loss = self.loss_fn(logits, y)
        loss.backward()
        self.opt.step()
        acc = ((logits.detach() > 0).float() == y).float().mean()
        return [loss.item(), acc.item()]

    def predict(self, batch):
        x, _ = self.data[batch]
        self.model.eval()
        with self.torch.inference_mode():
            return self.torch.sigmoid(self.model(x)).numpy()

    def threads(self):
        return harness.torch_threads(self.torch)


BENCHES = {"minicnn": MinicnnBench, "keras": KerasBench, "torch": TorchBench}


def run_steps(bench, mode, batch, steps):
    """The "run" command (also the warm-up): `steps` timed train or predict calls."""
    if batch not in bench.data:
        bench.prepare(batch)
    fn = bench.train if mode == "train" else bench.predict
    return {"times": harness.time_calls(lambda: fn(batch), steps)}


def worker_main(kind: str) -> None:
    harness.serve(lambda: BENCHES[kind](), {"run": run_steps,
                                  "threads": lambda bench: bench.threads(),
                                  "peak_memory": lambda bench: {"max_rss_mib": harness.max_rss_mib()},
                                  "sgemm": lambda bench: harness.sgemm()},
                  hello=lambda bench: {"params": bench.params})


def compile_probe_main() -> None:
    """One fresh process: time import, the very first train_on_batch and a second one."""
    out = harness.protocol_channel()
    t0 = time.perf_counter()
    harness.import_minicnn_from_repo()
    import minicnn  # noqa: F401  (import time includes numba's)
    t_import = time.perf_counter() - t0
    bench = MinicnnBench()
    bench.prepare(20)
    t_first, t_second = harness.time_calls(lambda: bench.train(20), 2)
    t_predict, = harness.time_calls(lambda: bench.predict(20), 1)
    hits = misses = 0
    from numba.core.dispatcher import Dispatcher
    for name, module in list(sys.modules.items()):
        if name.startswith("minicnn"):
            for obj in vars(module).values():
                if isinstance(obj, Dispatcher):
                    hits += sum(obj.stats.cache_hits.values())
                    misses += sum(obj.stats.cache_misses.values())
    out.write(json.dumps({"import_seconds": t_import, "first_train_seconds": t_first,
                          "second_train_seconds": t_second,
                          "first_predict_seconds": t_predict,
                          "numba_cache_hits": hits, "numba_cache_misses": misses,
                          "numba_cache_dir": os.environ.get("NUMBA_CACHE_DIR")}) + "\n")


# ----------------------------------------------------------------------------- parent
def run_compile_probe(log):
    """Cold then warm first train_on_batch of minicnn, in fresh processes."""
    results = {}
    with tempfile.TemporaryDirectory(prefix="minicnn-numba-cache-") as cache_dir:
        for label in ("cold", "warm"):
            env = {**os.environ, "NUMBA_CACHE_DIR": cache_dir}
            proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker",
                                   "compile-probe"], env=env, capture_output=True, text=True)
            if proc.returncode != 0 or not proc.stdout.strip():
                raise harness.WorkerError(f"compile probe ({label}) failed:\n"
                                          f"{proc.stderr[-3000:]}")
            results[label] = json.loads(proc.stdout.strip().splitlines()[-1])
            r = results[label]
            log(f"  {label:4s} cache: import {r['import_seconds']:.2f} s, first train_on_batch "
                f"{r['first_train_seconds']:.2f} s, second {r['second_train_seconds']:.2f} s "
                f"(numba cache hits {r['numba_cache_hits']}, misses {r['numba_cache_misses']})")
    return results


def summarise(raw, batch_sizes, names):
    """Per (framework, mode, batch): per-round images/s, median, min, max, ratio, GFLOP/s."""
    rows = {}
    for name in names:
        for batch in batch_sizes:
            for mode in MODES:
                per_round = [batch * len(t) / sum(t) for t in raw[name][mode][str(batch)]]
                if not per_round:
                    continue
                row = rows[(name, mode, batch)] = harness.median_row(per_round)
                med = row["images_per_second"]
                row.update({"seconds_per_step": batch / med,
                            "gflops": step_flops(batch, mode) * med / batch / 1e9})
    # minicnn time / framework time = framework images/s / minicnn images/s
    harness.add_ratios(rows, lambda key: ("minicnn",) + key[1:])
    return rows


def format_table(rows, names, batch_sizes, markdown=False):
    head = ["framework", "batch", "train img/s", "train ratio", "train GFLOP/s",
            "predict img/s", "predict ratio", "predict GFLOP/s"]

    def cells(r):
        if r is None:
            return ["-", "-", "-"]
        return [harness.median_range(r), "-" if r["ratio"] is None else f"{r['ratio']:.2f}",
                f"{r['gflops']:.1f}"]

    body = []
    for batch in batch_sizes:
        for name in names:
            tr, pr = rows.get((name, "train", batch)), rows.get((name, "predict", batch))
            if tr is None and pr is None:
                continue
            body.append([name, str(batch)] + cells(tr) + cells(pr))
    return harness.table(head, body, 2, markdown)


def details_lines(report):
    """The machine, versions, threads, sgemm and compile-time facts, as plain lines."""
    lines = [harness.cpu_line(report["machine"]), harness.versions_line(report["versions"])]
    s = report.get("sgemm", {})
    lines += harness.sgemm_lines(s)
    for batch in report["args"]["batch_sizes"]:
        row = report["rows"].get(f"minicnn/train/{batch}")
        # the machine's rate: the faster of the two probes (a probe disturbed by other work
        # measures the disturbance, not the machine)
        rates = [s[k]["gflops_median"] for k in ("before", "after") if s.get(k)]
        if row and rates:
            frac = row["gflops"] / max(rates)
            lines.append(f"minicnn train step, batch {batch}: {row['gflops']:.1f} GFLOP/s "
                         f"= {100 * frac:.0f} % of sgemm ({step_flops(batch, 'train') / 1e9:.1f}"
                         f" GFLOP per step, {row['seconds_per_step'] * 1e3:.0f} ms)")
    c = report.get("compile")
    if c:
        lines.append(
            f"minicnn first train_on_batch (batch 20) in a fresh process: empty Numba cache "
            f"{c['cold']['first_train_seconds']:.2f} s, warm cache "
            f"{c['warm']['first_train_seconds']:.2f} s, steady step "
            f"{c['warm']['second_train_seconds']:.2f} s (import minicnn "
            f"{c['cold']['import_seconds']:.2f} s / {c['warm']['import_seconds']:.2f} s)")
    peaks = [f"{name} {info['max_rss_mib']:.0f}" for name, info in report["workers"].items()
             if info.get("max_rss_mib")]
    if peaks:
        lines.append("peak memory (max RSS of each worker over the whole run, both batch sizes, "
                     "training and inference), MiB: " + ", ".join(peaks))
    for name, info in report["workers"].items():
        lines.append(f"{name}: setup {info['setup_seconds']:.1f} s, first train step "
                     f"{info['first_train_seconds']:.2f} s; threads "
                     + ", ".join(f"{k}={val}" for k, val in info["threads"].items()))
    return lines + harness.note_lines(report["notes"])


def write_markdown(path, report, table_md):
    a = report["args"]
    harness.append_markdown(
        path, f"## Training step and inference, {report['date']}",
        [f"`{report['command']}` — {a['rounds']} round(s) of {a['steps']} timed step(s) "
         f"per framework after {a['warmup']} warm-up step(s); median images/s over the "
         f"rounds (min-max); ratio = minicnn time / framework time (< 1: minicnn is "
         f"faster); GFLOP/s from the analytic conv + dense FLOPs.", table_md],
        details_lines(report))


def parse_args(argv=None):
    p = harness.argument_parser(__doc__)
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[20, 32])
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    p.add_argument("--steps", type=int, default=5,
                   help="timed steps per framework, mode and batch in a round (default 5)")
    p.add_argument("--warmup", type=int, default=2,
                   help="untimed steps per mode and batch when a worker starts (default 2)")
    p.add_argument("--pause", type=float, default=0.5,
                   help="seconds of rest before each measurement, so the previous worker's "
                        "threads go idle (default 0.5)")
    p.add_argument("--quick", action="store_true",
                   help="smoke test: 1 round, 2 steps, 1 warm-up step")
    harness.add_frameworks_option(p)
    p.add_argument("--skip-compile-probe", action="store_true",
                   help="do not measure minicnn's Numba first-call compile time")
    harness.add_output_options(p, "the table")
    args = p.parse_args(argv)
    if args.quick:
        args.rounds, args.steps, args.warmup = 1, 2, 1
    harness.check_counts(p, args, ("rounds", "steps"), "the first call traces/compiles")
    if "minicnn" not in args.frameworks:
        args.frameworks.insert(0, "minicnn")
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.worker == "compile-probe":
        return compile_probe_main()
    if args.worker:
        return worker_main(args.worker)

    started = time.perf_counter()
    log = harness.log
    names = [n for n in FRAMEWORKS if n in args.frameworks]
    notes = []
    harness.skip_missing_torch(names, notes, log)
    machine = harness.machine_at_start(notes, log)
    log(f"CPU {machine['cpu_model']}, {machine['usable_cpus']} usable CPUs; batch sizes "
        f"{args.batch_sizes}, {args.rounds} round(s) x {args.steps} step(s), "
        f"{args.warmup} warm-up step(s)")

    compile_info = None
    if not args.skip_compile_probe:
        log("minicnn Numba compile probe (fresh processes, NUMBA_CACHE_DIR in a temp dir):")
        compile_info = run_compile_probe(log)

    log_dir = tempfile.mkdtemp(prefix="bench_train_step-")
    workers, info = {}, {}

    def spawn(name):
        kind, env = FRAMEWORKS[name]
        return harness.Worker(name, __file__, ["--worker", kind], env,
                              os.path.join(log_dir, f"{name}.stderr.log"))

    def ready(name, hello):
        if hello["params"] != EXPECTED_PARAMS:
            notes.append(f"{name} model has {hello['params']:,} params, expected "
                         f"{EXPECTED_PARAMS:,}")
        info[name] = {"setup_seconds": hello["setup_seconds"], "params": hello["params"],
                      "versions": hello["versions"], "python": hello["python"]}
        log(f"{name}: ready in {hello['setup_seconds']:.1f} s, {hello['params']:,} params")

    try:
        workers = harness.start_workers(names, spawn, ready, log, notes)
        names = list(workers)
        raw = {n: {m: {str(b): [] for b in args.batch_sizes} for m in MODES} for n in names}

        log("warm-up ...")
        for name in names:
            first = None
            for batch in args.batch_sizes:
                for mode in MODES:
                    t = workers[name].call("run", mode=mode, batch=batch,
                                           steps=args.warmup)["times"]
                    if first is None and mode == "train":
                        first = t[0]
            info[name]["first_train_seconds"] = first
            info[name]["threads"] = workers[name].call("threads")
            harness.check_onednn(name, workers[name], info[name]["threads"], notes)
            log(f"  {name}: first train step {first:.2f} s")

        time.sleep(args.pause)
        sgemm = {"before": workers["minicnn"].call("sgemm")}
        log(f"sgemm 2048^3 float32: {sgemm['before']['gflops_median']:.1f} GFLOP/s")

        for r in range(args.rounds):
            for batch in args.batch_sizes:
                for mode in MODES:
                    parts = []
                    for name in harness.turns(names, r, args.pause):
                        t = workers[name].call("run", mode=mode, batch=batch,
                                               steps=args.steps)["times"]
                        raw[name][mode][str(batch)].append(t)
                        parts.append(f"{name} {batch * len(t) / sum(t):.1f}")
                    log(f"round {r + 1}/{args.rounds} batch {batch} {mode:7s} img/s: "
                        + ", ".join(parts))

        for name in names:
            info[name]["max_rss_mib"] = workers[name].call("peak_memory")["max_rss_mib"]
        time.sleep(args.pause)
        sgemm["after"] = workers["minicnn"].call("sgemm")
        log(f"sgemm after the rounds: {sgemm['after']['gflops_median']:.1f} GFLOP/s")
    finally:
        harness.close_all(workers)

    machine["load_average_end"] = harness.load_average()
    versions = {"python": machine["python"]}
    for name in names:
        versions.update(info[name]["versions"])
    rows = summarise(raw, args.batch_sizes, names)
    report = {
        **harness.report_header(__file__, argv),
        "args": {"batch_sizes": args.batch_sizes, "rounds": args.rounds, "steps": args.steps,
                 "warmup": args.warmup, "pause": args.pause, "frameworks": names},
        "machine": machine, "versions": versions, "sgemm": sgemm, "compile": compile_info,
        "workers": info, "notes": notes,
        "flops_per_image": {m: step_flops(1, m) for m in MODES},
        "rows": {f"{n}/{m}/{b}": row for (n, m, b), row in rows.items()},
        "raw_step_seconds": raw,
    }
    report["total_seconds"] = time.perf_counter() - started

    log("")
    log("images/second, median over rounds (min-max); ratio = minicnn time / framework time "
        "(< 1: minicnn is faster)")
    log(format_table(rows, names, args.batch_sizes))
    log("")
    for line in details_lines(report):
        log(line)
    log(f"total time {report['total_seconds']:.0f} s; worker logs in {log_dir}")
    harness.write_outputs(args, report, lambda path: write_markdown(
        path, report, format_table(rows, names, args.batch_sizes, True)), log)


if __name__ == "__main__":
    sys.exit(main())
