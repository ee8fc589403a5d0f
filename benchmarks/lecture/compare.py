"""minicnn against Keras on the lecture's five flows: one figure per flow and one table.

    python benchmarks/lecture/compare.py MINICNN_RUNS KERAS_RUNS [--plots DIR] [--flows ...]

Each runs folder holds <flow>/history.json (the layout of minicnn's History.save) and
<flow>/metrics.json (as keras_flows.py writes them; minicnn's `lecture` command writes the
same keys). A flow may be missing on either side: its figure then shows the side that ran,
its table row for the other side says "not run"; a flow missing on both sides is left out.

Figures: <plots>/<flow>.png (default: this folder), the lecture's two panels (loss on top,
accuracy below, per epoch), training as thin lines with points and validation as thick
lines; minicnn in blue (circles, solid), Keras in orange (triangles, dashed), and the book's
validation accuracy as a dotted grey line. Each is written under a temporary name and
renamed into place.

Table (Markdown, on stdout, to paste into RESULTS.md): per flow and engine the epochs run,
final and best validation accuracy, test accuracy, training seconds, seconds per epoch,
training images per second, and the validation accuracy the book reports for that flow.
"seconds" is the training time (model.fit, validation included): metrics.json's
train_seconds when it has one, else its seconds; "images/s" is its images_per_second.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

# keras_flows.py, beside this file, imports only the standard library at module level
# (TensorFlow and Keras only inside its main()), so this import stays light.
from keras_flows import write_atomic

HERE = os.path.dirname(os.path.abspath(__file__))

FLOWS = ("scratch", "augment", "features", "features-augment", "finetune")
ENGINES = ("minicnn", "keras")
STYLE = {"minicnn": dict(color="#1f77b4", label="minicnn", marker="o", line="-"),
         "keras": dict(color="#ff7f0e", label="Keras", marker="^", line="--")}
TITLES = {"scratch": "CNN from scratch", "augment": "CNN + augmentation + dropout",
          "features": "VGG16 features, no augmentation",
          "features-augment": "VGG16 frozen base + augmentation",
          "finetune": "VGG16 fine-tuning (block5)"}
BOOK_VAL_ACC = {"scratch": "~0.71", "augment": "~0.82", "features": "~0.90",
                "features-augment": "~0.96", "finetune": "~0.97"}


def read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        print(f"compare: cannot read {path}: {e}; treated as missing", file=sys.stderr)
        return None


def load_run(root, flow):
    """{'history': {...} or None, 'metrics': {...} or None} of root/flow, or None if neither."""
    folder = os.path.join(root, flow)
    history = read_json(os.path.join(folder, "history.json"))
    metrics = read_json(os.path.join(folder, "metrics.json"))
    if history is None and metrics is None:
        return None
    if history is not None:
        history = history.get("history", history)   # History.save nests it under "history"
    return {"history": history, "metrics": metrics or {}}


def accuracy_key(history):
    for key in ("acc", "accuracy", "binary_accuracy"):
        if key in history:
            return key
    return None


# ----------------------------------------------------------------------------- figure
def plot_flow(flow, runs, path):
    """The two panels for one flow, both engines' training and validation curves."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 1, sharex=True, figsize=(7.5, 6.8))
    for engine, run in runs.items():
        history = run["history"] if run else None
        if not history or not history.get("loss"):
            continue
        style = STYLE[engine]
        for ax, key in zip(axes, ("loss", accuracy_key(history))):
            if key is None or key not in history:
                continue
            values = history[key]
            epochs = range(1, len(values) + 1)
            ax.plot(epochs, values, marker=style["marker"], linestyle="-", color=style["color"],
                    linewidth=0.7, markersize=3, alpha=0.7, label=f"{style['label']} training")
            if f"val_{key}" in history:
                ax.plot(range(1, len(history[f"val_{key}"]) + 1), history[f"val_{key}"],
                        linestyle=style["line"], color=style["color"], linewidth=2.2,
                        label=f"{style['label']} validation")
    axes[0].set_ylabel("loss")
    axes[1].set_ylabel("accuracy")
    axes[1].set_xlabel("epoch")
    if flow in BOOK_VAL_ACC:
        axes[1].axhline(float(BOOK_VAL_ACC[flow].lstrip("~")), color="grey", linestyle=":",
                        linewidth=1, label=f"book: validation {BOOK_VAL_ACC[flow]}")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize=8)
    axes[0].set_title(f"{flow}: {TITLES.get(flow, flow)}")
    fig.tight_layout()
    try:
        write_atomic(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    finally:
        plt.close(fig)
    return path


# ----------------------------------------------------------------------------- table
def number(value, digits):
    return "—" if value is None else f"{value:.{digits}f}"


def table_row(flow, engine, run):
    if run is None:
        return [flow, engine, "not run"] + ["—"] * 6 + [BOOK_VAL_ACC.get(flow, "—")]
    m, history = run["metrics"], run["history"] or {}
    val_acc = history.get("val_acc") or history.get("val_accuracy") or []
    epochs = (m.get("epochs_run") or m.get("epochs")
              or (m.get("hyperparameters") or {}).get("epochs")
              or len(history.get("loss", [])) or None)
    final = m.get("final_val_acc", val_acc[-1] if val_acc else None)
    best = m.get("best_val_acc", max(val_acc) if val_acc else None)
    seconds = m.get("train_seconds", m.get("seconds"))   # training time where both are given
    per_epoch = seconds / epochs if seconds is not None and epochs else None
    return [flow, engine, str(epochs if epochs is not None else "—"), number(final, 3),
            number(best, 3), number(m.get("test_acc"), 3), number(seconds, 0),
            number(per_epoch, 1), number(m.get("images_per_second"), 1),
            BOOK_VAL_ACC.get(flow, "—")]


def markdown_table(rows):
    head = ["flow", "engine", "epochs", "final val acc", "best val acc", "test acc", "seconds",
            "s/epoch", "images/s", "book val acc"]
    lines = ["| " + " | ".join(head) + " |",
             "|" + "|".join(["---"] * 2 + ["---:"] * (len(head) - 2)) + "|"]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                epilog="\n\n".join(__doc__.split("\n\n")[1:]),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("minicnn_runs", help="minicnn's runs folder (e.g. runs/minicnn)")
    p.add_argument("keras_runs", help="Keras's runs folder (e.g. runs/keras)")
    p.add_argument("--plots", default=HERE, metavar="DIR",
                   help="where the <flow>.png figures go (default: benchmarks/lecture/)")
    p.add_argument("--no-plots", action="store_true", help="print the table only")
    p.add_argument("--flows", nargs="+", choices=FLOWS, default=list(FLOWS),
                   help="the flows to compare (default: all five)")
    args = p.parse_args(argv)
    for root in (args.minicnn_runs, args.keras_runs):
        if not os.path.isdir(root):
            print(f"compare: no folder {root!r}; its flows are all treated as not run",
                  file=sys.stderr)

    rows = []
    for flow in [f for f in FLOWS if f in args.flows]:
        runs = {"minicnn": load_run(args.minicnn_runs, flow),
                "keras": load_run(args.keras_runs, flow)}
        if not any(runs.values()):
            print(f"compare: {flow}: no run on either side, left out", file=sys.stderr)
            continue
        rows += [table_row(flow, engine, runs[engine]) for engine in ENGINES]
        if not args.no_plots and any(r and r["history"] for r in runs.values()):
            path = plot_flow(flow, runs, os.path.join(args.plots, f"{flow}.png"))
            print(f"compare: {flow}: figure written to {path}", file=sys.stderr)
    if not rows:
        print("compare: nothing to compare", file=sys.stderr)
        return 1
    print(markdown_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
