"""`minicnn lecture FLOW`: each flow end to end on a few real photos, resuming, bad input.

The flows run with a few steps of small batches; the VGG16 ones need the ImageNet weights
(the imagenet_weights fixture obtains them once, as `minicnn weights vgg16` does).
"""
import errno
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import minicnn as mc
from minicnn import cli, flows
from realdata import tiny_split

OUTPUTS = ("model.h5", "history.json", "metrics.json")
HAVE_MATPLOTLIB = True
try:
    import matplotlib  # noqa: F401
except ImportError:
    HAVE_MATPLOTLIB = False


def lecture(*args):
    return cli.main(["lecture", *map(str, args)])


def small(data, out, epochs=2, batch=3):
    return ["--data", data, "--epochs", epochs, "--steps-per-epoch", 2, "--validation-steps", 1,
            "--batch-size", batch, "--out", out]


def history_of(folder):
    return json.loads((folder / "history.json").read_text())["history"]


def check_outputs(folder, epochs, test_images=None):
    for name in OUTPUTS + (("history.png",) if HAVE_MATPLOTLIB else ()):
        assert (folder / name).is_file(), name
    history = history_of(folder)
    assert set(history) == {"loss", "acc", "val_loss", "val_acc"}
    assert all(len(v) == epochs for v in history.values())
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["epochs_run"] == epochs
    assert metrics["final_val_acc"] == history["val_acc"][-1]
    assert metrics["best_val_acc"] == max(history["val_acc"])
    assert set(metrics["versions"]) >= {"python", "numpy", "numba", "minicnn"}
    assert metrics["images_per_second"] > 0 and metrics["seconds"] > 0
    assert 0 <= metrics["compile_seconds"] < metrics["seconds"]
    ran = epochs - (metrics["resumed_from_epoch"] or 0)
    assert len(metrics["epoch_seconds"]) == ran and all(t > 0 for t in metrics["epoch_seconds"])
    # Each figure is rounded to the millisecond: the sum may exceed the total by half a
    # millisecond per epoch, and the total by half one more.
    rounding = 5e-4 * (len(metrics["epoch_seconds"]) + 1)
    assert sum(metrics["epoch_seconds"]) <= metrics["train_seconds"] + rounding + 1e-9
    if test_images is None:
        assert metrics["test_acc"] is None and "no test/" in metrics["test_note"]
    else:
        assert 0 <= metrics["test_acc"] <= 1 and metrics["test_note"] is None
    return metrics


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_split(tmp_path_factory.mktemp("tiny"), per_class=3)


# -- the flows end to end ------------------------------------------------------------

def test_scratch_writes_every_output_with_the_settings(tiny, tmp_path, capsys):
    assert lecture("scratch", *small(tiny, tmp_path)) == 0
    printed = capsys.readouterr().out
    assert "Epoch 2/2 2/2" in printed and "test: loss" in printed
    metrics = check_outputs(tmp_path / "scratch", 2, test_images=6)
    assert metrics["hyperparameters"] == {"batch_size": 3, "steps_per_epoch": 2, "epochs": 2,
                                          "validation_steps": 1, "learning_rate": 1e-4,
                                          "augment": False}
    assert metrics["images_trained"] == 2 * 2 * 3 and metrics["params"] == 3_453_121
    model = mc.load_model(tmp_path / "scratch" / "model.h5")
    assert model.optimizer.iterations == 4


def test_the_lecture_settings_are_the_defaults(tiny):
    run = flows.resolve("augment", tiny)
    assert (run.hyper.batch_size, run.hyper.steps_per_epoch, run.hyper.epochs,
            run.hyper.validation_steps, run.hyper.learning_rate, run.hyper.augment) == \
        (32, 100, 100, 50, 1e-4, True)
    assert run.out == os.path.join("runs", "lecture", "augment")
    hyper = {name: flows.FLOWS[name].hyper for name in flows.FLOWS}
    assert hyper["scratch"] == flows.Hyper(20, 100, 30, 50, 1e-4, False)
    assert hyper["features"] == flows.Hyper(20, None, 30, None, 2e-5, False)
    assert hyper["features-augment"] == flows.Hyper(20, 100, 30, 50, 2e-5, True)
    assert hyper["finetune"] == flows.Hyper(20, 100, 100, 50, 1e-5, True)


def test_resume_gives_the_history_of_an_uninterrupted_run(tiny, tmp_path, capsys, monkeypatch):
    """augment (augmentation, dropout, shuffling): 3 epochs at once; 1 epoch then --resume
    to 3; Ctrl-C in epoch 2 then --resume. The same numbers, exactly."""
    assert lecture("augment", *small(tiny, tmp_path / "full", epochs=3)) == 0
    expected = history_of(tmp_path / "full" / "augment")

    assert lecture("augment", *small(tiny, tmp_path / "steps", epochs=1)) == 0
    assert lecture("augment", *small(tiny, tmp_path / "steps", epochs=3), "--resume") == 0
    assert "after epoch 1" in capsys.readouterr().out
    assert history_of(tmp_path / "steps" / "augment") == expected
    metrics = check_outputs(tmp_path / "steps" / "augment", 3, test_images=6)
    assert metrics["resumed_from_epoch"] == 1

    steps = []
    original = mc.Sequential._train_step

    def interrupted_in_epoch_2(self, *args, **kwargs):
        steps.append(1)
        if len(steps) == 3:
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(mc.Sequential, "_train_step", interrupted_in_epoch_2)
    capsys.readouterr()
    assert lecture("augment", *small(tiny, tmp_path / "ctrl-c", epochs=3)) == 130
    err = capsys.readouterr().err
    assert "interrupted after 1 of 3 epochs" in err and "--resume" in err
    folder = tmp_path / "ctrl-c" / "augment"
    assert len(history_of(folder)["loss"]) == 1 and not (folder / "metrics.json").exists()
    assert flows.read_state(folder / "model.h5")["epochs_done"] == 1
    monkeypatch.setattr(mc.Sequential, "_train_step", original)
    assert lecture("augment", *small(tiny, tmp_path / "ctrl-c", epochs=3), "--resume") == 0
    assert history_of(folder) == expected
    # The wall time of every run that trained the model: epoch 1 before Ctrl-C, 2-3 after.
    sessions = json.loads((folder / "metrics.json").read_text())["sessions"]
    assert [(s["first_epoch"], len(s["epoch_seconds"])) for s in sessions] == [(1, 1), (2, 2)]
    assert all(t > 0 for s in sessions for t in s["epoch_seconds"])
    assert all(s["cpu"] == flows.cpu_model() and s["started"].endswith("Z") for s in sessions)

    # Finished: --resume has nothing left to do. Other settings: refused.
    assert lecture("augment", *small(tiny, tmp_path / "ctrl-c", epochs=3), "--resume") == 0
    assert "already finished" in capsys.readouterr().out
    assert lecture("augment", *small(tiny, tmp_path / "ctrl-c", epochs=4, batch=2),
                   "--resume") == 1
    err = capsys.readouterr().err
    assert "--batch-size 3" in err and "only --epochs may change" in err
    assert lecture("augment", *small(tiny, tmp_path / "ctrl-c", epochs=2), "--resume") == 1
    assert "already holds 3 epochs" in capsys.readouterr().err


def test_features_extracts_once_trains_the_head_and_resumes(tiny, tmp_path, imagenet_weights,
                                                             capsys):
    assert lecture("features", *small(tiny, tmp_path / "full")) == 0
    folder = tmp_path / "full" / "features"
    metrics = check_outputs(folder, 2, test_images=6)
    assert metrics["params"] == 8192 * 256 + 256 + 257 and metrics["feature_extraction_seconds"] > 0
    with np.load(folder / "features.npz") as saved:
        for split in ("train", "validation", "test"):
            assert saved[f"{split}_features"].shape == (6, 4, 4, 512)
            np.testing.assert_array_equal(saved[f"{split}_labels"], [0, 0, 0, 1, 1, 1])

    assert lecture("features", *small(tiny, tmp_path / "parts", epochs=1)) == 0
    capsys.readouterr()
    assert lecture("features", *small(tiny, tmp_path / "parts"), "--resume") == 0
    assert "reusing" in capsys.readouterr().out               # not extracted again
    assert history_of(tmp_path / "parts" / "features") == history_of(folder)


def test_features_augment_then_finetune_from_its_model(tiny, tmp_path, imagenet_weights, capsys):
    assert lecture("features-augment", *small(tiny, tmp_path, batch=2)) == 0
    metrics = check_outputs(tmp_path / "features-augment", 2, test_images=6)
    assert (metrics["params"], metrics["trainable_params"]) == (16_812_353, 2_097_665)
    capsys.readouterr()
    assert lecture("finetune", *small(tiny, tmp_path, batch=2)) == 0
    assert f"starting from {tmp_path / 'features-augment' / 'model.h5'}" in capsys.readouterr().out
    metrics = check_outputs(tmp_path / "finetune", 2, test_images=6)
    assert metrics["trainable_params"] == 9_177_089
    assert metrics["hyperparameters"]["learning_rate"] == 1e-5
    assert metrics["validation_cache"]["used"] and metrics["validation_cache"]["fills"] == 1
    assert metrics["validation_cache"]["runs_from"] == "block5_conv1"


def test_the_validation_cache_changes_no_number_of_the_vgg16_flows(tiny, tmp_path,
                                                                    imagenet_weights):
    for flow, runs_from in (("features-augment", "dense"), ("finetune", "block5_conv1")):
        assert lecture(flow, *small(tiny, tmp_path / "cached", batch=2)) == 0
        assert lecture(flow, *small(tiny, tmp_path / "uncached", batch=2),
                       "--no-validation-cache") == 0
        cached = json.loads((tmp_path / "cached" / flow / "metrics.json").read_text())
        uncached = json.loads((tmp_path / "uncached" / flow / "metrics.json").read_text())
        assert cached["validation_cache"]["runs_from"].startswith(runs_from)
        assert uncached["validation_cache"] == {"used": False,
                                                "reason": "turned off (--no-validation-cache)"}
        for key, values in history_of(tmp_path / "uncached" / flow).items():
            np.testing.assert_allclose(history_of(tmp_path / "cached" / flow)[key], values,
                                       rtol=1e-5, err_msg=f"{flow} {key}")
        assert cached["test_acc"] == uncached["test_acc"]
        assert not (tmp_path / "cached" / flow / "validation_cache.npy").exists()


def test_all_runs_the_five_flows_with_one_overall_line_a_table_and_a_figure(
        tiny, tmp_path, imagenet_weights, capsys, monkeypatch):
    """`lecture all`: uninterrupted; then Ctrl-C inside flow 2 and --resume, which skips
    the finished flow and ends with the same five histories and the same table."""
    assert lecture("all", *small(tiny, tmp_path / "once", batch=2)) == 0
    printed = capsys.readouterr().out
    lines = [line for line in printed.splitlines() if line.startswith("lecture: ")]
    # one line as each flow starts, one after each of its 2 epochs
    assert len(lines) == 5 * 3
    assert lines[0].startswith("lecture: flow 1/5 scratch, epoch 0/2 - 0/10 epochs")
    assert lines[-1].startswith("lecture: flow 5/5 finetune, epoch 2/2 - 10/10 epochs")
    assert lines[-1].endswith("about 0m00s left")
    assert all(" so far - about " in line for line in lines)
    summary = json.loads((tmp_path / "once" / "lecture.json").read_text())
    rows = summary["flows"]
    assert [r["flow"] for r in rows] == list(flows.FLOWS)
    for row in rows:
        folder = tmp_path / "once" / row["flow"]
        metrics = json.loads((folder / "metrics.json").read_text())
        assert row["final_val_acc"] == metrics["final_val_acc"] == history_of(folder)["val_acc"][-1]
        assert row["test_acc"] == metrics["test_acc"]
        assert row["book_val_acc"] == flows.FLOWS[row["flow"]].book_val_acc
        assert row["final_minus_book"] == pytest.approx(row["final_val_acc"] - row["book_val_acc"],
                                                        abs=1e-4)
        table_line = next(line for line in printed.splitlines()
                          if line.startswith(f"{row['flow']} ") and "pp" in line)
        assert f"{row['final_val_acc']:.3f}" in table_line and f"~{row['book_val_acc']:.2f}" in table_line
    assert [r["book_val_acc"] for r in rows] == [0.71, 0.82, 0.90, 0.96, 0.97]
    if HAVE_MATPLOTLIB:
        assert (tmp_path / "once" / "lecture.png").stat().st_size > 10_000

    steps = []
    original = mc.Sequential._train_step

    def interrupted_in_flow_2(self, *args, **kwargs):
        steps.append(1)
        if len(steps) == 2 * 2 + 3:          # scratch's 4 steps, then augment's third
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(mc.Sequential, "_train_step", interrupted_in_flow_2)
    assert lecture("all", *small(tiny, tmp_path / "twice", batch=2)) == 130
    err = capsys.readouterr().err
    assert "augment: interrupted after 1 of 2 epochs" in err
    assert "minicnn lecture all" in err and "--resume" in err
    assert not (tmp_path / "twice" / "lecture.json").exists()
    monkeypatch.setattr(mc.Sequential, "_train_step", original)
    assert lecture("all", *small(tiny, tmp_path / "twice", batch=2), "--resume") == 0
    printed = capsys.readouterr().out
    assert "scratch: already finished" in printed and "resuming augment" in printed
    assert "lecture: flow 2/5 augment, epoch 1/2 - 3/10 epochs" in printed
    for flow in flows.FLOWS:
        for key, values in history_of(tmp_path / "once" / flow).items():
            np.testing.assert_allclose(history_of(tmp_path / "twice" / flow)[key], values,
                                       rtol=1e-6, err_msg=f"{flow} {key}")


def test_a_one_pass_epoch_counts_the_image_files(tmp_path):
    from minicnn.whole_lecture import train_images_per_epoch
    for name in ("cats/a.jpg", "cats/b.PNG", "dogs/deep/c.jpeg", "dogs/notes.txt"):
        (tmp_path / "train" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "train" / name).write_bytes(b"")
    assert train_images_per_epoch(flows.resolve("features", tmp_path)) == 3
    assert train_images_per_epoch(flows.resolve("scratch", tmp_path)) == 100 * 20


def test_the_overall_estimate_uses_the_measured_pace():
    from minicnn.whole_lecture import LecturePlan, format_duration
    now = [0.0]
    runs = [flows.resolve(name, "DIR") for name in ("scratch", "augment")]
    plan = LecturePlan(runs, clock=lambda: now[0])
    guess = [r.flow.seconds_per_image * r.hyper.steps_per_epoch * r.hyper.batch_size
             for r in runs]
    assert plan.total_epochs == 130
    assert plan.seconds_left() == pytest.approx(30 * guess[0] + 100 * guess[1])
    now[0] = 100.0
    plan.epoch_ended(0, 2, 50.0)              # twice the guessed pace
    assert plan.seconds_left() == pytest.approx(28 * 50.0 + 100 * guess[1])
    plan.flow_ended(0)                        # augment's guess scales by the same factor
    assert plan.seconds_left() == pytest.approx(100 * guess[1] * 50.0 / guess[0])
    assert plan.line(1) == (f"lecture: flow 2/2 augment, epoch 0/100 - 30/130 epochs - "
                            f"1m40s so far - about {format_duration(plan.seconds_left())} left")
    assert format_duration(3 * 3600 + 5 * 60 + 29) == "3h05m"
    assert format_duration(59.6) == "1m00s"


def test_unfreeze_from_block5_conv1_as_the_lecture():
    from minicnn.applications import VGG16
    run = flows.resolve("finetune", None, seed=0)
    model = flows.features_augment_model(run, VGG16(weights=None, input_shape=(150, 150, 3)))
    flows.unfreeze_from(model, "block5_conv1")
    trainable = [layer.name for layer in model.layers[0].layers if layer.trainable_weights]
    assert trainable == ["block5_conv1", "block5_conv2", "block5_conv3"]
    assert sum(w.size for w in model.trainable_weights) == 9_177_089
    with pytest.raises(ValueError, match="expected a model whose first layer is the VGG16"):
        flows.unfreeze_from(flows.scratch_model(run), "block5_conv1")


# -- the default: the bundled sample -------------------------------------------------

def test_without_data_it_runs_on_the_bundled_sample(tmp_path, capsys):
    assert lecture("scratch", "--epochs", 1, "--steps-per-epoch", 1, "--validation-steps", 1,
                   "--batch-size", 2, "--out", tmp_path) == 0
    printed = capsys.readouterr().out
    assert "(the bundled sample)" in printed and "Found 1000 images belonging to 2 classes." in printed
    if HAVE_MATPLOTLIB:
        assert f"plot: {tmp_path / 'scratch' / 'history.png'}" in printed
    check_outputs(tmp_path / "scratch", 1)
    run = flows.resolve("scratch")          # the demo: 10 passes at 3x the lecture's rate
    assert (run.hyper.epochs, run.hyper.steps_per_epoch, run.hyper.validation_steps,
            run.hyper.learning_rate, run.hyper.batch_size) == (10, None, None, 3e-4, 20)
    run = flows.resolve("augment")
    assert (run.hyper.epochs, run.hyper.steps_per_epoch, run.hyper.learning_rate) == (2, None, 1e-4)
    run = flows.resolve("scratch", data=tmp_path)          # with --data: the lecture's own
    assert (run.hyper.epochs, run.hyper.steps_per_epoch, run.hyper.learning_rate) == (30, 100, 1e-4)


def test_without_matplotlib_the_plot_is_skipped(tmp_path, capsys, monkeypatch):
    from minicnn import plotting

    def missing():
        raise ImportError(plotting.MISSING_MATPLOTLIB)

    monkeypatch.setattr(plotting, "_pyplot", missing)
    assert lecture("scratch", "--epochs", 1, "--steps-per-epoch", 1, "--validation-steps", 1,
                   "--batch-size", 2, "--out", tmp_path) == 0
    assert "no plot: plotting needs matplotlib" in capsys.readouterr().out
    assert not (tmp_path / "scratch" / "history.png").exists()
    assert (tmp_path / "scratch" / "metrics.json").exists()


# -- bad input -----------------------------------------------------------------------

def _split(root, splits=("train", "validation"), classes=("cats", "dogs")):
    from minicnn import datasets
    import shutil
    for split in splits:
        for name in classes:
            (root / split / name).mkdir(parents=True)
            source = datasets.sample_dir() / "train" / ("cats" if name != "dogs" else "dogs")
            for file in sorted(os.listdir(source))[:2]:
                shutil.copyfile(source / file, root / split / name / file)
    return root


def test_data_without_validation_names_what_is_missing(tmp_path, capsys):
    data = _split(tmp_path / "d", splits=("train",))
    assert lecture("scratch", "--data", data, "--out", tmp_path / "o") == 1
    err = capsys.readouterr().err
    assert "has no validation/ folder (found: train/)" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_data_with_three_classes_is_refused(tmp_path, capsys):
    data = _split(tmp_path / "d", classes=("cats", "dogs", "foxes"))
    assert lecture("scratch", "--data", data, "--out", tmp_path / "o") == 1
    assert "expected exactly 2" in capsys.readouterr().err


def test_missing_vgg16_weights_print_the_command_before_any_flow_runs(tmp_path, capsys,
                                                                       monkeypatch):
    monkeypatch.setattr("minicnn.io.convert.weights_dirs", lambda: [str(tmp_path / "none")])
    monkeypatch.delenv("MINICNN_WEIGHTS", raising=False)
    data = _split(tmp_path / "d")
    assert lecture("all", "--data", data, "--out", tmp_path / "o") == 1
    err = capsys.readouterr().err
    assert "minicnn weights vgg16" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()          # scratch did not start either


def test_a_full_disk_is_a_clear_error(tmp_path, capsys, monkeypatch):
    def no_space(self, path, include_optimizer=True):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(mc.Sequential, "save", no_space)
    assert lecture("scratch", "--epochs", 1, "--steps-per-epoch", 1, "--validation-steps", 1,
                   "--batch-size", 2, "--out", tmp_path) == 1
    err = capsys.readouterr().err
    assert f"could not write the checkpoint {tmp_path / 'scratch' / 'model.h5'}" in err
    assert "No space left on device" in err
    assert [f for f in os.listdir(tmp_path / "scratch") if f != "history.json"] == []


def test_an_output_folder_that_cannot_be_made_is_named(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    assert lecture("scratch", "--out", tmp_path / "file") == 1
    assert f"cannot create the output folder {tmp_path / 'file' / 'scratch'}" in \
        capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["lecture", "vgg"], "invalid choice: 'vgg'"),
    (["lecture", "scratch", "--epochs", "0"], "expected a positive integer; received '0'"),
])
def test_bad_arguments_are_refused_by_argparse(args, message):
    result = subprocess.run([sys.executable, "-m", "minicnn.cli", *args], capture_output=True,
                            text=True)
    assert result.returncode == 2 and message in result.stderr


def test_lecture_has_help():
    result = subprocess.run([sys.executable, "-m", "minicnn.cli", "lecture", "--help"],
                            capture_output=True, text=True, check=True)
    assert "usage: minicnn lecture" in result.stdout
    for flow in flows.FLOWS:
        assert flow in result.stdout
    assert "--resume" in result.stdout and "minicnn weights vgg16" in result.stdout
