"""Metrics. 'acc'/'accuracy' resolve as Keras 3 resolves them from the output's shape:

    one output unit:   binary accuracy       mean([p > 0.5] == [y > 0.5])
    several units:     categorical accuracy  mean(argmax p == argmax y)   (per sample)

'binary_accuracy' is always the first. Per batch the model needs the number of correct
predictions and what it was counted over, so that an epoch's accuracy is the size-weighted
mean over its batches, last partial batch included.
"""
import numpy as np

ACCURACY_NAMES = ("acc", "accuracy", "binary_accuracy")


def binary_accuracy(y_true, y_pred, threshold=0.5) -> float:
    return float(np.mean((np.asarray(y_pred) > threshold) == (np.asarray(y_true) > 0.5)))


def correct_and_count(name, y_true, y_pred):
    """(number of correct predictions, number of predictions) of one batch for metric `name`."""
    if name.lower() == "binary_accuracy" or y_pred.shape[-1] == 1:
        return float(np.count_nonzero((y_pred > 0.5) == (y_true > 0.5))), y_true.size
    hits = np.argmax(y_pred, axis=-1) == np.argmax(y_true, axis=-1)
    return float(np.count_nonzero(hits)), hits.size


def accumulate(sums: dict, step_sums: dict) -> None:
    """Add one batch's {name: (total, count)} into an epoch's running sums, in place."""
    for k, (total, count) in step_sums.items():
        old_total, old_count = sums.get(k, (0.0, 0))
        sums[k] = (old_total + total, old_count + count)


def means(sums: dict) -> dict:
    """{name: total / count}: each metric as the size-weighted mean over its batches."""
    return {k: total / count for k, (total, count) in sums.items()}


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
