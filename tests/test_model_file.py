"""Whole-model files in Keras's legacy HDF5 layout (minicnn.io.model_file).

    minicnn round trip: architecture, weights, predictions, optimizer state (RMSprop, RMSprop
        with momentum, Adam, SGD with Nesterov momentum) and the next training step (and a
        shuffled epoch) bit for bit; nested models; uncompiled files; repeatable bytes
    the file's layout: attributes, model_weights, Keras's optimizer variable names and order
    an interrupted save leaves the previous file intact
    bad input: missing, not HDF5, a zip without a model's entries, a weights file, HDF5 without a model, a layer
        class minicnn lacks, options it cannot compute, weights of the wrong shape, an unknown
        optimizer, an unbuilt model: clear errors, files unchanged
    with Keras (TensorFlow backend): minicnn's files open in keras.models.load_model and
        predict the same (lecture CNN with Dropout, nested Sequential, VGG16 classifier) with
        the very config Keras writes; Keras's .h5 files (Keras 3, and a Keras 2.2.4-style
        file) open here with the same predictions, parameter counts and optimizer state (the
        next step equals Keras's); minicnn's optimizer_weights, loaded into a Keras optimizer,
        give Keras's next step
"""
import hashlib
import json
import os
import shutil
import zipfile

os.environ["TF_ENABLE_ONEDNN_OPTS"] = "0"
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"

import h5py
import numpy as np
import pytest

import minicnn as mc
from minicnn import layers, optimizers
from minicnn.applications import lecture
from minicnn.applications.vgg16 import VGG16Model
from minicnn.io import hdf5, model_file
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


# -- models and data ------------------------------------------------------------------

def _small_cnn(seed=0, dropout=True):
    """The lecture's shape of model, small: conv, pool, flatten, dropout, dense, sigmoid."""
    stack = [layers.Conv2D(4, (3, 3), activation="relu", input_shape=(10, 9, 3)),
             layers.MaxPooling2D((2, 2)), layers.Flatten()]
    if dropout:
        stack.append(layers.Dropout(0.3))
    stack += [layers.Dense(6, activation="relu"), layers.Dense(1, activation="sigmoid")]
    return mc.Sequential(stack, seed=seed)


def _nested(seed=0, frozen=False):
    """A model inside a model, the inner one frozen or not."""
    inner = mc.Sequential([
        layers.Conv2D(4, (3, 2), activation="relu", input_shape=(8, 7, 3), name="c1"),
        layers.MaxPooling2D(2, name="p1"),
        layers.Conv2D(5, 3, padding="same", name="c2")], name="base", seed=seed)
    inner.trainable = not frozen
    return mc.Sequential([inner, layers.Flatten(name="flatten"), layers.Dropout(0.2),
                          layers.Dense(2, activation="sigmoid", name="d")], name="outer",
                         seed=seed)


def _vgg_classifier(seed=0):
    """The lecture's feature-extraction model on 32x32 inputs: frozen VGG16 base."""
    base = mc.applications.VGG16(weights=None, input_shape=(32, 32, 3), seed=seed)
    base.trainable = False
    return mc.Sequential([base, layers.Flatten(), layers.Dense(256, activation="relu"),
                          layers.Dense(1, activation="sigmoid")], seed=seed)


def _data(shape, n=6, seed=0, outputs=1):
    rng = np.random.default_rng(seed)
    x = rng.random((n,) + tuple(shape), dtype=np.float32)
    y = (rng.random((n, outputs)) > 0.5).astype(np.float32)
    return x, y


def _digest(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def _attr_json(path, key):
    with h5py.File(path, "r") as f:
        return json.loads(f.attrs[key])


def _assert_same_weights(a, b):
    wa, wb = a.get_weights(), b.get_weights()
    assert len(wa) == len(wb)
    for x, y in zip(wa, wb):
        assert x.dtype == y.dtype and np.array_equal(x, y)


# -- round trip in minicnn ---------------------------------------------------------------

def test_round_trip_keeps_architecture_weights_and_predictions(tmp_path):
    model = lecture.cnn(input_shape=(48, 48, 3), dropout=True, seed=3)
    model.compile(optimizer=optimizers.RMSprop(learning_rate=1e-4),
                  loss="binary_crossentropy", metrics=["acc"])
    x, y = _data((48, 48, 3), n=4)
    model.train_on_batch(x, y)
    path = save_model(model, tmp_path / "cats_and_dogs_small_2.h5")

    loaded = load_model(path)
    assert type(loaded) is mc.Sequential and loaded.name == model.name
    assert [type(l) for l in loaded.layers] == [type(l) for l in model.layers]
    assert [l.get_config() for l in loaded.layers] == [l.get_config() for l in model.layers]
    assert loaded.input_shape == model.input_shape == (None, 48, 48, 3)
    assert loaded.count_params() == model.count_params()
    _assert_same_weights(model, loaded)
    assert np.array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    assert loaded.metrics == ["acc"] and loaded.loss.name == "binary_crossentropy"
    assert loaded.optimizer.get_config() == model.optimizer.get_config()
    assert loaded.optimizer.iterations == 1


@pytest.mark.parametrize("make_optimizer", [
    lambda: optimizers.RMSprop(learning_rate=1e-3),
    lambda: optimizers.RMSprop(learning_rate=1e-3, momentum=0.9, epsilon_inside_sqrt=False),
    lambda: optimizers.Adam(learning_rate=1e-3, beta_1=0.8),
    lambda: optimizers.SGD(learning_rate=0.05, momentum=0.9, nesterov=True),
], ids=["rmsprop", "rmsprop-momentum-keras2", "adam", "sgd-nesterov"])
def test_training_resumes_exactly(tmp_path, make_optimizer):
    model = _small_cnn(seed=1)
    model.compile(optimizer=make_optimizer(), loss="binary_crossentropy", metrics=["acc"])
    x, y = _data((10, 9, 3), n=8)
    for _ in range(3):
        model.train_on_batch(x, y)
    loaded = load_model(save_model(model, tmp_path / "m.h5"))

    assert type(loaded.optimizer) is type(model.optimizer)
    assert loaded.optimizer.get_config() == model.optimizer.get_config()
    assert loaded.optimizer.iterations == model.optimizer.iterations == 3
    for before, after in zip(model.optimizer.get_state(model.trainable_weights),
                             loaded.optimizer.get_state(loaded.trainable_weights)):
        assert before.keys() == after.keys()
        for name in before:
            assert np.array_equal(before[name], after[name])
    # The next step (Dropout masks included), then a shuffled epoch: bit for bit.
    assert model.train_on_batch(x, y) == loaded.train_on_batch(x, y)
    _assert_same_weights(model, loaded)
    h1 = model.fit(x, y, batch_size=3, epochs=1, verbose=0)
    h2 = loaded.fit(x, y, batch_size=3, epochs=1, verbose=0)
    assert h1.history == h2.history
    _assert_same_weights(model, loaded)


def test_nested_models_round_trip_with_their_classes_and_frozen_flags(tmp_path):
    model = _nested(seed=2, frozen=True)
    model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
    x, y = _data((8, 7, 3), n=4, outputs=2)
    model.train_on_batch(x, y)
    loaded = load_model(save_model(model, tmp_path / "nested.h5"))
    inner = loaded.get_layer("base")
    assert type(inner) is mc.Sequential and not inner.trainable
    assert [l.name for l in inner.layers] == ["c1", "p1", "c2"]
    assert all(not l.trainable for l in inner.layers)
    assert len(loaded.trainable_weights) == 2 and loaded.count_params() == model.count_params()
    _assert_same_weights(model, loaded)
    assert model.train_on_batch(x, y) == loaded.train_on_batch(x, y)
    _assert_same_weights(model, loaded)

    vgg = _vgg_classifier(seed=0)
    loaded = load_model(save_model(vgg, tmp_path / "vgg.h5"))
    base = loaded.layers[0]
    assert type(base) is VGG16Model and base.name == "vgg16" and not base.trainable
    assert loaded.count_params() == vgg.count_params() == 14_846_273
    assert sum(w.size for w in loaded.trainable_weights) == 131_585
    _assert_same_weights(vgg, loaded)
    assert "vgg16 (Functional)" in mc.model.summary_text(loaded)


def test_uncompiled_and_without_optimizer(tmp_path):
    model = _small_cnn()
    path = save_model(model, tmp_path / "plain.h5")
    with h5py.File(path, "r") as f:
        assert "training_config" not in f.attrs and "optimizer_weights" not in f
    loaded = load_model(path)
    assert loaded.optimizer is None and loaded.loss is None
    _assert_same_weights(model, loaded)

    model.compile(optimizer="rmsprop", loss="binary_crossentropy")
    path = save_model(model, tmp_path / "no_opt.h5", include_optimizer=False)
    with h5py.File(path, "r") as f:
        assert "training_config" not in f.attrs and "optimizer_weights" not in f
    path = save_model(model, tmp_path / "compiled.h5")
    assert load_model(path, compile=False).optimizer is None
    compiled = load_model(path)
    assert compiled.optimizer.iterations == 0 and compiled.metrics == []


def test_float64_model_round_trips(tmp_path):
    model = _small_cnn(dropout=False)
    model.set_dtype("float64")
    loaded = load_model(save_model(model, tmp_path / "f64.h5"))
    assert all(l.dtype == np.float64 for l in loaded.layers)
    _assert_same_weights(model, loaded)


def test_file_layout_is_keras_legacy_h5(tmp_path):
    model = _nested(seed=0)
    model.compile(optimizer=optimizers.RMSprop(momentum=0.5), loss="binary_crossentropy",
                  metrics=["acc"])
    path = save_model(model, tmp_path / "m.h5")
    with h5py.File(path, "r") as f:
        assert f.attrs["keras_version"] == model_file.KERAS_VERSION
        assert f.attrs["backend"] == "tensorflow"
        group = f["model_weights"]
        assert list(hdf5._load_attribute(group, "layer_names")) == \
            ["base", "flatten", "dropout", "d"]
        assert hdf5._load_attribute(group["base"], "weight_names") == \
            ["base/c1/kernel", "base/c1/bias", "base/c2/kernel", "base/c2/bias"]
        assert hdf5._load_attribute(group["d"], "weight_names") == \
            ["outer/d/kernel", "outer/d/bias"]
        opt = f["optimizer_weights"]
        names = hdf5._load_attribute(opt, "weight_names")
        paths = ["base_c1_kernel", "base_c1_bias", "base_c2_kernel", "base_c2_bias",
                 "outer_d_kernel", "outer_d_bias"]
        # RMSprop: every velocity, then every momentum (Keras's order of variables).
        assert names == ["rm_sprop/iteration", "rm_sprop/learning_rate"] + \
            [f"rm_sprop/{p}_velocity" for p in paths] + [f"rm_sprop/{p}_momentum" for p in paths]
        assert opt["rm_sprop/iteration"].shape == () and opt["rm_sprop/iteration"].dtype == np.int64
        assert opt["rm_sprop/learning_rate"].shape == ()
    config = _attr_json(path, "model_config")
    assert config["class_name"] == "Sequential"
    assert [e["class_name"] for e in config["config"]["layers"]] == \
        ["InputLayer", "Sequential", "Flatten", "Dropout", "Dense"]
    inner = config["config"]["layers"][1]["config"]
    assert inner["layers"][0]["config"]["batch_shape"] == [None, 8, 7, 3]
    training = _attr_json(path, "training_config")
    assert training["loss"] == "binary_crossentropy" and training["metrics"] == ["acc"]
    assert training["optimizer_config"]["class_name"] == "RMSprop"
    assert training["optimizer_config"]["config"]["momentum"] == 0.5

    model = _nested(seed=0)
    model.compile(optimizer="adam", loss="binary_crossentropy")
    path = save_model(model, tmp_path / "adam.h5")
    with h5py.File(path, "r") as f:
        names = hdf5._load_attribute(f["optimizer_weights"], "weight_names")
    # Adam: momentum and velocity of each weight in turn.
    assert names[2:6] == ["adam/base_c1_kernel_momentum", "adam/base_c1_kernel_velocity",
                          "adam/base_c1_bias_momentum", "adam/base_c1_bias_velocity"]


def test_saving_is_repeatable_byte_for_byte(tmp_path):
    model = _small_cnn()
    model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["acc"])
    model.train_on_batch(*_data((10, 9, 3)))
    a = save_model(model, tmp_path / "a.h5")
    b = save_model(model, tmp_path / "b.h5")
    assert _digest(a) == _digest(b)


def test_an_interrupted_save_leaves_the_previous_file(tmp_path, monkeypatch):
    model = _small_cnn(seed=0)
    model.compile(optimizer="rmsprop", loss="binary_crossentropy")
    path = save_model(model, tmp_path / "model.h5")
    before = _digest(path)

    real_write_group, calls = hdf5._write_group, []

    def failing_write_group(group, weights):
        calls.append(group.name)
        real_write_group(group, weights)
        if len(calls) == 3:           # some layers written, the file half done
            raise OSError("disk full (simulated)")

    monkeypatch.setattr(hdf5, "_write_group", failing_write_group)
    other = _small_cnn(seed=1)
    with pytest.raises(OSError, match="simulated"):
        save_model(other, path)
    assert len(calls) == 3
    assert _digest(path) == before
    assert os.listdir(tmp_path) == ["model.h5"]          # no temporary file left
    monkeypatch.undo()
    _assert_same_weights(model, load_model(path))


# -- bad input ------------------------------------------------------------------------

def test_bad_files_give_clear_errors_and_stay_unchanged(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_model(tmp_path / "missing.h5")

    text = tmp_path / "notes.h5"
    text.write_text("not a model")
    with pytest.raises(ValueError, match="neither an HDF5 file nor a zip archive"):
        load_model(text)
    assert text.read_text() == "not a model"

    archive = tmp_path / "model.keras"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("config.json", "{}")
    with pytest.raises(ValueError, match=r"\.keras archive holds .*no model\.weights\.h5"):
        load_model(archive)

    model = _small_cnn()
    weights = tmp_path / "weights.h5"
    model.save_weights(weights)
    digest = _digest(weights)
    with pytest.raises(ValueError, match=r"weights file.*load_weights"):
        load_model(weights)
    assert _digest(weights) == digest

    other = tmp_path / "data.h5"
    with h5py.File(other, "w") as f:
        f["x"] = np.arange(3)
    with pytest.raises(ValueError, match="not a Keras model file.*'x'"):
        load_model(other)


def _edited_copy(src, dst, edit_config=None, edit_training=None, edit_file=None):
    shutil.copy(src, dst)
    with h5py.File(dst, "r+") as f:
        if edit_config:
            config = json.loads(f.attrs["model_config"])
            edit_config(config)
            f.attrs["model_config"] = json.dumps(config).encode("utf8")
        if edit_training:
            config = json.loads(f.attrs["training_config"])
            edit_training(config)
            f.attrs["training_config"] = json.dumps(config).encode("utf8")
        if edit_file:
            edit_file(f)
    return dst


def test_layers_and_options_minicnn_lacks_are_named(tmp_path):
    model = _nested()
    model.compile(optimizer="rmsprop", loss="binary_crossentropy")
    src = save_model(model, tmp_path / "src.h5")

    def unknown_layers(config):
        layers_ = config["config"]["layers"]
        layers_[2] = {"class_name": "BatchNormalization", "config": {"name": "bn"}}
        layers_[1]["config"]["layers"][2] = {"class_name": "LSTM", "config": {"name": "rnn"}}

    bad = _edited_copy(src, tmp_path / "a.h5", edit_config=unknown_layers)
    digest = _digest(bad)
    with pytest.raises(ValueError) as e:
        load_model(bad)
    message = str(e.value)
    assert "'rnn' (LSTM)" in message and "'bn' (BatchNormalization)" in message
    for supported in ("Activation", "Conv2D", "Dense", "Dropout", "Flatten", "MaxPooling2D"):
        assert supported in message
    assert _digest(bad) == digest

    def dilated(config):
        config["config"]["layers"][1]["config"]["layers"][1]["config"]["dilation_rate"] = [2, 2]

    with pytest.raises(ValueError, match=r"Conv2D 'c1': dilation_rate=\[2, 2\] is not supported"):
        load_model(_edited_copy(src, tmp_path / "b.h5", edit_config=dilated))

    def tanh(config):
        config["config"]["layers"][-1]["config"]["activation"] = "tanh"

    with pytest.raises(ValueError, match=r"Dense 'd': activation 'tanh' is not supported"):
        load_model(_edited_copy(src, tmp_path / "c.h5", edit_config=tanh))

    def adagrad(config):
        config["optimizer_config"] = {"class_name": "Adagrad", "config": {"learning_rate": 0.1}}

    path = _edited_copy(src, tmp_path / "d.h5", edit_training=adagrad)
    with pytest.raises(ValueError, match=r"'Adagrad'.*compile=False"):
        load_model(path)
    assert load_model(path, compile=False).optimizer is None

    def clipped(config):
        config["optimizer_config"]["config"]["clipnorm"] = 1.0

    with pytest.raises(ValueError, match=r"clipnorm=1.0 is not supported"):
        load_model(_edited_copy(src, tmp_path / "e.h5", edit_training=clipped))


def test_weights_of_the_wrong_shape_name_layer_and_shapes(tmp_path):
    model = _small_cnn()
    src = save_model(model, tmp_path / "src.h5")

    def wrong_kernel(f):
        group = f["model_weights/dense"]
        name = hdf5._load_attribute(group, "weight_names")[0]
        del group[name]
        group.create_dataset(name, data=np.zeros((7, 6), np.float32))

    bad = _edited_copy(src, tmp_path / "bad.h5", edit_file=wrong_kernel)
    with pytest.raises(ValueError, match=r"layer 'dense' \(Dense\).*\(7, 6\).*\(48, 6\)"):
        load_model(bad)


def test_functional_models_must_be_a_chain(tmp_path):
    src = save_model(_vgg_classifier(), tmp_path / "vgg.h5")

    def branch(config):
        vgg = config["config"]["layers"][1]["config"]
        tensor = vgg["layers"][2]["inbound_nodes"][0]["args"][0]
        vgg["layers"][2]["inbound_nodes"][0]["args"].append(tensor)     # two inputs

    with pytest.raises(ValueError, match=r"layer 'block1_conv2' takes 2 inputs"):
        load_model(_edited_copy(src, tmp_path / "branch.h5", edit_config=branch))


def test_keras2_functional_config_and_input_shapes(tmp_path):
    src = save_model(_vgg_classifier(), tmp_path / "vgg.h5")

    def keras2_functional(config):
        vgg = config["config"]["layers"][1]
        vgg["class_name"] = "Model"                       # Keras 2's name for it
        for layer in vgg["config"]["layers"]:
            layer["inbound_nodes"] = [[[arg["config"]["keras_history"][0], 0, 0, {}]
                                       for arg in node["args"]]
                                      for node in layer["inbound_nodes"]]
        vgg["config"]["input_layers"] = [vgg["config"]["input_layers"]]
        vgg["config"]["output_layers"] = [vgg["config"]["output_layers"]]

    model = load_model(_edited_copy(src, tmp_path / "k2.h5", edit_config=keras2_functional))
    assert type(model.layers[0]) is VGG16Model and model.count_params() == 14_846_273

    def any_size(config):
        config["config"]["layers"][1]["config"]["layers"][0]["config"]["batch_shape"] = \
            [None, None, None, 3]

    with pytest.raises(ValueError, match=r"\(None, None, None, 3\).*fixed"):
        load_model(_edited_copy(src, tmp_path / "any.h5", edit_config=any_size))


def test_partly_frozen_inner_model_round_trips(tmp_path):
    model = _nested(seed=1)
    model.get_layer("base").get_layer("c1").trainable = False     # fine-tuning: c2 only
    model.compile(optimizer="rmsprop", loss="binary_crossentropy")
    x, y = _data((8, 7, 3), n=4, outputs=2)
    model.train_on_batch(x, y)
    loaded = load_model(save_model(model, tmp_path / "ft.h5"))
    base = loaded.get_layer("base")
    assert base.trainable and not base.get_layer("c1").trainable
    assert base.get_layer("c2").trainable and len(loaded.trainable_weights) == 4
    _assert_same_weights(model, loaded)
    assert model.train_on_batch(x, y) == loaded.train_on_batch(x, y)
    _assert_same_weights(model, loaded)


def test_saving_checks_before_writing(tmp_path):
    unbuilt = mc.Sequential([layers.Dense(2)])
    path = tmp_path / "m.h5"
    with pytest.raises(ValueError, match="not built"):
        save_model(unbuilt, path)
    with pytest.raises(TypeError, match="Sequential"):
        save_model(layers.Dense(2), path)
    assert not path.exists()
    save_model(_small_cnn(), path)
    with pytest.raises(FileExistsError):
        save_model(_small_cnn(), path, overwrite=False)


def test_optimizer_state_export_does_not_create_and_import_checks_first():
    model = _small_cnn(dropout=False)
    opt = optimizers.Adam()
    model.compile(optimizer=opt, loss="binary_crossentropy")
    state = opt.get_state(model.trainable_weights)
    assert opt._slots == {} and all(not s["m"].any() for s in state)
    bad = [dict(s) for s in state]
    bad[-1]["v"] = np.zeros(3)
    with pytest.raises(ValueError, match=r"slot 'v' of weight 5 expected shape"):
        opt.set_state(model.trainable_weights, 4, bad)
    assert opt.iterations == 0 and opt._slots == {}


@pytest.mark.parametrize("layer", [
    layers.Conv2D(3, (2, 3), strides=2, padding="same", activation="relu",
                  kernel_initializer="he_normal", input_shape=(5, 5, 2), name="c"),
    layers.Dense(4, use_bias=False, activation="softmax", dtype="float64"),
    layers.MaxPooling2D(3, strides=1, padding="same"),
    layers.Flatten(trainable=False), layers.Dropout(0.25, seed=7), layers.Activation("sigmoid"),
], ids=lambda layer: type(layer).__name__)
def test_layer_from_config_inverts_get_config(layer):
    again = type(layer).from_config(layer.get_config())
    assert again is not layer and again.get_config() == layer.get_config()


# -- with Keras -----------------------------------------------------------------------

def _keras_lecture_cnn(keras, size, dropout=True):
    kl = keras.layers
    stack = [keras.Input((size, size, 3))]
    for filters in (32, 64, 128, 128):
        stack += [kl.Conv2D(filters, (3, 3), activation="relu"), kl.MaxPooling2D((2, 2))]
    stack.append(kl.Flatten())
    if dropout:
        stack.append(kl.Dropout(0.5))
    stack += [kl.Dense(512, activation="relu"), kl.Dense(1, activation="sigmoid")]
    return keras.Sequential(stack)


def _assert_keras_writes_the_same(keras, path, out):
    """Keras, reading minicnn's file at `path` and writing it again, writes the same
    model_config and training_config (up to the learning rate, which Keras keeps in
    float32: 1e-4 comes back as 9.999999747378752e-05)."""
    model = keras.models.load_model(path)
    model.save(out)
    assert _attr_json(out, "model_config") == _attr_json(path, "model_config")
    with h5py.File(path, "r") as f:
        if "training_config" not in f.attrs:
            return
    theirs, mine = _attr_json(out, "training_config"), _attr_json(path, "training_config")
    lr_theirs = theirs["optimizer_config"]["config"].pop("learning_rate")
    lr_mine = mine["optimizer_config"]["config"].pop("learning_rate")
    assert lr_theirs == pytest.approx(lr_mine, rel=1e-7)
    assert theirs == mine


@pytest.mark.parametrize("size", [48, 150])
def test_keras_opens_minicnn_lecture_cnn(tmp_path, size):
    keras = _keras()
    model = lecture.cnn(input_shape=(size, size, 3), dropout=True, seed=5)
    model.compile(optimizer=optimizers.RMSprop(learning_rate=1e-4),
                  loss="binary_crossentropy", metrics=["acc"])
    x, y = _data((size, size, 3), n=3)
    model.train_on_batch(x, y)
    path = save_model(model, tmp_path / "cats_and_dogs_small_2.h5")

    k = keras.models.load_model(path)
    assert [type(l).__name__ for l in k.layers] == [type(l).__name__ for l in model.layers]
    assert [l.name for l in k.layers] == [l.name for l in model.layers]
    assert k.count_params() == model.count_params()
    assert np.abs(k.predict(x, verbose=0) - model.predict(x, verbose=0)).max() < 1e-5
    assert getattr(k.loss, "__name__", k.loss) == "binary_crossentropy"
    assert type(k.optimizer).__name__ == "RMSprop"
    assert np.isclose(float(k.optimizer.learning_rate), 1e-4)
    assert int(k.optimizer.iterations) == 1
    _assert_keras_writes_the_same(keras, path, tmp_path / "keras.h5")


def test_minicnn_optimizer_state_is_what_keras_expects(tmp_path):
    """Keras 3.15's own .h5 loader builds the optimizer for no variables (model.
    _trainable_variables of a Sequential is empty), so here the file's optimizer_weights go
    into a Keras optimizer the way Keras's loader means to, and one more step is compared."""
    keras = _keras()
    from keras.src.legacy.saving import legacy_h5_format
    x, y = _data((10, 9, 3), n=8)
    cases = [(optimizers.Adam(learning_rate=1e-2), keras.optimizers.Adam(learning_rate=1e-2)),
             (optimizers.RMSprop(learning_rate=1e-2, momentum=0.9),
              keras.optimizers.RMSprop(learning_rate=1e-2, momentum=0.9)),
             (optimizers.SGD(learning_rate=0.1, momentum=0.9),
              keras.optimizers.SGD(learning_rate=0.1, momentum=0.9))]
    for i, (mine, theirs) in enumerate(cases):
        model = _small_cnn(seed=i, dropout=False)
        model.compile(optimizer=mine, loss="binary_crossentropy")
        for _ in range(3):
            model.train_on_batch(x, y)
        path = save_model(model, tmp_path / f"m{i}.h5")
        k = keras.models.load_model(path, compile=False)
        k.compile(optimizer=theirs, loss="binary_crossentropy")
        theirs.build(k.trainable_variables)
        with h5py.File(path, "r") as f:
            values = [np.asarray(v)
                      for v in legacy_h5_format.load_optimizer_weights_from_hdf5_group(f)]
            names = hdf5._load_attribute(f["optimizer_weights"], "weight_names")
        assert [v.path for v in theirs.variables] == names
        theirs.set_weights(values)
        model.train_on_batch(x, y)
        k.train_on_batch(x, y)
        assert int(theirs.iterations) == 4
        for a, b in zip(model.get_weights(), k.get_weights()):
            assert np.abs(a - b).max() < 1e-5


def test_minicnn_opens_keras_lecture_cnn_and_continues_its_training(tmp_path):
    keras = _keras()
    keras.utils.set_random_seed(0)
    k = _keras_lecture_cnn(keras, 48, dropout=False)
    k.compile(optimizer=keras.optimizers.Adam(learning_rate=1e-3),
              loss="binary_crossentropy", metrics=["acc"])
    x, y = _data((48, 48, 3), n=4)
    for _ in range(2):
        k.train_on_batch(x, y)
    path = tmp_path / "keras.h5"
    k.save(path)

    model = load_model(path)
    assert model.count_params() == k.count_params() == 307_393
    assert [l.name for l in model.layers] == [l.name for l in k.layers]
    assert np.abs(model.predict(x, verbose=0) - k.predict(x, verbose=0)).max() < 1e-5
    assert isinstance(model.optimizer, optimizers.Adam) and model.optimizer.iterations == 2
    assert model.metrics == ["acc"]
    k.train_on_batch(x, y)
    model.train_on_batch(x, y)
    for a, b in zip(model.get_weights(), k.get_weights()):
        assert np.abs(a - b).max() < 1e-5


def test_minicnn_opens_keras_lecture_cnn_with_dropout(tmp_path):
    keras = _keras()
    k = _keras_lecture_cnn(keras, 48, dropout=True)
    k.compile(optimizer=keras.optimizers.RMSprop(learning_rate=1e-4),
              loss="binary_crossentropy", metrics=["acc"])
    path = tmp_path / "keras.h5"
    k.save(path)
    model = load_model(path)
    assert isinstance(model.get_layer("dropout"), layers.Dropout)
    assert model.optimizer.epsilon_inside_sqrt and model.optimizer.learning_rate == \
        pytest.approx(1e-4)
    x, _ = _data((48, 48, 3), n=3)
    assert np.abs(model.predict(x, verbose=0) - k.predict(x, verbose=0)).max() < 1e-5


def _keras_vgg_classifier(keras):
    base = keras.applications.VGG16(weights=None, include_top=False, input_shape=(32, 32, 3))
    base.trainable = False
    kl = keras.layers
    return keras.Sequential([base, kl.Flatten(), kl.Dense(256, activation="relu"),
                             kl.Dense(1, activation="sigmoid")])


def _vgg_inputs():
    # Pixels in [0, 255], as without rescaling: a randomly initialised VGG16 then gives
    # features that differ from image to image (from [0, 1] they are tiny).
    x, y = _data((32, 32, 3), n=4, seed=1)
    return x * 255, y


def test_keras_vgg16_classifier_opens_in_minicnn(tmp_path):
    keras = _keras()
    keras.utils.set_random_seed(1)
    k = _keras_vgg_classifier(keras)
    k.compile(optimizer=keras.optimizers.RMSprop(learning_rate=2e-5),
              loss="binary_crossentropy", metrics=["acc"])
    x, y = _vgg_inputs()
    k.train_on_batch(x, y)
    path = tmp_path / "keras_vgg.h5"
    k.save(path)

    model = load_model(path)
    base = model.layers[0]
    assert type(base) is VGG16Model and not base.trainable
    assert model.count_params() == k.count_params() == 14_846_273
    assert sum(w.size for w in model.trainable_weights) == 131_585
    expected = k.predict(x, verbose=0)
    assert np.ptp(expected) > 1e-3                   # not a constant output
    assert np.abs(model.predict(x, verbose=0) - expected).max() < 1e-5
    assert model.optimizer.iterations == 1
    k.train_on_batch(x, y)
    model.train_on_batch(x, y)
    for a, b in zip(model.trainable_weights, k.trainable_weights):
        assert np.abs(a - np.asarray(b)).max() < 1e-5


def test_minicnn_vgg16_classifier_opens_in_keras(tmp_path):
    keras = _keras()
    model = _vgg_classifier(seed=4)
    model.compile(optimizer=optimizers.RMSprop(learning_rate=2e-5),
                  loss="binary_crossentropy", metrics=["acc"])
    x, y = _vgg_inputs()
    model.train_on_batch(x, y)
    path = save_model(model, tmp_path / "vgg.h5")

    k = keras.models.load_model(path)
    base = k.layers[0]
    assert type(base).__name__ == "Functional" and base.name == "vgg16" and not base.trainable
    assert k.count_params() == model.count_params()
    assert len(k.trainable_weights) == 4
    expected = model.predict(x, verbose=0)
    assert np.ptp(expected) > 1e-3
    assert np.abs(k.predict(x, verbose=0) - expected).max() < 1e-5
    _assert_keras_writes_the_same(keras, path, tmp_path / "keras.h5")

    # The conv base alone: a functional model at the top.
    base_path = save_model(model.layers[0], tmp_path / "base.h5")
    k_base = keras.models.load_model(base_path)
    assert type(k_base).__name__ == "Functional" and k_base.name == "vgg16"
    features = model.layers[0].predict(x, verbose=0)
    assert np.abs(k_base.predict(x, verbose=0) - features).max() <= 1e-5 * np.abs(features).max()
    assert type(load_model(base_path)) is VGG16Model


def test_nested_sequential_both_ways(tmp_path):
    keras = _keras()
    kl = keras.layers
    base = keras.Sequential([keras.Input((8, 7, 3)),
                             kl.Conv2D(4, (3, 2), activation="relu", name="c1"),
                             kl.MaxPooling2D(2, name="p1"),
                             kl.Conv2D(5, 3, padding="same", name="c2")], name="base")
    k = keras.Sequential([keras.Input((8, 7, 3)), base, kl.Flatten(name="flatten"),
                          kl.Dropout(0.2), kl.Dense(2, activation="sigmoid", name="d"),
                          kl.Activation("linear")], name="outer")
    k.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1, momentum=0.9),
              loss=keras.losses.BinaryCrossentropy(from_logits=True), metrics=["accuracy"])
    x, y = _data((8, 7, 3), n=4, outputs=2)
    k.save(tmp_path / "keras.h5")
    model = load_model(tmp_path / "keras.h5")
    assert type(model.layers[0]) is mc.Sequential and model.layers[0].name == "base"
    assert model.loss.from_logits and model.metrics == ["accuracy"]
    assert np.abs(model.predict(x, verbose=0) - k.predict(x, verbose=0)).max() < 1e-5

    mine = _nested(seed=3)
    mine.compile(optimizer="sgd", loss="binary_crossentropy")
    path = save_model(mine, tmp_path / "mine.h5")
    k2 = keras.models.load_model(path)
    assert type(k2.layers[0]).__name__ == "Sequential"
    assert np.abs(k2.predict(x, verbose=0) - mine.predict(x, verbose=0)).max() < 1e-5
    _assert_keras_writes_the_same(keras, path, tmp_path / "again.h5")


def _keras2_initializer():
    return {"class_name": "VarianceScaling",
            "config": {"scale": 1.0, "mode": "fan_avg", "distribution": "uniform", "seed": None}}


def test_keras2_style_file_opens(tmp_path):
    """A file as multi-backend Keras 2.2.4 (the lecture's R setup) writes it: the input shape
    on the first layer, dtype strings, VarianceScaling, 'lr' and 'decay', names ending ':0',
    the optimizer's accumulators without names that say what they are."""
    keras = _keras()
    k = _keras_lecture_cnn(keras, 48, dropout=True)
    names = ["conv2d_1", "max_pooling2d_1", "conv2d_2", "max_pooling2d_2", "conv2d_3",
             "max_pooling2d_3", "conv2d_4", "max_pooling2d_4", "flatten_1", "dropout_1",
             "dense_1", "dense_2"]
    configs = []
    for name, layer in zip(names, k.layers):
        kind = type(layer).__name__
        c = {"name": name, "trainable": True}
        if kind == "Conv2D":
            c.update(filters=layer.filters, kernel_size=[3, 3], strides=[1, 1], padding="valid",
                     data_format="channels_last", dilation_rate=[1, 1], activation="relu",
                     use_bias=True, kernel_initializer=_keras2_initializer(),
                     bias_initializer={"class_name": "Zeros", "config": {}},
                     kernel_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                     kernel_constraint=None, bias_constraint=None)
        elif kind == "MaxPooling2D":
            c.update(pool_size=[2, 2], padding="valid", strides=[2, 2],
                     data_format="channels_last")
        elif kind == "Flatten":
            c.update(data_format="channels_last")
        elif kind == "Dropout":
            c.update(rate=0.5, noise_shape=None, seed=None)
        else:
            c.update(units=layer.units, activation=layer.get_config()["activation"],
                     use_bias=True, kernel_initializer=_keras2_initializer(),
                     bias_initializer={"class_name": "Zeros", "config": {}},
                     kernel_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                     kernel_constraint=None, bias_constraint=None)
        configs.append({"class_name": kind, "config": c})
    configs[0]["config"] = {"name": "conv2d_1", "trainable": True,
                            "batch_input_shape": [None, 48, 48, 3], "dtype": "float32",
                            **{k_: v for k_, v in configs[0]["config"].items()
                               if k_ not in ("name", "trainable")}}
    model_config = {"class_name": "Sequential",
                    "config": {"name": "sequential_1", "layers": configs}}
    training_config = {"optimizer_config": {"class_name": "RMSprop",
                                            "config": {"lr": 9.999999747378752e-05,
                                                       "rho": 0.8999999761581421, "decay": 0.0,
                                                       "epsilon": 1e-07}},
                       "loss": "binary_crossentropy", "metrics": ["acc"],
                       "sample_weight_mode": None, "loss_weights": None}
    path = tmp_path / "cats_and_dogs_small_2.h5"
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        f.attrs["keras_version"] = b"2.2.4"
        f.attrs["backend"] = b"tensorflow"
        f.attrs["model_config"] = json.dumps(model_config).encode("utf8")
        f.attrs["training_config"] = json.dumps(training_config).encode("utf8")
        g = f.create_group("model_weights")
        g.attrs["layer_names"] = [n.encode("utf8") for n in names]
        g.attrs["backend"], g.attrs["keras_version"] = b"tensorflow", b"2.2.4"
        accumulators = []
        for name, layer in zip(names, k.layers):
            lg = g.create_group(name)
            weight_names = [f"{name}/{v}:0" for v in ("kernel", "bias")][:len(layer.weights)]
            lg.attrs["weight_names"] = [w.encode("utf8") for w in weight_names]
            for w, value in zip(weight_names, layer.get_weights()):
                lg[w] = value
                accumulators.append(rng.random(value.shape, dtype=np.float32) * 1e-3)
        o = f.create_group("optimizer_weights")
        o_names = [f"training/RMSprop/Variable{'' if i == 0 else f'_{i}'}:0"
                   for i in range(len(accumulators))]
        o.attrs["weight_names"] = [n.encode("utf8") for n in o_names]
        for n, value in zip(o_names, accumulators):
            o[n] = value

    model = load_model(path)
    assert model.count_params() == k.count_params() == 307_393
    assert model.layers[0].batch_input_shape == (None, 48, 48, 3)
    assert model.layers[0].kernel_initializer == "glorot_uniform"
    x, _ = _data((48, 48, 3), n=3)
    assert np.abs(model.predict(x, verbose=0) - k.predict(x, verbose=0)).max() < 1e-5
    opt = model.optimizer
    assert isinstance(opt, optimizers.RMSprop) and opt.learning_rate == pytest.approx(1e-4)
    assert not opt.epsilon_inside_sqrt            # multi-backend Keras 2: epsilon outside
    velocities = [s["velocity"] for s in opt.get_state(model.trainable_weights)]
    assert all(np.array_equal(v, a) for v, a in zip(velocities, accumulators))
