"""Losses: binary cross-entropy (the lecture's) and mean squared error.

Each loss gives the batch mean and its gradient with respect to the model output
(size = number of elements of y, i.e. N * units):

binary_crossentropy on probabilities p, clipped to [eps, 1 - eps] (eps = 1e-7, as Keras):
    L  = -mean(y log p + (1 - y) log(1 - p))
    dp = (-y / p + (1 - y) / (1 - p)) / size          (0 where p was clipped)

binary_crossentropy from logits z (used automatically after a sigmoid output, as Keras):
    L  = mean(max(z, 0) - z y + log1p(exp(-|z|)))       stable for any z
    dz = (sigmoid(z) - y) / size

mean_squared_error:
    L  = mean((p - y)^2)          dp = 2 (p - y) / size
"""
from __future__ import annotations

import numpy as np

EPSILON = 1e-7


def _sigmoid(z):
    e = np.exp(-np.abs(z))          # never overflows; see minicnn.kernels.elementwise
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e))


class Loss:
    name = "loss"

    def __call__(self, y_true, y_pred) -> float:
        return self.forward_backward(np.asarray(y_true), np.asarray(y_pred))[0]

    def forward_backward(self, y_true, y_pred):
        """(mean loss as a Python float, dL/dy_pred in y_pred's dtype)."""
        raise NotImplementedError

    def get_config(self) -> dict:
        return {"name": self.name}


class BinaryCrossentropy(Loss):
    name = "binary_crossentropy"
    from_logits_capable = True

    def __init__(self, from_logits=False):
        self.from_logits = bool(from_logits)

    def forward_backward(self, y_true, y_pred):
        if self.from_logits:
            return self.from_logits_forward_backward(y_true, y_pred)
        p = np.clip(y_pred, EPSILON, 1 - EPSILON)
        y = y_true.astype(p.dtype, copy=False)
        loss = -np.mean(y * np.log(p) + (1 - y) * np.log1p(-p), dtype=np.float64)
        inside = (y_pred >= EPSILON) & (y_pred <= 1 - EPSILON)
        dp = ((1 - y) / (1 - p) - y / p) * inside / y_pred.size
        return float(loss), dp.astype(y_pred.dtype, copy=False)

    @staticmethod
    def from_logits_forward_backward(y_true, z):
        y = y_true.astype(z.dtype, copy=False)
        loss = np.mean(np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z))), dtype=np.float64)
        dz = (_sigmoid(z) - y) / z.size
        return float(loss), dz.astype(z.dtype, copy=False)

    def get_config(self):
        return {"name": self.name, "from_logits": self.from_logits}


class MeanSquaredError(Loss):
    name = "mean_squared_error"

    def forward_backward(self, y_true, y_pred):
        diff = y_pred - y_true.astype(y_pred.dtype, copy=False)
        return float(np.mean(diff * diff, dtype=np.float64)), (2 * diff / y_pred.size).astype(
            y_pred.dtype, copy=False)


_LOSSES = {
    "binary_crossentropy": BinaryCrossentropy,
    "mean_squared_error": MeanSquaredError,
    "mse": MeanSquaredError,
}


def get(loss) -> Loss:
    """A Loss from a name or an instance; ValueError lists the known names."""
    if isinstance(loss, Loss):
        return loss
    if isinstance(loss, str) and loss.lower() in _LOSSES:
        return _LOSSES[loss.lower()]()
    raise ValueError(f"compile: unknown loss {loss!r}; expected one of {tuple(_LOSSES)} "
                     f"or a minicnn.losses.Loss")
