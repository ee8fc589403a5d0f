"""Weight initializers, as Keras defines them.

fan_in / fan_out of a kernel: Dense (in, out) -> in, out; Conv2D
(K_h, K_w, C_in, C_out) -> K_h*K_w*C_in, K_h*K_w*C_out.

    glorot_uniform  U(-l, l),  l = sqrt(6 / (fan_in + fan_out))        (Keras's default)
    glorot_normal   truncated N(0, s), s = sqrt(2 / (fan_in + fan_out)) / 0.8796...
    he_uniform      U(-l, l),  l = sqrt(6 / fan_in)
    he_normal       truncated N(0, s), s = sqrt(2 / fan_in) / 0.8796...
    zeros, ones

Random draws come from the numpy.random.Generator passed in.
"""
import numpy as np

# Standard deviation of a unit normal truncated to [-2, 2], as Keras divides by it.
_TRUNCATED_STD = 0.87962566103423978


def _fans(shape):
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive = int(np.prod(shape[:-2])) if len(shape) > 2 else 1
    return shape[-2] * receptive, shape[-1] * receptive


def _truncated_normal(rng, std, shape):
    out = rng.standard_normal(shape)
    bad = np.abs(out) > 2
    while bad.any():
        out[bad] = rng.standard_normal(int(bad.sum()))
        bad = np.abs(out) > 2
    return out * std


def glorot_uniform(shape, rng):
    fan_in, fan_out = _fans(shape)
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, shape)


def glorot_normal(shape, rng):
    fan_in, fan_out = _fans(shape)
    return _truncated_normal(rng, np.sqrt(2.0 / (fan_in + fan_out)) / _TRUNCATED_STD, shape)


def he_uniform(shape, rng):
    fan_in, _ = _fans(shape)
    limit = np.sqrt(6.0 / fan_in)
    return rng.uniform(-limit, limit, shape)


def he_normal(shape, rng):
    fan_in, _ = _fans(shape)
    return _truncated_normal(rng, np.sqrt(2.0 / fan_in) / _TRUNCATED_STD, shape)


def zeros(shape, rng=None):
    return np.zeros(shape)


def ones(shape, rng=None):
    return np.ones(shape)


INITIALIZERS = {f.__name__: f for f in
                (glorot_uniform, glorot_normal, he_uniform, he_normal, zeros, ones)}


def resolve(name, owner: str):
    """The initializer function for `name`. Raises ValueError naming `owner`."""
    if isinstance(name, str) and name.lower() in INITIALIZERS:
        return INITIALIZERS[name.lower()]
    raise ValueError(
        f"{owner}: unknown initializer {name!r}; expected one of {tuple(INITIALIZERS)}")
