"""Process settings that keep a training step fast on a few cores, applied on import.

1. OpenMP threads wait passively. Numba's OpenMP workers and NumPy's BLAS threads take
   turns on the same cores (a kernel, a matmul, a kernel). By default an idle OpenMP worker
   spins for a while and steals the cores BLAS needs next. Set before Numba starts its
   thread pool; a value of OMP_WAIT_POLICY the user set wins.

2. OpenBLAS's idle threads sleep at once. After every matrix product OpenBLAS's worker
   threads keep polling for work (sched_yield) for 2^28 cycles, about 0.1 s, and in that
   time they take the cores from the Numba kernel that runs next. OPENBLAS_THREAD_TIMEOUT=12
   (2^12 cycles) puts them to sleep almost at once. OpenBLAS reads it when NumPy loads it,
   so it applies when minicnn is imported before NumPy (the minicnn command, the benchmarks
   and the examples do); a program that imports NumPy first can set it in the environment.
   A value the user set wins. Measured on 2 cores, alternating processes: the lecture CNN's
   training step at batch 20 270-308 -> 238-258 ms, VGG16 inference at batch 20 1.63-1.65
   -> 1.35-1.38 s.

3. Freed memory stays in the process for reuse (glibc only). glibc hands every allocation
   above 32 MB to the kernel with mmap and gives it back on free, so every training step
   faults its fresh arrays (im2col matrices, 150x150 activations: hundreds of MB) back in,
   page by page, zeroed by the kernel, which costs more than the arithmetic on them. With
   mmap off and trimming above 1 GB, the next step reuses the same memory. The process's
   resident size then stays near its peak instead of shrinking between steps. Measured on
   2 cores: the lecture CNN's training step ~40 -> ~57 images/s, inference ~110 -> ~165.
   MINICNN_MALLOC=system leaves glibc's defaults alone.
"""
import ctypes
import os
import platform

M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
TRIM_THRESHOLD_BYTES = 1 << 30


def _wait_passively() -> None:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "12")


def _keep_freed_memory() -> bool:
    """mallopt(M_MMAP_MAX, 0) and a 1 GB trim threshold; False where it does not apply."""
    if os.environ.get("MINICNN_MALLOC", "").lower() == "system":
        return False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))


_wait_passively()
MALLOC_TUNED = _keep_freed_memory()
