"""History of a fit: per-epoch logs, as Keras's History callback keeps them."""
from __future__ import annotations

import json

from minicnn.io.atomic import atomic_path


class History:
    """`history.history` maps 'loss', 'acc', 'val_loss', 'val_acc' (the metric as compiled)
    to one value per epoch; `history.epoch` lists the epoch indices."""

    def __init__(self, params=None):
        self.history: dict[str, list[float]] = {}
        self.epoch: list[int] = []
        self.params = dict(params or {})

    def append(self, epoch: int, logs: dict) -> None:
        self.epoch.append(epoch)
        for key, value in logs.items():
            self.history.setdefault(key, []).append(float(value))

    def __repr__(self) -> str:
        return f"<History epochs={len(self.epoch)} keys={list(self.history)}>"

    def to_json(self) -> str:
        return json.dumps({"epoch": self.epoch, "history": self.history, "params": self.params},
                          indent=2)

    def save(self, path) -> None:
        """Write the history as JSON, atomically (temporary file, then rename)."""
        with atomic_path(path) as tmp:
            with open(tmp, "w") as f:
                f.write(self.to_json())

    def plot(self, path, title=None) -> str:
        """The lecture's figure (loss and accuracy, training vs validation) as a PNG."""
        from minicnn.plotting import plot_history
        return plot_history(self.history, path, title)

    @classmethod
    def load(cls, path) -> "History":
        with open(path) as f:
            data = json.load(f)
        history = cls(data.get("params"))
        history.history = {k: [float(v) for v in vs] for k, vs in data["history"].items()}
        n_epochs = len(next(iter(history.history.values()), []))
        history.epoch = list(data.get("epoch", range(n_epochs)))
        return history
