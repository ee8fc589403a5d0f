"""Numba kernels: the only place in minicnn with @njit.

Every kernel is a pure function (arrays in, arrays out) and sits beside a short
NumPy twin named `<kernel>_reference` with the same signature; the tests hold
them equal. Kernels import nothing else of minicnn.

Geometry is passed explicitly: strides (S_h, S_w) and paddings
(P_top, P_bottom, P_left, P_right); minicnn.shapes turns 'valid'/'same' into
those numbers.
"""
from minicnn.kernels.im2col import col2im, col2im_reference, im2col, im2col_reference
from minicnn.kernels.elementwise import (
    ACTIVATION_CODES,
    activation_backward,
    activation_backward_and_bias_grad,
    activation_backward_and_bias_grad_reference,
    activation_backward_reference,
    bias_activation,
    bias_activation_reference,
)
from minicnn.kernels.pooling import (
    maxpool_backward,
    maxpool_backward_reference,
    maxpool_backward_relu,
    maxpool_backward_relu_reference,
    maxpool_bias_activation,
    maxpool_bias_activation_reference,
    maxpool_forward,
    maxpool_forward_reference,
)
from minicnn.kernels.conv import Conv2DCache, conv2d_backward, conv2d_forward, conv2d_inference
from minicnn.kernels import winograd
from minicnn.kernels.optim import rmsprop_update, rmsprop_update_reference
from minicnn.kernels.warp import FILL_MODES, affine_warp, affine_warp_reference

__all__ = [
    "ACTIVATION_CODES", "Conv2DCache",
    "activation_backward", "activation_backward_reference",
    "activation_backward_and_bias_grad", "activation_backward_and_bias_grad_reference",
    "bias_activation", "bias_activation_reference",
    "col2im", "col2im_reference", "conv2d_backward", "conv2d_forward", "conv2d_inference",
    "im2col", "im2col_reference",
    "maxpool_backward", "maxpool_backward_reference",
    "maxpool_backward_relu", "maxpool_backward_relu_reference",
    "maxpool_bias_activation", "maxpool_bias_activation_reference",
    "maxpool_forward", "maxpool_forward_reference",
    "rmsprop_update", "rmsprop_update_reference",
    "FILL_MODES", "affine_warp", "affine_warp_reference", "winograd",
]
