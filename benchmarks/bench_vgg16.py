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
    minicnn-im2col     the same with Winograd's algorithm turned off: every convolution
                       by im2col, as before Winograd (what it gains, measured side by side)
    keras-onednn-off   Keras 3 on TensorFlow CPU, TF_ENABLE_ONEDNN_OPTS=0
    keras-onednn-on    Keras 3 on TensorFlow CPU, TF_ENABLE_ONEDNN_OPTS=1
    torch              PyTorch CPU, a hand-built VGG16 (no torchvision) in channels_last,
                       torch.optim.RMSprop(alpha=0.9, eps=1e-7); skipped, with a note, when
                       torch is not installed

Method: the one of harness.py (worker processes driven over stdin/stdout, warm-up,
interleaved rounds in rotating order, medians with min-max), with a worker process per
framework *and per phase* (this script started again with `--worker KIND --phase PHASE`).
Per phase too, because the memory measure is the process's peak resident set size,
resource.getrusage(RUSAGE_SELF).ru_maxrss, which only ever grows: in a process that ran
both phases, the peak of the second phase would hide under the first's. With one process
per phase, each peak belongs to one phase (plus the framework's import and the model, which
are reported separately: the peak after import, after building the model, after the
warm-up, after each round).

The phases run one after the other: the workers of a phase start together, build their
model and run `--warmup` untimed steps; then `--rounds` rounds, in each of which every
framework in turn times `--steps` consecutive steps; then the phase's workers exit before
the next phase starts, so at most one phase's models are in memory at a time. Ratios
compare frameworks within a phase, measured in the same rounds.

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
- The machine's sgemm rate (np.matmul 2048x2048 float32, see harness.py), in the parent
  process (the BLAS minicnn uses; no worker's peak memory is touched), before and after
  the phases.
- Versions, CPU model, core count, thread settings of each framework.

Usage:

    python benchmarks/bench_vgg16.py [--rounds 5] [--steps 3] [--warmup 2] [--quick]
                                     [--phases predict train] [--markdown OUT.md]
                                     [--json OUT.json]

Run it on an otherwise idle machine: every framework uses all cores.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import harness
from harness import FRAMEWORKS

INPUT_SHAPE = (150, 150, 3)
BLOCKS = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))   # (filters, convs) per block
HEAD_UNITS = 256
LEARNING_RATE = 1e-5
PHASES = ("predict", "train")
EXPECTED = {                            # phase -> (params, trainable params)
    "predict": (14_714_688, 14_714_688),
    "train": (16_812_353, 9_177_089),
}
MEMORY_LIMIT_MIB = 2048                 # the 2 GiB minicnn should stay under
DEFAULTS = {"rounds": 5, "steps": 3, "warmup": 2}
QUICK = {"rounds": 1, "steps": 1, "warmup": 1}      # VGG16 steps take seconds


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
def rss_mib():
    """Current resident set size, MiB (None where /proc is not available)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20
    except (OSError, ValueError, IndexError):
        return None


# ----------------------------------------------------------------------------- workers
class MinicnnBench:
    def __init__(self, phase):
        harness.import_minicnn_from_repo()
        import numba
        import numpy as np
        import minicnn as mc
        from minicnn import layers, optimizers
        from minicnn.applications import VGG16
        self.import_peak = harness.max_rss_mib()
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
        self.data[batch] = harness.random_batch(batch, INPUT_SHAPE)

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
        from minicnn.layers import conv_algorithms
        limit = conv_algorithms.current_settings().workspace_limit
        return {**harness.numba_threads(self._numba),
                "conv_inference_workspace_mib": limit / 2 ** 20 if limit else None,
                **harness.thread_env()}


class KerasBench:
    def __init__(self, phase):
        import keras
        import numpy as np
        import tensorflow as tf
        from keras import layers
        self.import_peak = harness.max_rss_mib()
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
        self.onednn = harness.onednn_enabled()
        self.versions = {"numpy": np.__version__, "keras": keras.__version__,
                         "tensorflow": tf.__version__}

    def prepare(self, batch):
        self.data[batch] = harness.random_batch(batch, INPUT_SHAPE)

    def step(self, batch):
        x, y = self.data[batch]
        if self.phase == "predict":
            return self.model.predict_on_batch(x)
        return self.model.train_on_batch(x, y)

    def threads(self):
        return harness.keras_threads(self._tf, self.model, self.onednn)


class TorchBench:
    def __init__(self, phase):
        import numpy as np
        import torch
        from torch import nn
        self.import_peak = harness.max_rss_mib()
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
        self.data[batch] = harness.torch_batch(self.torch,
                                               *harness.random_batch(batch, INPUT_SHAPE))

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
        return harness.torch_threads(self.torch)


BENCHES = {"minicnn": MinicnnBench, "keras": KerasBench, "torch": TorchBench}


def run_steps(bench, batch, steps):
    """The "run" command (also the warm-up): `steps` timed steps, then the memory readings."""
    if batch not in bench.data:
        bench.prepare(batch)
    times = harness.time_calls(lambda: bench.step(batch), steps)
    return {"times": times, "max_rss_mib": harness.max_rss_mib(), "rss_mib": rss_mib()}


def worker_main(kind: str, phase: str) -> None:
    start_peak = harness.max_rss_mib()
    harness.serve(lambda: BENCHES[kind](phase),
                  {"run": run_steps,
                   "profile": lambda bench, **kw: bench.profile(**kw),
                   "threads": lambda bench: bench.threads()},
                  hello=lambda bench: {
                      "params": bench.params, "trainable": bench.trainable,
                      "memory": {"start_mib": start_peak, "import_mib": bench.import_peak,
                                 "built_mib": harness.max_rss_mib()}})


# ----------------------------------------------------------------------------- parent
def run_phase(phase, names, args, log_dir, log, notes):
    """Start the phase's workers, warm them up, run the interleaved rounds, close them.
    Returns (names that ran, step times per name and round, worker info)."""
    workers, info = {}, {}

    def spawn(name):
        kind, env = FRAMEWORKS[name]
        return harness.Worker(name, __file__, ["--worker", kind, "--phase", phase], env,
                              os.path.join(log_dir, f"{name}.{phase}.stderr.log"))

    def ready(name, hello):
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

    try:
        workers = harness.start_workers(names, spawn, ready, log, notes,
                                        context=f" in phase {phase}")
        names = list(workers)
        raw = {n: [] for n in names}

        for name in names:
            reply = workers[name].call("run", batch=args.batch_size, steps=args.warmup)
            info[name]["warmup_seconds"] = reply["times"]
            info[name]["memory"]["warm_mib"] = reply["max_rss_mib"]
            info[name]["memory"]["rounds_mib"] = []
            info[name]["threads"] = workers[name].call("threads")
            harness.check_onednn(name, workers[name], info[name]["threads"], notes)
            log(f"  {name}: warm-up steps " + ", ".join(f"{t:.2f}" for t in reply["times"])
                + f" s, peak {reply['max_rss_mib']:.0f} MiB")

        for r in range(args.rounds):
            parts = []
            for name in harness.turns(names, r, args.pause):
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
            info["minicnn"]["profile"] = workers["minicnn"].call("profile", batch=args.batch_size)
    finally:
        harness.close_all(workers)
    return names, raw, info


def summarise(raw, phases, batch):
    """Per (framework, phase): per-round images/s, median, min, max, ratio, GFLOP/s."""
    rows = {}
    for phase in phases:
        for name, rounds in raw[phase].items():
            per_round = [batch * len(t) / sum(t) for t in rounds]
            if not per_round:
                continue
            row = rows[(name, phase)] = harness.median_row(per_round)
            med = row["images_per_second"]
            row.update({"seconds_per_step": batch / med,
                        "gflops": phase_flops(batch, phase) * med / batch / 1e9})
    # minicnn time / framework time = framework images/s / minicnn images/s
    harness.add_ratios(rows, lambda key: ("minicnn", key[1]))
    return rows


def format_speed(rows, names, phases, markdown=False):
    label = {"predict": "predict (conv base)", "train": "train (fine-tune)"}
    head = ["framework"]
    for phase in phases:
        head += [f"{label[phase]} img/s", f"{phase} ratio", f"{phase} GFLOP/s"]
    body = []
    for name in names:
        if not any((name, p) in rows for p in phases):
            continue
        line = [name]
        for phase in phases:
            r = rows.get((name, phase))
            line += [harness.median_range(r, digits=2),
                     f"{r['ratio']:.2f}" if r["ratio"] is not None else "-",
                     f"{r['gflops']:.1f}"] if r else ["-", "-", "-"]
        body.append(line)
    return harness.table(head, body, 1, markdown)


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
    return harness.table(head, body, 2, markdown)


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
    batch = report["args"]["batch_size"]
    lines = [harness.cpu_line(report["machine"], memory=True),
             harness.versions_line(report["versions"]),
             "Weights: random (minicnn and Keras VGG16(weights=None), PyTorch default init); "
             "same architecture and arithmetic as with the ImageNet weights",
             f"FLOPs per batch of {batch}: predict {phase_flops(batch, 'predict') / 1e9:.1f} "
             f"GFLOP (conv base forward), train {phase_flops(batch, 'train') / 1e9:.1f} GFLOP "
             f"(classifier forward + backward of block5 and head)"]
    lines += harness.sgemm_lines(report.get("sgemm", {}))
    lines += memory_verdicts(report["workers"], report["args"]["phases"])
    lines += profile_lines(report)
    for phase, workers in report["workers"].items():
        for name, w in workers.items():
            lines.append(f"{name} {phase}: setup {w['setup_seconds']:.1f} s, warm-up steps "
                         + ", ".join(f"{t:.2f}" for t in w["warmup_seconds"]) + " s; threads "
                         + ", ".join(f"{k}={val}" for k, val in w["threads"].items()))
    return lines + harness.note_lines(report["notes"])


def write_markdown(path, report, speed_md, memory_md):
    a = report["args"]
    harness.append_markdown(
        path, f"## VGG16 conv base: inference and fine-tuning step, {report['date']}",
        [f"`{report['command']}` — input 150×150×3, batch {a['batch_size']}; "
         f"{a['rounds']} round(s) of {a['steps']} timed step(s) per framework and phase "
         f"after {a['warmup']} warm-up step(s); median images/s over the rounds "
         f"(min-max); ratio = minicnn time / framework time (< 1: minicnn is faster); "
         f"GFLOP/s from the analytic conv + dense FLOPs.", speed_md,
         "Peak memory (max RSS, `ru_maxrss`) of each worker process, one process per "
         "framework and phase:", memory_md],
        details_lines(report))


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
    p = harness.argument_parser(__doc__)
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
    harness.add_frameworks_option(p, import_order=False)
    p.add_argument("--skip-profile", action="store_true",
                   help="do not time minicnn's forward pass layer by layer after the rounds")
    harness.add_output_options(p, "the tables")
    p.add_argument("--phase", choices=PHASES, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.rounds, args.steps, args.warmup = QUICK["rounds"], QUICK["steps"], QUICK["warmup"]
    harness.check_counts(p, args, ("rounds", "steps", "batch_size"),
                         "the first call traces/compiles")
    if "minicnn" not in args.frameworks:
        args.frameworks.insert(0, "minicnn")
    args.phases = [ph for ph in PHASES if ph in args.phases]
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        return worker_main(args.worker, args.phase)

    started = time.perf_counter()
    log = harness.log
    names = [n for n in FRAMEWORKS if n in args.frameworks]
    notes = []
    harness.skip_missing_torch(names, notes, log)
    machine = harness.machine_at_start(notes, log)
    log(f"CPU {machine['cpu_model']}, {machine['usable_cpus']} usable CPUs; VGG16 at "
        f"{'x'.join(map(str, INPUT_SHAPE))}, batch {args.batch_size}, phases {args.phases}, "
        f"{args.rounds} round(s) x {args.steps} step(s), {args.warmup} warm-up step(s)")

    sgemm_rates = {"before": harness.sgemm()}
    log(f"sgemm 2048^3 float32: {sgemm_rates['before']['gflops_median']:.1f} GFLOP/s")
    log_dir = tempfile.mkdtemp(prefix="bench_vgg16-")
    raw, info, ran = {}, {}, {}
    for phase in args.phases:
        log(f"phase {phase}: starting {len(names)} workers ...")
        ran[phase], raw[phase], info[phase] = run_phase(phase, names, args, log_dir, log, notes)
    time.sleep(args.pause)
    sgemm_rates["after"] = harness.sgemm()
    log(f"sgemm after the phases: {sgemm_rates['after']['gflops_median']:.1f} GFLOP/s")

    machine["load_average_end"] = harness.load_average()
    versions = {"python": machine["python"]}
    for phase in args.phases:
        for w in info[phase].values():
            versions.update(w["versions"])
    rows = summarise(raw, args.phases, args.batch_size)
    shown = [n for n in names if any(n in ran[ph] for ph in args.phases)]
    report = {
        **harness.report_header(__file__, argv),
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
    harness.write_outputs(args, report, lambda path: write_markdown(
        path, report, format_speed(rows, shown, args.phases, True),
        format_memory(info, shown, args.phases, True)), log)


if __name__ == "__main__":
    sys.exit(main())
