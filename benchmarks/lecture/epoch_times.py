"""Seconds per epoch of the lecture's flows, minicnn (with and without the validation cache)
beside Keras, measured one after another in one run on one machine.

    python benchmarks/lecture/epoch_times.py augment features-augment [finetune] \\
        --data ../shared/data/cats_and_dogs_small --epochs 2 --out /tmp/epoch-times

Each variant trains the flow's full epochs (the lecture's steps and validation steps) for
--epochs epochs in its own process:

    minicnn           minicnn lecture FLOW (validation from the frozen layers' stored outputs)
    minicnn-uncached  minicnn lecture FLOW --no-validation-cache (VGG16 flows only)
    keras             benchmarks/lecture/keras_flows.py FLOW

and reports the median of each variant's epoch times from epoch 2 on (epoch 1 carries
compiling, TensorFlow's tracing and the cache's fill), with the ratio to Keras's. finetune
needs a features-augment model for each engine: --minicnn-base FILE (a minicnn model.h5) and
--keras-weights FILE (Keras's model.weights.h5). The load average is printed before every
variant: take figures only on an otherwise idle machine. Writes OUT/epoch_times.json.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from harness import load_average, machine_info, cpu_line  # noqa: E402
sys.path.insert(0, HERE)
from keras_flows import write_json  # noqa: E402  (atomic: temporary name, then rename)

VGG16_FLOWS = ("features-augment", "finetune")


def variants(flow):
    return ["minicnn"] + (["minicnn-uncached"] if flow in VGG16_FLOWS else []) + ["keras"]


def command(flow, variant, args, out):
    epochs = ["--epochs", str(args.epochs)]
    if variant.startswith("minicnn"):
        cmd = [sys.executable, "-m", "minicnn.cli", "lecture", flow, "--data", args.data,
               "--out", out, *epochs]
        if variant == "minicnn-uncached":
            cmd.append("--no-validation-cache")
        return cmd
    cmd = [sys.executable, os.path.join(HERE, "keras_flows.py"), flow, "--data", args.data,
           "--out", os.path.join(out, flow), *epochs]
    if flow == "finetune":
        cmd += ["--start-weights", args.keras_weights]
    return cmd


def run_variant(flow, variant, args):
    out = os.path.join(args.out, variant)
    if flow == "finetune" and variant.startswith("minicnn"):
        os.makedirs(os.path.join(out, "features-augment"), exist_ok=True)
        shutil.copyfile(args.minicnn_base, os.path.join(out, "features-augment", "model.h5"))
    print(f"== {flow} / {variant} (load average {load_average()})", flush=True)
    with open(os.path.join(args.out, f"{flow}-{variant}.log"), "w") as log:
        subprocess.run(command(flow, variant, args, out), stdout=log, stderr=subprocess.STDOUT,
                       check=True)
    with open(os.path.join(out, flow, "metrics.json")) as f:
        metrics = json.load(f)
    seconds = metrics["epoch_seconds"]
    steady = seconds[1:] or seconds
    row = {"flow": flow, "variant": variant, "epoch_seconds": [round(s, 2) for s in seconds],
           "median_seconds": round(statistics.median(steady), 2),
           "val_acc": metrics.get("final_val_acc")}
    print(f"   epochs {row['epoch_seconds']} s -> {row['median_seconds']} s/epoch", flush=True)
    return row


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                epilog="\n\n".join(__doc__.split("\n\n")[1:]),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("flows", nargs="+", choices=["scratch", "augment", "features-augment",
                                                "finetune"])
    p.add_argument("--data", required=True, help="the lecture's split (train/ validation/ test/)")
    p.add_argument("--epochs", type=int, default=2, help="epochs per variant (default 2)")
    p.add_argument("--out", required=True, help="folder for the runs and epoch_times.json")
    p.add_argument("--minicnn-base", help="finetune: minicnn's features-augment model.h5")
    p.add_argument("--keras-weights", help="finetune: Keras's features-augment model.weights.h5")
    args = p.parse_args(argv)
    if args.epochs < 2:
        p.error("--epochs must be at least 2 (epoch 1 includes compiling)")
    if "finetune" in args.flows and not (args.minicnn_base and args.keras_weights):
        p.error("finetune needs --minicnn-base and --keras-weights")
    os.makedirs(args.out, exist_ok=True)
    machine = machine_info()
    print(cpu_line(machine), flush=True)
    rows = [run_variant(flow, variant, args)
            for flow in args.flows for variant in variants(flow)]
    keras = {r["flow"]: r["median_seconds"] for r in rows if r["variant"] == "keras"}
    print(f"\n{'flow':<18} {'variant':<17} {'s/epoch':>8} {'/ keras':>8}")
    for r in rows:
        r["ratio_to_keras"] = round(r["median_seconds"] / keras[r["flow"]], 3)
        print(f"{r['flow']:<18} {r['variant']:<17} {r['median_seconds']:>8.1f} "
              f"{r['ratio_to_keras']:>8.2f}")
    write_json(os.path.join(args.out, "epoch_times.json"),
               {"machine": machine, "epochs": args.epochs, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
