"""Process settings that keep a training step fast on a few cores, applied on import.

1. OpenMP threads wait passively. Numba's OpenMP workers and NumPy's BLAS threads take
   turns on the same cores (a kernel, a matmul, a kernel). By default an idle OpenMP worker
   spins for a while and steals the cores BLAS needs next. Set before Numba starts its
   thread pool; a value of OMP_WAIT_POLICY the user set wins.

2. OpenBLAS's idle threads sleep at once. After every matrix product OpenBLAS's worker
   threads keep polling for work (sched_yield) for 2^28 cycles, about 0.1 s, and in that
   time they take the cores from the Numba kernel that runs next. OPENBLAS_THREAD_TIMEOUT=12
   (2^12 cycles) puts them to sleep almost at once. OpenBLAS reads it when NumPy loads it;
   when NumPy was loaded before minicnn (a notebook that imports numpy, keras or torch
   first), minicnn has the loaded OpenBLAS read its environment again and restarts its
   idle thread pool, which the next product starts anew with the short timeout. Where that
   is not possible (a BLAS without those entry points), minicnn warns once, with the cost.
   A value the user set wins. Measured on 2 cores, alternating processes: the lecture CNN's
   training step at batch 20 270-308 -> 238-258 ms, VGG16 inference at batch 20 1.63-1.65
   -> 1.35-1.38 s; with NumPy imported first and no restart, 210 -> 290 ms per step.

3. Numba's OpenMP runtime is its own. When another library loaded an OpenMP runtime before
   minicnn (PyTorch brings its own libgomp), Numba's kernels would run on that one, which
   read its wait policy before minicnn set it and spins its idle threads on the cores BLAS
   needs. minicnn then starts Numba's thread pool at once, with its library's symbols bound
   to its own libgomp (RTLD_DEEPBIND), which starts with the passive policy. Measured on
   2 cores with torch imported first: 249 -> 184-192 ms per step, the same as without torch.

4. Freed memory stays in the process for reuse (glibc only). glibc hands every allocation
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
import sys
import warnings

M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
TRIM_THRESHOLD_BYTES = 1 << 30


THREAD_TIMEOUT = "12"
NOT_APPLIED_COST = ("the lecture CNN's training step about 40 % slower on 2 cores "
                    "(210 -> 290 ms at batch 20)")


def _wait_passively() -> tuple[bool, bool]:
    """Set the two wait policies; whether each (OMP_WAIT_POLICY, OPENBLAS_THREAD_TIMEOUT)
    is minicnn's to set (the user did not set it)."""
    ours = ("OMP_WAIT_POLICY" not in os.environ, "OPENBLAS_THREAD_TIMEOUT" not in os.environ)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", THREAD_TIMEOUT)
    return ours


def loaded_openblas() -> list[str]:
    """Paths of the OpenBLAS libraries already mapped into this process (Linux)."""
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "openblas" in line.lower()}
    except OSError:
        return []
    return sorted(p for p in paths if ".so" in os.path.basename(p))


def _restart_openblas_threads(path: str) -> bool:
    """Have the OpenBLAS at `path` read its environment again and stop its worker threads;
    its next multi-threaded call starts them with the new timeout. False where the library
    lacks the entry points (an OpenMP build, another BLAS)."""
    try:
        lib = ctypes.CDLL(path)
        read_env, shutdown = lib.openblas_read_env, lib.blas_thread_shutdown_
        timeout = lib.openblas_thread_timeout
    except (OSError, AttributeError):
        return False
    timeout.restype = ctypes.c_int
    read_env()
    if timeout() != int(THREAD_TIMEOUT):
        return False
    shutdown()
    return True


def _apply_to_loaded_blas(ours: bool) -> str:
    """'environment' when OpenBLAS will read the setting as it loads; 'restarted' when an
    OpenBLAS loaded before minicnn was made to take it; 'user' when the user set it;
    'not applied' (with a warning, once) when a loaded OpenBLAS could not take it."""
    if not ours:
        return "user"
    libraries = loaded_openblas() if "numpy" in sys.modules else []
    if not libraries:
        return "environment"
    failed = [p for p in libraries if not _restart_openblas_threads(p)]
    if not failed:
        return "restarted"
    warnings.warn(
        f"minicnn: NumPy was imported before minicnn and its BLAS ({os.path.basename(failed[0])}) "
        f"could not be told to put its idle threads to sleep at once "
        f"(OPENBLAS_THREAD_TIMEOUT={THREAD_TIMEOUT}); this costs {NOT_APPLIED_COST}. "
        f"Import minicnn before numpy, or set OPENBLAS_THREAD_TIMEOUT={THREAD_TIMEOUT} in the "
        f"environment before Python starts.", RuntimeWarning, stacklevel=3)
    return "not applied"


OPENMP_RUNTIMES = ("libgomp", "libiomp", "libomp")


def loaded_openmp() -> list[str]:
    """Paths of the OpenMP runtimes already mapped into this process (Linux)."""
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps
                     if any(name in line for name in OPENMP_RUNTIMES)}
    except OSError:
        return []
    return sorted(paths)


def _own_openmp(ours: bool) -> str:
    """'numba' when Numba will load its OpenMP runtime itself; 'deepbind' when another one
    was loaded first and Numba's thread pool was started bound to its own; 'user' when
    the user set OMP_WAIT_POLICY; 'not applied' (with a warning) when that failed."""
    if not ours:
        return "user"
    if not loaded_openmp() or not hasattr(os, "RTLD_DEEPBIND"):
        return "numba"
    try:
        from numba.np.ufunc import parallel
        if getattr(parallel, "_is_initialized", False):
            raise RuntimeError("Numba's thread pool was started before minicnn was imported")
        flags = sys.getdlopenflags()
        sys.setdlopenflags(os.RTLD_NOW | os.RTLD_DEEPBIND)
        try:
            parallel._launch_threads()
        finally:
            sys.setdlopenflags(flags)
    except Exception as error:                          # noqa: BLE001  (any failure: warn)
        warnings.warn(
            f"minicnn: an OpenMP runtime ({os.path.basename(loaded_openmp()[0])}) was loaded "
            f"before minicnn and Numba could not be given its own ({error}); its idle threads "
            f"spin on the cores the next product needs, which makes the lecture CNN's "
            f"training step about 30 % slower on 2 cores. Import minicnn first, or set "
            f"OMP_WAIT_POLICY=PASSIVE before Python starts.", RuntimeWarning, stacklevel=3)
        return "not applied"
    return "deepbind"


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


_OMP_OURS, _BLAS_OURS = _wait_passively()
BLAS_THREAD_TIMEOUT = _apply_to_loaded_blas(_BLAS_OURS)
OPENMP = _own_openmp(_OMP_OURS)
MALLOC_TUNED = _keep_freed_memory()


def settings() -> dict:
    """What this process runs with: each setting and whether it took effect."""
    return {"OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY"),
            "OPENBLAS_THREAD_TIMEOUT": os.environ.get("OPENBLAS_THREAD_TIMEOUT"),
            "openblas_thread_timeout_applied": BLAS_THREAD_TIMEOUT,
            "numba_openmp": OPENMP,
            "malloc_tuned": MALLOC_TUNED}
