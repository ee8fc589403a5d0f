"""minicnn.runtime: the thread settings are in the environment before NumPy loads OpenBLAS."""
import json
import os
import subprocess
import sys

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
             if k not in ("OPENBLAS_THREAD_TIMEOUT", "OMP_WAIT_POLICY")}
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
