"""RMSprop's update of one weight array in one pass, in place (see minicnn.optimizers).

    v <- rho v + (1 - rho) g^2
    step = lr g / sqrt(v + eps)          (eps_inside_sqrt, Keras 3)
    step = lr g / (sqrt(v) + eps)        (Keras 2)
    m <- momentum m + step;  step = m    (when momentum > 0)
    w <- w - step

NumPy would make about eight passes over the weights with temporaries; this makes one.
"""
import numpy as np
from numba import njit, prange


@njit(parallel=True, cache=True, nogil=True)
def _rmsprop_update(w, g, v, m, lr, rho, eps, momentum, eps_inside_sqrt):
    use_momentum = momentum > 0.0
    for k in prange(w.size):
        gk = g[k]
        vk = rho * v[k] + (1.0 - rho) * gk * gk
        v[k] = vk
        if eps_inside_sqrt:
            step = lr * gk / np.sqrt(vk + eps)
        else:
            step = lr * gk / (np.sqrt(vk) + eps)
        if use_momentum:
            step = momentum * m[k] + step
            m[k] = step
        w[k] -= step


def rmsprop_update(w, g, v, m, lr, rho, eps, momentum, eps_inside_sqrt):
    """Update w and the slots v (and m when momentum > 0) in place; all C-contiguous, one
    dtype (m may be an empty array when momentum is 0). Scalars are cast to w's dtype so
    float32 weights are updated in float32, as Keras does."""
    t = w.dtype.type
    _rmsprop_update(w.reshape(-1), g.reshape(-1), v.reshape(-1), m.reshape(-1), t(lr), t(rho),
                    t(eps), t(momentum), eps_inside_sqrt)


def rmsprop_update_reference(w, g, v, m, lr, rho, eps, momentum, eps_inside_sqrt):
    """NumPy twin of rmsprop_update."""
    v *= rho
    v += (1 - rho) * np.square(g)
    step = lr * g / (np.sqrt(v + eps) if eps_inside_sqrt else np.sqrt(v) + eps)
    if momentum > 0:
        m *= momentum
        m += step
        step = m
    w -= step
