"""Activation functions by name: linear, relu, sigmoid, softmax.

    linear   y = z                     dy/dz = 1
    relu     y = max(z, 0)             dy/dz = [z > 0]   (0 at z = 0)
    sigmoid  y = 1 / (1 + exp(-z))     dy/dz = y (1 - y)
    softmax  y = exp(z) / sum exp(z)   over the last axis; dz = y (dy - sum(dy y))

Layers fuse them with their bias through minicnn.kernels.bias_activation;
this module resolves names (and None, meaning linear) to the kernel's codes.
"""
from minicnn.kernels import ACTIVATION_CODES

NAMES = tuple(ACTIVATION_CODES)


def resolve(activation, owner: str) -> str:
    """Canonical activation name; None means 'linear'. Raises ValueError naming `owner`."""
    if activation is None:
        return "linear"
    if isinstance(activation, str) and activation.lower() in ACTIVATION_CODES:
        return activation.lower()
    raise ValueError(
        f"{owner}: unknown activation {activation!r}; expected one of {NAMES} or None")


def code(name: str) -> int:
    return ACTIVATION_CODES[name]
