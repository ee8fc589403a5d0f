"""Images in and out (Pillow) and random augmentation, with Keras's names and semantics.

Loading: `load_img` -> PIL image, `img_to_array` -> ndarray (H, W, C), `array_to_img`,
`save_img` (atomic). Augmentation: `ImageDataGenerator`, whose batched hot path
`augment_batch` is what the iterators of minicnn.preprocessing.iterators call.

Augmentation, as Keras's legacy ImageDataGenerator does it
-----------------------------------------------------------
For each image, draw (`get_random_transform`, degrees for angles)

    theta ~ U(-rotation_range, rotation_range)           rotation
    tx    ~ U(-height_shift_range, height_shift_range) * H     (fraction < 1: of the size)
    ty    ~ U(-width_shift_range, width_shift_range) * W        (ints >= 1: pixels)
    shear ~ U(-shear_range, shear_range)                 shear angle
    zx, zy ~ U(1 - zoom_range, 1 + zoom_range), drawn independently
    flip_horizontal, flip_vertical: a coin each (drawn always, used if enabled)

then compose ONE affine matrix (`transform_matrix`, the code of Keras's
apply_affine_transform), with t = theta and s = shear in radians:

        [cos t  -sin t  0]       [1  0  tx]       [1  -sin s  0]       [zx  0  0]
    R = [sin t   cos t  0]   T = [0  1  ty]   S = [0   cos s  0]   Z = [ 0 zy  0]
        [  0       0    1]       [0  0   1]       [0     0    1]       [ 0  0  1]

    M = R . T . S . Z                      (a factor whose parameters are neutral is left out)
    A = P . C(o) . M . C(-o) . P           C(o) = [[1, 0, o_1], [0, 1, o_2], [0, 0, 1]],
                                           o = (H/2 - 0.5, W/2 - 0.5); P swaps the first
                                           two coordinates (Keras's (x, y) -> (row, col))

A maps an OUTPUT pixel (row i, column j, 1) to the INPUT point (u, v, 1) it samples, and the
image is resampled there with bilinear interpolation (minicnn.kernels.affine_warp):

    Y[i, j, c] = sum over p, q in {0, 1} of X[b(floor(u) + p), b(floor(v) + q), c] * w_p(u) * w_q(v)
    w_0(u) = 1 - (u - floor(u)),  w_1(u) = 1 - w_0(u)

where b folds indices that fall outside the image by the fill mode: 'nearest' (clamp to
the edge: aaa|abcd|ddd), 'constant' (a point with u or v outside [0, L - 1] is cval),
'reflect' (half-sample mirror: cba|abcd|dcb) or 'wrap' (scipy's wrap, by multiples of
L - 1). Flips come after the warp (X[:, ::-1] horizontal, X[::-1] vertical) and
`standardize` (x * rescale) after all of it.

Two Keras quirks are reproduced on purpose, because parity with Keras is the contract: P
is applied after the centring, so `tx` (drawn from height_shift_range and scaled by H)
moves the image along the columns and `ty` along the rows, and the centre of rotation,
shear and zoom is row W/2 - 0.5, column H/2 - 0.5. For square images (the lecture's
150 x 150) the centre is the true one and, with equal shift ranges, only the names differ.

The book's Keras 2.0.8 drew the shear angle in radians and warped with nearest-neighbour
interpolation; minicnn follows today's Keras: shear in degrees, bilinear interpolation
(scipy.ndimage.affine_transform with order=1), so its augmented images equal today's Keras
ones to float32 precision for the same seed.
"""
from __future__ import annotations

import io
import os
import threading
import warnings
from numbers import Integral, Real

import numpy as np

from minicnn.kernels import FILL_MODES, affine_warp

COLOR_MODES = ("grayscale", "rgb", "rgba")
INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "hamming", "box", "lanczos")

_LAZY_ITERATOR_NAMES = ("DirectoryIterator", "NumpyArrayIterator", "generator_next")


def __getattr__(name):
    # Keras exposes the iterators from preprocessing.image; they live in iterators.py,
    # which imports this module, so they are re-exported on first use (no import cycle).
    if name in _LAZY_ITERATOR_NAMES:
        from minicnn.preprocessing import iterators
        return getattr(iterators, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# --------------------------------------------------------------------------- loading, saving

def _resample_filter(interpolation):
    from PIL import Image
    return {"nearest": Image.Resampling.NEAREST, "bilinear": Image.Resampling.BILINEAR,
            "bicubic": Image.Resampling.BICUBIC, "hamming": Image.Resampling.HAMMING,
            "box": Image.Resampling.BOX, "lanczos": Image.Resampling.LANCZOS}[interpolation]


def _check_choice(function, name, value, choices):
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{function}: `{name}` must be one of "
                         f"{', '.join(repr(c) for c in choices)}; received {value!r}")


def _check_target_size(function, target_size):
    if target_size is None:
        return None
    ok = (isinstance(target_size, (tuple, list)) and len(target_size) == 2
          and all(isinstance(s, Integral) and not isinstance(s, bool) and s > 0
                  for s in target_size))
    if not ok:
        raise ValueError(f"{function}: `target_size` must be None or a pair of positive ints "
                         f"(height, width); received {target_size!r}")
    return int(target_size[0]), int(target_size[1])


def load_img(path, target_size=None, color_mode="rgb", interpolation="nearest"):
    """Read an image file into a PIL image, as keras.utils.load_img.

    path: a file path (str, bytes, os.PathLike) or a binary file object (io.BytesIO).
    target_size: None (keep the size) or (height, width); the image is resized with
        `interpolation` only when its size differs.
    color_mode: 'rgb' (convert to RGB), 'rgba' (convert to RGBA) or 'grayscale' (convert to
        8-bit 'L' unless the image already is an 'L', 'I;16' or 'I' grayscale image).
    interpolation: 'nearest' (Keras's default and flow_from_directory's), 'bilinear',
        'bicubic', 'hamming', 'box' or 'lanczos' (Pillow's filters).
    Returns a PIL.Image.Image of size (width, height) = (target_size[1], target_size[0]).
    Raises FileNotFoundError for a missing file and ValueError for a file Pillow cannot read
    as an image, both naming the path; ValueError for an unknown color_mode/interpolation.
    """
    from PIL import Image, UnidentifiedImageError

    _check_choice("load_img", "color_mode", color_mode, COLOR_MODES)
    _check_choice("load_img", "interpolation", interpolation, INTERPOLATIONS)
    target_size = _check_target_size("load_img", target_size)
    if hasattr(path, "read"):
        where, data = f"<{type(path).__name__}>", path.read()
    elif isinstance(path, (str, bytes, os.PathLike)):
        where = os.fsdecode(os.fspath(path))
        try:
            with open(where, "rb") as f:      # read whole: no open handle left behind
                data = f.read()
        except FileNotFoundError:
            raise FileNotFoundError(f"load_img: no such image file: {where!r}") from None
        except IsADirectoryError:
            raise ValueError(f"load_img: expected an image file, received the folder "
                             f"{where!r}") from None
    else:
        raise TypeError(f"load_img: `path` must be a file path or a binary file object; "
                        f"received {type(path).__name__}")
    try:
        img = Image.open(io.BytesIO(data))
        img.load()                            # decode now, so a broken file fails here
    except UnidentifiedImageError:
        # Pillow's own text names the in-memory buffer, not the file; the path says more.
        raise ValueError(f"load_img: {where!r} is not an image Pillow can read "
                         f"(no image format recognised)") from None
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as err:
        raise ValueError(f"load_img: {where!r} is not an image Pillow can read "
                         f"({type(err).__name__}: {err})") from err

    if color_mode == "grayscale":
        if img.mode not in ("L", "I;16", "I"):
            img = img.convert("L")
    elif color_mode == "rgba":
        if img.mode != "RGBA":
            img = img.convert("RGBA")
    elif img.mode != "RGB":
        img = img.convert("RGB")
    if target_size is not None:
        width_height = (target_size[1], target_size[0])
        if img.size != width_height:
            img = img.resize(width_height, _resample_filter(interpolation))
    return img


def img_to_array(img, dtype="float32"):
    """PIL image -> ndarray of shape (H, W, C) (C = 1 for a grayscale image), given dtype."""
    x = np.asarray(img, dtype=dtype)
    if x.ndim == 2:
        return x.reshape(x.shape[0], x.shape[1], 1)
    if x.ndim == 3:
        return x
    raise ValueError(f"img_to_array: expected an image of 2 or 3 dimensions (H, W) or "
                     f"(H, W, C); received an array of shape {x.shape}")


def array_to_img(x, scale=True):
    """ndarray (H, W, C) with C in {1, 3, 4} -> PIL image ('L' or 'I', 'RGB', 'RGBA').

    scale=True maps the values linearly onto [0, 255]: x' = 255 * (x - min x) / (max x - min x)
    (no division when all values are equal), as Keras; the values are then cast to uint8
    (int32 mode 'I' for a single channel whose maximum exceeds 255).
    """
    from PIL import Image

    x = np.asarray(x, dtype="float32")
    if x.ndim != 3 or x.shape[2] not in (1, 3, 4):
        raise ValueError(f"array_to_img: expected an array of shape (H, W, C) with C = 1, 3 "
                         f"or 4; received shape {x.shape}")
    if scale:
        x = x - np.min(x)
        x_max = np.max(x)
        if x_max != 0:
            x /= x_max
        x *= 255
    if x.shape[2] == 4:
        return Image.fromarray(x.astype("uint8"), "RGBA")
    if x.shape[2] == 3:
        return Image.fromarray(x.astype("uint8"), "RGB")
    if np.max(x) > 255:
        return Image.fromarray(x[:, :, 0].astype("int32"), "I")
    return Image.fromarray(x[:, :, 0].astype("uint8"), "L")


def _image_format(function, path, file_format):
    from PIL import Image

    if file_format is not None:
        fmt = file_format.upper()
        fmt = "JPEG" if fmt == "JPG" else fmt
    else:
        ext = os.path.splitext(path)[1].lower()
        fmt = Image.registered_extensions().get(ext)
    if fmt is None or fmt not in Image.SAVE:
        raise ValueError(f"{function}: cannot tell which image format to write for "
                         f"{path!r} (file_format={file_format!r}); use an extension such as "
                         f".png or .jpg, or pass file_format")
    return fmt


def save_img(path, x, scale=True, file_format=None, **kwargs):
    """Write an array (H, W, C) as an image file, atomically.

    The format comes from file_format or else from the extension of path ('.jpg' -> JPEG).
    The image is written to a temporary file in the same folder, which then replaces path
    with os.replace, so path is never left half-written: an existing file stays intact if
    anything fails, and no temporary file is left behind. RGBA is converted to RGB for JPEG
    (with a warning, as Keras). Extra keyword arguments go to PIL.Image.Image.save.
    path may also be a binary file object (then file_format is required; not atomic).
    """
    img = array_to_img(x, scale=scale)
    if hasattr(path, "write"):
        if file_format is None:
            raise ValueError("save_img: `file_format` is required when saving to a file object")
        fmt = _image_format("save_img", "<file object>", file_format)
    else:
        path = os.fsdecode(os.fspath(path))
        fmt = _image_format("save_img", path, file_format)
    if img.mode == "RGBA" and fmt == "JPEG":
        warnings.warn("save_img: the JPEG format does not support RGBA images, "
                      "converting to RGB.", stacklevel=2)
        img = img.convert("RGB")
    if hasattr(path, "write"):
        img.save(path, format=fmt, **kwargs)
        return
    folder, name = os.path.split(os.path.abspath(path))
    tmp = os.path.join(folder, f".{name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    try:
        with open(tmp, "xb") as f:            # 'x': never clobber; permissions from umask
            img.save(f, format=fmt, **kwargs)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.remove(tmp)
        except FileNotFoundError:
            pass
        raise


# --------------------------------------------------------------------------- augmentation

def transform_matrix(theta=0, tx=0, ty=0, shear=0, zx=1, zy=1, h=1, w=1):
    """The 3x3 matrix A (output (row, col, 1) -> input point) of the module docstring, or
    None when every parameter is neutral (no warp at all).

    theta, shear: degrees; tx, ty: pixels; zx, zy: zoom factors; h, w: image height, width.
    The products are computed in Keras's order with np.dot, so A has Keras's exact bits.
    """
    matrix = None
    if theta != 0:
        t = np.deg2rad(theta)
        matrix = np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1]])
    if tx != 0 or ty != 0:
        shift = np.array([[1, 0, tx], [0, 1, ty], [0, 0, 1]])
        matrix = shift if matrix is None else np.dot(matrix, shift)
    if shear != 0:
        s = np.deg2rad(shear)
        shear_matrix = np.array([[1, -np.sin(s), 0], [0, np.cos(s), 0], [0, 0, 1]])
        matrix = shear_matrix if matrix is None else np.dot(matrix, shear_matrix)
    if zx != 1 or zy != 1:
        zoom = np.array([[zx, 0, 0], [0, zy, 0], [0, 0, 1]])
        matrix = zoom if matrix is None else np.dot(matrix, zoom)
    if matrix is None:
        return None
    o_x, o_y = float(h) / 2 - 0.5, float(w) / 2 - 0.5
    offset = np.array([[1, 0, o_x], [0, 1, o_y], [0, 0, 1]])
    reset = np.array([[1, 0, -o_x], [0, 1, -o_y], [0, 0, 1]])
    matrix = np.dot(np.dot(offset, matrix), reset).astype(np.float64)
    # Keras builds M in (x, y) order, then swaps to numpy's (row, col): A = P M P.
    return matrix[[1, 0, 2]][:, [1, 0, 2]]


_local = threading.local()


def _random_state(seed):
    """A RandomState in the state RandomState(seed) starts in, one per thread.

    Re-seeding costs ~1.5 us where building a new RandomState costs ~140 us (it first seeds
    itself from the OS), which would be most of the cost of drawing a batch's parameters.
    """
    rng = getattr(_local, "rng", None)
    if rng is None:
        rng = _local.rng = np.random.RandomState()
    rng.seed(seed)
    return rng


def _is_number(value):
    return isinstance(value, Real) and not isinstance(value, bool)


class ImageDataGenerator:
    """Random augmentation of images (N, H, W, C), with Keras's arguments and draws.

    rescale: None or a number; standardize multiplies by it (after warp and flips).
    rotation_range: degrees, theta ~ U(-r, r).
    width_shift_range, height_shift_range: a float < 1 is a fraction of the width/height,
        shift ~ U(-r, r) * size; a float >= 1 is pixels, U(-r, r); an int r >= 1 is pixels
        drawn from {-(r - 1), ..., r - 1} (Keras: choice(r) * choice([-1, 1])); a list of
        numbers: one of them times a random sign (times the size if all are < 1).
    shear_range: degrees, shear ~ U(-r, r).
    zoom_range: a number z (zx, zy ~ U(1 - z, 1 + z)) or a pair [lower, upper].
    horizontal_flip, vertical_flip: flip with probability 1/2.
    fill_mode: 'nearest' (default), 'constant', 'reflect' or 'wrap'; cval: the constant.

    The affine matrix, bilinear interpolation and fill modes are those of the module
    docstring: A = P C(o) R T S Z C(-o) P maps each output pixel to the input point sampled,

        Y[i, j, c] = sum_{p, q in {0,1}} X[b(floor(u) + p), b(floor(v) + q), c] w_p(u) w_q(v).

    The lecture's Keras 2.0.8 used shear in radians and nearest-neighbour warping; minicnn
    follows today's Keras (degrees, bilinear). As in today's Keras, the height shift moves
    the image along its columns and the width shift along its rows (see the module docstring).

    For the same seed, get_random_transform returns the same parameters as Keras's
    ImageDataGenerator, and apply_transform / random_transform the same pixels (to float32
    precision: the warp follows scipy's arithmetic).
    """

    def __init__(self, rescale=None, rotation_range=0, width_shift_range=0.0,
                 height_shift_range=0.0, shear_range=0.0, zoom_range=0.0,
                 horizontal_flip=False, vertical_flip=False, fill_mode="nearest", cval=0.0):
        name = "ImageDataGenerator"
        if rescale is not None and not _is_number(rescale):
            raise ValueError(f"{name}: `rescale` must be None or a number; "
                             f"received {rescale!r}")
        for arg, value in (("rotation_range", rotation_range), ("shear_range", shear_range)):
            if not _is_number(value) or not value >= 0:
                raise ValueError(f"{name}: `{arg}` must be a number >= 0 (degrees); "
                                 f"received {value!r}")
        for arg, value in (("width_shift_range", width_shift_range),
                           ("height_shift_range", height_shift_range)):
            self._check_shift(arg, value)
        if _is_number(zoom_range):
            if not zoom_range >= 0:
                raise ValueError(f"{name}: `zoom_range` must be a number >= 0 or a pair "
                                 f"[lower, upper]; received {zoom_range!r}")
            zoom = (1 - zoom_range, 1 + zoom_range)
        elif (isinstance(zoom_range, (tuple, list)) and len(zoom_range) == 2
              and all(_is_number(z) for z in zoom_range)):
            if not zoom_range[0] <= zoom_range[1]:
                raise ValueError(f"{name}: `zoom_range` pair must have lower <= upper; "
                                 f"received {zoom_range!r}")
            zoom = (zoom_range[0], zoom_range[1])
        else:
            raise ValueError(f"{name}: `zoom_range` must be a number >= 0 or a pair "
                             f"[lower, upper] of numbers; received {zoom_range!r}")
        for arg, value in (("horizontal_flip", horizontal_flip),
                           ("vertical_flip", vertical_flip)):
            if not isinstance(value, (bool, np.bool_)):
                raise ValueError(f"{name}: `{arg}` must be True or False; received {value!r}")
        if fill_mode not in FILL_MODES:
            raise ValueError(f"{name}: `fill_mode` must be one of "
                             f"{', '.join(repr(m) for m in FILL_MODES)}; received {fill_mode!r}")
        if not _is_number(cval):
            raise ValueError(f"{name}: `cval` must be a number; received {cval!r}")
        self.rescale = rescale
        self.rotation_range = rotation_range
        self.width_shift_range = width_shift_range
        self.height_shift_range = height_shift_range
        self.shear_range = shear_range
        self.zoom_range = zoom
        self.horizontal_flip = bool(horizontal_flip)
        self.vertical_flip = bool(vertical_flip)
        self.fill_mode = fill_mode
        self.cval = cval

    @staticmethod
    def _check_shift(arg, value):
        if _is_number(value):
            if not value >= 0:
                raise ValueError(f"ImageDataGenerator: `{arg}` must be >= 0 (a fraction of the "
                                 f"size if < 1, else pixels); received {value!r}")
        elif not (isinstance(value, (tuple, list)) and len(value) > 0
                  and all(_is_number(v) for v in value)):
            raise ValueError(f"ImageDataGenerator: `{arg}` must be a number >= 0 or a "
                             f"non-empty list of numbers; received {value!r}")

    def __repr__(self):
        return (f"ImageDataGenerator(rescale={self.rescale!r}, "
                f"rotation_range={self.rotation_range!r}, "
                f"width_shift_range={self.width_shift_range!r}, "
                f"height_shift_range={self.height_shift_range!r}, "
                f"shear_range={self.shear_range!r}, zoom_range={list(self.zoom_range)!r}, "
                f"horizontal_flip={self.horizontal_flip}, vertical_flip={self.vertical_flip}, "
                f"fill_mode={self.fill_mode!r}, cval={self.cval!r})")

    @property
    def is_geometric(self):
        """True when some draw can move pixels (rotation, shift, shear or zoom)."""
        return bool(self.rotation_range or self.width_shift_range or self.height_shift_range
                    or self.shear_range or tuple(self.zoom_range) != (1, 1))

    @property
    def is_random(self):
        """True when images can come out differently from one draw to the next (a geometric
        transformation or a flip); False when the generator only rescales."""
        return self.is_geometric or self.horizontal_flip or self.vertical_flip

    # ----------------------------------------------------------------- drawing parameters

    @staticmethod
    def _draw_shift(rng, shift_range, size):
        """Keras's shift draw, call for call (int or list: choice then a sign; float: uniform)."""
        if not shift_range:
            return 0
        if isinstance(shift_range, (Integral, tuple, list)):
            shift = rng.choice(shift_range)
            shift *= rng.choice([-1, 1])
        else:
            shift = rng.uniform(-shift_range, shift_range)
        if np.max(shift_range) < 1:
            shift *= size
        return shift

    def get_random_transform(self, img_shape, seed=None):
        """Draw the parameters of one transformation, exactly as Keras does.

        img_shape: (H, W) or (H, W, C). seed: None or an int in [0, 2**32 - 1].
        Returns a dict with keys theta, tx, ty, shear (degrees / pixels), zx, zy,
        flip_horizontal, flip_vertical, and channel_shift_intensity = brightness = None.

        Keras seeds the global legacy RNG (np.random.seed(seed)) and calls np.random in a
        fixed order; here a private RandomState(seed) makes the same calls in the same order,
        so the values are Keras's while the global RNG is left alone (each thread has its
        own RandomState, so worker threads can draw concurrently).
        """
        if len(img_shape) not in (2, 3):
            raise ValueError(f"get_random_transform: expected img_shape (H, W) or (H, W, C); "
                             f"received {tuple(img_shape)!r}")
        if seed is not None and (not isinstance(seed, Integral) or isinstance(seed, bool)
                                 or not 0 <= seed < 2 ** 32):
            raise ValueError(f"get_random_transform: `seed` must be None or an int in "
                             f"[0, 2**32 - 1]; received {seed!r}")
        rng = _random_state(None if seed is None else int(seed))
        theta = rng.uniform(-self.rotation_range, self.rotation_range) if self.rotation_range else 0
        tx = self._draw_shift(rng, self.height_shift_range, img_shape[0])
        ty = self._draw_shift(rng, self.width_shift_range, img_shape[1])
        shear = rng.uniform(-self.shear_range, self.shear_range) if self.shear_range else 0
        if self.zoom_range[0] == 1 and self.zoom_range[1] == 1:
            zx, zy = 1, 1
        else:
            zx, zy = rng.uniform(self.zoom_range[0], self.zoom_range[1], 2)
        flip_horizontal = int(rng.random_sample() < 0.5) * self.horizontal_flip
        flip_vertical = int(rng.random_sample() < 0.5) * self.vertical_flip
        return {"theta": theta, "tx": tx, "ty": ty, "shear": shear, "zx": zx, "zy": zy,
                "flip_horizontal": int(flip_horizontal), "flip_vertical": int(flip_vertical),
                "channel_shift_intensity": None, "brightness": None}

    # ----------------------------------------------------------------- applying them

    @staticmethod
    def _matrix(params, h, w):
        for key in ("channel_shift_intensity", "brightness"):
            if params.get(key) is not None:
                raise ValueError(f"apply_transform: `{key}` is not supported by minicnn "
                                 f"(expected None); received {params[key]!r}")
        matrix = transform_matrix(params.get("theta", 0), params.get("tx", 0),
                                  params.get("ty", 0), params.get("shear", 0),
                                  params.get("zx", 1), params.get("zy", 1), h, w)
        # an exact identity samples every pixel at itself: no warp (Keras's output equals x)
        if matrix is None or np.array_equal(matrix, np.eye(3)):
            return None
        return matrix

    @staticmethod
    def _as_float(function, x, ndim, shape_text):
        x = np.asarray(x)
        if x.ndim != ndim:
            raise ValueError(f"{function}: expected an array of shape {shape_text}; "
                             f"received shape {x.shape}")
        if x.dtype not in (np.float32, np.float64):
            x = x.astype(np.float32)
        return x

    def apply_transform(self, x, transform_parameters):
        """Warp one image x (H, W, C) by the parameters, then flip it; a new array.

        Float32/float64 stay as they are, other dtypes become float32. Equals Keras's
        ImageDataGenerator.apply_transform (scipy, order=1) to float32 precision.
        """
        x = self._as_float("apply_transform", x, 3, "(H, W, C)")
        matrix = self._matrix(transform_parameters, x.shape[0], x.shape[1])
        if matrix is None:
            y = x.copy()
        else:
            y = affine_warp(x[None], matrix[None], self.fill_mode, self.cval)[0]
        if transform_parameters.get("flip_horizontal", False):
            y = y[:, ::-1]
        if transform_parameters.get("flip_vertical", False):
            y = y[::-1]
        return np.ascontiguousarray(y)

    def random_transform(self, x, seed=None):
        """apply_transform(x, get_random_transform(x.shape, seed)) for one image (H, W, C)."""
        x = self._as_float("random_transform", x, 3, "(H, W, C)")
        return self.apply_transform(x, self.get_random_transform(x.shape, seed))

    def standardize(self, x):
        """x * rescale (a new array; x itself is not modified, unlike Keras's in-place one)."""
        x = np.array(x, dtype=None if np.issubdtype(np.asarray(x).dtype, np.floating)
                     else np.float32)
        if self.rescale:
            x *= self.rescale
        return x

    def augment_batch(self, x, seeds):
        """The batched hot path: standardize(random_transform(x[n], seeds[n])) for every n.

        x: ndarray of shape (N, H, W, C) (converted to float32); seeds: N ints.
        Returns a new float32 array (N, H, W, C). One affine_warp call for all the images
        that move (none at all without geometric augmentation), flips by slicing, rescale.
        """
        x = np.asarray(x)
        if x.ndim != 4:
            raise ValueError(f"augment_batch: expected x of shape (N, H, W, C); "
                             f"received shape {x.shape}")
        x = x.astype(np.float32, copy=False)
        n, h, w, _ = x.shape
        seeds = list(seeds)
        if len(seeds) != n:
            raise ValueError(f"augment_batch: expected {n} seeds (one per image of x, shape "
                             f"{x.shape}); received {len(seeds)}")
        if n == 0:
            return x.copy()
        # Per image only a handful of numbers: its own seeded draw (Keras's semantics) and a
        # 3x3 matrix; every pixel is handled by the one kernel call below.
        params = [self.get_random_transform(x.shape[1:], seed=s) for s in seeds]
        matrices = [self._matrix(p, h, w) for p in params] if self.is_geometric else [None] * n
        moved = np.array([m is not None for m in matrices], dtype=bool)
        if moved.all():
            out = affine_warp(x, np.stack(matrices), self.fill_mode, self.cval)
        else:
            out = x.copy()
            if moved.any():
                stack = np.stack([m for m in matrices if m is not None])
                out[moved] = affine_warp(x[moved], stack, self.fill_mode, self.cval)
        flip_h = np.array([bool(p["flip_horizontal"]) for p in params], dtype=bool)
        flip_v = np.array([bool(p["flip_vertical"]) for p in params], dtype=bool)
        if flip_h.any():
            out[flip_h] = out[flip_h][:, :, ::-1]
        if flip_v.any():
            out[flip_v] = out[flip_v][:, ::-1]
        if self.rescale:
            out *= self.rescale
        return out

    # ----------------------------------------------------------------- iterators

    def flow_from_directory(self, directory, target_size=(256, 256), color_mode="rgb",
                            classes=None, class_mode="categorical", batch_size=32,
                            shuffle=True, seed=None, interpolation="nearest", *,
                            follow_links=False, dtype="float32", workers=2,
                            max_queue_size=4, strict=False):
        """Endless batches from one subfolder per class, augmented by this generator
        (minicnn.preprocessing.iterators.DirectoryIterator, whose docstring has the details).

        The keyword-only options go to the iterator unchanged, with its defaults:
        follow_links=False and dtype='float32' as Keras; workers=2 threads preparing at
        most max_queue_size=4 batches ahead (the batches are the same with workers=0);
        strict=False warns about an unreadable image file and leaves it out of its batch,
        strict=True raises OSError naming it.
        """
        from minicnn.preprocessing.iterators import DirectoryIterator
        return DirectoryIterator(directory, self, target_size=target_size,
                                 color_mode=color_mode, classes=classes,
                                 class_mode=class_mode, batch_size=batch_size,
                                 shuffle=shuffle, seed=seed, interpolation=interpolation,
                                 follow_links=follow_links, dtype=dtype, workers=workers,
                                 max_queue_size=max_queue_size, strict=strict)

    def flow(self, x, y=None, batch_size=32, shuffle=True, seed=None, *, dtype="float32",
             workers=2, max_queue_size=4):
        """Endless batches from arrays x (N, H, W, C) and y, augmented by this generator
        (minicnn.preprocessing.iterators.NumpyArrayIterator).

        The keyword-only options go to the iterator unchanged, with its defaults: x in
        dtype='float32' as Keras; workers=2 threads preparing at most max_queue_size=4
        batches ahead (the batches are the same with workers=0).
        """
        from minicnn.preprocessing.iterators import NumpyArrayIterator
        return NumpyArrayIterator(x, y, self, batch_size=batch_size, shuffle=shuffle,
                                  seed=seed, dtype=dtype, workers=workers,
                                  max_queue_size=max_queue_size)
