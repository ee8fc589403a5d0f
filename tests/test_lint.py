"""The code passes the linter with the project's settings ([tool.ruff] in pyproject.toml):
no unused or undefined names, no pycodestyle errors. Ruff comes with the test extra."""
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_ruff_finds_nothing():
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "minicnn",
                             "tests", "benchmarks", "examples"],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
