"""Cold start: what a first run of minicnn spends compiling its Numba kernels, kernel by kernel.

A Numba kernel is compiled the first time it is called with new argument types and cached
on disk (cache=True), so only a first run pays. For each --repo (a checkout of minicnn;
default this one; give two to compare a before and an after side by side) and each
--model, two fresh processes run with NUMBA_CACHE_DIR set to one new empty folder: the
first finds the cache empty and compiles (cold), the second loads what the first cached
(warm). Each process imports minicnn, builds the model, and times

    import      `import minicnn`
    first step  the first train_on_batch on 20 random 150x150x3 images (the compile happens
                here), then a second one (steady state), then predict on the same batch
    compiles    every compile of a minicnn kernel, timed by a Numba event listener (a
                kernel's helpers are compiled inside it and counted in its time), with the
                number of specializations (argument-type signatures) compiled

Models: `cnn` (the scratch flow's), `cnn-augment` (the augment flow's: Dropout, and one
batch of the lecture's augmentation, whose warp is a kernel too), `vgg16-frozen` (the
features-augment flow's model, weights=None: the numbers do not matter here) and
`vgg16-finetune` (the same with block5 trainable).

    python benchmarks/bench_cold_start.py                                   # this checkout
    git worktree add /tmp/before COMMIT
    python benchmarks/bench_cold_start.py --repo /tmp/before --repo . --markdown benchmarks/RESULTS.md

Runs are sequential (a compile uses one core; nothing else should run meanwhile).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

import harness

MODELS = ("cnn", "cnn-augment", "vgg16-frozen", "vgg16-finetune")
BATCH = 20


# ----------------------------------------------------------------------------- worker
def worker_main(repo: str, model_name: str) -> None:
    out = harness.protocol_channel()
    sys.path.insert(0, repo)
    t0 = time.perf_counter()
    import minicnn  # noqa: F401  (before NumPy: minicnn.runtime's settings)
    t_import = time.perf_counter() - t0
    from numba.core import event

    # The listener of minicnn.progress.CompileNotice, per kernel: written out here because
    # the checkout measured as 'before' may not have that class.
    compiles: dict[str, dict] = {}
    depth = [0, 0.0]

    class Listener(event.Listener):
        def on_start(self, ev):
            d = ev.data["dispatcher"]
            if getattr(d.py_func, "__module__", "").startswith("minicnn."):
                if depth[0] == 0:
                    depth[1] = time.perf_counter()
                depth[0] += 1

        def on_end(self, ev):
            d = ev.data["dispatcher"]
            if getattr(d.py_func, "__module__", "").startswith("minicnn."):
                depth[0] -= 1
                name = f"{d.py_func.__module__.rsplit('.', 1)[-1]}.{d.py_func.__name__}"
                entry = compiles.setdefault(name, {"seconds": 0.0, "specializations": 0})
                entry["specializations"] += 1
                if depth[0] == 0:
                    entry["seconds"] += time.perf_counter() - depth[1]

    event.register("numba:compile", Listener())

    import numpy as np

    model, augment = build(model_name)
    rng = np.random.default_rng(0)
    x = rng.random((BATCH, 150, 150, 3), dtype=np.float32)
    y = (rng.random(BATCH) > 0.5).astype(np.float32)
    times = {}
    t0 = time.perf_counter()
    if augment is not None:
        x = augment(x)
    model.train_on_batch(x, y)
    times["first_step"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    model.train_on_batch(x, y)
    times["second_step"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    model.predict(x, batch_size=BATCH, verbose=0)
    times["first_predict"] = time.perf_counter() - t0
    import numba
    out.write(json.dumps({"import": t_import, **times, "compiles": compiles,
                          "minicnn": getattr(minicnn, "__version__", "?"),
                          "numba": numba.__version__, "numpy": np.__version__}) + "\n")


def build(name: str):
    """The model of `name`, compiled as its flow compiles it, and the augmentation (or None)."""
    from minicnn import layers, optimizers
    from minicnn.applications import lecture
    from minicnn.model import Sequential

    augment = None
    if name in ("cnn", "cnn-augment"):
        model = lecture.cnn(dropout=name == "cnn-augment", seed=0)
        lr = 1e-4
        if name == "cnn-augment":
            from minicnn.preprocessing.image import ImageDataGenerator
            generator = ImageDataGenerator(rotation_range=40, width_shift_range=0.2,
                                           height_shift_range=0.2, shear_range=0.2,
                                           zoom_range=0.2, horizontal_flip=True)
            augment = lambda x: next(generator.flow(x, batch_size=len(x), seed=0))  # noqa: E731
    else:
        from minicnn.applications import VGG16
        base = VGG16(weights=None, include_top=False, input_shape=(150, 150, 3))
        model = Sequential([base, layers.Flatten(), layers.Dense(256, activation="relu"),
                            layers.Dense(1, activation="sigmoid")], seed=0)
        for layer in base.layers:
            layer.trainable = name == "vgg16-finetune" and layer.name.startswith("block5")
        lr = 2e-5
    model.compile(optimizer=optimizers.RMSprop(learning_rate=lr), loss="binary_crossentropy",
                  metrics=["acc"])
    return model, augment


# ----------------------------------------------------------------------------- parent
def probe(repo: str, model: str, log) -> dict:
    results = {}
    with tempfile.TemporaryDirectory(prefix="minicnn-numba-cache-") as cache_dir:
        for label in ("cold", "warm"):
            env = {**os.environ, "NUMBA_CACHE_DIR": cache_dir}
            proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", "probe",
                                   "--repo", repo, "--model", model], env=env,
                                  capture_output=True, text=True)
            if proc.returncode != 0 or not proc.stdout.strip():
                raise harness.WorkerError(f"{repo} {model} ({label}) failed:\n"
                                          f"{proc.stderr[-3000:]}")
            r = results[label] = json.loads(proc.stdout.strip().splitlines()[-1])
            log(f"  {label}: import {r['import']:.2f} s, first step {r['first_step']:.2f} s, "
                f"second {r['second_step']:.3f} s, first predict {r['first_predict']:.2f} s, "
                f"{sum(c['specializations'] for c in r['compiles'].values())} compiles")
    return results


def rows_of(report):
    head = ["repo", "model", "cold first step s", "compile s", "kernels", "specializations",
            "warm first step s", "second step s"]
    body = []
    for (repo, model), r in report["runs"].items():
        cold, warm = r["cold"], r["warm"]
        body.append([repo, model, f"{cold['first_step']:.1f}",
                     f"{sum(c['seconds'] for c in cold['compiles'].values()):.1f}",
                     str(len(cold["compiles"])),
                     str(sum(c["specializations"] for c in cold["compiles"].values())),
                     f"{warm['first_step']:.2f}", f"{warm['second_step']:.3f}"])
    return head, body


def kernel_rows(report):
    """Per kernel: the cold compile seconds (and specializations) of every repo."""
    runs = report["runs"]
    keys = list(runs)
    names = sorted({n for r in runs.values() for n in r["cold"]["compiles"]},
                   key=lambda n: -max(r["cold"]["compiles"].get(n, {"seconds": 0})["seconds"]
                                      for r in runs.values()))
    head = ["kernel"] + [f"{repo} {model}" for repo, model in keys]
    body = []
    for n in names:
        row = [n]
        for key in keys:
            c = runs[key]["cold"]["compiles"].get(n)
            row.append(f"{c['seconds']:.2f} ({c['specializations']})" if c else "-")
        body.append(row)
    return head, body


def main(argv=None) -> int:
    p = harness.argument_parser(__doc__)
    p.add_argument("--repo", action="append", metavar="DIR",
                   help="a minicnn checkout to measure (repeat to compare; default: this one)")
    p.add_argument("--model", nargs="+", choices=MODELS, default=["cnn"], dest="models")
    harness.add_output_options(p, tables="the tables")
    args = p.parse_args(argv)
    if args.worker == "probe":
        worker_main(os.path.abspath(args.repo[0]), args.models[0])
        return 0
    repos = [os.path.abspath(r) for r in (args.repo or [harness.REPO])]
    names = {r: os.path.basename(r.rstrip("/")) or r for r in repos}
    notes = []
    machine = harness.machine_at_start(notes, harness.log)
    report = {**harness.report_header(__file__, argv), "machine": machine, "runs": {}}
    for model in args.models:
        for repo in repos:
            harness.log(f"{names[repo]} {model}:")
            report["runs"][(names[repo], model)] = probe(repo, model, harness.log)
    machine["load_average_end"] = harness.load_average()
    head, body = rows_of(report)
    khead, kbody = kernel_rows(report)
    print(harness.table(head, body, left=2))
    print()
    print(harness.table(khead, kbody, left=1))
    first = next(iter(report["runs"].values()))["cold"]
    details = [harness.cpu_line(machine, memory=True),
               f"Versions: numba {first['numba']}, numpy {first['numpy']}"]
    details += [f"{names[r]}: {r}" for r in repos] + harness.note_lines(notes)
    print("\n".join(details))

    def write_markdown(path):
        harness.append_markdown(
            path, f"### Cold start ({report['date']})",
            [f"`{report['command']}`", harness.table(head, body, 2, markdown=True),
             "Cold compile seconds per kernel (specializations):",
             harness.table(khead, kbody, 1, markdown=True)], details)

    report["runs"] = {f"{k[0]} {k[1]}": v for k, v in report["runs"].items()}
    harness.write_outputs(args, report, write_markdown, harness.log)
    return 0


if __name__ == "__main__":
    sys.exit(main())
