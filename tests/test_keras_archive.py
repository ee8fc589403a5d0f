"""Keras 3's native .keras archive (minicnn.io.keras_archive): the hand-off to Keras with
the optimizer's state, and back.

    the archive's layout: its members stored as Keras stores them, config.json as
        serialize_keras_object writes it, the variables by Keras's paths
    minicnn round trip: weights, optimizer state, the next step bit for bit (Dropout's
        generators included), model.save / load_model by the .keras suffix
    with Keras (TensorFlow backend): keras.saving.load_model of minicnn's archive, then
        one more training step (train_on_batch and fit) gives the loss and weights of
        minicnn's own next step to 1e-5, for the lecture's kind of CNN and for a frozen
        VGG16 base with block5 trainable; Keras's archives open here and continue the same
    bad archives: not a zip, cut short, missing members, wrong variable shapes or counts,
        a layer minicnn lacks: clear errors; an unwritable destination
    `minicnn export`: an .h5 model file to .keras and back
"""
import io
import json
import os
import zipfile

os.environ["TF_ENABLE_ONEDNN_OPTS"] = "0"
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"

import h5py
import numpy as np
import pytest

import minicnn as mc
from minicnn import cli, layers, optimizers
from minicnn.flows import catalog
from minicnn.io.keras_archive import load_keras, save_keras
from minicnn.io.model_file import load_model, save_model


@pytest.fixture(autouse=True)
def fresh_names():
    mc.clear_session()


def _keras():
    keras = pytest.importorskip("keras")
    if keras.backend.backend() != "tensorflow":
        pytest.skip("the Keras comparisons run on the TensorFlow backend")
    keras.backend.clear_session()
    return keras


def _cnn(dropout=False, seed=0):
    stack = [layers.Conv2D(4, 3, activation="relu", input_shape=(12, 11, 3)),
             layers.MaxPooling2D(), layers.Conv2D(3, 2, padding="same", activation="relu"),
             layers.Flatten()]
    if dropout:
        stack.append(layers.Dropout(0.4))
    stack += [layers.Dense(5, activation="relu"), layers.Dense(1, activation="sigmoid")]
    model = mc.Sequential(stack, seed=seed)
    model.compile(optimizers.RMSprop(learning_rate=1e-3), "binary_crossentropy", ["acc"])
    return model


def _finetune_vgg16(seed=0):
    """Flow 5's model on 32x32 inputs: VGG16 base frozen up to block5, a dense head."""
    base = mc.applications.VGG16(weights=None, include_top=False, input_shape=(32, 32, 3),
                                 seed=seed)
    model = catalog.frozen_base_with_head(base, seed=seed)
    catalog.unfreeze_from(model, "block5_conv1")
    model.compile(optimizers.RMSprop(learning_rate=1e-4), "binary_crossentropy", ["acc"])
    return model


def _data(shape, n=6, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((n,) + tuple(shape), dtype=np.float32)
    return x, (np.arange(n) % 2).astype(np.float32)


def _trained(model, x, y, steps=3):
    for _ in range(steps):
        model.train_on_batch(x, y)
    return model


# -- the archive itself ---------------------------------------------------------------------

def test_the_archive_holds_what_keras_writes(tmp_path):
    x, y = _data((12, 11, 3))
    model = _trained(_cnn(), x, y)
    path = save_keras(model, tmp_path / "m.keras")
    with zipfile.ZipFile(path) as archive:
        infos = {i.filename: i for i in archive.infolist()}
        assert set(infos) == {"metadata.json", "config.json", "model.weights.h5", "minicnn.json"}
        assert all(i.compress_type == zipfile.ZIP_STORED for i in infos.values())
        config = json.loads(archive.read("config.json"))
        metadata = json.loads(archive.read("metadata.json"))
        weights = archive.read("model.weights.h5")
    assert metadata["keras_version"].startswith("3.")
    assert (config["module"], config["class_name"]) == ("keras", "Sequential")
    assert config["build_config"] == {"input_shape": [None, 12, 11, 3]}
    assert config["compile_config"]["optimizer"]["class_name"] == "RMSprop"
    assert config["compile_config"]["loss"] == "binary_crossentropy"
    entries = config["config"]["layers"]
    assert [e["class_name"] for e in entries] == ["InputLayer", "Conv2D", "MaxPooling2D",
                                                  "Conv2D", "Flatten", "Dense", "Dense"]
    assert all(e["module"] == "keras.layers" for e in entries)
    assert entries[3]["build_config"] == {"input_shape": [None, 5, 4, 4]}
    with h5py.File(io.BytesIO(weights), "r") as f:
        # Keras's paths: the class in snake case, numbered from the second on.
        assert sorted(f["layers"]) == ["conv2d", "conv2d_1", "dense", "dense_1", "flatten",
                                      "max_pooling2d"]
        assert np.array_equal(f["layers/conv2d_1/vars/0"], model.layers[2].kernel)
        assert np.array_equal(f["layers/dense_1/vars/1"], model.layers[-1].bias)
        assert len(f["layers/flatten/vars"]) == 0
        optimizer = f["optimizer/vars"]
        assert optimizer[("0")][()] == 3 and optimizer["0"].dtype == np.int64
        assert optimizer["1"][()] == np.float32(1e-3)
        velocities = model.optimizer.get_state(model.trainable_weights)
        assert len(optimizer) == 2 + len(model.trainable_weights)
        for i, state in enumerate(velocities):
            assert np.array_equal(optimizer[str(2 + i)], state["velocity"])


def test_round_trip_continues_training_bit_for_bit(tmp_path):
    x, y = _data((12, 11, 3))
    model = _trained(_cnn(dropout=True), x, y)
    model.save(tmp_path / "m.keras")               # the suffix picks the format
    again = load_model(tmp_path / "m.keras")
    assert again.optimizer.iterations == model.optimizer.iterations == 3
    for a, b in zip(model.get_weights(), again.get_weights()):
        assert np.array_equal(a, b)
    history = [model.fit(x, y, batch_size=4, epochs=2, verbose=0).history,
               again.fit(x, y, batch_size=4, epochs=2, verbose=0).history]
    assert history[0] == history[1]                # Dropout masks and shuffling included
    for a, b in zip(model.get_weights(), again.get_weights()):
        assert np.array_equal(a, b)


def test_an_uncompiled_model_or_no_optimizer_writes_no_training_state(tmp_path):
    x, y = _data((12, 11, 3))
    model = _trained(_cnn(), x, y)
    path = save_keras(model, tmp_path / "m.keras", include_optimizer=False)
    with zipfile.ZipFile(path) as archive:
        assert "compile_config" not in json.loads(archive.read("config.json"))
        with h5py.File(io.BytesIO(archive.read("model.weights.h5")), "r") as f:
            assert "optimizer" not in f
    again = load_keras(path)
    assert again.optimizer is None
    np.testing.assert_array_equal(again.predict(x, verbose=0), model.predict(x, verbose=0))


# -- with Keras -------------------------------------------------------------------------------

def _same_next_step(keras_model, model, x, y, use_fit):
    if use_fit:
        k_loss = keras_model.fit(x, y, batch_size=len(x), epochs=1, shuffle=False,
                                 verbose=0).history["loss"][0]
        m_loss = model.fit(x, y, batch_size=len(x), epochs=1, shuffle=False,
                           verbose=0).history["loss"][0]
    else:
        k_loss = keras_model.train_on_batch(x, y)[0]
        m_loss = model.train_on_batch(x, y)[0]
    assert k_loss == pytest.approx(m_loss, rel=1e-5, abs=1e-6)
    keras_weights = keras_model.get_weights()
    assert len(keras_weights) == len(model.get_weights())
    for a, b in zip(model.get_weights(), keras_weights):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("use_fit", [False, True], ids=["train_on_batch", "fit"])
def test_keras_continues_minicnn_training_where_it_stopped(tmp_path, use_fit):
    keras = _keras()
    x, y = _data((12, 11, 3))
    model = _trained(_cnn(), x, y)
    path = save_keras(model, tmp_path / "m.keras")
    keras_model = keras.saving.load_model(path)
    assert int(keras_model.optimizer.iterations.numpy()) == 3
    np.testing.assert_allclose(keras_model.predict_on_batch(x), model.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-6)
    _same_next_step(keras_model, model, x, y, use_fit)


def test_keras_continues_the_finetuning_of_a_vgg16_base(tmp_path):
    keras = _keras()
    x, y = _data((32, 32, 3), n=4)
    model = _trained(_finetune_vgg16(), x, y, steps=2)
    path = save_keras(model, tmp_path / "finetune.keras")
    keras_model = keras.saving.load_model(path)
    assert [l.name for l in keras_model.layers] == [l.name for l in model.layers]
    assert len(keras_model.trainable_weights) == len(model.trainable_weights) == 10
    _same_next_step(keras_model, model, x, y, use_fit=False)


def test_minicnn_continues_a_keras_archive(tmp_path):
    keras = _keras()
    x, y = _data((12, 11, 3))
    model = _trained(_cnn(), x, y)
    keras_model = keras.saving.load_model(save_keras(model, tmp_path / "m.keras"))
    for _ in range(2):
        keras_model.train_on_batch(x, y)
    keras_model.save(tmp_path / "k.keras")
    again = load_keras(tmp_path / "k.keras")
    assert again.optimizer.iterations == 5
    _same_next_step(keras_model, again, x, y, use_fit=False)


def test_a_keras_built_model_opens_with_its_state(tmp_path):
    keras = _keras()
    x, y = _data((12, 11, 3))
    keras.utils.set_random_seed(1)
    keras_model = keras.Sequential([
        keras.Input((12, 11, 3)), keras.layers.Conv2D(4, 3, activation="relu", name="c"),
        keras.layers.MaxPooling2D(), keras.layers.Flatten(),
        keras.layers.Dense(1, activation="sigmoid")])
    keras_model.compile(optimizer=keras.optimizers.RMSprop(1e-3),
                        loss="binary_crossentropy", metrics=["acc"])
    keras_model.train_on_batch(x, y)
    keras_model.save(tmp_path / "k.keras")
    model = load_model(tmp_path / "k.keras")
    assert [l.name for l in model.layers] == [l.name for l in keras_model.layers]
    _same_next_step(keras_model, model, x, y, use_fit=False)


# -- bad archives ---------------------------------------------------------------------------

def _rewrite(src, dst, replace):
    with zipfile.ZipFile(src) as old, zipfile.ZipFile(dst, "w") as new:
        for name in old.namelist():
            data = replace(name, old.read(name))
            if data is not None:
                new.writestr(name, data)
    return dst


def _weights_edit(edit):
    def replace(name, data):
        if name != "model.weights.h5":
            return data
        buffer = io.BytesIO(data)
        with h5py.File(buffer, "r+") as f:
            edit(f)
        return buffer.getvalue()
    return replace


def _config_edit(edit):
    def replace(name, data):
        if name != "config.json":
            return data
        config = json.loads(data)
        edit(config)
        return json.dumps(config)
    return replace


def _retype(f, path, dtype):
    value = f[path][()]
    del f[path]
    f[path] = value.astype(dtype)


BAD_ARCHIVES = {
    "no config": (lambda src, dst: _rewrite(src, dst, lambda n, d: None if n == "config.json"
                                             else d), "no config.json"),
    "no weights": (lambda src, dst: _rewrite(src, dst, lambda n, d: None
                                              if n == "model.weights.h5" else d),
                   "no model.weights.h5"),
    "config not JSON": (lambda src, dst: _rewrite(src, dst, lambda n, d: b"{oops"
                                                   if n == "config.json" else d),
                        "config.json is not valid JSON"),
    "kernel of another shape": (
        lambda src, dst: _rewrite(src, dst, _weights_edit(lambda f: (
            f.__delitem__("layers/conv2d/vars/0"),
            f.create_dataset("layers/conv2d/vars/0", data=np.zeros((2, 2, 3, 4), "f4"))))),
        r"layer 'conv2d' \(Conv2D, layers/conv2d/vars\), variable 0: .*shape \(2, 2, 3, 4\)"),
    "integer kernel": (lambda src, dst: _rewrite(src, dst, _weights_edit(
        lambda f: _retype(f, "layers/dense/vars/0", np.int32))), "int32 of shape"),
    "a variable missing": (lambda src, dst: _rewrite(src, dst, _weights_edit(
        lambda f: f.__delitem__("layers/dense_1/vars/1"))), "has 1 variables, the model expects 2"),
    "a layer minicnn lacks": (lambda src, dst: _rewrite(src, dst, _config_edit(
        lambda c: c["config"]["layers"][2].update(class_name="AveragePooling2D"))),
        r"'max_pooling2d' \(AveragePooling2D\).*minicnn supports"),
    "velocities of another count": (lambda src, dst: _rewrite(src, dst, _weights_edit(
        lambda f: f.__delitem__(f"optimizer/vars/{len(f['optimizer/vars']) - 1}"))),
        "optimizer state"),
    "a variable numbered out of order": (lambda src, dst: _rewrite(src, dst, _weights_edit(
        lambda f: f.move("optimizer/vars/3", "optimizer/vars/30"))),
        r"optimizer/vars holds variables .*expected 0, 1, 2"),
}


@pytest.mark.parametrize("case", sorted(BAD_ARCHIVES))
def test_bad_archives_are_clear_errors(tmp_path, case):
    x, y = _data((12, 11, 3))
    src = save_keras(_trained(_cnn(), x, y, steps=1), tmp_path / "good.keras")
    make, message = BAD_ARCHIVES[case]
    bad = make(src, tmp_path / "bad.keras")
    with pytest.raises(ValueError, match=message) as error:
        load_model(bad)
    assert str(bad) in str(error.value)


@pytest.mark.parametrize("cut", [10, 200, 0.5, -20])
def test_an_archive_cut_short_is_a_clear_error(tmp_path, cut):
    x, y = _data((12, 11, 3))
    data = open(save_keras(_cnn(), tmp_path / "good.keras"), "rb").read()
    size = int(len(data) * cut) if isinstance(cut, float) else cut % len(data)
    bad = tmp_path / "cut.keras"
    bad.write_bytes(data[:size])
    with pytest.raises(ValueError, match=r"cut\.keras.*(damaged|cut short|neither)"):
        load_model(bad)


def test_an_unwritable_destination_keeps_the_previous_file(tmp_path):
    x, y = _data((12, 11, 3))
    model = _cnn()
    blocker = tmp_path / "a_file"
    blocker.write_text("in the way")
    with pytest.raises(OSError, match=r"cannot write .*a_file"):
        save_keras(model, blocker / "m.keras")
    path = save_keras(model, tmp_path / "m.keras")
    before = open(path, "rb").read()
    with pytest.raises(TypeError):
        save_keras("not a model", path)
    assert open(path, "rb").read() == before
    with pytest.raises(IsADirectoryError, match="it is a folder"):
        save_keras(model, tmp_path)


# -- the command -----------------------------------------------------------------------------

def test_export_writes_an_archive_with_the_optimizer_state(tmp_path, capsys):
    x, y = _data((12, 11, 3))
    model = _trained(_cnn(), x, y)
    save_model(model, tmp_path / "m.h5")
    assert cli.main(["export", str(tmp_path / "m.h5"), str(tmp_path / "m.keras")]) == 0
    assert "with its optimizer state (3 steps)" in capsys.readouterr().out
    again = load_model(tmp_path / "m.keras")
    assert again.optimizer.iterations == 3
    for a, b in zip(model.get_weights(), again.get_weights()):
        assert np.array_equal(a, b)
    assert cli.main(["export", str(tmp_path / "m.keras"), str(tmp_path / "back.h5"),
                     "--no-optimizer"]) == 0
    assert load_model(tmp_path / "back.h5").optimizer is None
    assert cli.main(["export", str(tmp_path / "m.h5"), str(tmp_path / "m.txt")]) == 1
    assert "expected a .keras" in capsys.readouterr().err
    assert cli.main(["export", str(tmp_path / "missing.h5"), str(tmp_path / "x.keras")]) == 1
    assert "does not exist" in capsys.readouterr().err
