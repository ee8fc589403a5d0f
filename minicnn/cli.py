"""The `minicnn` command.

    minicnn summary [no-max-pool|cnn|cnn-dropout|all]    the lecture's model summaries
    minicnn gradcheck [--seed S]                         gradient check of every layer type
    minicnn plot HISTORY.json [--out PNG]                the loss and accuracy panels
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

GRADCHECK_INTRO = """\
Gradient check: backward() against central differences, in float64.

For each case, a random input x and upstream gradient dy are drawn; backward()
gives the analytic gradients of sum(f(x) * dy) with respect to the input and to
every weight, and the same derivatives are estimated one element at a time as

    (sum(f(v + h) * dy) - sum(f(v - h) * dy)) / 2h,   h = {eps:g}

The columns give the relative error ||analytic - numeric|| / (||analytic|| + ||numeric||).
About 1e-9 or below is float64 precision; 1e-6 or above would mean a wrong backward.
"""


def _gradcheck_cases(rng):
    """(description, what to call) for every layer type, the loss and a whole model."""
    from minicnn import gradcheck, layers
    from minicnn.model import Sequential

    def x(*shape):
        return rng.standard_normal(shape)

    def layer(description, make, shape):
        return description, lambda: gradcheck.check_layer(make(), x(*shape), seed=int(rng.integers(1 << 31)))

    def model_case():
        model = Sequential([
            layers.Conv2D(3, 3, padding="same", activation="relu", input_shape=(6, 6, 2)),
            layers.MaxPooling2D(2), layers.Flatten(), layers.Dropout(0.5),
            layers.Dense(4, activation="relu"), layers.Dense(1, activation="sigmoid")], seed=0)
        model.compile("rmsprop", "binary_crossentropy", ["acc"])
        return gradcheck.check_model(model, x(3, 6, 6, 2), [1, 0, 1])

    return [
        layer("Conv2D 3x3 valid, relu", lambda: layers.Conv2D(4, 3, activation="relu"), (2, 7, 7, 3)),
        layer("Conv2D 3x3 same, stride 2", lambda: layers.Conv2D(4, 3, strides=2, padding="same"), (2, 7, 8, 3)),
        layer("Conv2D 2x3 same, sigmoid", lambda: layers.Conv2D(2, (2, 3), padding="same", activation="sigmoid"), (2, 5, 6, 2)),
        layer("MaxPooling2D 2x2 valid", lambda: layers.MaxPooling2D(2), (2, 7, 7, 3)),
        layer("MaxPooling2D 3x3 stride 2 same", lambda: layers.MaxPooling2D(3, 2, padding="same"), (2, 7, 6, 2)),
        layer("Dense, relu", lambda: layers.Dense(5, activation="relu"), (4, 7)),
        layer("Dense, sigmoid", lambda: layers.Dense(3, activation="sigmoid"), (4, 6)),
        layer("Flatten", layers.Flatten, (2, 3, 4, 2)),
        layer("Dropout 0.5 (training)", lambda: layers.Dropout(0.5, seed=1), (3, 10)),
        layer("Activation relu", lambda: layers.Activation("relu"), (3, 8)),
        layer("Activation sigmoid", lambda: layers.Activation("sigmoid"), (3, 8)),
        ("binary_crossentropy (probabilities)",
         lambda: gradcheck.check_loss("binary_crossentropy", [[1], [0], [1]], rng.uniform(0.05, 0.95, (3, 1)))),
        ("binary_crossentropy (from logits)",
         lambda: gradcheck.check_loss("binary_crossentropy", [[1], [0], [1]], x(3, 1) * 4, from_logits=True)),
        ("model: conv, pool, dropout, dense + BCE", model_case),
    ]


def cmd_gradcheck(args) -> int:
    from minicnn import gradcheck

    print(GRADCHECK_INTRO.format(eps=gradcheck.DEFAULT_EPS))
    rng = np.random.default_rng(args.seed)
    header = f"{'case':<42} {'input':>9} {'weights (worst)':>16} {'verdict':>8}"
    print(header)
    print("-" * len(header))
    failed = 0
    for description, run in _gradcheck_cases(rng):
        result = run()
        inputs = [v for k, v in result.errors.items() if k in ("input", "y_pred", "logits")]
        weights = [v for k, v in result.errors.items() if k not in ("input", "y_pred", "logits")]
        weight_text = f"{max(weights):.2e}" if weights else "-"
        verdict = "ok" if result.passed else "FAILED"
        failed += not result.passed
        print(f"{description:<42} {max(inputs):>9.2e} {weight_text:>16} {verdict:>8}")
    print("-" * len(header))
    print("all gradients agree" if not failed else f"{failed} case(s) FAILED")
    return 1 if failed else 0


def cmd_summary(args) -> int:
    from minicnn.applications import lecture
    from minicnn.layers import clear_session

    names = list(lecture.MODELS) if args.model == "all" else [args.model]
    for name in names:
        clear_session()                  # each table names its layers from conv2d on
        print(f"# {name}")
        lecture.MODELS[name]().summary()
        print()
    return 0


def cmd_plot(args) -> int:
    from minicnn.callbacks import History

    history = History.load(args.history)
    out = args.out or os.path.splitext(args.history)[0] + ".png"
    History.plot(history, out, title=args.title)
    print(f"wrote {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="minicnn",
        description="A convnet engine in NumPy and Numba that reproduces the cats-vs-dogs lecture.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("summary", help="print the lecture's model summaries",
                       description="Print Keras-style summaries of the lecture's models.")
    p.add_argument("model", nargs="?", default="all",
                   choices=["no-max-pool", "cnn", "cnn-dropout", "all"],
                   help="which model (default: all)")
    p.set_defaults(func=cmd_summary)

    p = sub.add_parser("gradcheck", help="check every layer's backward numerically",
                       description="Compare every layer's backward() with central "
                                   "differences in float64 and print the relative errors.")
    p.add_argument("--seed", type=int, default=0, help="seed of the random inputs (default 0)")
    p.set_defaults(func=cmd_gradcheck)

    p = sub.add_parser("plot", help="plot a training history (loss and accuracy) as a PNG",
                       description="Draw the lecture's two panels, loss and accuracy per epoch, "
                                   "training vs validation, from a history.json that fit wrote. "
                                   "Needs matplotlib (pip install 'minicnn[plot]').")
    p.add_argument("history", help="history JSON file (History.save)")
    p.add_argument("--out", help="PNG to write (default: beside the JSON, .png)")
    p.add_argument("--title", help="title above the panels")
    p.set_defaults(func=cmd_plot)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, ImportError) as error:
        print(f"minicnn {args.command}: error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
