"""History of a fit: per-epoch logs, as Keras's History callback keeps them."""
from __future__ import annotations

import json
import os
import tempfile


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
        path = os.fspath(path)
        folder = os.path.dirname(os.path.abspath(path))
        fd, tmp = tempfile.mkstemp(prefix=".history-", suffix=".json.tmp", dir=folder)
        try:
            with os.fdopen(fd, "w") as f:
                f.write(self.to_json())
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise

    @classmethod
    def load(cls, path) -> "History":
        with open(path) as f:
            data = json.load(f)
        history = cls(data.get("params"))
        history.history = {k: [float(v) for v in vs] for k, vs in data["history"].items()}
        n_epochs = len(next(iter(history.history.values()), []))
        history.epoch = list(data.get("epoch", range(n_epochs)))
        return history
