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

5. NumPy's OpenBLAS runs the kernels this CPU can run. OpenBLAS picks its kernels (its
   "core") for the CPU when it loads, unless OPENBLAS_CORETYPE names one, and an older
   OpenBLAS may not know a newer CPU. Kernels for an older instruction set run, correctly,
   at a fraction of the speed: on a 2-core AMD EPYC with AVX-512, OPENBLAS_CORETYPE=Haswell
   (AVX2) gives sgemm 254 against 475 GFLOP/s and the lecture CNN's training step 1.2x
   its time. The core cannot be changed once OpenBLAS is loaded, and a value the user set
   wins: minicnn warns once, naming the core, the CPU's instruction set, the cost and the
   remedy, and runtime.settings() reports the core.
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


# OpenBLAS's cores by the widest instruction set their kernels use (the names its
# openblas_get_corename() returns, lower-cased); a core not listed is not judged.
OPENBLAS_CORE_ISA = {
    **dict.fromkeys(("skylakex", "cooperlake", "sapphirerapids"), "AVX-512"),
    **dict.fromkeys(("haswell", "zen", "excavator", "dhyana"), "AVX2"),
    **dict.fromkeys(("sandybridge", "bulldozer", "piledriver", "steamroller"), "AVX"),
    **dict.fromkeys(("katmai", "coppermine", "northwood", "banias", "athlon", "prescott",
                     "core2", "penryn", "dunnington", "nehalem", "atom", "opteron",
                     "opteron_sse3", "barcelona", "bobcat", "nano"), "SSE"),
}
ISA_RANK = {"SSE": 0, "AVX": 1, "AVX2": 2, "AVX-512": 3}
# the core to name in the remedy, for the CPU's instruction set
CORE_FOR_ISA = {"AVX-512": "SkylakeX", "AVX2": "Haswell", "AVX": "Sandybridge"}
SLOW_KERNELS_COST = ("on a 2-core AMD EPYC with AVX-512, Haswell's kernels ran sgemm at 254 "
                     "against 475 GFLOP/s and the lecture CNN's training step in 1.2x its time")


def cpu_isa(features=None) -> str | None:
    """The widest of OpenBLAS's instruction sets that this CPU runs (x86), or None."""
    if features is None:
        try:
            import llvmlite.binding as llvm
            features = {name for name, on in llvm.get_host_cpu_features().items() if on}
        except Exception:                                # noqa: BLE001  (no answer: no judgement)
            return None
    if {"avx512f", "avx512bw", "avx512dq", "avx512vl"} <= features:
        return "AVX-512"
    if {"avx2", "fma"} <= features:
        return "AVX2"
    if "avx" in features:
        return "AVX"
    return "SSE" if "sse3" in features else None


def openblas_core() -> str | None:
    """The core the OpenBLAS NumPy loaded runs ("SkylakeX", "Haswell", ...), or None."""
    for path in loaded_openblas():
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for name in ("scipy_openblas_get_corename64_", "openblas_get_corename64_",
                     "scipy_openblas_get_corename", "openblas_get_corename"):
            function = getattr(lib, name, None)
            if function is not None:
                function.restype = ctypes.c_char_p
                core = function()
                return core.decode() if core else None
    return None


def slow_kernels_message(core: str | None, isa: str | None,
                         forced: str | None) -> str | None:
    """The warning for OpenBLAS kernels older than the CPU's instruction set, or None."""
    core_isa = OPENBLAS_CORE_ISA.get((core or "").lower())
    if core_isa is None or isa is None or ISA_RANK[core_isa] >= ISA_RANK[isa]:
        return None
    if forced:
        remedy = (f"OPENBLAS_CORETYPE={forced} is set in the environment: unset it (or set "
                  f"OPENBLAS_CORETYPE={CORE_FOR_ISA[isa]}) before Python starts")
    else:
        remedy = (f"set OPENBLAS_CORETYPE={CORE_FOR_ISA[isa]} before Python starts, or use a "
                  f"newer NumPy (its OpenBLAS may not know this CPU)")
    return (f"minicnn: NumPy's OpenBLAS runs its {core} kernels ({core_isa}) on a CPU with "
            f"{isa}, so every matrix product runs slower than it could ({SLOW_KERNELS_COST}); "
            f"{remedy}.")


def _check_blas_kernels() -> str | None:
    """The OpenBLAS core in use; warns once when it is older than the CPU."""
    import numpy  # noqa: F401  (OpenBLAS loads with NumPy, after the settings above)
    core = openblas_core()
    message = slow_kernels_message(core, cpu_isa(), os.environ.get("OPENBLAS_CORETYPE"))
    if message:
        warnings.warn(message, RuntimeWarning, stacklevel=3)
    return core


_OMP_OURS, _BLAS_OURS = _wait_passively()
BLAS_THREAD_TIMEOUT = _apply_to_loaded_blas(_BLAS_OURS)
OPENMP = _own_openmp(_OMP_OURS)
MALLOC_TUNED = _keep_freed_memory()
OPENBLAS_CORE = _check_blas_kernels()


def settings() -> dict:
    """What this process runs with: each setting and whether it took effect."""
    return {"OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY"),
            "OPENBLAS_THREAD_TIMEOUT": os.environ.get("OPENBLAS_THREAD_TIMEOUT"),
            "openblas_thread_timeout_applied": BLAS_THREAD_TIMEOUT,
            "numba_openmp": OPENMP,
            "malloc_tuned": MALLOC_TUNED,
            "openblas_core": OPENBLAS_CORE,
            "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE")}
