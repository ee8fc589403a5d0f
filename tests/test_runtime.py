"""minicnn.runtime: the thread settings are in the environment before NumPy loads OpenBLAS."""
import json
import os
import subprocess
import sys

import pytest

SPY = r"""
import builtins, json, os, sys
seen = {}
real_import = builtins.__import__

def spy(name, *args, **kwargs):
    if name.split(".")[0] == "numpy" and "numpy" not in sys.modules and not seen:
        seen.update({k: os.environ.get(k) for k in ("OPENBLAS_THREAD_TIMEOUT", "OMP_WAIT_POLICY")})
    return real_import(name, *args, **kwargs)

builtins.__import__ = spy
import minicnn
print(json.dumps(seen))
"""


def _settings_when_numpy_loads(env):
    clean = {k: v for k, v in os.environ.items()
             if k not in ("OPENBLAS_THREAD_TIMEOUT", "OMP_WAIT_POLICY")}
    out = subprocess.run([sys.executable, "-c", SPY], env={**clean, **env}, check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_settings_are_made_before_numpy_is_first_imported():
    assert _settings_when_numpy_loads({}) == {"OPENBLAS_THREAD_TIMEOUT": "12",
                                             "OMP_WAIT_POLICY": "PASSIVE"}


def test_a_value_the_user_set_wins():
    seen = _settings_when_numpy_loads({"OPENBLAS_THREAD_TIMEOUT": "20", "OMP_WAIT_POLICY": "ACTIVE"})
    assert seen == {"OPENBLAS_THREAD_TIMEOUT": "20", "OMP_WAIT_POLICY": "ACTIVE"}


# What a notebook does: a library that loads NumPy (and OpenMP) first, then minicnn.
FIRST = r"""
import ctypes, json, os, sys, warnings
warnings.simplefilter("error", RuntimeWarning)      # a warning would mean: not applied
first = sys.argv[1]
if first == "numpy":
    import numpy
elif first == "openmp":                              # as PyTorch does: its own libgomp, global
    ctypes.CDLL("libgomp.so.1", mode=os.RTLD_GLOBAL)
import minicnn
from minicnn import runtime
report = runtime.settings()
if first == "numpy":
    lib = ctypes.CDLL(runtime.loaded_openblas()[0])
    report["timeout_in_openblas"] = lib.openblas_thread_timeout()
# A parallel kernel and a product still compute right on the restarted pools.
import numpy as np
from minicnn import layers
x = np.random.default_rng(0).random((2, 9, 9, 3), dtype=np.float32)
y = layers.MaxPooling2D(2)(x)
ref = x[:, :8, :8].reshape(2, 4, 2, 4, 2, 3).max(axis=(2, 4))
report["pool_ok"] = bool(np.array_equal(y, ref))
a = np.random.default_rng(1).random((300, 300), dtype=np.float32)
report["matmul_ok"] = bool(np.allclose(a @ a, a.astype(np.float64) @ a, rtol=1e-4))
print(json.dumps(report))
"""


def _first(what, env=None):
    clean = {k: v for k, v in os.environ.items()
             if k not in ("OPENBLAS_THREAD_TIMEOUT", "OMP_WAIT_POLICY", "OPENBLAS_CORETYPE")}
    done = subprocess.run([sys.executable, "-c", FIRST, what], env={**clean, **(env or {})},
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_numpy_imported_first_gets_the_short_thread_timeout():
    report = _first("numpy")
    assert report["openblas_thread_timeout_applied"] == "restarted"
    assert report["timeout_in_openblas"] == 12
    assert report["pool_ok"] and report["matmul_ok"]


def test_minicnn_imported_first_leaves_it_to_the_environment():
    report = _first("nothing")
    assert report["openblas_thread_timeout_applied"] == "environment"
    assert report["numba_openmp"] == "numba"
    assert report["pool_ok"] and report["matmul_ok"]


def test_an_openmp_runtime_loaded_first_does_not_run_numba_s_kernels():
    report = _first("openmp")
    assert report["numba_openmp"] == "deepbind"
    assert report["pool_ok"] and report["matmul_ok"]


def test_a_user_setting_is_not_overridden_when_numpy_came_first():
    report = _first("numpy", {"OPENBLAS_THREAD_TIMEOUT": "20", "OMP_WAIT_POLICY": "ACTIVE"})
    assert report["openblas_thread_timeout_applied"] == "user"
    assert report["numba_openmp"] == "user"
    assert report["timeout_in_openblas"] == 20


# NumPy's OpenBLAS on kernels older than the CPU: told once, with the cost and the remedy.
def test_kernels_older_than_the_cpu_are_named_with_their_cost_and_remedy():
    from minicnn import runtime
    forced = runtime.slow_kernels_message("Haswell", "AVX-512", forced="Haswell")
    assert "Haswell kernels (AVX2) on a CPU with AVX-512" in forced
    assert "OPENBLAS_CORETYPE=Haswell is set" in forced and "OPENBLAS_CORETYPE=SkylakeX" in forced
    assert "GFLOP/s" in forced                                    # what it costs
    detected = runtime.slow_kernels_message("Sandybridge", "AVX2", forced=None)
    assert "set OPENBLAS_CORETYPE=Haswell" in detected and "newer NumPy" in detected


def test_kernels_that_match_the_cpu_or_are_unknown_say_nothing():
    from minicnn import runtime
    assert runtime.slow_kernels_message("SkylakeX", "AVX-512", forced=None) is None
    assert runtime.slow_kernels_message("Haswell", "AVX2", forced="Haswell") is None
    assert runtime.slow_kernels_message("SkylakeX", "AVX2", forced="SkylakeX") is None
    assert runtime.slow_kernels_message("NeoverseN1", "AVX-512", forced=None) is None
    assert runtime.slow_kernels_message(None, "AVX-512", forced=None) is None
    assert runtime.slow_kernels_message("Haswell", None, forced=None) is None


def test_the_cpu_s_instruction_set_from_its_features():
    from minicnn import runtime
    avx2 = {"sse3", "avx", "avx2", "fma"}
    assert runtime.cpu_isa(avx2 | {"avx512f", "avx512bw", "avx512dq", "avx512vl"}) == "AVX-512"
    assert runtime.cpu_isa(avx2 | {"avx512f"}) == "AVX2"          # SkylakeX needs BW/DQ/VL
    assert runtime.cpu_isa(avx2) == "AVX2"
    assert runtime.cpu_isa({"sse3", "avx"}) == "AVX"
    assert runtime.cpu_isa({"sse3"}) == "SSE"
    assert runtime.cpu_isa({"neon"}) is None


CORE = r"""
import json, warnings
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import minicnn
from minicnn import runtime
print(json.dumps({"core": runtime.settings()["openblas_core"], "isa": runtime.cpu_isa(),
                  "warnings": [str(w.message) for w in caught
                               if "OPENBLAS_CORETYPE" in str(w.message)]}))
"""


def _import_with_core(core):
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_CORETYPE"}
    done = subprocess.run([sys.executable, "-c", CORE], env={**env, "OPENBLAS_CORETYPE": core},
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_forced_older_core_is_reported_and_warned_about_once():
    report = _import_with_core("Nehalem")                  # SSE4.2: older than any x86-64 today
    if report["core"] is None:
        pytest.skip("NumPy's BLAS is not an OpenBLAS that names its kernels")
    if report["isa"] in (None, "SSE") or report["core"].lower() != "nehalem":
        pytest.skip(f"not an x86 CPU beyond SSE, or this OpenBLAS lacks Nehalem: {report}")
    assert len(report["warnings"]) == 1
    assert "Nehalem kernels (SSE)" in report["warnings"][0]
    assert "OPENBLAS_CORETYPE=Nehalem is set" in report["warnings"][0]
