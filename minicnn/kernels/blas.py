"""The BLAS that NumPy uses, called from inside Numba kernels: one matrix product per task.

Winograd's products are 36 small matrices per image (for conv2d_1 of the lecture CNN,
324 x 32 times 32 x 64). np.matmul runs each on all cores, and on 2 cores OpenBLAS then
reaches ~115 GFLOP/s: splitting a small product between threads costs more than it saves.
Run instead as one product per task, single-threaded, each core on its own image, the
same products reach ~190 GFLOP/s (AMD EPYC, AVX-512), and a task can transform its
image's tiles, multiply them and transform them back while they are in its cache
(minicnn.kernels.winograd4's fused kernel).

NumPy's wheels link OpenBLAS with 64-bit integers and its symbols renamed
(scipy_cblas_sgemm64_). It is found through NumPy's own extension module, so this is the
very library np.matmul calls, and registered with LLVM under a name of minicnn's own
(minicnn_sgemm, minicnn_dgemm): compiled kernels refer to that name, so Numba can cache
them, and the name resolves, in each process, to the library found there. Where NumPy
uses another BLAS (an LP64 OpenBLAS, MKL, Accelerate), AVAILABLE is False and the
callers keep to np.matmul.

OpenBLAS's thread count is global: one_blas_thread() sets it to 1 around a kernel whose
tasks call the BLAS, and restores it afterwards. Another Python thread's NumPy products in
that time would run on one core.
"""
import contextlib
import ctypes

import llvmlite.binding as llvm
import numpy as np
from numba import njit, types

ROW_MAJOR, NO_TRANS = 101, 111

# (sgemm, dgemm, set_num_threads, get_num_threads) of the ILP64 OpenBLAS builds
_ILP64_NAMES = (
    ("scipy_cblas_sgemm64_", "scipy_cblas_dgemm64_", "scipy_openblas_set_num_threads64_",
     "scipy_openblas_get_num_threads64_"),
    ("cblas_sgemm64_", "cblas_dgemm64_", "openblas_set_num_threads64_",
     "openblas_get_num_threads64_"),
)


def _numpy_blas():
    """(sgemm, dgemm, set_threads, get_threads) ctypes functions of the BLAS NumPy's
    extension module links, or None."""
    try:
        from numpy._core import _multiarray_umath as module
    except ImportError:                                   # NumPy 1.x
        from numpy.core import _multiarray_umath as module
    try:
        library = ctypes.CDLL(module.__file__)
    except OSError:
        return None
    for names in _ILP64_NAMES:
        try:
            functions = [getattr(library, name) for name in names]
        except AttributeError:
            continue
        functions[2].argtypes, functions[2].restype = [ctypes.c_int], None
        functions[3].argtypes, functions[3].restype = [], ctypes.c_int
        return functions
    return None


def _register():
    found = _numpy_blas()
    if found is None:
        return None
    sgemm, dgemm, set_threads, get_threads = found
    llvm.add_symbol("minicnn_sgemm", ctypes.cast(sgemm, ctypes.c_void_p).value)
    llvm.add_symbol("minicnn_dgemm", ctypes.cast(dgemm, ctypes.c_void_p).value)
    return set_threads, get_threads


_THREADS = _register()
AVAILABLE = _THREADS is not None

# cblas_?gemm(order, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc),
# 64-bit integers; the arrays as addresses (arr.ctypes.data)
_i32, _i64, _ptr = types.int32, types.int64, types.intp
_sgemm = types.ExternalFunction("minicnn_sgemm", types.void(
    _i32, _i32, _i32, _i64, _i64, _i64, types.float32, _ptr, _i64, _ptr, _i64,
    types.float32, _ptr, _i64))
_dgemm = types.ExternalFunction("minicnn_dgemm", types.void(
    _i32, _i32, _i32, _i64, _i64, _i64, types.float64, _ptr, _i64, _ptr, _i64,
    types.float64, _ptr, _i64))


@njit(cache=True, nogil=True)
def matmul_rows(a, b, c, rows):
    """c[:rows] = a[:rows] @ b by one call of the BLAS: a (>= rows, K), b (K, N) and
    c (>= rows, N), each C-contiguous, float32 or float64 alike. Only where AVAILABLE; from
    tasks of a parallel kernel, inside one_blas_thread()."""
    k, n = b.shape
    if a.itemsize == 4:                     # float32 (else float64)
        _sgemm(ROW_MAJOR, NO_TRANS, NO_TRANS, rows, n, k, np.float32(1), a.ctypes.data, k,
               b.ctypes.data, n, np.float32(0), c.ctypes.data, n)
    else:
        _dgemm(ROW_MAJOR, NO_TRANS, NO_TRANS, rows, n, k, 1.0, a.ctypes.data, k,
               b.ctypes.data, n, 0.0, c.ctypes.data, n)


def blas_threads():
    """OpenBLAS's thread count now (None where not AVAILABLE)."""
    return _THREADS[1]() if AVAILABLE else None


@contextlib.contextmanager
def one_blas_thread():
    """OpenBLAS on one thread inside the block (each task's product runs on its own core),
    the count before restored after it, also on an error."""
    set_threads, get_threads = _THREADS
    before = get_threads()
    set_threads(1)
    try:
        yield
    finally:
        set_threads(before)
