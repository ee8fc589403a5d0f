"""CompileNotice: the line a first run prints before Numba compiles minicnn's kernels."""
import numpy as np
from numba import njit

from minicnn.progress import CompileNotice


def _kernel(module: str):
    """A fresh (never compiled, never cached) Numba function that claims to live in module."""
    def add_one(x):
        return x + 1
    add_one.__module__ = module
    return njit(add_one)


def test_the_first_compile_of_a_minicnn_kernel_is_announced_once_and_timed(capsys):
    first, second = _kernel("minicnn.kernels.probe"), _kernel("minicnn.kernels.probe")
    with CompileNotice(12) as notice:
        assert first(np.float32(1)) == 2
        assert second(np.int64(1)) == 2
        first(np.float32(2))                       # compiled already: no compile, no line
    printed = capsys.readouterr().out
    assert printed == "compiling kernels (first run only, ~12 s)\n"
    assert notice.kernels == ["add_one", "add_one"] and notice.seconds > 0


def test_other_compiles_and_cached_kernels_print_nothing(capsys):
    other = _kernel("someone_else")
    with CompileNotice(12) as notice:
        other(1.0)
    assert capsys.readouterr().out == "" and notice.kernels == [] and notice.seconds == 0
    kernel = _kernel("minicnn.kernels.probe")
    kernel(1.0)                                    # compiled outside the notice
    with CompileNotice(12) as notice:
        kernel(2.0)
    assert capsys.readouterr().out == "" and notice.kernels == []


def test_the_listener_is_removed_on_exit(capsys):
    with CompileNotice(12):
        pass
    _kernel("minicnn.kernels.probe")(1.0)
    assert capsys.readouterr().out == ""
