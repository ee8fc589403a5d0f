"""benchmarks/lecture/keras_flows.py, the Keras reference of the lecture's flows: a run that
stops continues with --resume, keeping the epochs it had (a long Keras schedule spans days).

Real Keras on a few real photos, a few steps per epoch.
"""
import json
import os
import sys

import pytest

from realdata import tiny_split

pytest.importorskip("keras")
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "benchmarks", "lecture"))
import keras_flows  # noqa: E402


def run(data, out, epochs, *extra):
    return keras_flows.main(["scratch", "--data", data, "--out", str(out), "--epochs",
                             str(epochs), "--steps-per-epoch", "2", "--validation-steps", "1",
                             *extra])


def read(folder, name):
    return json.loads((folder / name).read_text())


def test_resume_keeps_the_epochs_run_and_goes_on(tmp_path):
    data = tiny_split(tmp_path / "data", per_class=3)
    out = tmp_path / "scratch"
    assert run(data, out, 1) == 0
    first = read(out, "history.json")["history"]
    assert (out / "checkpoint.keras").is_file() and (out / "progress.json").is_file()

    assert run(data, out, 3, "--resume") == 0
    history = read(out, "history.json")
    assert history["epoch"] == [0, 1, 2]
    assert all(len(v) == 3 for v in history["history"].values())
    assert {k: v[:1] for k, v in history["history"].items()} == first
    metrics = read(out, "metrics.json")
    assert metrics["epochs_run"] == 3 and len(metrics["epoch_seconds"]) == 3
    assert [(s["first_epoch"], s["epochs"]) for s in metrics["sessions"]] == [(1, 1), (2, 2)]
    assert metrics["seconds"] == pytest.approx(sum(metrics["epoch_seconds"]))
    assert metrics["images_trained"] == 3 * 2 * 6        # 2 steps of 6 images (a short pass)
    assert metrics["final_val_acc"] == history["history"]["val_acc"][-1]

    # Finished: nothing left to train, the same history. Another schedule: refused.
    assert run(data, out, 3, "--resume") == 0
    assert read(out, "history.json") == history
    with pytest.raises(SystemExit, match="--resume.*steps"):
        keras_flows.main(["scratch", "--data", data, "--out", str(out), "--epochs", "3",
                          "--steps-per-epoch", "1", "--resume"])

    # Without --resume the run starts over.
    assert run(data, out, 1) == 0
    assert len(read(out, "history.json")["epoch"]) == 1
