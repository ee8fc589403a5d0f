"""History of a fit: per-epoch logs, as Keras's History callback keeps them."""
from __future__ import annotations

import json

from minicnn.atomic import atomic_path


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


class Callback:
    """Hooks into fit, as Keras's callbacks: set_model, on_train_begin, on_epoch_end(epoch,
    logs), on_train_end. A callback stops training by setting model.stop_training = True."""

    def __init__(self):
        self.model = None

    def set_model(self, model) -> None:
        self.model = model

    def on_train_begin(self, logs=None) -> None:
        pass

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        pass

    def on_train_end(self, logs=None) -> None:
        pass


def _improvement(monitor: str, mode: str, owner: str):
    """(is_better(current, best, min_delta), initial best) for a monitored quantity."""
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"{owner}: mode must be 'auto', 'min' or 'max'; received {mode!r}")
    if mode == "auto":
        mode = "max" if ("acc" in monitor or monitor.endswith("accuracy")) else "min"
    if mode == "min":
        return (lambda current, best, delta: current < best - delta), float("inf")
    return (lambda current, best, delta: current > best + delta), float("-inf")


def _monitored(logs: dict, monitor: str, owner: str) -> float:
    if monitor not in logs:
        raise ValueError(f"{owner}: monitor={monitor!r} is not among this fit's logs "
                         f"{sorted(logs)}; give validation_data for 'val_' metrics")
    return float(logs[monitor])


class ModelCheckpoint(Callback):
    """Save the model (or only its weights) after each epoch, atomically: the previous file
    stays intact until the new one is complete. filepath may use '{epoch:02d}' and any log,
    e.g. 'ckpt-{epoch:02d}-{val_acc:.2f}.h5'. With save_best_only, only when `monitor`
    improves (mode 'auto': max for accuracies, min otherwise)."""

    def __init__(self, filepath, monitor="val_loss", save_best_only=False,
                 save_weights_only=False, mode="auto", verbose=0):
        super().__init__()
        self.filepath = str(filepath)
        self.monitor = monitor
        self.save_best_only = bool(save_best_only)
        self.save_weights_only = bool(save_weights_only)
        self.verbose = verbose
        self._better, self.best = _improvement(monitor, mode, "ModelCheckpoint")

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        path = self.filepath.format(epoch=epoch + 1, **logs)
        if self.save_best_only:
            current = _monitored(logs, self.monitor, "ModelCheckpoint")
            if not self._better(current, self.best, 0.0):
                return
            if self.verbose:
                print(f"Epoch {epoch + 1}: {self.monitor} improved from {self.best:.5f} to "
                      f"{current:.5f}, saving the model to {path}")
            self.best = current
        elif self.verbose:
            print(f"Epoch {epoch + 1}: saving the model to {path}")
        if self.save_weights_only:
            self.model.save_weights(path)
        else:
            self.model.save(path)


class EarlyStopping(Callback):
    """Stop when `monitor` has not improved by more than min_delta for `patience` epochs;
    restore_best_weights puts back the weights of the best epoch."""

    def __init__(self, monitor="val_loss", patience=0, min_delta=0.0, mode="auto",
                 restore_best_weights=False, verbose=0):
        super().__init__()
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 0:
            raise ValueError(f"EarlyStopping: patience must be an int >= 0; received {patience!r}")
        self.monitor = monitor
        self.patience = patience
        self.min_delta = abs(float(min_delta))
        self.restore_best_weights = bool(restore_best_weights)
        self.verbose = verbose
        self._better, self._initial = _improvement(monitor, mode, "EarlyStopping")
        self.stopped_epoch = None

    def on_train_begin(self, logs=None):
        self.best, self.wait, self.best_weights, self.stopped_epoch = self._initial, 0, None, None

    def on_epoch_end(self, epoch, logs=None):
        current = _monitored(logs or {}, self.monitor, "EarlyStopping")
        if self._better(current, self.best, self.min_delta):
            self.best, self.wait = current, 0
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            return
        self.wait += 1
        if self.wait >= self.patience and epoch > 0:       # as Keras counts patience
            self.stopped_epoch = epoch
            self.model.stop_training = True
            if self.verbose:
                print(f"Epoch {epoch + 1}: early stopping ({self.monitor} did not improve for "
                      f"{self.wait} epochs)")
            if self.restore_best_weights and self.best_weights is not None:
                self.model.set_weights(self.best_weights)
