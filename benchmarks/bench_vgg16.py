"""VGG16 at 150x150x3: conv base inference and a fine-tuning step, minicnn vs Keras vs PyTorch.

The model is the lecture's VGG16 conv base (Keras's architecture, 14,714,688 weights):

    block1: Conv2D(64)  x2   block2: Conv2D(128) x2   block3: Conv2D(256) x3
    block4: Conv2D(512) x3   block5: Conv2D(512) x3
    every Conv2D 3x3, padding 'same', relu; each block ends with MaxPooling2D 2x2, stride 2
    150x150x3 -> (4, 4, 512)

and, for fine-tuning, the lecture's classifier around it (16,812,353 weights):

    Sequential([conv_base, Flatten(), Dense(256, relu), Dense(1, sigmoid)])

with block5 and the head trainable (9,177,089 weights) and blocks 1-4 frozen, trained with
RMSprop (lr 1e-5) on binary cross-entropy, with an accuracy metric. The weights are random
(minicnn `VGG16(weights=None)`, Keras `VGG16(weights=None)`, PyTorch's default init): the
arithmetic is the same as with the ImageNet weights, so the speed is too.

Two phases, each timed per framework on one fixed random batch (batch 20 by default):

    predict  the conv base alone: minicnn `base.predict(x, batch_size=20, verbose=0)`, Keras
             `base.predict_on_batch(x)` (Keras's `predict` adds a per-call data-pipeline setup
             that has nothing to do with the model), PyTorch `features(x)` under
             `torch.inference_mode()`
    train    one fine-tuning step of the classifier: minicnn and Keras
             `model.train_on_batch(x, y)` (freezing as in the lecture: `base.trainable = True`,
             then every layer of the base not named block5* gets `trainable = False`);
             PyTorch with requires_grad False for blocks 1-4: zero_grad, forward,
             BCEWithLogitsLoss, backward, RMSprop step (on the trainable parameters only),
             loss.item()

The frameworks:

    minicnn            this repository (NumPy + Numba)
    keras-onednn-off   Keras 3 on TensorFlow CPU, TF_ENABLE_ONEDNN_OPTS=0
    keras-onednn-on    Keras 3 on TensorFlow CPU, TF_ENABLE_ONEDNN_OPTS=1
    torch              PyTorch CPU, a hand-built VGG16 (no torchvision) in channels_last,
                       torch.optim.RMSprop(alpha=0.9, eps=1e-7); skipped, with a note, when
                       torch is not installed

Method. Each (framework, phase) runs in its own worker process (this script started again
with `--worker KIND --phase PHASE`), driven over stdin/stdout with one JSON object per
line (library output in a worker goes to its stderr, kept in a log file). A process per
framework, because TF_ENABLE_ONEDNN_OPTS must be set before TensorFlow is imported and so
that no framework's thread pools compete with another's; a process per phase too, because
the memory measure is the process's peak resident set size,
resource.getrusage(RUSAGE_SELF).ru_maxrss, which only ever grows: in a process that ran
both phases, the peak of the second phase would hide under the first's. With one process
per phase, each peak belongs to one phase (plus the framework's import and the model, which
are reported separately: the peak after import, after building the model, after the
warm-up, after each round).

The phases run one after the other: the workers of a phase start together (they import in
parallel), build their model and warm up (`--warmup` untimed steps, so tracing, Numba
compilation and allocator warm-up happen before any timing); then `--rounds` rounds, in
each of which every framework in turn (the order rotates from round to round) times
`--steps` consecutive steps, with a short pause before each so that the previous worker's
spinning BLAS/OpenMP threads have gone to sleep; then the phase's workers exit before the
next phase starts, so at most one phase's models are in memory at a time. Ratios compare
frameworks within a phase, measured in the same rounds.

Each (framework, phase) gets one throughput per round, images / second =
batch * steps / (sum of the step times); the table shows the median over the rounds (and
the min-max range), and the ratio

    ratio = minicnn time per image / framework time per image     (< 1: minicnn is faster)

Also recorded:

- Peak memory per (framework, phase) in MiB (ru_maxrss), and whether minicnn stays under
  2 GiB in each phase; the current RSS at the end, too.
- Effective GFLOP/s = analytic FLOPs / median step time, with multiply-add = 2 FLOPs:
  forward conv 2*N*H_out*W_out*K_h*K_w*C_in*C_out, forward dense 2*N*D_in*D_out. predict
  counts the base's forward; train counts the classifier's forward plus the backward of
  the trainable part only: dW + dX (2 x forward) for block5_conv2, block5_conv3 and both
  Dense layers, dW only (1 x) for block5_conv1 (nothing before it needs a gradient).
  Bias, activations, pooling and the optimizer are not counted.
- Where minicnn's time goes: after the rounds, the minicnn predict worker times one
  forward pass of the base layer by layer (seconds and GFLOP/s per block), and the minicnn
  train worker times the classifier's forward pass alone (`model.predict`), to set against
  the training step.
- The machine's sgemm rate: np.matmul of two 2048x2048 float32 matrices, median of 5, in
  the parent process (the BLAS minicnn uses), before and after the phases.
- Versions, CPU model, core count, thread settings of each framework.

Usage:

    python benchmarks/bench_vgg16.py [--rounds 5] [--steps 3] [--warmup 2] [--quick]
                                     [--phases predict train] [--markdown OUT.md]
                                     [--json OUT.json]

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
BLOCKS = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))   # (filters, convs) per block
HEAD_UNITS = 256
LEARNING_RATE = 1e-5
DATA_SEED = 1234
PHASES = ("predict", "train")
EXPECTED = {                            # phase -> (params, trainable params)
    "predict": (14_714_688, 14_714_688),
    "train": (16_812_353, 9_177_089),
}
MEMORY_LIMIT_MIB = 2048                 # the 2 GiB minicnn should stay under
DEFAULTS = {"rounds": 5, "steps": 3, "warmup": 2}
QUICK = {"rounds": 1, "steps": 1, "warmup": 1}      # VGG16 steps take seconds

FRAMEWORKS = {                          # name -> (worker kind, extra environment)
    "minicnn": ("minicnn", {}),
    "keras-onednn-off": ("keras", {"TF_ENABLE_ONEDNN_OPTS": "0"}),
    "keras-onednn-on": ("keras", {"TF_ENABLE_ONEDNN_OPTS": "1"}),
    "torch": ("torch", {}),
}


# ----------------------------------------------------------------------------- FLOPs
def layer_flops(batch: int) -> list[dict]:
    """Analytic FLOPs of every conv and dense layer of the classifier for one batch: forward,
    and backward of the fine-tuning step (0 for the frozen blocks 1-4)."""
    h, w, c = INPUT_SHAPE
    rows = []
    for b, (filters, convs) in enumerate(BLOCKS, start=1):
        for i in range(1, convs + 1):
            fwd = 2 * batch * h * w * 3 * 3 * c * filters          # padding 'same'
            if b < 5:
                bwd = 0
            else:
                bwd = fwd if i == 1 else 2 * fwd                   # block5_conv1: dW only
            rows.append({"layer": f"block{b}_conv{i}", "block": f"block{b}",
                         "forward": fwd, "backward": bwd, "base": True})
            c = filters
        h, w = h // 2, w // 2
    d_in = h * w * c
    for name, units in (("dense", HEAD_UNITS), ("dense_1", 1)):
        fwd = 2 * batch * d_in * units
        rows.append({"layer": name, "block": "head", "forward": fwd, "backward": 2 * fwd,
                     "base": False})
        d_in = units
    return rows


def phase_flops(batch: int, phase: str) -> int:
    rows = layer_flops(batch)
    if phase == "predict":
        return sum(r["forward"] for r in rows if r["base"])
    return sum(r["forward"] + r["backward"] for r in rows)


# ----------------------------------------------------------------------------- memory
def max_rss_mib():
    """Peak resident set size of this process so far, MiB (ru_maxrss: KiB on Linux, bytes
    on macOS)."""
    import resource
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2 ** 20 if sys.platform == "darwin" else peak / 2 ** 10


def rss_mib():
    """Current resident set size, MiB (None where /proc is not available)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20
    except (OSError, ValueError, IndexError):
        return None


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
    def __init__(self, phase):
        if REPO not in sys.path:
            sys.path.insert(0, REPO)
        import numba
        import numpy as np
        import minicnn as mc
        from minicnn import layers, optimizers
        from minicnn.applications import VGG16
        self.import_peak = max_rss_mib()
        self.phase = phase
        self.base = VGG16(weights=None, include_top=False, input_shape=INPUT_SHAPE, seed=0)
        if phase == "predict":
            self.model = self.base
        else:
            self.model = mc.Sequential([self.base, layers.Flatten(),
                                        layers.Dense(HEAD_UNITS, activation="relu"),
                                        layers.Dense(1, activation="sigmoid")], seed=0)
            self.base.trainable = True
            for layer in self.base.layers:
                if not layer.name.startswith("block5"):
                    layer.trainable = False
            self.model.compile(optimizer=optimizers.RMSprop(learning_rate=LEARNING_RATE),
                               loss="binary_crossentropy", metrics=["acc"])
        self.params = self.model.count_params()
        self.trainable = int(sum(w.size for w in self.model.trainable_weights))
        self.data = {}
        self._numba = numba
        self.versions = {"numpy": np.__version__, "numba": numba.__version__,
                         "minicnn": mc.__version__}

    def prepare(self, batch):
        self.data[batch] = make_batch(batch)

    def step(self, batch):
        x, y = self.data[batch]
        if self.phase == "predict":
            return self.model.predict(x, batch_size=batch, verbose=0)
        return self.model.train_on_batch(x, y)

    def profile(self, batch):
        """predict: one forward pass of the base, layer by layer; train: the classifier's
        forward pass alone (model.predict), to set against the training step."""
        x, _ = self.data[batch]
        if self.phase == "train":
            t0 = time.perf_counter()
            self.model.predict(x, batch_size=batch, verbose=0)
            return {"forward_seconds": time.perf_counter() - t0}
        per_layer = []
        for layer in self.base.layers:
            t0 = time.perf_counter()
            x = layer.forward(x)
            per_layer.append({"layer": layer.name, "seconds": time.perf_counter() - t0})
        return {"layers": per_layer}

    def threads(self):
        try:
            layer = self._numba.threading_layer()
        except ValueError:                      # no parallel kernel has run yet
            layer = "not initialised"
        from minicnn.layers import conv
        return {"numba_threads": self._numba.config.NUMBA_NUM_THREADS,
                "numba_threading_layer": layer,
                "conv_inference_workspace_mib": (conv._workspace_limit / 2 ** 20
                                                 if conv._workspace_limit else None),
                **_thread_env()}


class KerasBench:
    def __init__(self, phase):
        import keras
        import numpy as np
        import tensorflow as tf
        from keras import layers
        self.import_peak = max_rss_mib()
        self.phase = phase
        keras.utils.set_random_seed(0)
        self.base = keras.applications.VGG16(weights=None, include_top=False,
                                             input_shape=INPUT_SHAPE)
        if phase == "predict":
            self.model = self.base
        else:
            self.model = keras.Sequential([self.base, layers.Flatten(),
                                           layers.Dense(HEAD_UNITS, activation="relu"),
                                           layers.Dense(1, activation="sigmoid")])
            self.base.trainable = True
            for layer in self.base.layers:
                if not layer.name.startswith("block5"):
                    layer.trainable = False
            self.model.compile(optimizer=keras.optimizers.RMSprop(learning_rate=LEARNING_RATE),
                               loss="binary_crossentropy", metrics=["acc"])
        self.params = self.model.count_params()
        self.trainable = int(sum(np.prod(w.shape) for w in self.model.trainable_weights))
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

    def step(self, batch):
        x, y = self.data[batch]
        if self.phase == "predict":
            return self.model.predict_on_batch(x)
        return self.model.train_on_batch(x, y)

    def threads(self):
        cfg = self._tf.config.threading
        return {"onednn_enabled": self.onednn,
                "TF_ENABLE_ONEDNN_OPTS": os.environ.get("TF_ENABLE_ONEDNN_OPTS"),
                "intra_op_threads": cfg.get_intra_op_parallelism_threads() or "default (0)",
                "inter_op_threads": cfg.get_inter_op_parallelism_threads() or "default (0)",
                "jit_compile": getattr(self.model, "jit_compile", None), **_thread_env()}


class TorchBench:
    def __init__(self, phase):
        import numpy as np
        import torch
        from torch import nn
        self.import_peak = max_rss_mib()
        self.torch = torch
        self.phase = phase
        torch.manual_seed(0)
        blocks, c, h = [], INPUT_SHAPE[2], INPUT_SHAPE[0]
        for filters, convs in BLOCKS:
            stack = []
            for _ in range(convs):
                stack += [nn.Conv2d(c, filters, 3, padding=1), nn.ReLU(inplace=True)]
                c = filters
            stack.append(nn.MaxPool2d(2, 2))
            blocks.append(nn.Sequential(*stack))
            h //= 2
        features = nn.Sequential(*blocks)                   # features[i]: block i + 1
        if phase == "predict":
            self.model = features
        else:
            self.model = nn.Sequential(features, nn.Flatten(),
                                       nn.Linear(h * h * c, HEAD_UNITS), nn.ReLU(inplace=True),
                                       nn.Linear(HEAD_UNITS, 1))  # sigmoid folded into the loss
            for block in features[:4]:
                for p in block.parameters():
                    p.requires_grad_(False)
            self.opt = torch.optim.RMSprop([p for p in self.model.parameters() if p.requires_grad],
                                           lr=LEARNING_RATE, alpha=0.9, eps=1e-7)
            self.loss_fn = nn.BCEWithLogitsLoss()
        self.model = self.model.to(memory_format=torch.channels_last)
        self.params = sum(p.numel() for p in self.model.parameters())
        self.trainable = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        self.data = {}
        self.versions = {"numpy": np.__version__, "torch": torch.__version__}

    def prepare(self, batch):
        x, y = make_batch(batch)
        # NHWC memory viewed as NCHW: that is exactly the channels_last layout.
        xt = self.torch.from_numpy(x).permute(0, 3, 1, 2).contiguous(
            memory_format=self.torch.channels_last)
        self.data[batch] = (xt, self.torch.from_numpy(y))

    def step(self, batch):
        x, y = self.data[batch]
        if self.phase == "predict":
            self.model.eval()
            with self.torch.inference_mode():
                return self.model(x).numpy()
        self.model.train()
        self.opt.zero_grad(set_to_none=True)
        logits = self.model(x)
        loss = self.loss_fn(logits, y)
        loss.backward()
        self.opt.step()
        acc = ((logits.detach() > 0).float() == y).float().mean()
        return [loss.item(), acc.item()]

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


def _memory():
    return {"max_rss_mib": max_rss_mib(), "rss_mib": rss_mib()}


def worker_main(kind: str, phase: str) -> None:
    """A worker: answers one JSON command per stdin line with one JSON line."""
    out = _protocol_channel()

    def send(obj):
        out.write(json.dumps(obj) + "\n")
        out.flush()

    start_peak = max_rss_mib()
    t0 = time.perf_counter()
    try:
        bench = BENCHES[kind](phase)
    except Exception:
        send({"ok": False, "error": traceback.format_exc()})
        return
    send({"ok": True, "setup_seconds": time.perf_counter() - t0, "params": bench.params,
          "trainable": bench.trainable, "versions": bench.versions,
          "python": platform.python_version(),
          "memory": {"start_mib": start_peak, "import_mib": bench.import_peak,
                     "built_mib": max_rss_mib()}})
    for line in sys.stdin:
        msg = json.loads(line)
        try:
            cmd = msg["cmd"]
            if cmd == "quit":
                send({"ok": True})
                return
            if cmd == "run":        # also used for warm-up
                batch = msg["batch"]
                if batch not in bench.data:
                    bench.prepare(batch)
                times = []
                for _ in range(msg["steps"]):
                    t = time.perf_counter()
                    bench.step(batch)
                    times.append(time.perf_counter() - t)
                reply = {"times": times, **_memory()}
            elif cmd == "profile":
                reply = bench.profile(msg["batch"])
            elif cmd == "threads":
                reply = bench.threads()
            else:
                raise ValueError(f"unknown command {cmd!r}")
            send({"ok": True, **reply})
        except Exception:
            send({"ok": False, "error": traceback.format_exc()})


# ----------------------------------------------------------------------------- parent
class WorkerError(RuntimeError):
    pass


class Worker:
    """A worker process of this script, driven over stdin/stdout, its stderr in a log file."""

    def __init__(self, name, kind, phase, extra_env, log_dir):
        self.name = name
        self.log_path = os.path.join(log_dir, f"{name}.{phase}.stderr.log")
        self._log = open(self.log_path, "w")
        env = {**os.environ, **extra_env, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--worker", kind, "--phase", phase],
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
    model, flags, mem = "unknown", set(), None
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
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    mem = int(line.split()[1]) / 2 ** 20            # KiB -> GiB
    except (OSError, ValueError, IndexError):
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {"cpu_model": model, "logical_cpus": os.cpu_count(), "usable_cpus": usable,
            "memory_gib": mem,
            "simd": " ".join(s for s in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_tile")
                             if s in flags),
            "platform": platform.platform(), "python": platform.python_version()}


def sgemm(n=2048, repeats=5):
    """np.matmul rate of two n x n float32 matrices, GFLOP/s (here, in the parent: the same
    NumPy BLAS minicnn calls, and no worker's peak memory is touched)."""
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


def run_phase(phase, names, args, log_dir, log, notes):
    """Start the phase's workers, warm them up, run the interleaved rounds, close them.
    Returns (names that ran, step times per name and round, worker info)."""
    names = list(names)
    workers, info = {}, {}
    raw = {n: [] for n in names}
    try:
        for name in names:                       # start them all; they import in parallel
            kind, env = FRAMEWORKS[name]
            workers[name] = Worker(name, kind, phase, env, log_dir)
        for name in list(names):
            try:
                hello = workers[name].wait_ready()
            except WorkerError as exc:
                if name == "minicnn":
                    raise
                notes.append(f"{name} skipped in phase {phase}: its worker failed to start")
                log(f"{name}: skipped, worker failed to start:\n{exc}")
                workers.pop(name).close()
                names.remove(name)
                raw.pop(name)
                continue
            want = EXPECTED[phase]
            if (hello["params"], hello["trainable"]) != want:
                notes.append(f"{name} {phase} model has {hello['params']:,} params "
                             f"({hello['trainable']:,} trainable), expected {want[0]:,} "
                             f"({want[1]:,})")
            info[name] = {"setup_seconds": hello["setup_seconds"], "params": hello["params"],
                          "trainable": hello["trainable"], "versions": hello["versions"],
                          "python": hello["python"], "memory": dict(hello["memory"])}
            log(f"  {name}: ready in {hello['setup_seconds']:.1f} s, {hello['params']:,} "
                f"params ({hello['trainable']:,} trainable), peak "
                f"{hello['memory']['built_mib']:.0f} MiB with the model built")

        for name in names:
            reply = workers[name].call("run", batch=args.batch_size, steps=args.warmup)
            info[name]["warmup_seconds"] = reply["times"]
            info[name]["memory"]["warm_mib"] = reply["max_rss_mib"]
            info[name]["memory"]["rounds_mib"] = []
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
            log(f"  {name}: warm-up steps " + ", ".join(f"{t:.2f}" for t in reply["times"])
                + f" s, peak {reply['max_rss_mib']:.0f} MiB")

        for r in range(args.rounds):
            order = names[r % len(names):] + names[:r % len(names)]
            parts = []
            for name in order:
                time.sleep(args.pause)
                reply = workers[name].call("run", batch=args.batch_size, steps=args.steps)
                t = reply["times"]
                raw[name].append(t)
                info[name]["memory"]["rounds_mib"].append(reply["max_rss_mib"])
                info[name]["memory"]["end_rss_mib"] = reply["rss_mib"]
                parts.append(f"{name} {args.batch_size * len(t) / sum(t):.1f}")
            log(f"  round {r + 1}/{args.rounds} {phase:7s} img/s: " + ", ".join(parts))
        for name in names:
            info[name]["memory"]["peak_mib"] = info[name]["memory"]["rounds_mib"][-1]

        if "minicnn" in workers and not args.skip_profile:
            time.sleep(args.pause)
            prof = workers["minicnn"].call("profile", batch=args.batch_size)
            info["minicnn"]["profile"] = {k: v for k, v in prof.items() if k != "ok"}
    finally:
        for w in workers.values():
            w.close()
    return names, raw, info


def summarise(raw, phases, batch):
    """Per (framework, phase): per-round images/s, median, min, max, ratio, GFLOP/s."""
    rows = {}
    for phase in phases:
        for name, rounds in raw[phase].items():
            per_round = [batch * len(t) / sum(t) for t in rounds]
            if not per_round:
                continue
            med = statistics.median(per_round)
            rows[(name, phase)] = {
                "images_per_second": med, "min": min(per_round), "max": max(per_round),
                "per_round": per_round, "seconds_per_step": batch / med,
                "gflops": phase_flops(batch, phase) * med / batch / 1e9}
    for (name, phase), row in rows.items():
        base = rows.get(("minicnn", phase))
        # minicnn time / framework time = framework images/s / minicnn images/s
        row["ratio"] = row["images_per_second"] / base["images_per_second"] if base else None
    return rows


def _table(head, body, left, markdown):
    if markdown:
        lines = ["| " + " | ".join(head) + " |",
                 "|" + "|".join(["---"] * left + ["---:"] * (len(head) - left)) + "|"]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in body])
    widths = [max(len(x) for x in col) for col in zip(head, *body)]
    fmt = lambda r: "  ".join(x.ljust(w) if i < left else x.rjust(w)   # noqa: E731
                              for i, (x, w) in enumerate(zip(r, widths)))
    return "\n".join([fmt(head), "  ".join("-" * w for w in widths)] + [fmt(r) for r in body])


def format_speed(rows, names, phases, markdown=False):
    label = {"predict": "predict (conv base)", "train": "train (fine-tune)"}
    head = ["framework"]
    for phase in phases:
        head += [f"{label[phase]} img/s", f"{phase} ratio", f"{phase} GFLOP/s"]

    def ips(r):
        if len(r["per_round"]) > 1:
            return f"{r['images_per_second']:.2f} ({r['min']:.2f}-{r['max']:.2f})"
        return f"{r['images_per_second']:.2f}"

    body = []
    for name in names:
        if not any((name, p) in rows for p in phases):
            continue
        line = [name]
        for phase in phases:
            r = rows.get((name, phase))
            line += [ips(r), f"{r['ratio']:.2f}" if r["ratio"] is not None else "-",
                     f"{r['gflops']:.1f}"] if r else ["-", "-", "-"]
        body.append(line)
    return _table(head, body, 1, markdown)


def format_memory(info, names, phases, markdown=False):
    head = ["framework", "phase", "after import MiB", "model built MiB", "after warm-up MiB",
            "peak MiB", "RSS at end MiB"]
    body = []
    fmt = lambda v: "-" if v is None else f"{v:.0f}"                    # noqa: E731
    for name in names:
        for phase in phases:
            m = info.get(phase, {}).get(name, {}).get("memory")
            if not m:
                continue
            body.append([name, phase, fmt(m["import_mib"]), fmt(m["built_mib"]),
                         fmt(m.get("warm_mib")), fmt(m.get("peak_mib")),
                         fmt(m.get("end_rss_mib"))])
    return _table(head, body, 2, markdown)


def memory_verdicts(info, phases):
    lines = []
    for phase in phases:
        m = info.get(phase, {}).get("minicnn", {}).get("memory")
        if m and m.get("peak_mib") is not None:
            ok = m["peak_mib"] < MEMORY_LIMIT_MIB
            lines.append(f"minicnn {phase}: peak {m['peak_mib']:.0f} MiB = "
                         f"{m['peak_mib'] * 2 ** 20 / 1e9:.2f} GB -> "
                         f"{'under' if ok else 'NOT under'} 2 GiB ({MEMORY_LIMIT_MIB} MiB)")
    return lines


def profile_lines(report):
    """Where minicnn's time goes, from the profile commands."""
    batch = report["args"]["batch_size"]
    lines = []
    prof = report["workers"].get("predict", {}).get("minicnn", {}).get("profile")
    if prof:
        flops = {r["layer"]: r["forward"] for r in layer_flops(batch)}
        blocks = {}
        for entry in prof["layers"]:
            b = entry["layer"].split("_")[0]
            s = blocks.setdefault(b, {"conv": 0.0, "pool": 0.0, "flops": 0})
            s["pool" if entry["layer"].endswith("pool") else "conv"] += entry["seconds"]
            s["flops"] += flops.get(entry["layer"], 0)
        total = sum(e["seconds"] for e in prof["layers"])
        parts = [f"{b} {s['conv']:.2f} s conv ({s['flops'] / s['conv'] / 1e9:.0f} GFLOP/s) "
                 f"+ {s['pool'] * 1e3:.0f} ms pool" for b, s in blocks.items() if s["conv"] > 0]
        lines.append(f"minicnn base forward, layer by layer (batch {batch}, {total:.2f} s): "
                     + "; ".join(parts))
    prof = report["workers"].get("train", {}).get("minicnn", {}).get("profile")
    row = report["rows"].get("minicnn/train")
    if prof and row:
        fwd, step = prof["forward_seconds"], row["seconds_per_step"]
        lines.append(f"minicnn train step {step:.2f} s (median), of which the classifier's "
                     f"forward pass alone (model.predict) takes {fwd:.2f} s "
                     f"({100 * fwd / step:.0f} %); the rest is caching, the backward of block5 "
                     f"+ head and RMSprop")
    return lines


def details_lines(report):
    """The machine, versions, threads, sgemm, setup and profile facts, as plain lines."""
    m, v = report["machine"], report["versions"]
    batch = report["args"]["batch_size"]
    mem = f", {m['memory_gib']:.0f} GiB RAM" if m.get("memory_gib") else ""
    lines = [f"CPU: {m['cpu_model']}, {m['logical_cpus']} logical CPUs "
             f"({m['usable_cpus']} usable){mem}, SIMD: {m['simd'] or '-'}; {m['platform']}; "
             f"load average {m.get('load_average_start')} at start, "
             f"{m.get('load_average_end')} at end",
             "Versions: " + ", ".join(f"{k} {v[k]}" for k in
                                      ("python", "numpy", "numba", "keras", "tensorflow",
                                       "torch") if k in v),
             "Weights: random (minicnn and Keras VGG16(weights=None), PyTorch default init); "
             "same architecture and arithmetic as with the ImageNet weights",
             f"FLOPs per batch of {batch}: predict {phase_flops(batch, 'predict') / 1e9:.1f} "
             f"GFLOP (conv base forward), train {phase_flops(batch, 'train') / 1e9:.1f} GFLOP "
             f"(classifier forward + backward of block5 and head)"]
    s = report.get("sgemm", {})
    if s:
        parts = [f"{k} {s[k]['gflops_median']:.1f} GFLOP/s" for k in ("before", "after")
                 if k in s]
        lines.append("sgemm (np.matmul 2048x2048 float32, median of 5): " + ", ".join(parts))
    lines += memory_verdicts(report["workers"], report["args"]["phases"])
    lines += profile_lines(report)
    for phase, workers in report["workers"].items():
        for name, w in workers.items():
            lines.append(f"{name} {phase}: setup {w['setup_seconds']:.1f} s, warm-up steps "
                         + ", ".join(f"{t:.2f}" for t in w["warmup_seconds"]) + " s; threads "
                         + ", ".join(f"{k}={val}" for k, val in w["threads"].items()))
    for note in report["notes"]:
        lines.append(f"Note: {note}")
    return lines


def write_markdown(path, report, speed_md, memory_md):
    a = report["args"]
    section = [f"## VGG16 conv base: inference and fine-tuning step, {report['date']}", "",
               f"`{report['command']}` — input 150×150×3, batch {a['batch_size']}; "
               f"{a['rounds']} round(s) of {a['steps']} timed step(s) per framework and phase "
               f"after {a['warmup']} warm-up step(s); median images/s over the rounds "
               f"(min-max); ratio = minicnn time / framework time (< 1: minicnn is faster); "
               f"GFLOP/s from the analytic conv + dense FLOPs.", "", speed_md, "",
               "Peak memory (max RSS, `ru_maxrss`) of each worker process, one process per "
               "framework and phase:", "", memory_md, "",
               "```"] + details_lines(report) + ["```", ""]
    mode = "a" if os.path.exists(path) else "w"
    with open(path, mode) as f:
        if mode == "a":
            f.write("\n")
        f.write("\n".join(section))


def estimate_default_seconds(report):
    """What a default run (DEFAULTS rounds/steps/warm-up) would take, from this run's
    measured setup, warm-up and step times."""
    total = 0.0
    pause = report["args"]["pause"]
    for phase, workers in report["workers"].items():
        if not workers:
            continue
        total += max(w["setup_seconds"] for w in workers.values())
        for name, w in workers.items():
            step = report["rows"][f"{name}/{phase}"]["seconds_per_step"]
            first = w["warmup_seconds"][0]
            total += first + (DEFAULTS["warmup"] - 1) * step
            total += DEFAULTS["rounds"] * (DEFAULTS["steps"] * step + pause)
        total += report["rows"][f"minicnn/{phase}"]["seconds_per_step"]     # the profile
    return total + 10                                       # sgemm, pauses, process exits


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch-size", type=int, default=20, help="default 20 (the lecture's)")
    p.add_argument("--rounds", type=int, default=DEFAULTS["rounds"],
                   help=f"interleaved rounds per phase (default {DEFAULTS['rounds']})")
    p.add_argument("--steps", type=int, default=DEFAULTS["steps"],
                   help=f"timed steps per framework and phase in a round "
                        f"(default {DEFAULTS['steps']}; a VGG16 step takes seconds)")
    p.add_argument("--warmup", type=int, default=DEFAULTS["warmup"],
                   help=f"untimed steps when a worker starts (default {DEFAULTS['warmup']})")
    p.add_argument("--pause", type=float, default=0.5,
                   help="seconds of rest before each measurement, so the previous worker's "
                        "threads go idle (default 0.5)")
    p.add_argument("--quick", action="store_true",
                   help=f"smoke test: {QUICK['rounds']} round, {QUICK['steps']} step, "
                        f"{QUICK['warmup']} warm-up step (about 2-3 minutes on 2 cores)")
    p.add_argument("--phases", nargs="+", choices=PHASES, default=list(PHASES),
                   help="predict (conv base inference) and/or train (fine-tuning step)")
    p.add_argument("--frameworks", nargs="+", choices=list(FRAMEWORKS), default=list(FRAMEWORKS),
                   help="subset to run (minicnn is always included: it is the baseline)")
    p.add_argument("--skip-profile", action="store_true",
                   help="do not time minicnn's forward pass layer by layer after the rounds")
    p.add_argument("--markdown", metavar="OUT.md",
                   help="append (or write) a Markdown section with the tables and machine block")
    p.add_argument("--json", metavar="OUT.json", help="write every measurement as JSON")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--phase", choices=PHASES, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.rounds, args.steps, args.warmup = QUICK["rounds"], QUICK["steps"], QUICK["warmup"]
    for name in ("rounds", "steps", "batch_size"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.warmup < 1:
        p.error("--warmup must be at least 1 (the first call traces/compiles)")
    if "minicnn" not in args.frameworks:
        args.frameworks.insert(0, "minicnn")
    args.phases = [ph for ph in PHASES if ph in args.phases]
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        return worker_main(args.worker, args.phase)

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
    log(f"CPU {machine['cpu_model']}, {machine['usable_cpus']} usable CPUs; VGG16 at "
        f"{'x'.join(map(str, INPUT_SHAPE))}, batch {args.batch_size}, phases {args.phases}, "
        f"{args.rounds} round(s) x {args.steps} step(s), {args.warmup} warm-up step(s)")

    sgemm_rates = {"before": sgemm()}
    log(f"sgemm 2048^3 float32: {sgemm_rates['before']['gflops_median']:.1f} GFLOP/s")
    log_dir = tempfile.mkdtemp(prefix="bench_vgg16-")
    raw, info, ran = {}, {}, {}
    for phase in args.phases:
        log(f"phase {phase}: starting {len(names)} workers ...")
        ran[phase], raw[phase], info[phase] = run_phase(phase, names, args, log_dir, log, notes)
    time.sleep(args.pause)
    sgemm_rates["after"] = sgemm()
    log(f"sgemm after the phases: {sgemm_rates['after']['gflops_median']:.1f} GFLOP/s")

    machine["load_average_end"] = load_average()
    versions = {"python": machine["python"]}
    for phase in args.phases:
        for w in info[phase].values():
            versions.update(w["versions"])
    rows = summarise(raw, args.phases, args.batch_size)
    shown = [n for n in names if any(n in ran[ph] for ph in args.phases)]
    report = {
        "date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "command": "python benchmarks/bench_vgg16.py " + shlex.join(
            sys.argv[1:] if argv is None else argv),
        "args": {"batch_size": args.batch_size, "rounds": args.rounds, "steps": args.steps,
                 "warmup": args.warmup, "pause": args.pause, "phases": args.phases,
                 "frameworks": shown},
        "machine": machine, "versions": versions, "sgemm": sgemm_rates, "workers": info,
        "notes": notes, "memory_limit_mib": MEMORY_LIMIT_MIB,
        "flops_per_batch": {ph: phase_flops(args.batch_size, ph) for ph in PHASES},
        "rows": {f"{n}/{ph}": row for (n, ph), row in rows.items()},
        "raw_step_seconds": raw,
    }
    report["total_seconds"] = time.perf_counter() - started

    log("")
    log("images/second, median over rounds (min-max); ratio = minicnn time / framework time "
        "(< 1: minicnn is faster)")
    log(format_speed(rows, shown, args.phases))
    log("")
    log("peak memory (max RSS) per worker process, MiB")
    log(format_memory(info, shown, args.phases))
    log("")
    for line in details_lines(report):
        log(line)
    log(f"total time {report['total_seconds']:.0f} s; worker logs in {log_dir}")
    if (args.rounds, args.steps, args.warmup) != tuple(DEFAULTS.values()) \
            and args.batch_size == 20 and set(args.phases) == set(PHASES):
        est = estimate_default_seconds(report)
        report["estimated_default_run_seconds"] = est
        log(f"a default run ({DEFAULTS['rounds']} rounds x {DEFAULTS['steps']} steps, "
            f"{DEFAULTS['warmup']} warm-up steps) would take about {est / 60:.0f} min on this "
            f"machine at its current load")
    if args.markdown:
        write_markdown(args.markdown, report, format_speed(rows, shown, args.phases, True),
                       format_memory(info, shown, args.phases, True))
        log(f"Markdown section written to {args.markdown}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
        log(f"JSON written to {args.json}")


if __name__ == "__main__":
    sys.exit(main())
