"""Reused scratch arrays.

Training keeps large scratch arrays (im2col matrices, Winograd's tiles, dL/dZ) from one step
to the next: a fresh array of 100 MB costs more in page faults than filling it.
"""
import numpy as np


def workspace(out, shape, dtype):
    """`out` when it has this shape and dtype, else a new empty array."""
    if out is not None and out.shape == tuple(shape) and out.dtype == dtype:
        return out
    return np.empty(shape, dtype=dtype)
