"""The plumbing the five example scripts share, so that each script shows only the lecture's
own steps: the command line, the data folders, and the history and test files a run writes.

The scripts import it as `_common` (Python puts a script's own folder first on sys.path).
It is a package folder rather than a _common.py beside them because examples/*.py is exactly
the lecture's five flows (tests/test_examples.py checks that).
"""
import argparse
import json
import os

from minicnn import datasets


# ----------------------------------------------------------------------------- command line
def lecture_parser(doc):
    """An argument parser whose --help shows the script's docstring, with the --data option:
    the lecture's cats_and_dogs_small folder, 'sample', or by default $MINICNN_DATA."""
    parser = argparse.ArgumentParser(description=doc,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=os.environ.get("MINICNN_DATA", "~/Downloads/cats_and_dogs_small"),
                        help="the lecture's cats_and_dogs_small folder, or 'sample' (default: "
                             "$MINICNN_DATA, else ~/Downloads/cats_and_dogs_small)")
    return parser


def add_schedule_options(parser, *, epochs, batch_size, epochs_help=None):
    """--epochs, --steps-per-epoch, --batch-size, --validation-steps and --test-steps of a flow
    that trains on image generators; 100 steps per epoch, 50 validation and 50 test steps as in
    the lecture."""
    parser.add_argument("--epochs", type=int, default=epochs, help=epochs_help)
    parser.add_argument("--steps-per-epoch", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=batch_size)
    parser.add_argument("--validation-steps", type=int, default=50)
    parser.add_argument("--test-steps", type=int, default=50,
                        help="batches of test/ to evaluate at the end (0: none)")


def add_output_options(parser, out):
    """--out (the output folder, by default `out`) and --seed."""
    parser.add_argument("--out", default=out, help="output folder")
    parser.add_argument("--seed", type=int, default=None, help="makes the run repeatable")


# ----------------------------------------------------------------------------- data
def data_folders(parser, data):
    """(train_dir, validation_dir, test_dir) inside --data ('sample': the sample bundled with
    the package). Stops with a usage error if train/ or validation/ is missing; test/ may be
    missing (the sample has none), so the scripts check it before evaluating."""
    base_dir = str(datasets.sample_dir()) if data == "sample" else os.path.expanduser(data)
    train_dir = os.path.join(base_dir, "train")
    validation_dir = os.path.join(base_dir, "validation")
    test_dir = os.path.join(base_dir, "test")
    if not os.path.isdir(train_dir) or not os.path.isdir(validation_dir):
        parser.error(f"--data {base_dir} needs train/ and validation/ folders with cats/ and dogs/ "
                     f"(make them with `minicnn data split`, or use --data sample)")
    return train_dir, validation_dir, test_dir


# ----------------------------------------------------------------------------- outputs
def save_history(history, out, title, name="history"):
    """out/<name>.json and the loss and accuracy curves in out/<name>.png (no plot, said so,
    without matplotlib, an optional extra)."""
    history.save(os.path.join(out, f"{name}.json"))
    try:
        history.plot(os.path.join(out, f"{name}.png"), title=title)
    except ImportError as error:
        print(f"no plot: {error}")


def save_test_result(out, loss, accuracy, metric):
    """Prints the test loss and accuracy and writes them to out/test.json, the accuracy under
    the name the model was compiled with ('acc' or 'accuracy')."""
    print(f"test: loss {loss:.4f}, {metric} {accuracy:.4f}")
    with open(os.path.join(out, "test.json"), "w") as f:
        json.dump({"loss": loss, metric: accuracy}, f)
