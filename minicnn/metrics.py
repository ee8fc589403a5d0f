"""Metrics. Accuracy for a sigmoid output: mean([p > 0.5] == y), as Keras's binary_accuracy.

Per batch the model needs the number of correct predictions, so that an epoch's
accuracy is the size-weighted mean over its batches, last partial batch included.
"""
import numpy as np

ACCURACY_NAMES = ("acc", "accuracy", "binary_accuracy")


def binary_accuracy(y_true, y_pred, threshold=0.5) -> float:
    return float(np.mean((np.asarray(y_pred) > threshold) == (np.asarray(y_true) > 0.5)))


def binary_correct(y_true, y_pred, threshold=0.5) -> float:
    """How many of the batch's outputs are right (a float, for weighted means)."""
    return float(np.count_nonzero((y_pred > threshold) == (y_true > 0.5)))


def resolve(metrics) -> list:
    """Validated metric names, in the user's spelling (it names the history keys)."""
    if metrics is None:
        return []
    if isinstance(metrics, str):
        metrics = [metrics]
    names = []
    for m in metrics:
        if not isinstance(m, str) or m.lower() not in ACCURACY_NAMES:
            raise ValueError(f"compile: unknown metric {m!r}; expected one of {ACCURACY_NAMES}")
        names.append(m)
    return names
