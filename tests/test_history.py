import json
import sys

import pytest

from minicnn import History


def test_history_saves_and_loads_json(tmp_path):
    history = History({"epochs": 2})
    history.append(0, {"loss": 0.7, "acc": 0.5, "val_loss": 0.69, "val_acc": 0.52})
    history.append(1, {"loss": 0.6, "acc": 0.6, "val_loss": 0.65, "val_acc": 0.58})
    path = tmp_path / "history.json"
    history.save(path)
    assert json.loads(path.read_text())["history"]["val_acc"] == [0.52, 0.58]
    loaded = History.load(path)
    assert loaded.history == history.history and loaded.epoch == [0, 1]
    assert list(tmp_path.iterdir()) == [path]            # no temporary file left behind


def _history():
    history = History()
    for epoch in range(5):
        history.append(epoch, {"loss": 1 / (epoch + 1), "acc": 0.5 + epoch / 20,
                               "val_loss": 0.8, "val_acc": 0.6})
    return history


def test_plot_writes_a_png_atomically(tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "history.png"
    _history().plot(out, title="scratch")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert list(tmp_path.iterdir()) == [out]


def test_plot_command_reads_history_json(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    from minicnn import cli
    _history().save(tmp_path / "h.json")
    assert cli.main(["plot", str(tmp_path / "h.json")]) == 0
    assert (tmp_path / "h.png").exists() and "wrote" in capsys.readouterr().out


def test_plot_without_matplotlib_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)       # import fails
    with pytest.raises(ImportError, match=r"pip install 'minicnn\[plot\]'"):
        _history().plot(tmp_path / "h.png")
    assert not list(tmp_path.iterdir())


def test_plot_of_an_empty_history_is_refused(tmp_path):
    with pytest.raises(ValueError, match="no 'loss' values"):
        History().plot(tmp_path / "h.png")


@pytest.mark.parametrize("epochs", [1, 2, 3, 7, 30, 100])
def test_plot_has_the_lectures_two_panels_with_whole_epoch_ticks(epochs):
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt
    from minicnn.plotting import history_figure

    history = History()
    for epoch in range(epochs):
        history.append(epoch, {"loss": 1 / (epoch + 1), "acc": 0.5 + epoch / (2 * epochs),
                               "val_loss": 0.8, "val_acc": 0.6})
    fig = history_figure(history.history, title="scratch")
    try:
        loss, acc = fig.axes
        assert (loss.get_ylabel(), acc.get_ylabel()) == ("loss", "accuracy")
        assert loss.get_title() == "scratch" and acc.get_xlabel() == "epoch"
        for ax, key in ((loss, "loss"), (acc, "acc")):
            (train, val) = ax.get_lines()
            assert (train.get_label(), val.get_label()) == ("training", "validation")
            assert list(train.get_xdata()) == list(range(1, epochs + 1))
            assert list(train.get_ydata()) == history.history[key]
            assert list(val.get_ydata()) == history.history[f"val_{key}"]
        fig.canvas.draw()
        low, high = acc.get_xlim()
        ticks = [t for t in acc.get_xticks() if low <= t <= high]
        assert 1 <= len(ticks) <= 11 and all(float(t).is_integer() for t in ticks), ticks
    finally:
        plt.close(fig)
