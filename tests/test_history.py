import json

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
