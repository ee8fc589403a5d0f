"""Shape arithmetic, in one place: output sizes and 'same' padding.

Used by the layers, the model summary and the tests alike.

Symbols (the whole project uses them): N batch, H/W input height/width,
H_out/W_out output height/width, C_in/C_out channels, K_h/K_w kernel (or pool)
size, S_h/S_w strides, P padding.
"""
from __future__ import annotations

from typing import NamedTuple

from minicnn.kernels.geometry import window_output_size

PADDINGS = ("valid", "same")


class Window2D(NamedTuple):
    """Where a K_h x K_w window with strides (S_h, S_w) lands on an H x W input.

    `pad_top`/`pad_left` are the rows/columns added before the input,
    `pad_bottom`/`pad_right` those after it.
    """

    h_out: int
    w_out: int
    pad_top: int
    pad_bottom: int
    pad_left: int
    pad_right: int


def output_length(size: int, k: int, stride: int, padding: str) -> int:
    """Output length along one axis, as Keras computes it.

    valid: floor((size - k) / stride) + 1   (0 or less when the window does not fit)
    same:  ceil(size / stride)
    """
    if padding == "valid":
        return window_output_size(size, k, stride, 0, 0)
    return -(-size // stride)


def same_padding(size: int, k: int, stride: int) -> tuple[int, int]:
    """Padding (before, after) along one axis for padding='same'.

    total = max((out - 1) * S + K - size, 0); the smaller half goes before
    (top/left), the larger after (bottom/right), as in TensorFlow.
    """
    out = output_length(size, k, stride, "same")
    total = max((out - 1) * stride + k - size, 0)
    return total // 2, total - total // 2


def window_2d(h: int, w: int, kernel: tuple[int, int], strides: tuple[int, int],
              padding: str) -> Window2D:
    """Output size and padding of a 2-D sliding window (convolution or pooling)."""
    k_h, k_w = kernel
    s_h, s_w = strides
    h_out = output_length(h, k_h, s_h, padding)
    w_out = output_length(w, k_w, s_w, padding)
    if padding == "same":
        top, bottom = same_padding(h, k_h, s_h)
        left, right = same_padding(w, k_w, s_w)
    else:
        top = bottom = left = right = 0
    return Window2D(h_out, w_out, top, bottom, left, right)


def normalize_tuple(value, n: int, what: str, owner: str) -> tuple[int, ...]:
    """Accept an int or a sequence of n ints, as Keras does (`3` -> `(3, 3)`).

    Raises ValueError naming `owner` and `what` for anything else, and for
    values that are not positive.
    """
    if isinstance(value, (int,)) and not isinstance(value, bool):
        values = (value,) * n
    else:
        try:
            values = tuple(value)
        except TypeError:
            values = None
        if values is None or len(values) != n or not all(
                isinstance(v, int) and not isinstance(v, bool) for v in values):
            raise ValueError(
                f"{owner}: `{what}` must be an int or a tuple of {n} ints; "
                f"received {what}={value!r}")
    if any(v <= 0 for v in values):
        raise ValueError(
            f"{owner}: `{what}` must be positive; received {what}={value!r}")
    return values


def normalize_padding(padding, owner: str) -> str:
    if not isinstance(padding, str) or padding.lower() not in PADDINGS:
        raise ValueError(
            f"{owner}: `padding` must be one of {PADDINGS}; received padding={padding!r}")
    return padding.lower()


def format_shape(shape) -> str:
    """'(None, 148, 148, 32)': a shape with None for the batch, as Keras prints it."""
    return str(tuple(shape))
