"""What a convnet learned, by its own explicit backward: input gradients and saliency maps.

    input_gradient(model, x, output_index=0)    d(logit)/d(input), (N, H, W, C)
    saliency(model, x, output_index=0)           max over channels of |d(logit)/d(input)|, (N, H, W)

The logit is the model's output before its sigmoid (or the output itself when the last layer
has none): for a cat/dog model z = w . h + b, the score whose sign decides the class. Its
gradient with respect to the input is what the model's backward computes anyway when it is
asked for dL/dX with dL/dz = 1:

    forward at inference (no dropout), keeping each layer's cache;
    backward_from_logits(dz) with dz = 1 at output_index, 0 elsewhere, down to the input.

No weight, no optimizer state and no random generator changes: the layers' gradient buffers
are written by the backward and are put back afterwards.
"""
from __future__ import annotations

import numpy as np


def _check(model, x, output_index):
    x = np.asarray(x)
    if x.ndim == len(model.input_shape) - 1:          # one image
        x = x[None]
    if not getattr(model, "built", False):
        model.build((None,) + x.shape[1:])
    units = model.output_shape[-1]
    if isinstance(output_index, bool) or not isinstance(output_index, (int, np.integer)) \
            or not 0 <= output_index < units:
        raise ValueError(f"input_gradient: output_index must be an int in [0, {units}) for "
                         f"{model._label()}, whose output has {units} unit(s); received "
                         f"{output_index!r}")
    return x


def input_gradient(model, x, output_index=0) -> np.ndarray:
    """d(logit[output_index]) / d(x) for each image of x, by the model's own backward.

    x: ndarray of shape (N, H, W, C), or one image (H, W, C). Returns an array of the same
    shape (N, H, W, C) (a batch even for one image), in the model's dtype. Each image's
    gradient is its own: the logits of different images do not depend on each other."""
    x = _check(model, x, output_index)
    x = x.astype(model.leaf_layers()[0].dtype, copy=False)
    layers = model.leaf_layers()
    saved_grads = [getattr(layer, "grads", None) for layer in layers]
    saved_need = model.input_grad_needed
    model.input_grad_needed = True
    try:
        out = model.forward(x, training=False, keep_cache=True)
        dz = np.zeros_like(out)
        dz[:, output_index] = 1
        if getattr(model.layers[-1], "activation", None) == "sigmoid":
            dx = model.backward_from_logits(dz, need_dx=True)
        else:
            dx = model.backward(dz, need_dx=True)
    finally:
        model.input_grad_needed = saved_need
        for layer, grads in zip(layers, saved_grads):
            if grads is not None:
                layer.grads = grads
            layer._cache = None
    return dx


def saliency(model, x, output_index=0) -> np.ndarray:
    """|d(logit)/d(x)| max over the channels: (N, H, W), where the model's score is most
    sensitive to a pixel (Simonyan et al., 2014)."""
    return np.abs(input_gradient(model, x, output_index)).max(axis=-1)


def logit(model, x, output_index=0) -> np.ndarray:
    """The model's output before its sigmoid for each image, (N,): what input_gradient
    differentiates."""
    x = _check(model, x, output_index)
    out = model.forward(x.astype(model.leaf_layers()[0].dtype, copy=False), training=False)
    if getattr(model.layers[-1], "activation", None) == "sigmoid":
        out = model.output_logits()                  # kept by the sigmoid layer's forward
    return np.asarray(out)[:, output_index]
