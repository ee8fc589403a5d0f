"""Callbacks during fit: EarlyStopping, ModelCheckpoint, and an interrupted fit."""
import numpy as np
import pytest

import minicnn as mc
from minicnn import layers, optimizers


def _data(n=60, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 6)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.float32)
    return x, y


def _model(seed=0, lr=1e-2):
    model = mc.Sequential([layers.Dense(8, activation="relu", input_shape=(6,), name="hidden"),
                           layers.Dense(1, activation="sigmoid", name="out")], seed=seed)
    model.compile(optimizers.RMSprop(lr), "binary_crossentropy", ["acc"])
    return model


class _Script(mc.Callback):
    """Replays a fixed sequence of validation losses, to drive the monitors exactly."""

    def __init__(self, values):
        super().__init__()
        self.values = list(values)

    def on_epoch_end(self, epoch, logs=None):
        logs["val_loss"] = self.values[epoch]


def test_early_stopping_waits_patience_epochs_then_restores_the_best():
    x, y = _data()
    model = _model()
    script = _Script([0.9, 0.5, 0.6, 0.55, 0.7, 0.8, 0.1])
    snapshots = []

    class Snap(mc.Callback):
        def on_epoch_end(self, epoch, logs=None):
            snapshots.append(self.model.get_weights())

    stop = mc.EarlyStopping(monitor="val_loss", patience=2, restore_best_weights=True)
    history = model.fit(x, y, epochs=7, batch_size=20, verbose=0, validation_data=(x, y),
                        callbacks=[script, Snap(), stop])
    assert len(history.epoch) == 4 and stop.stopped_epoch == 3     # best at epoch 2, then 2 worse
    for a, b in zip(model.get_weights(), snapshots[1]):
        np.testing.assert_array_equal(a, b)


def test_checkpoint_saves_only_improvements(tmp_path):
    x, y = _data()
    model = _model()
    path = tmp_path / "best.weights.h5"
    saved = []

    class Spy(mc.Callback):
        def on_epoch_end(self, epoch, logs=None):
            saved.append(path.stat().st_mtime_ns if path.exists() else None)

    script = _Script([0.9, 0.5, 0.7])
    check = mc.ModelCheckpoint(path, monitor="val_loss", save_best_only=True, save_weights_only=True)
    model.fit(x, y, epochs=3, batch_size=20, verbose=0, validation_data=(x, y),
              callbacks=[script, check, Spy()])
    assert saved[0] is not None and saved[1] != saved[0] and saved[2] == saved[1]
    assert check.best == 0.5


def test_checkpoint_file_name_formats_epoch_and_logs(tmp_path):
    x, y = _data()
    model = _model()
    model.fit(x, y, epochs=2, batch_size=30, verbose=0,
              callbacks=[mc.ModelCheckpoint(str(tmp_path / "w-{epoch:02d}-{loss:.2f}.h5"),
                                            save_weights_only=True, monitor="loss")])
    names = sorted(p.name for p in tmp_path.iterdir())
    assert len(names) == 2 and names[0].startswith("w-01-") and names[1].startswith("w-02-")


def test_unknown_monitor_is_named():
    x, y = _data()
    with pytest.raises(ValueError, match=r"monitor='val_auc' is not among this fit's logs"):
        _model().fit(x, y, epochs=1, verbose=0, callbacks=[mc.EarlyStopping(monitor="val_auc")])


class _Interrupting:
    """Batches of (x, y) that raise KeyboardInterrupt (Ctrl-C) at a given call."""

    def __init__(self, x, y, at):
        self.x, self.y, self.at, self.calls = x, y, at, 0

    def __len__(self):
        return 3

    def __next__(self):
        self.calls += 1
        if self.calls == self.at:
            raise KeyboardInterrupt
        i = (self.calls - 1) % 3 * 20
        return self.x[i:i + 20], self.y[i:i + 20]


def test_ctrl_c_returns_the_finished_epochs_and_keeps_the_checkpoint(tmp_path, capsys):
    x, y = _data()
    model = _model()
    path = tmp_path / "last.weights.h5"
    history = model.fit(_Interrupting(x, y, at=8), epochs=5, verbose=0,
                        callbacks=[mc.ModelCheckpoint(path, save_weights_only=True, monitor="loss")])
    assert history.epoch == [0, 1] and len(history.history["loss"]) == 2
    assert "interrupted" in capsys.readouterr().out
    other = _model(seed=5)
    other.load_weights(path)                                    # complete, readable file
    assert all(np.isfinite(w).all() for w in other.get_weights())


@pytest.mark.parametrize("patience", [0, 1, 2, 3])
@pytest.mark.parametrize("values", [[0.9, 0.5, 0.6, 0.55, 0.7, 0.8, 0.1], [1.0, 0.9, 0.8, 0.85, 0.7, 0.75, 0.76]])
def test_early_stopping_stops_at_the_epoch_keras_stops(patience, values):
    import os
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    keras = pytest.importorskip("keras")

    class Holder:
        stop_training = False

    theirs = keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience)
    theirs.set_model(Holder())
    ours = mc.EarlyStopping(monitor="val_loss", patience=patience)
    ours.set_model(Holder())
    theirs.on_train_begin()
    ours.on_train_begin()
    for epoch, value in enumerate(values):
        theirs.on_epoch_end(epoch, {"val_loss": value})
        ours.on_epoch_end(epoch, {"val_loss": value})
        assert theirs.model.stop_training == ours.model.stop_training, epoch
        if ours.model.stop_training:
            break
