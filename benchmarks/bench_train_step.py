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
    keras-onednn-off   Keras 3 on TensorFlow CPU, TF_ENABLE_ONEDNN_OPTS=0
    keras-onednn-on    Keras 3 on TensorFlow CPU, TF_ENABLE_ONEDNN_OPTS=1
    torch              PyTorch CPU, channels_last, torch.optim.RMSprop(alpha=0.9, eps=1e-7);
                       skipped, with a note, when torch is not installed

Method. Each framework runs in its own worker process (this script started again with
`--worker KIND`), because TF_ENABLE_ONEDNN_OPTS must be set before TensorFlow is imported
and so that no framework's thread pools compete with another's. Every worker is started
once, builds its model, and warms up each (mode, batch size) once, so tracing, Numba
compilation and allocator warm-up happen before any timing. Then the parent runs
`--rounds` rounds; in a round, for each batch size and mode, every framework in turn (the
order rotates from round to round) times `--steps` consecutive steps, with a short pause
between frameworks so that a finished worker's spinning BLAS/OpenMP threads have gone to
sleep. The parent talks to the workers with one JSON object per line over their
stdin/stdout (library output in a worker goes to its stderr, kept in a log file).

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
- The machine's sgemm rate: np.matmul of two 2048x2048 float32 matrices (2*2048^3 FLOPs),
  median of 5 runs, in the minicnn worker (the BLAS minicnn uses), before and after the
  rounds; a large change means the machine's load changed during the run.
- Versions, CPU model, core count, thread settings of each framework.

Usage:

    python benchmarks/bench_train_step.py [--batch-sizes 20 32] [--rounds 5] [--steps 5]
                                          [--quick] [--markdown OUT.md] [--json OUT.json]

Run it on an otherwise idle machine: every framework uses all cores.
"""
from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import traceback

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

INPUT_SHAPE = (150, 150, 3)
CONV_FILTERS = (32, 64, 128, 128)       # each Conv2D(f, 3x3, relu) + MaxPooling2D(2x2)
DENSE_UNITS = 512
EXPECTED_PARAMS = 3_453_121
LEARNING_RATE = 1e-4
DATA_SEED = 1234
MODES = ("train", "predict")

FRAMEWORKS = {                          # name -> (worker kind, extra environment)
    "minicnn": ("minicnn", {}),
    "keras-onednn-off": ("keras", {"TF_ENABLE_ONEDNN_OPTS": "0"}),
    "keras-onednn-on": ("keras", {"TF_ENABLE_ONEDNN_OPTS": "1"}),
    "torch": ("torch", {}),
}


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
def make_batch(batch: int):
    import numpy as np
    rng = np.random.default_rng(DATA_SEED + batch)
    x = rng.random((batch,) + INPUT_SHAPE, dtype=np.float32)
    y = rng.integers(0, 2, size=(batch, 1)).astype(np.float32)
    return x, y


def _thread_env():
    """Thread-related environment variables that are set (they change the results)."""
    names = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME",
             "OPENBLAS_NUM_THREADS", "OPENBLAS_THREAD_TIMEOUT", "MKL_NUM_THREADS",
             "NUMBA_NUM_THREADS", "NUMBA_THREADING_LAYER")
    return {k: os.environ[k] for k in names if k in os.environ}


class MinicnnBench:
    def __init__(self):
        if REPO not in sys.path:
            sys.path.insert(0, REPO)
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
        self.data[batch] = make_batch(batch)

    def train(self, batch):
        x, y = self.data[batch]
        return self.model.train_on_batch(x, y)

    def predict(self, batch):
        x, _ = self.data[batch]
        return self.model.predict(x, batch_size=batch, verbose=0)

    def threads(self):
        try:
            layer = self._numba.threading_layer()
        except ValueError:                      # no parallel kernel has run yet
            layer = "not initialised"
        return {"numba_threads": self._numba.config.NUMBA_NUM_THREADS,
                "numba_threading_layer": layer, **_thread_env()}


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
        try:
            from tensorflow.python.util import _pywrap_util_port
            onednn = bool(_pywrap_util_port.IsMklEnabled())
        except Exception:                       # private API: report only if available
            onednn = None
        self.onednn = onednn
        self.versions = {"numpy": np.__version__, "keras": keras.__version__,
                         "tensorflow": tf.__version__}

    def prepare(self, batch):
        self.data[batch] = make_batch(batch)

    def train(self, batch):
        x, y = self.data[batch]
        return self.model.train_on_batch(x, y)

    def predict(self, batch):
        x, _ = self.data[batch]
        return self.model.predict_on_batch(x)

    def threads(self):
        cfg = self._tf.config.threading
        return {"onednn_enabled": self.onednn,
                "TF_ENABLE_ONEDNN_OPTS": os.environ.get("TF_ENABLE_ONEDNN_OPTS"),
                "intra_op_threads": cfg.get_intra_op_parallelism_threads() or "default (0)",
                "inter_op_threads": cfg.get_inter_op_parallelism_threads() or "default (0)",
                "jit_compile": getattr(self.model, "jit_compile", None), **_thread_env()}


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
        x, y = make_batch(batch)
        # NHWC memory viewed as NCHW: that is exactly the channels_last layout.
        xt = self.torch.from_numpy(x).permute(0, 3, 1, 2).contiguous(
            memory_format=self.torch.channels_last)
        self.data[batch] = (xt, self.torch.from_numpy(y))

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
        return {"intra_op_threads": self.torch.get_num_threads(),
                "inter_op_threads": self.torch.get_num_interop_threads(),
                "mkldnn": self.torch.backends.mkldnn.is_available(), **_thread_env()}


BENCHES = {"minicnn": MinicnnBench, "keras": KerasBench, "torch": TorchBench}


def _protocol_channel():
    """The real stdout, for JSON replies only; fd 1 then points to stderr, so whatever a
    library prints cannot corrupt the protocol."""
    fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return os.fdopen(fd, "w", buffering=1)


def _timed_steps(bench, mode, batch, steps):
    fn = bench.train if mode == "train" else bench.predict
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        fn(batch)
        times.append(time.perf_counter() - t0)
    return times


def _sgemm(n=2048, repeats=5):
    import numpy as np
    rng = np.random.default_rng(0)
    a = rng.random((n, n), dtype=np.float32)
    b = rng.random((n, n), dtype=np.float32)
    np.matmul(a, b)                                     # warm-up: threads, pages
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        np.matmul(a, b)
        rates.append(2 * n ** 3 / (time.perf_counter() - t0) / 1e9)
    return {"n": n, "gflops_runs": rates, "gflops_median": statistics.median(rates)}


def worker_main(kind: str) -> None:
    """A worker: answers one JSON command per stdin line with one JSON line."""
    out = _protocol_channel()

    def send(obj):
        out.write(json.dumps(obj) + "\n")
        out.flush()

    t0 = time.perf_counter()
    try:
        bench = BENCHES[kind]()
    except Exception:
        send({"ok": False, "error": traceback.format_exc()})
        return
    send({"ok": True, "setup_seconds": time.perf_counter() - t0, "params": bench.params,
          "versions": bench.versions, "python": platform.python_version()})
    for line in sys.stdin:
        msg = json.loads(line)
        try:
            cmd = msg["cmd"]
            if cmd == "quit":
                send({"ok": True})
                return
            if cmd == "run":        # also used for warm-up
                if msg["batch"] not in bench.data:
                    bench.prepare(msg["batch"])
                reply = {"times": _timed_steps(bench, msg["mode"], msg["batch"], msg["steps"])}
            elif cmd == "threads":
                reply = bench.threads()
            elif cmd == "sgemm":
                reply = _sgemm()
            else:
                raise ValueError(f"unknown command {cmd!r}")
            send({"ok": True, **reply})
        except Exception:
            send({"ok": False, "error": traceback.format_exc()})


def compile_probe_main() -> None:
    """One fresh process: time import, the very first train_on_batch and a second one."""
    out = _protocol_channel()
    t0 = time.perf_counter()
    if REPO not in sys.path:
        sys.path.insert(0, REPO)
    import minicnn  # noqa: F401  (import time includes numba's)
    t_import = time.perf_counter() - t0
    bench = MinicnnBench()
    bench.prepare(20)
    t1 = time.perf_counter()
    bench.train(20)
    t_first = time.perf_counter() - t1
    t2 = time.perf_counter()
    bench.train(20)
    t_second = time.perf_counter() - t2
    t3 = time.perf_counter()
    bench.predict(20)
    t_predict = time.perf_counter() - t3
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
class WorkerError(RuntimeError):
    pass


class Worker:
    """A worker process of this script, driven over stdin/stdout, its stderr in a log file."""

    def __init__(self, name, kind, extra_env, log_dir):
        self.name = name
        self.log_path = os.path.join(log_dir, f"{name}.stderr.log")
        self._log = open(self.log_path, "w")
        env = {**os.environ, **extra_env, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--worker", kind],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log,
            env=env, text=True, bufsize=1)
        self.hello = None

    def _read(self):
        line = self.proc.stdout.readline()
        if not line:
            raise WorkerError(f"worker {self.name} exited (code {self.proc.poll()}); end of its "
                              f"stderr:\n{self.log_tail()}")
        reply = json.loads(line)
        if not reply.get("ok"):
            raise WorkerError(f"worker {self.name} failed:\n{reply.get('error')}")
        return reply

    def wait_ready(self):
        self.hello = self._read()
        return self.hello

    def call(self, cmd, **kw):
        self.proc.stdin.write(json.dumps({"cmd": cmd, **kw}) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def log_tail(self, lines=15):
        self._log.flush()
        with open(self.log_path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])

    def log_contains(self, text):
        self._log.flush()
        with open(self.log_path, errors="replace") as f:
            return text in f.read()

    def close(self):
        if self.proc.poll() is None:
            try:
                self.call("quit")
            except (WorkerError, OSError, ValueError):
                pass
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self._log.close()


def load_average():
    try:
        with open("/proc/loadavg") as f:
            return float(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def machine_info():
    model, flags = "unknown", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and model == "unknown":
                    model = value.strip()
                elif key == "flags" and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {"cpu_model": model, "logical_cpus": os.cpu_count(), "usable_cpus": usable,
            "simd": " ".join(s for s in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_tile")
                             if s in flags),
            "platform": platform.platform(), "python": platform.python_version()}


def run_compile_probe(log):
    """Cold then warm first train_on_batch of minicnn, in fresh processes."""
    results = {}
    with tempfile.TemporaryDirectory(prefix="minicnn-numba-cache-") as cache_dir:
        for label in ("cold", "warm"):
            env = {**os.environ, "NUMBA_CACHE_DIR": cache_dir}
            proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker",
                                   "compile-probe"], env=env, capture_output=True, text=True)
            if proc.returncode != 0 or not proc.stdout.strip():
                raise WorkerError(f"compile probe ({label}) failed:\n{proc.stderr[-3000:]}")
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
                med = statistics.median(per_round)
                rows[(name, mode, batch)] = {
                    "images_per_second": med, "min": min(per_round), "max": max(per_round),
                    "per_round": per_round, "seconds_per_step": batch / med,
                    "gflops": step_flops(batch, mode) * med / batch / 1e9}
    for (name, mode, batch), row in rows.items():
        base = rows.get(("minicnn", mode, batch))
        # minicnn time / framework time = framework images/s / minicnn images/s
        row["ratio"] = row["images_per_second"] / base["images_per_second"] if base else None
    return rows


def format_table(rows, names, batch_sizes, markdown=False):
    head = ["framework", "batch", "train img/s", "train ratio", "train GFLOP/s",
            "predict img/s", "predict ratio", "predict GFLOP/s"]

    def ips(r):
        if r is None:
            return "-"
        if len(r["per_round"]) > 1:
            return f"{r['images_per_second']:.1f} ({r['min']:.1f}-{r['max']:.1f})"
        return f"{r['images_per_second']:.1f}"

    body = []
    for batch in batch_sizes:
        for name in names:
            tr, pr = rows.get((name, "train", batch)), rows.get((name, "predict", batch))
            if tr is None and pr is None:
                continue
            body.append([name, str(batch), ips(tr),
                         f"{tr['ratio']:.2f}" if tr and tr["ratio"] is not None else "-",
                         f"{tr['gflops']:.1f}" if tr else "-", ips(pr),
                         f"{pr['ratio']:.2f}" if pr and pr["ratio"] is not None else "-",
                         f"{pr['gflops']:.1f}" if pr else "-"])
    if markdown:
        lines = ["| " + " | ".join(head) + " |",
                 "|" + "|".join(["---"] * 2 + ["---:"] * (len(head) - 2)) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in body]
        return "\n".join(lines)
    widths = [max(len(x) for x in col) for col in zip(head, *body)]
    fmt = lambda r: "  ".join(x.ljust(w) if i < 2 else x.rjust(w)   # noqa: E731
                              for i, (x, w) in enumerate(zip(r, widths)))
    return "\n".join([fmt(head), "  ".join("-" * w for w in widths)] + [fmt(r) for r in body])


def details_lines(report):
    """The machine, versions, threads, sgemm and compile-time facts, as plain lines."""
    m, v = report["machine"], report["versions"]
    lines = [f"CPU: {m['cpu_model']}, {m['logical_cpus']} logical CPUs "
             f"({m['usable_cpus']} usable), SIMD: {m['simd'] or '-'}; {m['platform']}; "
             f"load average {m.get('load_average_start')} at start, "
             f"{m.get('load_average_end')} at end",
             "Versions: " + ", ".join(f"{k} {v[k]}" for k in
                                      ("python", "numpy", "numba", "keras", "tensorflow",
                                       "torch") if k in v)]
    s = report.get("sgemm", {})
    if s:
        parts = [f"{k} {s[k]['gflops_median']:.1f} GFLOP/s" for k in ("before", "after")
                 if k in s]
        lines.append("sgemm (np.matmul 2048x2048 float32, median of 5): " + ", ".join(parts))
    for batch in report["args"]["batch_sizes"]:
        row = report["rows"].get(f"minicnn/train/{batch}")
        if row and s.get("before"):
            frac = row["gflops"] / s["before"]["gflops_median"]
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
    for name, info in report["workers"].items():
        lines.append(f"{name}: setup {info['setup_seconds']:.1f} s, first train step "
                     f"{info['first_train_seconds']:.2f} s; threads "
                     + ", ".join(f"{k}={val}" for k, val in info["threads"].items()))
    for note in report["notes"]:
        lines.append(f"Note: {note}")
    return lines


def write_markdown(path, report, table_md):
    a = report["args"]
    section = [f"## Training step and inference, {report['date']}", "",
               f"`{report['command']}` — {a['rounds']} round(s) of {a['steps']} timed step(s) "
               f"per framework after {a['warmup']} warm-up step(s); median images/s over the "
               f"rounds (min-max); ratio = minicnn time / framework time (< 1: minicnn is "
               f"faster); GFLOP/s from the analytic conv + dense FLOPs.", "", table_md, "",
               "```"] + details_lines(report) + ["```", ""]
    mode = "a" if os.path.exists(path) else "w"
    with open(path, mode) as f:
        if mode == "a":
            f.write("\n")
        f.write("\n".join(section))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
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
    p.add_argument("--frameworks", nargs="+", choices=list(FRAMEWORKS), default=list(FRAMEWORKS),
                   help="subset to run (minicnn is always included: it is the baseline)")
    p.add_argument("--skip-compile-probe", action="store_true",
                   help="do not measure minicnn's Numba first-call compile time")
    p.add_argument("--markdown", metavar="OUT.md",
                   help="append (or write) a Markdown section with the table and machine block")
    p.add_argument("--json", metavar="OUT.json", help="write every measurement as JSON")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.rounds, args.steps, args.warmup = 1, 2, 1
    for name in ("rounds", "steps"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be at least 1")
    if args.warmup < 1:
        p.error("--warmup must be at least 1 (the first call traces/compiles)")
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
    log = lambda msg: print(msg, flush=True)                     # noqa: E731
    names = [n for n in FRAMEWORKS if n in args.frameworks]
    notes = []
    if "torch" in names and importlib.util.find_spec("torch") is None:
        names.remove("torch")
        notes.append("PyTorch is not installed: torch skipped (pip install torch)")
        log("torch is not importable: skipped")
    machine = machine_info()
    machine["load_average_start"] = load_average()
    if machine["load_average_start"] is not None and machine["load_average_start"] > 0.5:
        notes.append(f"the 1-minute load average was {machine['load_average_start']:.2f} at "
                     f"the start: other work was running, the numbers are not reliable")
        log(f"WARNING: load average {machine['load_average_start']:.2f}: the machine is not "
            f"idle, results will be noisy")
    log(f"CPU {machine['cpu_model']}, {machine['usable_cpus']} usable CPUs; batch sizes "
        f"{args.batch_sizes}, {args.rounds} round(s) x {args.steps} step(s), "
        f"{args.warmup} warm-up step(s)")

    compile_info = None
    if not args.skip_compile_probe:
        log("minicnn Numba compile probe (fresh processes, NUMBA_CACHE_DIR in a temp dir):")
        compile_info = run_compile_probe(log)

    log_dir = tempfile.mkdtemp(prefix="bench_train_step-")
    workers, info = {}, {}
    raw = {n: {m: {str(b): [] for b in args.batch_sizes} for m in MODES} for n in names}
    try:
        for name in names:                       # start them all; they import in parallel
            kind, env = FRAMEWORKS[name]
            workers[name] = Worker(name, kind, env, log_dir)
        for name in list(names):
            try:
                hello = workers[name].wait_ready()
            except WorkerError as exc:
                if name == "minicnn":
                    raise
                notes.append(f"{name} skipped: its worker failed to start")
                log(f"{name}: skipped, worker failed to start:\n{exc}")
                workers.pop(name).close()
                names.remove(name)
                raw.pop(name)
                continue
            if hello["params"] != EXPECTED_PARAMS:
                notes.append(f"{name} model has {hello['params']:,} params, expected "
                             f"{EXPECTED_PARAMS:,}")
            info[name] = {"setup_seconds": hello["setup_seconds"], "params": hello["params"],
                          "versions": hello["versions"], "python": hello["python"]}
            log(f"{name}: ready in {hello['setup_seconds']:.1f} s, {hello['params']:,} params")

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
            info[name]["threads"] = {k: v for k, v in workers[name].call("threads").items()
                                     if k != "ok"}
            if name.startswith("keras"):
                want_on = FRAMEWORKS[name][1]["TF_ENABLE_ONEDNN_OPTS"] == "1"
                said_on = workers[name].log_contains("oneDNN custom operations are on")
                if info[name]["threads"].get("onednn_enabled") not in (None, want_on) \
                        or said_on != want_on:
                    notes.append(f"{name}: oneDNN state is not the one asked for "
                                 f"(TensorFlow reports {info[name]['threads']['onednn_enabled']}"
                                 f", log message {'present' if said_on else 'absent'})")
            log(f"  {name}: first train step {first:.2f} s")

        time.sleep(args.pause)
        sgemm = {"before": workers["minicnn"].call("sgemm")}
        log(f"sgemm 2048^3 float32: {sgemm['before']['gflops_median']:.1f} GFLOP/s")

        for r in range(args.rounds):
            order = names[r % len(names):] + names[:r % len(names)]
            for batch in args.batch_sizes:
                for mode in MODES:
                    parts = []
                    for name in order:
                        time.sleep(args.pause)
                        t = workers[name].call("run", mode=mode, batch=batch,
                                               steps=args.steps)["times"]
                        raw[name][mode][str(batch)].append(t)
                        parts.append(f"{name} {batch * len(t) / sum(t):.1f}")
                    log(f"round {r + 1}/{args.rounds} batch {batch} {mode:7s} img/s: "
                        + ", ".join(parts))

        time.sleep(args.pause)
        sgemm["after"] = workers["minicnn"].call("sgemm")
        log(f"sgemm after the rounds: {sgemm['after']['gflops_median']:.1f} GFLOP/s")
    finally:
        for w in workers.values():
            w.close()

    machine["load_average_end"] = load_average()
    versions = {"python": machine["python"]}
    for name in names:
        versions.update(info[name]["versions"])
    rows = summarise(raw, args.batch_sizes, names)
    report = {
        "date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "command": "python benchmarks/bench_train_step.py " + shlex.join(
            sys.argv[1:] if argv is None else argv),
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
    if args.markdown:
        write_markdown(args.markdown, report, format_table(rows, names, args.batch_sizes, True))
        log(f"Markdown section written to {args.markdown}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
        log(f"JSON written to {args.json}")


if __name__ == "__main__":
    sys.exit(main())
