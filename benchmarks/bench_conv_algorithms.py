"""One Conv2D shape, each algorithm side by side: the milliseconds of inference and of a
training step (forward keeping the cache + backward with dX), medians in one process.

    python benchmarks/bench_conv_algorithms.py 20x9x512x512 32x15x128x128

Each shape is N x H_out x C_in x C_out of a 3x3 'valid' ReLU convolution (the input is
H_out + 2 square). This is the measurement behind conv_algorithms.plan's rules for
"auto" (im2col at inference for small outputs and for kernels im2col's bands take).
"""
import argparse
import statistics
import time

import minicnn  # noqa: F401  (before NumPy: minicnn.runtime's settings)
import numpy as np

from minicnn.layers.conv_algorithms import ALGORITHMS, DEFAULT_WORKSPACE_LIMIT

import harness

NAMES = ("im2col", "winograd4", "winograd2")


def shape(text):
    try:
        n, h, c_in, c_out = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N x H_out x C_in x C_out, e.g. "
                                         f"20x9x512x512; received {text!r}") from None
    return n, h, c_in, c_out


def median_ms(run, steps, warmup):
    for _ in range(warmup):
        run()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def measure(n, h, c_in, c_out, steps, warmup):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, h + 2, h + 2, c_in)).astype(np.float32)
    kernel = (rng.standard_normal((3, 3, c_in, c_out)) * 0.05).astype(np.float32)
    bias = np.zeros(c_out, np.float32)
    args = ((1, 1), (0, 0, 0, 0), 1)                 # strides, pads, ReLU
    row = {}
    for name in NAMES:
        algorithm = ALGORITHMS[name]

        def infer():
            algorithm.forward(x, kernel, bias, *args, False, DEFAULT_WORKSPACE_LIMIT)

        def train():
            y, _, cache = algorithm.forward(x, kernel, bias, *args, True,
                                            DEFAULT_WORKSPACE_LIMIT)
            algorithm.backward(np.ones_like(y), cache, need_dx=True)

        row[name] = (median_ms(infer, steps, warmup), median_ms(train, steps, warmup))
    return row


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("shapes", nargs="+", type=shape, metavar="NxHxC_INxC_OUT")
    parser.add_argument("--steps", type=int, default=7, help="timed calls (default 7)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls first (default 2)")
    args = parser.parse_args(argv)
    machine = harness.machine_info()
    machine["load_average_start"] = harness.load_average()
    rate = harness.sgemm()
    print(f"sgemm (np.matmul 2048x2048 float32): {rate['gflops_median']:.0f} GFLOP/s; "
          f"OpenBLAS's {rate['openblas_core']} kernels")
    head = ["shape"] + [f"{name} inference / training ms" for name in NAMES]
    body = []
    for n, h, c_in, c_out in args.shapes:
        row = measure(n, h, c_in, c_out, args.steps, args.warmup)
        body.append([f"{n} x {h}² x {c_in} -> {c_out}"]
                    + [f"{row[name][0]:.1f} / {row[name][1]:.1f}" for name in NAMES])
    machine["load_average_end"] = harness.load_average()
    print(harness.cpu_line(machine))
    print(harness.table(head, body, left=1, markdown=True))


if __name__ == "__main__":
    main()
