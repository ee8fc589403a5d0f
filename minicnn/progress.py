"""Keras-like progress lines, drawn by tqdm.

    Epoch 3/30 100/100 [==============================] 12s 121ms/step - loss: 0.5312 - acc: 0.7310 - val_loss: 0.5734 - val_acc: 0.7020
"""
from __future__ import annotations

import sys
import time

from tqdm.auto import tqdm


def format_logs(logs: dict) -> str:
    return " - ".join(f"{k}: {v:.4f}" for k, v in logs.items())


class Progress:
    """One line per epoch (verbose=1 live bar, verbose=2 line at the end, 0 silent).

    As Keras's progress bar, a live bar is drawn only on a terminal; in a log file
    verbose=1 writes the epoch's line once, at its end.
    """

    def __init__(self, steps, verbose=1, desc=""):
        if verbose == 1 and not sys.stdout.isatty():
            verbose = 2
        self.verbose = verbose
        self.desc = desc
        self.steps = steps
        self.start = time.perf_counter()
        self.done = 0
        self.bar = None
        if verbose == 1:
            self.bar = tqdm(total=steps, desc=desc, file=sys.stdout, ascii=".=", leave=True,
                            bar_format="{desc} {n_fmt}/{total_fmt} [{bar:30}] {elapsed}{postfix}",
                            dynamic_ncols=False, ncols=200)

    def _timing(self) -> str:
        elapsed = time.perf_counter() - self.start
        per_step = elapsed / max(self.done, 1)
        return f"{per_step * 1000:.0f}ms/step" if per_step < 1 else f"{per_step:.1f}s/step"

    def update(self, logs: dict, steps: int = 1) -> None:
        self.done += steps
        if self.bar is not None:
            self.bar.set_postfix_str(f"{self._timing()} - {format_logs(logs)}", refresh=False)
            self.bar.update(steps)

    def close(self, logs: dict) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(f"{self._timing()} - {format_logs(logs)}", refresh=False)
            self.bar.close()
        elif self.verbose == 2:
            elapsed = time.perf_counter() - self.start
            print(f"{self.desc} {self.done}/{self.steps} - {elapsed:.0f}s {self._timing()} - "
                  f"{format_logs(logs)}", flush=True)


class CompileNotice:
    """Says when Numba starts compiling minicnn's kernels, and how long the compiling took.

    A kernel is compiled the first time it is called with new argument types, and Numba
    caches the machine code on disk (cache=True), so only a first run compiles; later runs
    load the code in milliseconds. Inside `with CompileNotice(estimate):` the first compile of
    a minicnn kernel prints "compiling kernels (first run only, ~N s)" before it starts;
    `.seconds` is the time spent compiling, `.kernels` the kernels compiled. A run whose
    kernels are all cached prints nothing.
    """

    def __init__(self, estimate_seconds: float):
        self.estimate = estimate_seconds
        self.seconds = 0.0
        self.kernels: list[str] = []
        self._depth = 0            # compiles nest (a kernel's helpers); Numba runs one at a time
        self._start = 0.0

    def __enter__(self):
        from numba.core import event

        notice = self

        class Listener(event.Listener):
            def on_start(self, ev):
                notice._started(ev.data["dispatcher"])

            def on_end(self, ev):
                notice._ended(ev.data["dispatcher"])

        self._listening = event.install_listener("numba:compile", Listener())
        self._listening.__enter__()
        return self

    def __exit__(self, *exc):
        return self._listening.__exit__(*exc)

    @staticmethod
    def _ours(dispatcher) -> bool:
        return getattr(dispatcher.py_func, "__module__", "").startswith("minicnn.")

    def _started(self, dispatcher) -> None:
        if not self._ours(dispatcher):
            return
        if self._depth == 0:
            if not self.kernels:
                tqdm.write(f"compiling kernels (first run only, ~{self.estimate:.0f} s)",
                           file=sys.stdout)
                sys.stdout.flush()
            self._start = time.perf_counter()
            self.kernels.append(dispatcher.py_func.__name__)
        self._depth += 1

    def _ended(self, dispatcher) -> None:
        if not self._ours(dispatcher):
            return
        self._depth -= 1
        if self._depth == 0:
            self.seconds += time.perf_counter() - self._start
