"""Optional output arrays of the kernels.

Kernels that fill a large array (im2col's matrix, dL/dZ) take an optional `out`, so that a
caller can hand them a scratch array it already has, such as the micro-batch workspace of
inference; without one, they allocate.
"""
import numpy as np


def workspace(out, shape, dtype):
    """`out` when it has this shape and dtype, else a new empty array."""
    if out is not None and out.shape == tuple(shape) and out.dtype == dtype:
        return out
    return np.empty(shape, dtype=dtype)
