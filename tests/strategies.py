"""Hypothesis strategies for window geometries (kernel/pool, strides, padding, sizes)."""
import contextlib

import numpy as np
from hypothesis import strategies as st

from minicnn.kernels import blas
from minicnn.shapes import window_2d


@st.composite
def windows(draw, max_size=9, max_k=4, max_c=5, max_n=3):
    """(x_shape, kernel, strides, padding) with a window that fits its input."""
    padding = draw(st.sampled_from(["valid", "same"]))
    k = (draw(st.integers(1, max_k)), draw(st.integers(1, max_k)))
    s = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    lo = (k[0], k[1]) if padding == "valid" else (1, 1)
    h = draw(st.integers(lo[0], max(lo[0], max_size)))
    w = draw(st.integers(lo[1], max(lo[1], max_size)))
    n = draw(st.integers(1, max_n))
    c = draw(st.integers(1, max_c))
    return (n, h, w, c), k, s, padding


@st.composite
def conv3x3_geometries(draw):
    """(x_shape, padding, c_out) for a 3x3 stride-1 kernel that fits its input: sizes that
    leave 0 to 3 output rows and columns past the last whole Winograd tile, and interior
    tiles of F(4x4, 3x3)'s 6x6 inputs."""
    padding = draw(st.sampled_from(["valid", "same"]))
    low = 3 if padding == "valid" else 1
    shape = (draw(st.integers(1, 3)), draw(st.integers(low, 15)), draw(st.integers(low, 15)),
             draw(st.integers(1, 6)))
    return shape, padding, draw(st.integers(1, 5))


def conv3x3_case(geometry, seed, dtype=np.float64):
    """x, kernel, bias and pads, standard normal, for a conv3x3_geometries draw."""
    x_shape, padding, c_out = geometry
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal((3, 3, x_shape[-1], c_out)).astype(dtype)
    b = rng.standard_normal(c_out).astype(dtype)
    pads = window_2d(x_shape[1], x_shape[2], (3, 3), (1, 1), padding)[2:]
    return x, w, b, pads


@contextlib.contextmanager
def fused_passes(on):
    """Winograd's fused passes allowed (where runs_fused says) or not: the blocks run, as
    where NumPy's BLAS cannot be called from the kernels; the blocks are the fused passes'
    reference."""
    before = blas.AVAILABLE
    blas.AVAILABLE = on and before
    try:
        yield
    finally:
        blas.AVAILABLE = before
