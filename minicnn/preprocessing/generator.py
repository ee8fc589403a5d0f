"""ImageDataGenerator: Keras's random augmentation of images, batched.

Its draws and its affine matrix are those of minicnn.preprocessing.transforms (whose
docstring has the math); `augment_batch`, the hot path the iterators of
minicnn.preprocessing.iterators call, warps a whole batch in one kernel call.
"""
from __future__ import annotations

from numbers import Integral

import numpy as np

from minicnn.kernels import FILL_MODES, affine_warp
from minicnn.preprocessing.iterators import DirectoryIterator, NumpyArrayIterator
from minicnn.preprocessing.transforms import _is_number, _random_state, transform_matrix


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

    The affine matrix, bilinear interpolation and fill modes are those of
    minicnn.preprocessing.transforms: A = P C(o) R T S Z C(-o) P maps each output pixel to the input point sampled,

        Y[i, j, c] = sum_{p, q in {0,1}} X[b(floor(u) + p), b(floor(v) + q), c] w_p(u) w_q(v).

    The lecture's Keras 2.0.8 used shear in radians and nearest-neighbour warping; minicnn
    follows today's Keras (degrees, bilinear). As in today's Keras, the height shift moves
    the image along its columns and the width shift along its rows (see minicnn.preprocessing.transforms).

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
        return NumpyArrayIterator(x, y, self, batch_size=batch_size, shuffle=shuffle,
                                  seed=seed, dtype=dtype, workers=workers,
                                  max_queue_size=max_queue_size)
