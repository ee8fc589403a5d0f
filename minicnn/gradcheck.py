"""Numerical gradient checking: does backward() compute the derivative of forward()?

For a layer y = f(x; W) and any upstream gradient dy, backward must return the
vector-Jacobian products

    dx = d(sum(f(x; W) * dy)) / dx        dW = d(sum(f(x; W) * dy)) / dW

The checker computes the same numbers by central differences, one element at a time,

    d/dv sum(f * dy)  ~  (sum(f(v + h) * dy) - sum(f(v - h) * dy)) / (2 h)

in float64 (h = 1e-6: truncation error ~h^2, rounding ~1e-16/h), and reports for the
input and each weight the relative error

    ||analytic - numeric|| / (||analytic|| + ||numeric||)

Around 1e-9 or below is float64 precision; 1e-6 or above points at a bug (or at an
input sitting on a kink of relu or max, which a random input almost never does).
Random parts (dropout masks) are replayed identically for every evaluation.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np

from minicnn import losses as losses_lib

DEFAULT_EPS = 1e-6
DEFAULT_TOLERANCE = 1e-6


def relative_error(analytic, numeric) -> float:
    """||a - n|| / (||a|| + ||n||), and 0 when both are zero."""
    a = np.asarray(analytic, dtype=np.float64)
    n = np.asarray(numeric, dtype=np.float64)
    denom = np.linalg.norm(a) + np.linalg.norm(n)
    return 0.0 if denom == 0 else float(np.linalg.norm(a - n) / denom)


def numerical_gradient(f, v: np.ndarray, eps: float = DEFAULT_EPS) -> np.ndarray:
    """d f() / d v by central differences, where f reads v (perturbed in place, then restored).

    f: callable with no arguments returning a float; v: float64 ndarray f depends on.
    """
    if not v.flags.c_contiguous:
        raise ValueError("numerical_gradient: v must be C-contiguous, to be perturbed in place")
    grad = np.zeros_like(v, dtype=np.float64)
    flat, out = v.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        f_plus = f()
        flat[i] = old - eps
        f_minus = f()
        flat[i] = old
        out[i] = (f_plus - f_minus) / (2 * eps)
    return grad


@dataclass
class GradCheckResult:
    """Relative errors of one check, by what was differentiated ('input', 'conv2d/kernel', ...)."""

    name: str
    errors: dict = field(default_factory=dict)
    tolerance: float = DEFAULT_TOLERANCE

    @property
    def max_error(self) -> float:
        return max(self.errors.values(), default=0.0)

    @property
    def passed(self) -> bool:
        return self.max_error < self.tolerance

    def __str__(self) -> str:
        parts = ", ".join(f"{k}: {v:.2e}" for k, v in self.errors.items())
        return f"{self.name}: {parts} -> {'ok' if self.passed else 'FAILED'}"


class _ReplayRandomness:
    """Restores every Generator found on the layers (dropout) before each evaluation."""

    def __init__(self, layer):
        self.rngs = [l.rng for l in _walk(layer) if getattr(l, "rng", None) is not None]
        self.states = [copy.deepcopy(r.bit_generator.state) for r in self.rngs]

    def __call__(self):
        for r, s in zip(self.rngs, self.states):
            r.bit_generator.state = copy.deepcopy(s)


def _walk(layer):
    yield layer
    for sub in getattr(layer, "layers", []):
        yield from _walk(sub)


def _weight_names(layer):
    names = []
    for l in _walk(layer):
        if getattr(l, "layers", None):
            continue
        kinds = ["kernel", "bias"] if len(l.trainable_weights) <= 2 else \
            [f"weight_{i}" for i in range(len(l.trainable_weights))]
        names += [f"{l.name}/{kind}" for kind in kinds[:len(l.trainable_weights)]]
    return names


def _float64_copy(layer, x, seed):
    layer64 = copy.deepcopy(layer)
    if not layer64.built:
        # weights drawn from the seed: the same check gives the same numbers every run
        layer64.build((None,) + np.shape(x)[1:], rng=np.random.default_rng(seed))
    layer64.set_dtype(np.float64)
    return layer64


def check_layer(layer, x, dy=None, eps=DEFAULT_EPS, tolerance=DEFAULT_TOLERANCE, seed=0,
                training=True) -> GradCheckResult:
    """Check backward() of any layer (or model) at input x against central differences.

    Works on a float64 copy; `layer` itself is left untouched. dy defaults to a random
    normal upstream gradient drawn from `seed`; an unbuilt layer is built for x with its
    weights drawn from `seed` too, so that a check is reproducible.
    """
    layer = _float64_copy(layer, x, seed)
    x = np.array(x, dtype=np.float64)
    replay = _ReplayRandomness(layer)
    replay()
    y = layer.forward(x, training=training)
    if dy is None:
        dy = np.random.default_rng(seed).standard_normal(y.shape)
    dy = np.array(dy, dtype=np.float64)
    dx = layer.backward(dy.copy())
    analytic = {"input": dx}
    analytic.update(zip(_weight_names(layer), layer.trainable_grads))

    def objective():
        replay()
        return float(np.sum(layer.forward(x, training=training) * dy))

    numeric = {"input": numerical_gradient(objective, x, eps)}
    for name, w in zip(_weight_names(layer), layer.trainable_weights):
        numeric[name] = numerical_gradient(objective, w, eps)
    errors = {k: relative_error(analytic[k], numeric[k]) for k in analytic}
    return GradCheckResult(f"{type(layer).__name__} '{layer.name}'", errors, tolerance)


def check_loss(loss, y_true, y_pred, from_logits=False, eps=DEFAULT_EPS,
               tolerance=DEFAULT_TOLERANCE) -> GradCheckResult:
    """Check a loss's gradient with respect to its input (probabilities, or logits)."""
    loss = losses_lib.get(loss)
    y_true = np.array(y_true, dtype=np.float64)
    v = np.array(y_pred, dtype=np.float64)
    if from_logits:
        compute = losses_lib.BinaryCrossentropy.from_logits_forward_backward
    else:
        compute = loss.forward_backward
    _, analytic = compute(y_true, v)
    numeric = numerical_gradient(lambda: compute(y_true, v)[0], v, eps)
    what = "logits" if from_logits else "y_pred"
    return GradCheckResult(f"{loss.name} ({what})", {what: relative_error(analytic, numeric)},
                           tolerance)


def check_model(model, x, y, eps=DEFAULT_EPS, tolerance=DEFAULT_TOLERANCE) -> GradCheckResult:
    """Check dL/dW for every trainable weight and dL/dx of a compiled model at one batch,
    in training mode (dropout on, with its mask replayed), loss as in training."""
    if model.loss is None:
        raise RuntimeError("check_model: compile the model with a loss first")
    model = _float64_copy(model, x, seed=0)
    x = np.array(x, dtype=np.float64)
    y = model._check_labels(y, len(x))
    replay = _ReplayRandomness(model)
    model.input_grad_needed = True

    def loss_and_grad():
        replay()
        out = model.forward(x, training=True)
        return model._loss_and_grad(y, out)

    _, grad, from_logits = loss_and_grad()
    dx = model.backward_from_logits(grad) if from_logits else model.backward(grad)
    analytic = {"input": dx}
    analytic.update(zip(_weight_names(model), model.trainable_grads))
    numeric = {"input": numerical_gradient(lambda: loss_and_grad()[0], x, eps)}
    for name, w in zip(_weight_names(model), model.trainable_weights):
        numeric[name] = numerical_gradient(lambda: loss_and_grad()[0], w, eps)
    errors = {k: relative_error(analytic[k], numeric[k]) for k in analytic}
    return GradCheckResult(f"model '{model.name}' + {model.loss.name}", errors, tolerance)
