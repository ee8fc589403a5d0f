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
