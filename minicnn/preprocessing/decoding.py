"""Image files in and out (Pillow), with Keras's names and semantics.

`load_img` -> PIL image, `img_to_array` -> ndarray (H, W, C), `array_to_img`, `save_img`
(written under a temporary name and renamed). The iterators decode every file through
load_img + img_to_array, so their pixels are Keras's.
"""
from __future__ import annotations

import io
import os
import warnings
from numbers import Integral

import numpy as np

COLOR_MODES = ("grayscale", "rgb", "rgba")
INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "hamming", "box", "lanczos")


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
