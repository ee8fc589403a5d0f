"""Two checkouts of minicnn side by side: is a change (a restructuring, a new code path) any
slower? One process per measurement, the two checkouts alternating A B A B ...

    python benchmarks/bench_checkouts.py --before DIR_A --after DIR_B [--rounds 5]

DIR_A and DIR_B are source trees (e.g. `git worktree add --detach /tmp/before HEAD~3`); each
process imports minicnn from its tree (PYTHONPATH) and times, after warm-up steps:

    cnn_train_step   the lecture's CNN (3,453,121 params), train_on_batch, batch 20
    cnn_predict      the same model, predict, batch 20
    vgg16_predict    the VGG16 conv base (random weights) at 150x150x3, predict, batch 20

each the median of its steps. The table gives, per figure, the median over the rounds of
each checkout and the ratio after / before (< 1: the change is faster). The first process of
each tree runs untimed, so Numba's cache is warm. Take it on an idle machine.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from harness import load_average, machine_info  # noqa: E402

FIGURES = ("cnn_train_step", "cnn_predict", "vgg16_predict")

WORKER = r'''
import json, statistics, time
import minicnn as mc
import numpy as np
from minicnn.applications import VGG16, lecture

rng = np.random.default_rng(0)
x = rng.random((20, 150, 150, 3), dtype=np.float32)
y = (rng.random((20, 1)) > 0.5).astype(np.float32)
cnn = lecture.cnn(seed=0)
cnn.compile(optimizer=mc.optimizers.RMSprop(learning_rate=1e-4), loss="binary_crossentropy",
            metrics=["acc"])
base = VGG16(weights=None, input_shape=(150, 150, 3), seed=0)

def median(step, n, warm=2):
    for _ in range(warm):
        step()
    times = []
    for _ in range(n):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)

print(json.dumps({
    "cnn_train_step": median(lambda: cnn.train_on_batch(x, y), 10),
    "cnn_predict": median(lambda: cnn.predict(x, batch_size=20, verbose=0), 10),
    "vgg16_predict": median(lambda: base.predict(x, batch_size=20, verbose=0), 4, warm=1)}))
'''


def measure(tree):
    env = dict(os.environ, PYTHONPATH=os.path.abspath(tree))
    out = subprocess.run([sys.executable, "-c", WORKER], env=env, capture_output=True,
                         text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--before", required=True, help="the source tree before the change")
    p.add_argument("--after", required=True, help="the source tree after the change")
    p.add_argument("--rounds", type=int, default=5, help="processes per tree (default 5)")
    args = p.parse_args(argv)
    for tree in (args.before, args.after):
        if not os.path.isfile(os.path.join(tree, "minicnn", "__init__.py")):
            p.error(f"{tree!r} is not a minicnn source tree (no minicnn/__init__.py)")
    trees = {"before": args.before, "after": args.after}
    for tree in trees.values():
        measure(tree)                                   # warm Numba's cache
    results = {name: [] for name in trees}
    for i in range(args.rounds):
        for name in (trees if i % 2 == 0 else reversed(list(trees))):
            results[name].append(measure(trees[name]))
    machine = machine_info()
    print(f"CPU {machine['cpu_model']} ({machine['simd']}), {machine['usable_cpus']} cores, "
          f"load average {load_average()}; {args.rounds} rounds")
    print(f"{'figure':16} {'before s':>10} {'after s':>10} {'after/before':>13}")
    for figure in FIGURES:
        before = statistics.median(r[figure] for r in results["before"])
        after = statistics.median(r[figure] for r in results["after"])
        print(f"{figure:16} {before:10.4f} {after:10.4f} {after / before:13.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
