"""Optimizers with Keras 3's exact updates (keras/src/optimizers/*.py), in place.

For each trainable weight w with gradient g:

RMSprop (v starts at 0, no bias correction):
    v <- rho v + (1 - rho) g^2
    w <- w - lr g / sqrt(v + eps)              Keras 3 (default)
    w <- w - lr g / (sqrt(v) + eps)            Keras 2.x, which the lecture ran on:
                                               RMSprop(..., epsilon_inside_sqrt=False)
  with momentum > 0:  m <- momentum m + (that increment);  w <- w - m

SGD:
    w <- w - lr g                              (momentum = 0)
    m <- momentum m - lr g;  w <- w + m        (momentum > 0)
    w <- w + momentum m - lr g                 (nesterov, after updating m)

Adam (t = 1, 2, ... the step number):
    m <- m + (g - m)(1 - beta_1);  v <- v + (g^2 - v)(1 - beta_2)
    w <- w - lr sqrt(1 - beta_2^t) / (1 - beta_1^t) * m / (sqrt(v) + eps)

Optimizer state (the slots) is attached to the weight arrays themselves, so frozen
weights, which are never passed in, are never touched. get_state/set_state export and
restore it (the step count and every slot) for model files, which store it as Keras does
(slot_layout gives Keras's order; keras_slot_names its names: Adam's m and v are Keras's
momentum and velocity).
"""
from __future__ import annotations

import math

import numpy as np

from minicnn.kernels import rmsprop_update

_NO_SLOT = np.empty(0)


def _number(owner, name, value, low, high, high_included=False) -> float:
    """value as a float in [low, high) (or [low, high]); else an error naming it."""
    ok = (not isinstance(value, bool) and isinstance(value, (int, float, np.floating))
          and math.isfinite(value) and low <= value and (value <= high if high_included
                                                          else value < high))
    if not ok:
        bound = "]" if high_included else ")"
        raise ValueError(f"{owner}: {name} must be a number in [{low}, {high}{bound}; received "
                         f"{value!r}")
    return float(value)


class Optimizer:
    name = "optimizer"
    slot_names: tuple = ()

    def __init__(self, learning_rate=0.001):
        if isinstance(learning_rate, bool) or not isinstance(learning_rate, (int, float)) \
                or not math.isfinite(learning_rate) or learning_rate <= 0:
            raise ValueError(f"{type(self).__name__}: learning_rate must be a positive finite "
                             f"number; received {learning_rate!r}")
        self.learning_rate = float(learning_rate)
        self.iterations = 0
        self._slots: dict[int, tuple[np.ndarray, dict]] = {}

    def slots(self, weight: np.ndarray) -> dict:
        """The state arrays of one weight, e.g. {'velocity': v} (created as zeros)."""
        key = id(weight)
        if key not in self._slots:
            # Keep the weight referenced so its id cannot be reused by another array.
            self._slots[key] = (weight, {n: np.zeros_like(weight) for n in self.slot_names})
        return self._slots[key][1]

    def apply(self, weights, grads) -> None:
        """One update of every weight from its gradient (lists in the same order)."""
        weights, grads = list(weights), list(grads)
        if len(weights) != len(grads):
            raise ValueError(f"{type(self).__name__}.apply: {len(weights)} weights but "
                             f"{len(grads)} gradients")
        for w, g in zip(weights, grads):
            if g is None or g.shape != w.shape:
                raise ValueError(f"{type(self).__name__}.apply: gradient of shape "
                                 f"{None if g is None else g.shape} for a weight of shape {w.shape}")
        self.iterations += 1
        for w, g in zip(weights, grads):
            self.update(w, g.astype(w.dtype, copy=False), self.slots(w))

    def update(self, w, g, slots) -> None:
        raise NotImplementedError

    def get_config(self) -> dict:
        return {"name": self.name, "learning_rate": self.learning_rate}

    @classmethod
    def from_config(cls, config) -> "Optimizer":
        """The optimizer get_config describes (its hyperparameters; no state)."""
        config = dict(config)
        config.pop("name", None)
        return cls(**config)

    # -- state, for model files ------------------------------------------------
    # Keras keeps the same state under other names and in a fixed order (its optimizer
    # `variables`: iteration, learning_rate, then the slots); a model file stores it so.
    keras_slot_names: dict = {}          # minicnn slot name -> Keras variable suffix
    keras_weight_major = False           # Keras order: per weight all its slots (Adam), or
                                         # per slot all weights (RMSprop, SGD)

    def slot_layout(self, n_weights: int) -> list[tuple[str, int]]:
        """(slot name, weight index) of each slot array in Keras's order, for
        `n_weights` trainable weights."""
        if self.keras_weight_major:
            return [(s, i) for i in range(n_weights) for s in self.slot_names]
        return [(s, i) for s in self.slot_names for i in range(n_weights)]

    def get_state(self, weights) -> list[dict]:
        """For each weight, {slot name: array}: the arrays themselves, or zeros for a weight
        never updated (nothing is created or changed)."""
        state = []
        for w in weights:
            kept = self._slots.get(id(w))
            state.append(dict(kept[1]) if kept is not None and kept[0] is w else
                         {n: np.zeros_like(w) for n in self.slot_names})
        return state

    def set_state(self, weights, iterations, slots) -> None:
        """Restore the step count and, for each weight, {slot name: array} (copied in).
        Every name and shape is checked before anything is set."""
        weights, slots = list(weights), list(slots)
        label = type(self).__name__
        if isinstance(iterations, bool) or not isinstance(iterations, (int, np.integer)) \
                or iterations < 0:
            raise ValueError(f"{label}.set_state: iterations must be an int >= 0; "
                             f"received {iterations!r}")
        if len(slots) != len(weights):
            raise ValueError(f"{label}.set_state: state for {len(slots)} weights; "
                             f"received {len(weights)} weights")
        for i, (w, s) in enumerate(zip(weights, slots)):
            if set(s) != set(self.slot_names):
                raise ValueError(f"{label}.set_state: weight {i} needs slots "
                                 f"{list(self.slot_names)}; received {sorted(s)}")
            for name, value in s.items():
                if np.shape(value) != w.shape:
                    raise ValueError(f"{label}.set_state: slot '{name}' of weight {i} "
                                     f"expected shape {w.shape}; received {np.shape(value)}")
        self.iterations = int(iterations)
        for w, s in zip(weights, slots):
            mine = self.slots(w)
            for name, value in s.items():
                mine[name][...] = value


class RMSprop(Optimizer):
    """RMSprop(learning_rate=0.001, rho=0.9, epsilon=1e-7, momentum=0.0, epsilon_inside_sqrt=True)."""
    name = "rmsprop"
    keras_slot_names = {"velocity": "velocity", "momentum": "momentum"}

    def __init__(self, learning_rate=0.001, rho=0.9, epsilon=1e-7, momentum=0.0,
                 epsilon_inside_sqrt=True):
        super().__init__(learning_rate)
        self.rho = _number("RMSprop", "rho", rho, 0, 1)
        self.epsilon = _number("RMSprop", "epsilon", epsilon, 0, 1)
        self.momentum = _number("RMSprop", "momentum", momentum, 0, 1)
        self.epsilon_inside_sqrt = bool(epsilon_inside_sqrt)
        self.slot_names = ("velocity", "momentum") if self.momentum > 0 else ("velocity",)

    def update(self, w, g, slots):
        # The formulas above, in one fused pass (minicnn.kernels.optim).
        rmsprop_update(w, np.ascontiguousarray(g), slots["velocity"],
                       slots.get("momentum", _NO_SLOT), self.learning_rate, self.rho,
                       self.epsilon, self.momentum, self.epsilon_inside_sqrt)

    def get_config(self):
        return {**super().get_config(), "rho": self.rho, "epsilon": self.epsilon,
                "momentum": self.momentum, "epsilon_inside_sqrt": self.epsilon_inside_sqrt}


class SGD(Optimizer):
    """SGD(learning_rate=0.01, momentum=0.0, nesterov=False)."""
    name = "sgd"
    keras_slot_names = {"momentum": "momentum"}

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False):
        super().__init__(learning_rate)
        self.momentum = _number("SGD", "momentum", momentum, 0, 1, high_included=True)
        self.nesterov = bool(nesterov)
        self.slot_names = ("momentum",) if self.momentum > 0 else ()

    def update(self, w, g, slots):
        if self.momentum == 0:
            w -= self.learning_rate * g
            return
        m = slots["momentum"]
        m *= self.momentum
        m -= self.learning_rate * g
        if self.nesterov:
            w += self.momentum * m - self.learning_rate * g
        else:
            w += m

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum, "nesterov": self.nesterov}


class Adam(Optimizer):
    """Adam(learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7)."""
    name = "adam"
    slot_names = ("m", "v")
    keras_slot_names = {"m": "momentum", "v": "velocity"}
    keras_weight_major = True

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7):
        super().__init__(learning_rate)
        self.beta_1 = _number("Adam", "beta_1", beta_1, 0, 1)
        self.beta_2 = _number("Adam", "beta_2", beta_2, 0, 1)
        self.epsilon = _number("Adam", "epsilon", epsilon, 0, 1)

    def update(self, w, g, slots):
        t = self.iterations
        alpha = float(self.learning_rate * np.sqrt(1 - self.beta_2 ** t) / (1 - self.beta_1 ** t))
        m, v = slots["m"], slots["v"]
        m += (g - m) * (1 - self.beta_1)
        v += (np.square(g) - v) * (1 - self.beta_2)
        w -= alpha * m / (np.sqrt(v) + self.epsilon)

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2,
                "epsilon": self.epsilon}


_OPTIMIZERS = {"rmsprop": RMSprop, "sgd": SGD, "adam": Adam}


def get(optimizer) -> Optimizer:
    """An Optimizer from a name (Keras defaults) or an instance."""
    if isinstance(optimizer, Optimizer):
        return optimizer
    if isinstance(optimizer, str) and optimizer.lower() in _OPTIMIZERS:
        return _OPTIMIZERS[optimizer.lower()]()
    raise ValueError(f"compile: unknown optimizer {optimizer!r}; expected one of "
                     f"{tuple(_OPTIMIZERS)} or a minicnn.optimizers.Optimizer")
