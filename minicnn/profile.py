"""Where a convnet's time goes: each layer's forward and backward, timed inside real steps.

`profile(model, x, y)` runs a few ordinary training steps (`train_on_batch`) or predictions
and times every call of every layer's forward and backward methods as the model makes them
(the fused pooling + ReLU backward is the pooling's; the convolution's backward from there
is the convolution's; at inference a Winograd convolution that computes the pooling after
it in its own output pass takes the pooling's time too, and the pooling shows none; a
nested conv base counts layer by layer). Per layer it reports the
median over the steps of

    milliseconds        forward and backward
    FLOPs               the direct convolution's count, whatever algorithm runs:
                        Conv2D  forward 2 N H_out W_out K_h K_w C_in C_out; backward the same
                                for dW, and again for dX when the layer needs its input's
                                gradient (not the first trainable layer)
                        Dense   forward 2 N D_in D_out; backward likewise
                        others  none counted: memory-bound passes
    GFLOP/s             FLOPs / time
    % of sgemm          GFLOP/s / the machine's float32 matrix-product rate, measured on
                        the spot (np.matmul of two 2048 x 2048 matrices): how near each
                        layer runs to the best the BLAS does on this CPU

and, beside the layers, the optimizer's update and the rest of the step (loss, metrics,
the casts): the rows add up to the measured step.
"""
from __future__ import annotations

import dataclasses
import statistics
import time

import numpy as np

from minicnn import runtime

# Methods through which a model's step runs a layer, and the phase each belongs to.
TIMED = {"forward": "forward", "forward_before_pooling": "forward", "forward_pooled": "forward",
         "forward_after_conv": "forward", "backward": "backward",
         "backward_from_logits": "backward", "backward_from_dz": "backward",
         "backward_through_relu": "backward"}


@dataclasses.dataclass
class LayerProfile:
    name: str
    type: str
    output_shape: tuple
    forward_ms: float = 0.0
    backward_ms: float = 0.0
    forward_flops: int = 0
    backward_flops: int = 0


@dataclasses.dataclass
class Profile:
    mode: str                     # 'train' or 'predict'
    batch: int
    steps: int
    step_ms: float                # median measured step
    sgemm_gflops: float
    layers: list
    optimizer_ms: float = 0.0
    other_ms: float = 0.0         # median of (step - everything timed inside it)

    def to_dict(self) -> dict:
        return {**{k: v for k, v in dataclasses.asdict(self).items() if k != "layers"},
                "layers": [dataclasses.asdict(r) for r in self.layers]}


def sgemm_gflops(n: int = 2048, repeats: int = 5) -> float:
    """np.matmul rate of two n x n float32 matrices (median of `repeats`, after one call)."""
    rng = np.random.default_rng(0)
    a, b = rng.random((n, n), dtype=np.float32), rng.random((n, n), dtype=np.float32)
    np.matmul(a, b)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        np.matmul(a, b)
        times.append(time.perf_counter() - start)
    return 2 * n ** 3 / statistics.median(times) / 1e9


def forward_flops(layer, batch: int) -> int:
    """Multiply-adds x 2 of the layer's forward on a batch (0 for memory-bound layers)."""
    kind = type(layer).__name__
    if kind == "Conv2D":
        _, h, w, c_out = layer.output_shape
        k_h, k_w = layer.kernel_size
        return 2 * batch * h * w * k_h * k_w * layer.input_shape[-1] * c_out
    if kind == "Dense":
        return 2 * batch * layer.input_shape[-1] * layer.units
    return 0


class _Timer:
    """Wraps the timed methods of each layer (instance attributes, removed afterwards) and
    adds each call's seconds to its layer's phase, and to the FLOPs of the backward the
    weight and input gradients it computed."""

    def __init__(self, model, batch: int):
        self.layers = model.leaf_layers()
        self.batch = batch
        self.seconds = {}
        self.backward_flops = {}
        self.optimizer = getattr(model, "optimizer", None)

    def reset(self):
        self.seconds = {(id(layer), phase): 0.0 for layer in self.layers
                        for phase in ("forward", "backward")}
        self.seconds["optimizer"] = 0.0
        self.backward_flops = {id(layer): 0 for layer in self.layers}

    def _wrap(self, owner, method_name, key, layer=None):
        method = getattr(owner, method_name)

        def timed(*args, **kwargs):
            start = time.perf_counter()
            result = method(*args, **kwargs)
            self.seconds[key] += time.perf_counter() - start
            if layer is not None and method_name in ("backward", "backward_from_logits",
                                                     "backward_from_dz"):
                flops = forward_flops(layer, self.batch)
                need_dx = kwargs.get("need_dx", True)
                self.backward_flops[id(layer)] += flops * (2 if need_dx else 1)
            return result

        setattr(owner, method_name, timed)

    def __enter__(self):
        self.reset()
        for layer in self.layers:
            for name, phase in TIMED.items():
                if hasattr(layer, name):
                    self._wrap(layer, name, (id(layer), phase), layer)
        if self.optimizer is not None:
            self._wrap(self.optimizer, "apply", "optimizer")
        return self

    def __exit__(self, *exc):
        for layer in self.layers:
            for name in TIMED:
                layer.__dict__.pop(name, None)
        if self.optimizer is not None:
            self.optimizer.__dict__.pop("apply", None)


def random_batch(model, batch: int, seed: int = 0):
    """Images in [0, 1) of the model's input shape, and 0/1 labels of its output shape."""
    if model.input_shape is None:
        raise ValueError(f"profile: {model.name} has no input shape; build it first or give "
                         f"its first layer input_shape=")
    rng = np.random.default_rng(seed)
    x = rng.random((batch,) + tuple(model.input_shape[1:]), dtype=np.float32)
    y = rng.integers(0, 2, (batch,) + tuple(model.output_shape[1:])).astype(np.float32)
    return x, y


def profile(model, x, y=None, mode: str = "train", steps: int = 5, warmup: int = 2,
            sgemm: float | None = None) -> Profile:
    """Time `steps` training steps (mode='train', labels y; the model compiled) or
    predictions (mode='predict') on the batch x, after `warmup` untimed ones."""
    if mode not in ("train", "predict"):
        raise ValueError(f"profile: mode must be 'train' or 'predict'; received {mode!r}")
    if steps < 1 or warmup < 0:
        raise ValueError(f"profile: expected steps >= 1 and warmup >= 0; received "
                         f"steps={steps}, warmup={warmup}")
    if mode == "train" and y is None:
        raise ValueError("profile: mode='train' needs labels y")
    batch = len(x)

    def step():
        if mode == "train":
            model.train_on_batch(x, y)
        else:
            model.predict(x, batch_size=batch, verbose=0)

    for _ in range(warmup):
        step()
    timer = _Timer(model, batch)
    totals, per_step = [], []
    with timer:
        for _ in range(steps):
            timer.reset()
            start = time.perf_counter()
            step()
            totals.append(time.perf_counter() - start)
            per_step.append((dict(timer.seconds), dict(timer.backward_flops)))

    def median(key):
        return 1000 * statistics.median(seconds[key] for seconds, _ in per_step)

    rows = [LayerProfile(layer.name, type(layer).__name__, layer.output_shape,
                         median((id(layer), "forward")), median((id(layer), "backward")),
                         forward_flops(layer, batch), per_step[-1][1][id(layer)])
            for layer in timer.layers]
    rest = [total - sum(seconds.values()) for total, (seconds, _) in zip(totals, per_step)]
    return Profile(mode, batch, steps, 1000 * statistics.median(totals),
                   sgemm if sgemm is not None else sgemm_gflops(), rows,
                   median("optimizer"),
                   1000 * max(statistics.median(rest), 0.0))


def _rate(flops, ms):
    return flops / ms / 1e6 if flops and ms > 0 else None


def format_profile(result: Profile) -> str:
    """The profile as a table: a row per layer, then the optimizer, the rest, the total."""
    def cell(value, fmt):
        return format(value, fmt) if value is not None else "-"

    head = (f"{'Layer (type)':<32} {'Output shape':<21} {'fwd ms':>7} {'bwd ms':>7} "
            f"{'GFLOP':>7} {'fwd GFLOP/s':>11} {'bwd GFLOP/s':>11} {'% sgemm':>11}")
    core = runtime.OPENBLAS_CORE
    kernels = f" (OpenBLAS's {core} kernels)" if core else ""
    lines = [f"{result.mode}, batch {result.batch}: median of {result.steps} steps; "
             f"sgemm (float32 2048^3) {result.sgemm_gflops:.1f} GFLOP/s on this machine"
             f"{kernels}",
             head, "-" * len(head)]
    total_flops = 0
    for r in result.layers:
        flops = r.forward_flops + (r.backward_flops if result.mode == "train" else 0)
        total_flops += flops
        fwd, bwd = _rate(r.forward_flops, r.forward_ms), _rate(r.backward_flops, r.backward_ms)
        share = " / ".join(cell(g and 100 * g / result.sgemm_gflops, ".0f") for g in (fwd, bwd)
                           ) if fwd or bwd else "-"
        shape = "(None, " + ", ".join(str(d) for d in r.output_shape[1:]) + ")"
        lines.append(f"{r.name + ' (' + r.type + ')':<32} {shape:<21} {r.forward_ms:>7.2f} "
                     f"{cell(r.backward_ms if result.mode == 'train' else None, '.2f'):>7} "
                     f"{cell(flops / 1e9 if flops else None, '.2f'):>7} {cell(fwd, '.1f'):>11} "
                     f"{cell(bwd, '.1f'):>11} {share:>11}")
    lines.append("-" * len(head))
    if result.mode == "train":
        lines.append(f"{'optimizer update':<54} {result.optimizer_ms:>7.2f}")
    lines.append(f"{'the rest (loss, metrics, casts)':<54} {result.other_ms:>7.2f}")
    rate = total_flops / result.step_ms / 1e6
    lines.append(f"{'step, measured':<54} {result.step_ms:>7.2f} ms   {total_flops / 1e9:.2f} "
                 f"GFLOP, {rate:.1f} GFLOP/s, {100 * rate / result.sgemm_gflops:.0f} % of sgemm")
    return "\n".join(lines)


# -- the models `minicnn profile` knows by name ------------------------------------------
def _lecture_cnn(dropout):
    def make():
        from minicnn.applications import lecture
        return lecture.cnn((150, 150, 3), dropout=dropout, seed=0)
    return make


def _vgg16_base(frozen=True):
    from minicnn.applications import VGG16
    base = VGG16(weights=None, include_top=False, input_shape=(150, 150, 3), seed=0)
    base.trainable = not frozen                 # alone, a conv base is for inference
    return base


def _vgg16_with_head(trainable_from=None):
    def make():
        from minicnn.flows import catalog
        model = catalog.frozen_base_with_head(_vgg16_base(), seed=0)
        if trainable_from:
            catalog.unfreeze_from(model, trainable_from)
        return model
    return make


# name -> (what it is, builder); weights are random: they do not change the time.
MODELS = {
    "cnn": ("the lecture's CNN from scratch, 3,453,121 parameters", _lecture_cnn(False)),
    "cnn-dropout": ("the same with Dropout(0.5) before the dense layers", _lecture_cnn(True)),
    "vgg16": ("the VGG16 conv base at 150x150 (inference only: it has no head)", _vgg16_base),
    "features-augment": ("the frozen VGG16 base + Dense 256 + Dense 1 (flow 4)",
                         _vgg16_with_head()),
    "finetune": ("the same with block5 trainable (flow 5)", _vgg16_with_head("block5_conv1")),
}


def model_for(name_or_path: str):
    """A model by name (MODELS), compiled with the lecture's RMSprop and loss; or the model
    in a model file (compiled as saved, or like the lecture's when the file has no
    training configuration)."""
    from minicnn import optimizers
    from minicnn.io.model_file import load_model

    if name_or_path in MODELS:
        from minicnn.layers import clear_session
        clear_session()                  # its layers named from conv2d on, as in the lecture
        model = MODELS[name_or_path][1]()
    elif name_or_path.endswith((".h5", ".hdf5")):
        model = load_model(name_or_path)
    else:
        raise ValueError(f"profile: expected a model name ({', '.join(MODELS)}) or a model "
                         f"file (.h5); received {name_or_path!r}")
    if getattr(model, "optimizer", None) is None:
        model.compile(optimizer=optimizers.RMSprop(learning_rate=1e-4),
                      loss="binary_crossentropy", metrics=["acc"])
    return model
