"""How a Conv2D computes: one algorithm object per layer, chosen once, when it is built.

    Conv2D(64, 3)                          algorithm="auto": the rule below
    Conv2D(64, 3, algorithm="im2col")      im2col + one matrix product, always
    Conv2D(64, 3, algorithm="winograd4")   Winograd's F(4x4, 3x3) (3x3 stride-1 kernels)
    with conv_settings(winograd_min_channels=None):
        model = build_model()              every Conv2D built inside: no Winograd

The algorithms (ALGORITHMS, by name):

    im2col     cols = im2col(X), Z = cols @ W_2d + b: one BLAS call (minicnn.kernels.conv)
    winograd4  F(4x4, 3x3): 36 products of (tiles, C_in) @ (C_in, C_out), 4x fewer
               multiply-adds than im2col, rounding a few millionths of the output's scale
               in float32 (minicnn.kernels.winograd4)
    winograd2  F(2x2, 3x3): 16 products, 2.25x fewer, rounding as im2col's
               (minicnn.kernels.winograd)

"auto" takes Winograd (tile `winograd_tile`, 4 by default) for 3x3 stride-1 kernels with a
linear, ReLU or sigmoid activation and at least `winograd_min_channels` input channels (32:
with fewer, the products are too thin for BLAS to gain from the smaller count), else
im2col; separately for training and for inference when winograd_min_channels is a pair.
At inference two kinds of convolution take im2col whatever the channels, where it is
measured faster (training keeps Winograd: there F(4x4) was level or ahead):
- a kernel im2col's bands take (minicnn.kernels.im2col_bands: at most 64 K values, the
  lecture CNN's conv2d_1, VGG16's block1_conv2): each band's patches, product and
  pooling stay in the core's cache, where F(4x4) goes through its tiles. On an AMD EPYC
  with AVX-512 the lecture CNN's predict at batch 32 took 42 ms against 53, VGG16's
  block1_conv2 at batch 20 87 against 106 ms.
- an output of at most SMALL_OUTPUT_PIXELS pixels (9x9: VGG16's block5 at 150x150): its
  few 4x4 tiles overlap the border and make each of the 36 products a few rows tall.
  At batch 20, 9x9x512 -> 512: im2col 28.4 ms against F(4x4)'s 43.1 on an Intel Xeon
  with AMX, 17.3 against 20.8 on the AMD EPYC.

Whatever the algorithm, the layer keeps its workspace (im2col's matrix, Winograd's tiles)
under `workspace_limit` bytes (256 MiB by default): at inference by micro-batches of
images, in training by keeping the input and rebuilding the workspace one micro-batch at a
time in backward when the whole batch's would not fit.

The settings (ConvSettings) are read when a layer is built and kept in its plan
(ConvPlan, `layer.plan`; model.summary(show_algorithms=True) shows it): settings changed
afterwards change no built layer; `layer.algorithm = "im2col"` re-plans that one layer.

Adding an algorithm: a subclass of ConvAlgorithm with its name, the kernels it applies to
(`unsupported`), its workspace rule (`workspace_per_image`), its whole-batch forward and
backward; then `register_algorithm(instance)`. The micro-batched paths come with the base
class, and tests/test_layers.py's checks run over every registered algorithm.
"""
from __future__ import annotations

import contextlib
import contextvars
import dataclasses
from typing import NamedTuple

from minicnn.kernels.conv import (
    WINOGRAD_MIN_CHANNELS,
    RecomputeCache,
    conv2d_backward,
    conv2d_backward_bounded,
    conv2d_forward,
    conv2d_forward_bounded,
    conv2d_inference,
    micro_batches,
)
from minicnn.kernels import im2col_bands
from minicnn.kernels.pooling import maxpool_bias_activation
from minicnn.kernels.winograd import F2, winograd_backward, winograd_forward, \
    winograd_workspace_per_image
from minicnn.kernels.winograd4 import F4

DEFAULT_WORKSPACE_LIMIT = 256 * 2 ** 20
SMALL_OUTPUT_PIXELS = 81              # at inference, "auto" takes im2col up to 9 x 9 outputs
WINOGRAD_ACTIVATIONS = (0, 1, 2)      # linear, relu, sigmoid: fused into the output transform


# -- the settings ----------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class ConvSettings:
    """What "auto" and the workspace bound of the Conv2Ds built under these settings use.

    workspace_limit: bytes (None: no bound). winograd_min_channels: (training, inference),
    each a number of input channels or None (never Winograd). winograd_tile: 4 or 2.
    """
    workspace_limit: int | None = DEFAULT_WORKSPACE_LIMIT
    winograd_min_channels: tuple = (WINOGRAD_MIN_CHANNELS, WINOGRAD_MIN_CHANNELS)
    winograd_tile: int = 4

    def __post_init__(self):
        limit = self.workspace_limit
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)
                                  or limit <= 0):
            raise ValueError(f"workspace_limit: expected a positive number of bytes or None; "
                             f"received {limit!r}")
        channels = self.winograd_min_channels
        pair = tuple(channels) if isinstance(channels, (tuple, list)) else (channels, channels)
        if len(pair) != 2 or not all(
                c is None or (isinstance(c, int) and not isinstance(c, bool) and c >= 1)
                for c in pair):
            raise ValueError(f"winograd_min_channels: expected a positive number of channels, "
                             f"None, or a pair (training, inference) of those; received "
                             f"{channels!r}")
        object.__setattr__(self, "winograd_min_channels", pair)
        tile = self.winograd_tile
        if not isinstance(tile, int) or isinstance(tile, bool) or tile not in (2, 4):
            raise ValueError(f"winograd_tile: expected 2 or 4; received {tile!r}")


# The settings in force: a context variable, so a `with conv_settings(...)` block (or a
# thread, or a task) changes them for itself only.
_SETTINGS: contextvars.ContextVar[ConvSettings] = contextvars.ContextVar(
    "minicnn_conv_settings", default=ConvSettings())


def current_settings() -> ConvSettings:
    return _SETTINGS.get()


@contextlib.contextmanager
def conv_settings(**changes):
    """Within the block, Conv2Ds are built with these settings changed (workspace_limit,
    winograd_min_channels, winograd_tile); yields the settings in force."""
    unknown = set(changes) - {f.name for f in dataclasses.fields(ConvSettings)}
    if unknown:
        raise TypeError(f"conv_settings: unknown setting(s) {sorted(unknown)}; expected "
                        f"workspace_limit, winograd_min_channels or winograd_tile")
    token = _SETTINGS.set(dataclasses.replace(_SETTINGS.get(), **changes))
    try:
        yield _SETTINGS.get()
    finally:
        _SETTINGS.reset(token)


def change_settings(**changes) -> ConvSettings:
    """Change the settings for the rest of the current context (the set_* functions of
    minicnn.layers); returns the settings before."""
    previous = _SETTINGS.get()
    _SETTINGS.set(dataclasses.replace(previous, **changes))
    return previous


# -- the algorithms ----------------------------------------------------------------------

class ConvAlgorithm:
    """One way of computing a Conv2D. Subclasses set `name` and implement

        unsupported(kernel_shape, strides, activation) -> None, or why it cannot
        workspace_per_image(out_hw, kernel_shape, itemsize) -> bytes for one image
        _forward_whole(x, kernel, bias, strides, pads, activation) -> (y, logits, cache)
        _backward_whole(dy, cache, need_dx, need_dw, need_db, from_logits, db) -> (dx, dw, db)
        _kernel_choice() -> (winograd_min_channels, tile): how minicnn.kernels.conv's
            micro-batched paths pick this algorithm

    X (N, H, W, C_in), kernel (K_h, K_w, C_in, C_out), bias (C_out,) or None, Y and the
    logits (N, H_out, W_out, C_out); activation is a code of minicnn.activations.
    """
    name = ""

    def unsupported(self, kernel_shape, strides, activation) -> str | None:
        return None

    def workspace_per_image(self, out_hw, kernel_shape, itemsize) -> int:
        raise NotImplementedError

    def forward(self, x, kernel, bias, strides, pads, activation, keep_cache,
                workspace_limit):
        """(y, logits, cache); cache None when keep_cache is False (inference). With a
        workspace bound the whole batch would exceed, inference runs in micro-batches and
        training keeps X for a backward that rebuilds the workspace (RecomputeCache)."""
        min_channels, tile = self._kernel_choice()
        if not keep_cache:
            y, logits = conv2d_inference(x, kernel, bias, strides, pads, activation,
                                         workspace_limit, min_channels, tile)
            return y, logits, None
        plan = micro_batches(x.shape, kernel.shape, strides, pads, activation,
                             x.dtype.itemsize, workspace_limit, min_channels, tile)
        if plan.chunk < x.shape[0]:
            return conv2d_forward_bounded(x, kernel, bias, strides, pads, activation,
                                          workspace_limit, min_channels, tile)
        return self._forward_whole(x, kernel, bias, strides, pads, activation)

    def pools(self, pool_size, strides, pads, kernel_shape) -> bool:
        """Whether forward_pooled computes this max-pooling of the output of a convolution
        with this kernel (K_h, K_w, C_in, C_out) in the same pass (pads: the pooling's
        (P_top, P_bottom, P_left, P_right))."""
        return False

    def forward_pooled(self, x, kernel, bias, strides, activation, conv_pads, pool,
                       workspace_limit):
        """Inference into a max-pooling (pools() holds; activation linear or relu):
        act(maxpool(conv(X)) + b), the convolution's output never written. pool: a
        minicnn.kernels.winograd.Pooling."""
        raise NotImplementedError

    def backward(self, dy, cache, need_dx=True, need_dw=True, need_db=True,
                 from_logits=False, db=None):
        """(dX, dW, db) from the cache forward kept; each None when not asked for."""
        if isinstance(cache, RecomputeCache):
            return conv2d_backward_bounded(dy, cache, need_dx=need_dx, need_dw=need_dw,
                                           need_db=need_db, from_logits=from_logits, db=db)
        return self._backward_whole(dy, cache, need_dx, need_dw, need_db, from_logits, db)

    def __repr__(self):
        return self.name


class Im2Col(ConvAlgorithm):
    """im2col + one matrix product (minicnn.kernels.conv); any kernel, stride, padding."""
    name = "im2col"

    def workspace_per_image(self, out_hw, kernel_shape, itemsize):
        k_h, k_w, c_in, _ = kernel_shape
        return out_hw[0] * out_hw[1] * k_h * k_w * c_in * itemsize

    def _kernel_choice(self):
        return None, F4                      # min channels None: never Winograd

    def pools(self, pool_size, strides, pads, kernel_shape):
        return im2col_bands.pools(pool_size, strides, pads, kernel_shape)

    def forward_pooled(self, x, kernel, bias, strides, activation, conv_pads, pool,
                       workspace_limit):
        if im2col_bands.runs_in_bands(kernel.shape, activation, x.dtype):
            return im2col_bands.conv2d_bands(x, kernel, bias, strides, conv_pads, activation,
                                             pool=pool)[0]
        # (a dtype the bands do not take) Z, then the pooling with the bias and activation
        z, _ = conv2d_inference(x, kernel, None, strides, conv_pads, 0, workspace_limit, None)
        size = pool.size
        after = (0, max(pool.out_hw[0] * size[0] - z.shape[1], 0),
                 0, max(pool.out_hw[1] * size[1] - z.shape[2], 0))
        return maxpool_bias_activation(z, size, size, after, bias, activation)

    def _forward_whole(self, x, kernel, bias, strides, pads, activation):
        return conv2d_forward(x, kernel, bias, strides, pads, activation, keep_cache=True)

    def _backward_whole(self, dy, cache, need_dx, need_dw, need_db, from_logits, db):
        # The cache is freed by now, so its im2col matrix can take dZ @ W^T once dW is done.
        return conv2d_backward(dy, cache, need_dx=need_dx, need_dw=need_dw, need_db=need_db,
                               from_logits=from_logits, dcols_out=cache.cols, db=db)


class Winograd(ConvAlgorithm):
    """Winograd's F(m x m, 3x3), m = 4 (minicnn.kernels.winograd4) or 2
    (minicnn.kernels.winograd): 3x3 stride-1 kernels, any padding."""

    def __init__(self, tile):
        self.tile = {2: F2, 4: F4}[tile]
        self.name = f"winograd{tile}"

    def unsupported(self, kernel_shape, strides, activation):
        if tuple(kernel_shape[:2]) != (3, 3) or tuple(strides) != (1, 1):
            return (f"{self.name} computes 3x3 kernels at stride 1; received kernel_size "
                    f"{tuple(kernel_shape[:2])}, strides {tuple(strides)}")
        if activation not in WINOGRAD_ACTIVATIONS:
            return f"{self.name} fuses only a linear, relu or sigmoid activation"
        return None

    def workspace_per_image(self, out_hw, kernel_shape, itemsize):
        return winograd_workspace_per_image(out_hw[0], out_hw[1], kernel_shape[2],
                                            kernel_shape[3], itemsize, self.tile)

    def _kernel_choice(self):
        return 1, self.tile                  # from one channel on: every supported kernel

    def pools(self, pool_size, strides, pads, kernel_shape):
        return self.tile.pools(pool_size, strides, pads)

    def forward_pooled(self, x, kernel, bias, strides, activation, conv_pads, pool,
                       workspace_limit):
        min_channels, tile = self._kernel_choice()
        y, _ = conv2d_inference(x, kernel, bias, (1, 1), conv_pads, activation,
                                workspace_limit, min_channels, tile, pool=pool)
        return y

    def _forward_whole(self, x, kernel, bias, strides, pads, activation):
        return winograd_forward(x, kernel, bias, pads, activation, self.tile)

    def _backward_whole(self, dy, cache, need_dx, need_dw, need_db, from_logits, db):
        return winograd_backward(dy, cache, need_dx=need_dx, need_dw=need_dw, need_db=need_db,
                                 from_logits=from_logits, db=db)


ALGORITHMS: dict[str, ConvAlgorithm] = {}


def register_algorithm(algorithm: ConvAlgorithm) -> ConvAlgorithm:
    if not algorithm.name or algorithm.name == "auto":
        raise ValueError(f"register_algorithm: an algorithm needs a name other than 'auto'; "
                         f"received {algorithm.name!r}")
    ALGORITHMS[algorithm.name] = algorithm
    return algorithm


for _algorithm in (Im2Col(), Winograd(4), Winograd(2)):
    register_algorithm(_algorithm)


def check_algorithm(name, label) -> str:
    """`name` if Conv2D can take it ('auto' or a registered algorithm), else an error."""
    if not isinstance(name, str) or (name != "auto" and name not in ALGORITHMS):
        raise ValueError(f"{label}: `algorithm` must be 'auto' or one of "
                         f"{', '.join(repr(n) for n in ALGORITHMS)}; received {name!r}")
    return name


# -- one layer's plan ---------------------------------------------------------------------

class ConvPlan(NamedTuple):
    """What a built Conv2D runs: its algorithm in training and at inference, and the bound
    of its workspace in bytes (None: none)."""
    training: ConvAlgorithm
    inference: ConvAlgorithm
    workspace_limit: int | None

    def describe(self) -> str:
        if self.training is self.inference:
            return self.training.name
        return f"{self.training.name} (training), {self.inference.name} (inference)"


def plan(requested, kernel_shape, strides, activation, label,
         settings: ConvSettings | None = None, out_hw=None) -> ConvPlan:
    """The plan of a Conv2D with this kernel (K_h, K_w, C_in, C_out), strides and activation
    code, and output (H_out, W_out) when known: `requested` ('auto' or an algorithm's name)
    under `settings` (default: those in force). A requested algorithm that cannot compute
    this kernel is an error."""
    settings = settings or current_settings()
    if requested != "auto":
        algorithm = ALGORITHMS[requested]
        reason = algorithm.unsupported(kernel_shape, strides, activation)
        if reason:
            raise ValueError(f"{label}: algorithm={requested!r} does not apply: {reason}")
        return ConvPlan(algorithm, algorithm, settings.workspace_limit)
    winograd = ALGORITHMS[f"winograd{settings.winograd_tile}"]

    def choose(min_channels):
        if (min_channels is not None and kernel_shape[2] >= min_channels
                and winograd.unsupported(kernel_shape, strides, activation) is None):
            return winograd
        return ALGORITHMS["im2col"]

    training, inference = (choose(c) for c in settings.winograd_min_channels)
    if ((out_hw is not None and out_hw[0] * out_hw[1] <= SMALL_OUTPUT_PIXELS)
            or im2col_bands.fits_bands(kernel_shape, activation)):
        inference = ALGORITHMS["im2col"]
    return ConvPlan(training, inference, settings.workspace_limit)

