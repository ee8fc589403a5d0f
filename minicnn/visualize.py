"""What a convnet learned, by its own explicit forward and backward (the book's chapter 5.4).

    activations(model, x, layer_names=None)      each layer's output A, {name: (N, H_A, W_A, C_A)}
    input_gradient(model, x, output_index=0)     d(score)/d(input), (N, H, W, C)
    saliency(model, x, output_index=0)           max over C of |d(score)/d(input)|, (N, H, W)
    grad_cam(model, x, layer_name)               class activation heatmap, (N, H_A, W_A)
    filter_patterns(model, layer_name, filters)  the inputs that excite filters most, (F, S, S, C)

The score is the model's output before its sigmoid: for a cat/dog model z = w . h + b, the
number whose sign decides the class (a model without a sigmoid output gives its output itself,
e.g. a softmax's class probability, as in the book's Grad-CAM). Every gradient here is the
one the model's backward computes in training, asked for with another upstream gradient:

    forward at inference (no dropout) through the model's layers, nested models opened up,
    each layer keeping its cache;
    backward from the chosen output with upstream gradient G, layer by layer, down to the
    input (input_gradient, filter_patterns) or to the chosen layer's output (grad_cam).

For the pass every layer is frozen, so no weight gradient is computed; afterwards the
layers' gradient buffers and trainable flags are as they were. No weight, no optimizer state
and no random generator changes.

The *_image functions turn these arrays into uint8 pictures, as the book displays them.
"""
from __future__ import annotations

from contextlib import contextmanager

import numpy as np
from tqdm.auto import tqdm

from minicnn.layers import Conv2D


# -- the pass: forward and backward through the leaf layers --------------------------------
def _leaves(model) -> list:
    leaf_layers = getattr(model, "leaf_layers", None)
    return leaf_layers() if leaf_layers else [model]


def _layer_index(model, name: str, what: str) -> int:
    """The index in _leaves(model) of the layer called name whose output is meant: a leaf
    layer, or a nested model (its last leaf). Unknown names list the valid ones."""
    leaves = _leaves(model)
    for i, layer in enumerate(leaves):
        if layer.name == name:
            return i
    end = 0
    for layer in model.layers:
        end += len(_leaves(layer))
        if layer.name == name:
            return end - 1
    names = [layer.name for layer in model.layers if layer not in leaves]
    names += [layer.name for layer in leaves]
    raise ValueError(f"{what}: {model._label()} has no layer named {name!r}; its layers are "
                     f"{names}")


def _batch(model, x, what: str) -> np.ndarray:
    """x as a batch (N, H, W, C) the model accepts: one image (H, W, C) becomes a batch of
    one; the wrong size is named with the size the model wants."""
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
        raise ValueError(f"{what}: expected images as real numbers; received dtype {x.dtype}")
    if model.built and x.ndim == len(model.input_shape) - 1:
        x = x[None]
    if not model.built:
        if x.ndim == 3:
            x = x[None]
        model.build((None,) + x.shape[1:])
    wanted = tuple(model.input_shape[1:])
    if x.ndim != len(wanted) + 1 or x.shape[1:] != wanted:
        size = "x".join(str(d) for d in wanted)
        raise ValueError(f"{what}: {model._label()} takes images of shape {wanted} "
                         f"({size}); received an array of shape {x.shape} (resize the image "
                         f"to the model's size, e.g. load_img(path, target_size={wanted[:2]}))")
    if x.shape[0] == 0:
        raise ValueError(f"{what}: received an empty batch {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{what}: the images hold NaN or infinite values")
    return x


@contextmanager
def _frozen(leaves):
    """Every layer frozen for the pass (no weight gradients); afterwards the trainable flags
    and the gradient buffers are what they were, and no cache is left behind."""
    saved = [(layer.trainable, getattr(layer, "grads", None)) for layer in leaves]
    for layer in leaves:
        layer.trainable = False
    try:
        yield
    finally:
        for layer, (trainable, grads) in zip(leaves, saved):
            layer.trainable = trainable
            if grads is not None:
                layer.grads = grads
            layer._cache = None


def _forward(leaves, x, stop: int, keep_cache: bool) -> list:
    """The outputs of leaves[0..stop] at inference: outs[i] = leaves[i](outs[i - 1])."""
    outs = []
    for layer in leaves[:stop + 1]:
        x = layer.forward(x, training=False, keep_cache=keep_cache)
        outs.append(x)
    return outs


def _scores_backward(leaves, out, output_index: int, down_to: int) -> np.ndarray:
    """d(score[:, output_index]) / d(input of leaves[down_to]), each image's own: the backward
    from the last layer with G = 1 at output_index, 0 elsewhere, the sigmoid left out."""
    grad = np.zeros_like(out)
    grad[:, output_index] = 1
    last = len(leaves) - 1
    if getattr(leaves[last], "activation", None) == "sigmoid":
        grad = leaves[last].backward_from_logits(grad, need_dx=True)
    else:
        grad = leaves[last].backward(grad, need_dx=True)
    return _backward(leaves, grad, last - 1, down_to)


def _backward(leaves, grad, start: int, down_to: int) -> np.ndarray:
    """The gradient with respect to the input of leaves[down_to], from the gradient with
    respect to the output of leaves[start]."""
    for i in range(start, down_to - 1, -1):
        grad = leaves[i].backward(grad, need_dx=True)
    return grad


def _score(leaves, out) -> np.ndarray:
    if getattr(leaves[-1], "activation", None) == "sigmoid":
        return leaves[-1].output_logits()
    return out


def _check_output_index(model, output_index, what: str) -> int:
    units = model.output_shape[-1]
    if isinstance(output_index, bool) or not isinstance(output_index, (int, np.integer)) \
            or not 0 <= output_index < units:
        raise ValueError(f"{what}: output_index must be an int in [0, {units}) for "
                         f"{model._label()}, whose output has {units} unit(s); received "
                         f"{output_index!r}")
    return int(output_index)


# -- the methods --------------------------------------------------------------------------
def logit(model, x, output_index=0) -> np.ndarray:
    """The model's score (its output before the sigmoid) for each image, (N,): what
    input_gradient and grad_cam differentiate."""
    x = _batch(model, x, "logit")
    output_index = _check_output_index(model, output_index, "logit")
    leaves = _leaves(model)
    out = _forward(leaves, x, len(leaves) - 1, keep_cache=True)[-1]
    score = np.array(_score(leaves, out)[:, output_index])
    for layer in leaves:
        layer._cache = None
    return score


def input_gradient(model, x, output_index=0) -> np.ndarray:
    """d(score[output_index]) / d(x) for each image of x, by the model's own backward.

    x: ndarray of shape (N, H, W, C), or one image (H, W, C). Returns an array of shape
    (N, H, W, C) (a batch even for one image) in the first layer's dtype. Each image's
    gradient is its own: the scores of different images do not depend on each other."""
    x = _batch(model, x, "input_gradient")
    output_index = _check_output_index(model, output_index, "input_gradient")
    leaves = _leaves(model)
    with _frozen(leaves):
        out = _forward(leaves, x, len(leaves) - 1, keep_cache=True)[-1]
        return _scores_backward(leaves, out, output_index, down_to=0)


def saliency(model, x, output_index=0) -> np.ndarray:
    """S[n, i, j] = max over c of |d(score)/d(x[n, i, j, c])|, (N, H, W): where the model's
    score is most sensitive to a pixel (Simonyan et al., 2014)."""
    return np.abs(input_gradient(model, x, output_index)).max(axis=-1)


def activations(model, x, layer_names=None) -> dict:
    """Each named layer's output for the images x, {name: ndarray (N, ...)}, in the model's
    order: every layer (nested models opened up) when layer_names is None. A nested model's
    name gives its output. One forward at inference; nothing is kept."""
    x = _batch(model, x, "activations")
    leaves = _leaves(model)
    if layer_names is None:
        wanted = [(layer.name, i) for i, layer in enumerate(leaves)]
    else:
        if isinstance(layer_names, str):
            layer_names = [layer_names]
        wanted = [(name, _layer_index(model, name, "activations")) for name in layer_names]
    outs = _forward(leaves, x, max(i for _, i in wanted), keep_cache=False)
    return {name: outs[i] for name, i in wanted}


def grad_cam(model, x, layer_name, output_index=0, class_index=1) -> np.ndarray:
    """The class activation heatmap of Selvaraju et al. (2017) at a convolution's output.

    A = the output of layer_name, (N, H_A, W_A, C_A); G = d(score)/dA by the backward from
    the score down to that layer;

        w[n, c] = mean over (i, j) of G[n, i, j, c]
        cam[n]  = ReLU(sum over c of w[n, c] A[n, :, :, c]) / its maximum   (all zero stays 0)

    Returns cam, (N, H_A, W_A), in [0, 1]. layer_name may be inside a nested model
    ('block5_conv3' inside 'vgg16'). class_index: for a model whose output is one sigmoid
    unit, 1 (its own class: the score z, e.g. 'dog') or 0 (the other class, whose score is
    -z: log(p / (1 - p)) = z), so that G and w change sign; for other outputs it must be 1."""
    x = _batch(model, x, "grad_cam")
    output_index = _check_output_index(model, output_index, "grad_cam")
    leaves = _leaves(model)
    k = _layer_index(model, layer_name, "grad_cam")
    if not isinstance(leaves[k], Conv2D) or leaves[k].name != layer_name:
        convs = [layer.name for layer in leaves if isinstance(layer, Conv2D)]
        kind = type(model.get_layer(layer_name) if leaves[k].name != layer_name
                    else leaves[k]).__name__
        raise ValueError(f"grad_cam: layer {layer_name!r} of {model._label()} is a {kind}, "
                         f"not a convolution; Grad-CAM weighs a convolution's output "
                         f"channels; the model's Conv2D layers are {convs}")
    one_sigmoid = model.output_shape[-1] == 1 and model.output_activation == "sigmoid"
    if class_index not in ((0, 1) if one_sigmoid else (1,)) or isinstance(class_index, bool):
        raise ValueError(f"grad_cam: class_index must be 0 or 1 for a model with one "
                         f"sigmoid unit, and 1 (output_index chooses) for others; received "
                         f"{class_index!r}")
    if k == len(leaves) - 1:
        raise ValueError(f"grad_cam: layer {layer_name!r} is the model's output; Grad-CAM "
                         f"needs the layers that turn its output into the score")
    with _frozen(leaves):
        outs = _forward(leaves, x, len(leaves) - 1, keep_cache=True)
        a = outs[k]
        g = _scores_backward(leaves, outs[-1], output_index, down_to=k + 1)
    weights = g.mean(axis=(1, 2)) * (1 if class_index == 1 else -1)          # (N, C_A)
    cam = np.maximum(np.einsum("nijc,nc->nij", a, weights), 0)
    peak = cam.max(axis=(1, 2), keepdims=True)
    return np.divide(cam, peak, out=np.zeros_like(cam), where=peak > 0)


def filter_patterns(model, layer_name, filters, steps=40, step_size=1.0, size=None,
                    seed=0, verbose=0) -> np.ndarray:
    """The input that maximizes each filter's mean activation, by gradient ascent on the input.

    For filter f of layer_name's output A: loss(x) = mean over (i, j) of A[0, i, j, f].
    From x_0 = 128 + 20 u, u uniform in [0, 1) (gray noise), each step

        g     = d loss / d x                   (the backward from A with G = 1/(H_A W_A) at f)
        x    += step_size * g / (sqrt(mean(g^2)) + 1e-5)

    the gradient normalized by its RMS, as in the book. All filters ascend together, one
    image each. filters: an int F (filters 0..F-1) or a list of indices. size: the images'
    height and width, the model's own (None) or equal to it. Returns the inputs,
    (F, S, S, C) in the first layer's dtype; pattern_image makes them viewable. verbose=1
    draws a progress bar over the steps."""
    leaves = _leaves(model)
    k = _layer_index(model, layer_name, "filter_patterns")
    if not model.built:
        if size is None:
            raise ValueError("filter_patterns: the model is not built; give size=S or build it")
        model.build((None, size, size, 3))
    _, h, w, c = model.input_shape
    if size is not None and (size, size) != (h, w):
        raise ValueError(f"filter_patterns: {model._label()} takes {h}x{w} inputs; received "
                         f"size={size} (build the model for that size, e.g. "
                         f"VGG16(include_top=False, input_shape=({size}, {size}, 3)))")
    out_shape = leaves[k].output_shape
    if len(out_shape) != 4:
        raise ValueError(f"filter_patterns: layer {layer_name!r} outputs {out_shape}, not "
                         f"feature maps (N, H, W, C)")
    channels = out_shape[-1]
    filters = list(range(filters)) if isinstance(filters, (int, np.integer)) else list(filters)
    bad = [f for f in filters if isinstance(f, bool) or not isinstance(f, (int, np.integer))
           or not 0 <= f < channels]
    if not filters or bad:
        raise ValueError(f"filter_patterns: layer {layer_name!r} has {channels} filters; "
                         f"filters must be a positive count or indices in [0, {channels}); "
                         f"received {filters if not bad else bad}")
    for what, value in (("steps", steps), ("step_size", step_size)):
        if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) \
                or not np.isfinite(value) or value < 0 or (what == "steps" and value != int(value)):
            raise ValueError(f"filter_patterns: {what} must be a non-negative number"
                             f"{' (an int)' if what == 'steps' else ''}; received {value!r}")
    dtype = leaves[0].dtype
    rng = np.random.default_rng(seed)
    x = (rng.random((len(filters), h, w, c)) * 20 + 128).astype(dtype)
    g_a = np.zeros((len(filters),) + tuple(out_shape[1:]), dtype=dtype)
    g_a[np.arange(len(filters)), :, :, filters] = 1 / (out_shape[1] * out_shape[2])
    bar = tqdm(total=int(steps), desc=f"{layer_name}, {len(filters)} filters", unit="step",
               disable=not verbose, leave=True)
    with _frozen(leaves), bar:
        for _ in range(int(steps)):
            _forward(leaves, x, k, keep_cache=True)
            g = _backward(leaves, g_a, k, down_to=0)
            rms = np.sqrt(np.mean(np.square(g, dtype=np.float64), axis=(1, 2, 3)))
            x = x + (step_size / (rms + 1e-5)).astype(dtype)[:, None, None, None] * g
            bar.update()
    return x


# -- as pictures (uint8), the way the book shows them ---------------------------------------
def activation_image(a, images_per_row=16) -> np.ndarray:
    """One layer's feature maps a (H, W, C) of one image as a grid, uint8 (rows H, 16 W):
    channel c at row c // 16, column c % 16, each channel standardized on its own
    (128 + 64 (a - mean) / std, clipped; a constant channel is 128)."""
    a = np.asarray(a, dtype=np.float64)
    if a.ndim != 3:
        raise ValueError(f"activation_image: expected one image's feature maps (H, W, C); "
                         f"received shape {a.shape}")
    h, w, c = a.shape
    std = a.std(axis=(0, 1))
    z = np.divide(a - a.mean(axis=(0, 1)), std, out=np.zeros_like(a), where=std > 0)
    channels = np.clip(128 + 64 * z, 0, 255).astype(np.uint8)
    cols = min(images_per_row, c)
    rows = -(-c // cols)
    grid = np.zeros((rows * h, cols * w), dtype=np.uint8)
    for index in range(c):
        r, col = divmod(index, cols)
        grid[r * h:(r + 1) * h, col * w:(col + 1) * w] = channels[:, :, index]
    return grid


def pattern_image(x) -> np.ndarray:
    """A filter pattern (S, S, C) as uint8, the book's deprocess_image: standardized,
    scaled to std 0.1 around 0.5, clipped to [0, 1], times 255."""
    x = np.asarray(x, dtype=np.float64)
    x = (x - x.mean()) / (x.std() + 1e-5) * 0.1 + 0.5
    return (np.clip(x, 0, 1) * 255).astype(np.uint8)


def pattern_grid(patterns, margin=5) -> np.ndarray:
    """Patterns (F, S, S, C) side by side in one row of pattern_image tiles with a black
    margin between them, uint8 (S, F S + (F - 1) margin, C)."""
    tiles = [pattern_image(p) for p in patterns]
    s, _, c = tiles[0].shape
    grid = np.zeros((s, len(tiles) * (s + margin) - margin, c), dtype=np.uint8)
    for i, tile in enumerate(tiles):
        grid[:, i * (s + margin):i * (s + margin) + s] = tile
    return grid


def saliency_image(s, percentile=99) -> np.ndarray:
    """A saliency map (H, W) as uint8 grayscale: 0 where it is 0, 255 from its 99th
    percentile up (a handful of the largest gradients would leave the rest black)."""
    s = np.asarray(s, dtype=np.float64)
    peak = np.percentile(s, percentile)
    return (np.clip(s / peak if peak > 0 else s * 0, 0, 1) * 255).astype(np.uint8)


def heatmap_overlay(image, cam, alpha=0.4) -> np.ndarray:
    """The photo with the heatmap over it, uint8 (H, W, 3): cam (H_A, W_A) in [0, 1]
    resized bilinearly to the photo's size, coloured by the jet colormap, and blended:
    (1 - alpha) photo + alpha jet(cam). image: (H, W, 3) with values in [0, 255] (uint8, or
    floats such as img_to_array's). Needs matplotlib for the colormap."""
    from PIL import Image

    from minicnn.plotting import colormap

    image = np.asarray(image, dtype=np.float64)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"heatmap_overlay: expected an RGB image (H, W, 3); received shape "
                         f"{image.shape}")
    h, w = image.shape[:2]
    cam = np.asarray(cam, dtype=np.float32)
    resized = np.asarray(Image.fromarray(cam).resize((w, h), Image.BILINEAR))
    jet = colormap("jet")(np.clip(resized, 0, 1))[..., :3] * 255
    return np.clip((1 - alpha) * image + alpha * jet, 0, 255).astype(np.uint8)
