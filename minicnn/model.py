"""Sequential: a stack of layers that builds, summarises, trains and predicts like Keras.

A Sequential is itself a Layer, so a model can sit inside another model (the lecture
puts the VGG16 conv base inside its classifier).

One training step (train_on_batch, and each step of fit):

    out = forward(x, training=True)                 layer by layer, caching for backward
    L, dL/dout = loss(y, out)                       from the logits when the output is a sigmoid
    backward(dL/dout)                               layer by layer in reverse, setting grads
    optimizer.apply(trainable_weights, trainable_grads)

Backward visits only the layers it must: nothing before the first layer with trainable
weights (a frozen base, or the first Conv2D's input gradient), and such layers keep no
cache in forward.
"""
from __future__ import annotations

import contextlib
import math
import signal
import threading
import warnings

import numpy as np

from minicnn import losses, metrics as metrics_lib, optimizers
from minicnn.callbacks import History
from minicnn.layers.base import Layer
from minicnn.metrics import accumulate as _accumulate, means as _means
from minicnn.progress import Progress
from minicnn.registry import file_format, register
from minicnn.shapes import format_shape
from minicnn.validation_cache import ValidationCache


@register()
class Sequential(Layer):
    """Sequential(layers=None, name=None, seed=None).

    `seed` makes a run repeatable: weight initialisation, dropout masks and shuffling
    all draw from numpy Generators spawned from it.
    """

    def __init__(self, layers=None, name=None, seed=None, trainable=True):
        self.layers: list[Layer] = []
        super().__init__(name=name, trainable=trainable)
        self.seed = seed
        self._seeds = np.random.SeedSequence(seed)
        self._shuffle_rng = np.random.default_rng(self._seeds.spawn(1)[0])
        self.optimizer = None
        self.loss = None
        self.metrics: list[str] = []
        # Whether backward must return dL/dx for this model's input. A model inside
        # another gets it set by the outer model before each forward; a top-level
        # model being trained does not need it.
        self.input_grad_needed = True
        self.stop_training = False
        for layer in layers or []:
            self.add(layer)

    # -- structure ----------------------------------------------------------
    def add(self, layer) -> None:
        if not isinstance(layer, Layer):
            raise TypeError(f"{self._label()}: add() expects a minicnn layer; "
                            f"received {type(layer).__name__}")
        if layer is self:
            raise ValueError(f"{self._label()}: a model cannot contain itself")
        if any(existing.name == layer.name for existing in self.layers):
            raise ValueError(f"{self._label()}: a layer named {layer.name!r} is already in the "
                             f"model; layer names must be unique")
        if not self.layers:
            if layer.batch_input_shape is not None:
                self.batch_input_shape = layer.batch_input_shape
            elif layer.built:
                self.batch_input_shape = layer.input_shape
        self.layers.append(layer)
        if self.built or self.batch_input_shape is not None:
            try:
                self._build_from(len(self.layers) - 1)
            except ValueError:
                self.layers.pop()
                raise

    def _build_from(self, start: int) -> None:
        shape = self.batch_input_shape if start == 0 else self.layers[start - 1].output_shape
        for layer in self.layers[start:]:
            if layer.built:
                if tuple(layer.input_shape[1:]) != tuple(shape[1:]):
                    raise layer._error(f"was built for inputs {format_shape(layer.input_shape)} "
                                       f"but receives {format_shape(shape)}")
                shape = layer.output_shape
            else:
                shape = layer.build(shape, rng=np.random.default_rng(self._seeds.spawn(1)[0]))
        self.input_shape = (None,) + tuple(self.batch_input_shape[1:])
        self.output_shape = shape
        self.built = True

    def build(self, input_shape, rng=None):
        if not self.layers:
            raise ValueError(f"{self._label()}: cannot build a model with no layers")
        if self.seed is None and rng is not None:
            self._seeds = np.random.SeedSequence(int(rng.integers(2 ** 63)))
        input_shape = (None,) + tuple(input_shape[1:])
        if self.batch_input_shape is not None and input_shape[1:] != self.batch_input_shape[1:]:
            raise self._error(f"expects inputs of shape {format_shape(self.batch_input_shape)}; "
                              f"received {format_shape(input_shape)}")
        self.batch_input_shape = input_shape
        self._build_from(0)
        return self.output_shape

    def _ensure_built(self, x: np.ndarray) -> None:
        if not self.built:
            if not self.layers:
                raise ValueError(f"{self._label()}: the model has no layers")
            self.build((None,) + x.shape[1:])
        if x.ndim != len(self.input_shape) or x.shape[1:] != tuple(self.input_shape[1:]):
            expected = format_shape(("N",) + tuple(self.input_shape[1:])).replace("'", "")
            first = self.leaf_layers()[0]
            raise ValueError(f"{self._label()}: expected input of shape {expected} (what its "
                             f"first layer '{first.name}' ({type(first).__name__}) was built "
                             f"for); received {x.shape}")

    def leaf_layers(self) -> list:
        """The model's layers in order, nested models (a conv base) opened up."""
        leaves = []
        for layer in self.layers:
            leaves += layer.leaf_layers() if isinstance(layer, Sequential) else [layer]
        return leaves

    def get_layer(self, name=None, index=None) -> Layer:
        if index is not None:
            if not -len(self.layers) <= index < len(self.layers):
                raise ValueError(f"{self._label()}: no layer at index {index}; the model has "
                                 f"{len(self.layers)} layers")
            return self.layers[index]
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise ValueError(f"{self._label()}: no layer named {name!r}; existing layers are "
                         f"{[layer.name for layer in self.layers]}")

    @property
    def trainable(self) -> bool:
        return self._trainable

    @trainable.setter
    def trainable(self, value) -> None:
        # As in Keras: setting it on a model sets it on every layer inside.
        self._trainable = bool(value)
        for layer in self.layers:
            layer.trainable = value

    def set_dtype(self, dtype) -> None:
        self.dtype = np.dtype(dtype)
        for layer in self.layers:
            layer.set_dtype(dtype)

    # -- weights ------------------------------------------------------------
    @property
    def params(self):
        return [p for layer in self.layers for p in layer.params]

    @property
    def trainable_weights(self):
        if not self.trainable:
            return []
        return [w for layer in self.layers for w in layer.trainable_weights]

    @property
    def non_trainable_weights(self):
        if not self.trainable:
            return self.params
        return [w for layer in self.layers for w in layer.non_trainable_weights]

    @property
    def grads(self):
        return self.trainable_grads

    @grads.setter
    def grads(self, value):
        pass        # a model's gradients are its layers'; Layer.__init__ assigns []

    @property
    def trainable_grads(self):
        if not self.trainable:
            return []
        return [g for layer in self.layers for g in layer.trainable_grads]

    def count_params(self) -> int:
        if not self.built:
            raise ValueError(f"{self._label()}: the model is not built yet; give its first "
                             f"layer input_shape=... or call it on a batch of data first")
        return int(sum(p.size for p in self.params))

    def get_weights(self):
        return [w for layer in self.layers for w in layer.get_weights()]

    def set_weights(self, weights) -> None:
        """Keras order: layer by layer, kernel then bias. Checked whole before anything is set."""
        weights = list(weights)
        expected = [p.shape for p in self.params]
        if len(weights) != len(expected):
            raise ValueError(f"{self._label()}: set_weights expected {len(expected)} arrays "
                             f"(model weights in Keras order); received {len(weights)}")
        for i, (w, shape) in enumerate(zip(weights, expected)):
            if np.shape(w) != shape:
                owner = self._owner_of(i)
                raise ValueError(f"{self._label()}: set_weights: array {i} (for {owner}) "
                                 f"expected shape {shape}; received {np.shape(w)}")
        start = 0
        for layer in self.layers:
            n = len(layer.params)
            layer.set_weights(weights[start:start + n])
            start += n

    def _owner_of(self, index: int) -> str:
        for layer in self.layers:
            n = len(layer.params)
            if index < n:
                return layer._label()
            index -= n
        return "?"

    def save(self, path, include_optimizer=True) -> None:
        """Write the whole model (architecture, weights, training configuration and
        optimizer state) as a Keras legacy HDF5 model file, atomically."""
        file_format("model").save(self, path, include_optimizer=include_optimizer)

    def save_weights(self, path) -> None:
        """Write the weights as a Keras-layout HDF5 weights file (atomically)."""
        file_format("weights").save(self, path)

    def load_weights(self, path) -> None:
        """Read a Keras-layout HDF5 weights file, matching layers by name; every shape is
        checked before anything is assigned."""
        file_format("weights").load(self, path)

    # -- forward and backward ------------------------------------------------------
    def _backward_plan(self, need_input_grad: bool):
        """(first, needs_dx): the first layer backward visits, and per layer whether it must
        return dL/dx (true once any layer before it has trainable weights)."""
        needs_dx, need = [], need_input_grad
        first = 0 if need_input_grad else len(self.layers)
        for i, layer in enumerate(self.layers):
            needs_dx.append(need)
            if layer.trainable_weights and not need:
                first = min(first, i)
            need = need or bool(layer.trainable_weights)
        return first, needs_dx

    def forward(self, x, training=False, keep_cache=None):
        x = np.asarray(x)
        self._ensure_built(x)
        keep_cache = training if keep_cache is None else keep_cache
        first, needs_dx = self._backward_plan(self.input_grad_needed)
        i = 0
        while i < len(self.layers):
            layer = self.layers[i]
            if isinstance(layer, Sequential):
                layer.input_grad_needed = needs_dx[i]
            keep = keep_cache and i >= first
            after = self.layers[i + 1] if i + 1 < len(self.layers) else None
            if not keep and _pool_after_monotone_conv(layer, after):
                # Inference through a convolution and its pooling: the bias and the
                # activation on the pooled output (the same numbers, a quarter of the work
                # for a 2x2 pool; see MaxPooling2D.forward_after_conv).
                # Where the convolution's algorithm can, the pooling happens in its output
                # pass, and the convolution's output is never written (Conv2D.pools).
                if layer.pools(after):
                    x = layer.forward_pooled(x, after)
                else:
                    z = layer.forward_before_pooling(x)
                    x = after.forward_after_conv(z, layer.bias, layer._activation_code)
                i += 2
                continue
            x = layer.forward(x, training=training, keep_cache=keep)
            i += 1
        return x

    def backward(self, dy, need_dx=True):
        return self._backward(dy, need_dx, from_logits=False)

    def backward_from_logits(self, dz, need_dx=True):
        return self._backward(dz, need_dx, from_logits=True)

    def _backward(self, grad, need_dx, from_logits):
        first, needs_dx = self._backward_plan(need_dx)
        last = len(self.layers) - 1
        i = last
        while i >= first:
            layer = self.layers[i]
            if from_logits and i == last:
                grad = layer.backward_from_logits(grad, need_dx=needs_dx[i])
            elif i > first and _pool_after_relu_conv(self.layers[i - 1], layer):
                # One pass for the pooling's backward and the ReLU's derivative (the same
                # numbers as the two backward calls; see MaxPooling2D.backward_through_relu).
                dz, db = layer.backward_through_relu(grad)
                i -= 1
                grad = self.layers[i].backward_from_dz(dz, db, need_dx=needs_dx[i])
            else:
                grad = layer.backward(grad, need_dx=needs_dx[i])
            i -= 1
        return grad if need_dx else None

    def output_logits(self):
        return self.layers[-1].output_logits()

    @property
    def output_activation(self):
        """The activation of the model's output ('sigmoid', 'relu', ...) or None."""
        last = self.layers[-1] if self.layers else None
        if isinstance(last, Sequential):
            return last.output_activation
        return getattr(last, "activation", None)

    # -- training ---------------------------------------------------------------
    def compile(self, optimizer="rmsprop", loss=None, metrics=None) -> None:
        self.optimizer = optimizers.get(optimizer)
        if loss is None:
            raise ValueError(f"{self._label()}: compile needs a loss, e.g. "
                             f"loss='binary_crossentropy'")
        self.loss = losses.get(loss)
        self.metrics = metrics_lib.resolve(metrics)

    def _require_compiled(self, what: str) -> None:
        if self.optimizer is None or self.loss is None:
            raise RuntimeError(f"{self._label()}: call compile(optimizer, loss, metrics) "
                               f"before {what}()")

    def _loss_and_grad(self, y, out):
        """(loss, dL/d(out or logits), from_logits). Keras computes binary cross-entropy
        from the logits whenever the output comes from a sigmoid; so does minicnn."""
        if (isinstance(self.loss, losses.BinaryCrossentropy) and not self.loss.from_logits
                and self.output_activation == "sigmoid"):
            loss, dz = losses.BinaryCrossentropy.from_logits_forward_backward(
                y, self.output_logits())
            return loss, dz, True
        loss, dout = self.loss.forward_backward(y, out)
        return loss, dout, False

    def _check_labels(self, y, n: int, what: str = "y") -> np.ndarray:
        y = np.asarray(y)
        out_shape = (n,) + tuple(self.output_shape[1:])
        if y.shape != out_shape and y.shape == (n,) and out_shape == (n, 1):
            y = y.reshape(n, 1)            # labels (N,) for a single sigmoid unit, as Keras
        if y.shape != out_shape:
            raise ValueError(f"{self._label()}: `{what}` has shape {y.shape} but the model "
                             f"outputs {format_shape(self.output_shape)}; expected {what} of "
                             f"shape {out_shape}" + (" or (N,)" if out_shape[1:] == (1,) else ""))
        if y.dtype.kind not in "biuf":
            raise ValueError(f"{self._label()}: `{what}` must hold numbers (0/1 labels for "
                             f"binary cross-entropy); received an array of dtype {y.dtype}")
        y = y.astype(self.leaf_layers()[-1].dtype, copy=False)
        if isinstance(self.loss, losses.BinaryCrossentropy) and y.size \
                and not (y.min() >= 0 and y.max() <= 1):
            # Keras trains on such labels too; the loss is then no cross-entropy.
            warnings.warn(f"{self._label()}: `{what}` holds values outside [0, 1] (from "
                          f"{y.min():g} to {y.max():g}); binary cross-entropy expects labels "
                          f"0 and 1 (or probabilities), so the loss and accuracy will mean "
                          f"little", stacklevel=4)
        return y

    def _prepare(self, x, y=None, what="x"):
        x = np.asarray(x)
        if x.ndim == 0:
            raise ValueError(f"{self._label()}: `{what}` must be an array of samples; "
                             f"received a scalar")
        self._ensure_built(x)
        x = x.astype(self.leaf_layers()[0].dtype, copy=False)
        if y is None:
            return x, None
        y = np.asarray(y)
        if len(y) != len(x):
            raise ValueError(f"{self._label()}: `{what}` has {len(x)} samples but its labels "
                             f"have {len(y)}")
        return x, self._check_labels(y, len(x), "y" if what == "x" else f"{what} labels")

    def _step_metrics(self, y, out, loss) -> dict:
        """{name: (sum, count)} of one batch, for the epoch's size-weighted means:
        loss * N over N samples, and the number of correct predictions over their count."""
        sums = {"loss": (loss * len(y), len(y))}
        for name in self.metrics:
            sums[name] = metrics_lib.correct_and_count(name, y, out)
        return sums

    def _train_step(self, x, y, where: str = ""):
        self.input_grad_needed = False
        out = self.forward(x, training=True)
        loss, grad, from_logits = self._loss_and_grad(y, out)
        if not math.isfinite(loss):
            raise FloatingPointError(f"{self._label()}: the loss became {loss}{where}; "
                                     f"training stopped before this step's update: "
                                     f"{self._non_finite_origin(x)}")
        if from_logits:
            self.backward_from_logits(grad, need_dx=False)
        else:
            self.backward(grad, need_dx=False)
        self.optimizer.apply(self.trainable_weights, self.trainable_grads)
        return self._step_metrics(y, out, loss)

    def _non_finite_origin(self, x) -> str:
        """Where a batch's numbers first stop being finite: the input itself, a layer's
        weights, or the first layer whose output holds NaN or inf (by inference, layer by
        layer, on the same batch)."""
        if not np.isfinite(x).all():
            return (f"the input batch holds {np.count_nonzero(~np.isfinite(x))} NaN or inf "
                    f"values")
        for layer in self.leaf_layers():
            for weight in layer.weights:
                if not np.isfinite(weight).all():
                    return (f"the weights of layer '{layer.name}' ({type(layer).__name__}) "
                            f"hold NaN or inf (a learning rate too large?)")
        for layer in self.leaf_layers():
            largest_in = float(np.abs(x).max(initial=0))
            x = layer.forward(x, training=False)
            if not np.isfinite(x).all():
                return (f"the output of layer '{layer.name}' ({type(layer).__name__}) is the "
                        f"first to hold NaN or inf (its input's largest magnitude: "
                        f"{largest_in:.3g})")
        return "every layer's output is finite: the loss itself overflowed"

    def train_on_batch(self, x, y):
        """One update on one batch; returns [loss, acc] ([loss, *metrics]), or loss alone."""
        self._require_compiled("train_on_batch")
        x, y = self._prepare(x, y)
        return self._as_result(_means(self._train_step(x, y)))

    def test_on_batch(self, x, y):
        self._require_compiled("test_on_batch")
        x, y = self._prepare(x, y)
        out = self.forward(x, training=False)
        loss, _, _ = self._loss_and_grad(y, out)
        return self._as_result(_means(self._step_metrics(y, out, loss)))

    def _as_result(self, logs: dict):
        values = [float(v) for v in logs.values()]
        return values if len(values) > 1 else values[0]

    def fit(self, x=None, y=None, batch_size=None, epochs=1, verbose=1, validation_data=None,
            shuffle=True, initial_epoch=0, steps_per_epoch=None, validation_steps=None,
            validation_batch_size=None, callbacks=None, validation_cache=None):
        """Train for `epochs` epochs; returns a History with 'loss', metrics and their 'val_'.

        x, y: arrays (batched here, reshuffled each epoch when shuffle=True), or x an
        iterator/generator of (x, y) batches (flow_from_directory, flow) with y None;
        steps_per_epoch then defaults to len(x). The iterator keeps its position from one
        epoch to the next (steps may cross the end of a pass), as in Keras. validation_data:
        (x_val, y_val) arrays or an iterator, run validation_steps batches (default len).
        callbacks: ModelCheckpoint, EarlyStopping, or any minicnn.callbacks.Callback.
        validation_cache (minicnn's own; default None, off): True or a ValidationCache runs
        each validation pass from the stored outputs of the frozen layers at the model's
        start, computed once (the same numbers; see minicnn.validation_cache). A cache made
        for True is closed when fit ends; one passed in stays filled for the next fit.

        Ctrl-C (SIGINT) or SIGTERM stops training at the end of the step in progress, after
        a message, and returns the History of the finished epochs; files a ModelCheckpoint
        wrote are complete (written atomically). A second signal stops at once.
        """
        self._require_compiled("fit")
        for what, value in (("epochs", epochs), ("initial_epoch", initial_epoch)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
                raise ValueError(f"{self._label()}: `{what}` must be an int >= 0; received "
                                 f"{value!r}")
        if steps_per_epoch is not None and (
                isinstance(steps_per_epoch, bool)
                or not isinstance(steps_per_epoch, (int, np.integer)) or steps_per_epoch <= 0):
            raise ValueError(f"{self._label()}: `steps_per_epoch` must be a positive int or "
                             f"None; received {steps_per_epoch!r}")
        if initial_epoch >= epochs:
            warnings.warn(f"{self._label()}: fit(epochs={epochs}, initial_epoch="
                          f"{initial_epoch}) has no epoch to run; the model is unchanged",
                          stacklevel=2)
        train = self._batches(x, y, batch_size, shuffle, steps_per_epoch, "x")
        validation = None
        if validation_data is not None:
            if isinstance(validation_data, (tuple, list)):
                if len(validation_data) != 2:
                    raise ValueError(f"{self._label()}: validation_data must be (x_val, y_val) "
                                     f"or an iterator; received a sequence of "
                                     f"{len(validation_data)} items")
                validation_data = tuple(validation_data)
                validation = self._batches(*validation_data, validation_batch_size or batch_size,
                                           False, validation_steps, "validation_data x")
            else:
                validation = self._batches(validation_data, None, None, False, validation_steps,
                                           "validation_data")
        cache = self._validation_cache(validation_cache, validation)
        history = History({"epochs": epochs, "steps": train.steps})
        self.history = history
        callbacks = list(callbacks or [])
        for callback in callbacks:
            callback.set_model(self)
            callback.on_train_begin()
        self.stop_training = False
        stop = _StopBetweenSteps()
        try:
            with stop:
                for epoch in range(initial_epoch, epochs):
                    self._fit_epoch(epoch, epochs, train, validation, cache, history, callbacks,
                                    verbose, stop)
                    if self.stop_training:
                        break
        except KeyboardInterrupt:
            print(f"\ninterrupted: training stopped after {len(history.epoch)} finished "
                  f"epoch(s); returning their history", flush=True)
        finally:
            if validation_cache is True and cache is not None:
                cache.close()
        for callback in callbacks:
            callback.on_train_end()
        return history

    def _fit_epoch(self, epoch, epochs, train, validation, cache, history, callbacks, verbose,
                   stop):
        progress = Progress(train.steps, verbose, desc=f"Epoch {epoch + 1}/{epochs}")
        sums: dict = {}
        for step, (xb, yb) in enumerate(train.epoch()):
            where = f" at epoch {epoch + 1}, step {step + 1}"
            _accumulate(sums, self._train_step(xb, yb, where))
            progress.update(_means(sums))
            stop.check()
        logs = _means(sums)
        if validation is not None:
            val_logs = cache.evaluate(self, validation) if cache else None
            if val_logs is None:
                val_logs = self._evaluate_batches(validation, verbose=0, stop=stop)
            logs.update({f"val_{k}": v for k, v in val_logs.items()})
        stop.check()
        history.append(epoch, logs)
        progress.close(logs)
        for callback in callbacks:
            callback.on_epoch_end(epoch, logs)

    def _validation_cache(self, validation_cache, validation):
        if validation_cache is None or validation_cache is False:
            return None
        if validation_cache is True:
            return ValidationCache() if validation is not None else None
        if not isinstance(validation_cache, ValidationCache):
            raise TypeError(f"{self._label()}: validation_cache must be None, True or a "
                            f"minicnn.ValidationCache; received "
                            f"{type(validation_cache).__name__}")
        return validation_cache

    def fit_generator(self, generator, steps_per_epoch=None, epochs=1, verbose=1,
                      validation_data=None, validation_steps=None, initial_epoch=0):
        """The lecture's name (Keras 2's fit_generator): fit on an iterator of batches."""
        return self.fit(generator, steps_per_epoch=steps_per_epoch, epochs=epochs,
                        verbose=verbose, validation_data=validation_data,
                        validation_steps=validation_steps, initial_epoch=initial_epoch)

    def _batches(self, x, y, batch_size, shuffle, steps, what):
        """The batches of one epoch, from arrays or from an iterator, checked as they come."""
        if _is_iterator(x):
            if y is not None:
                raise ValueError(f"{self._label()}: `{what}` is an iterator of (x, y) batches, "
                                 f"so y must not be given separately")
            return _IteratorBatches(self, x, steps, what)
        if x is None:
            raise ValueError(f"{self._label()}: no data given: pass arrays x, y or an iterator")
        if y is None:
            raise ValueError(f"{self._label()}: `{what}` is an array but its labels are missing")
        return _ArrayBatches(self, x, y, _check_batch_size(batch_size, self._label()), shuffle,
                             self._shuffle_rng, what, steps)

    def _evaluate_batches(self, batches, verbose, stop=None) -> dict:
        progress = Progress(batches.steps, verbose if batches.steps > 1 else 0, desc="evaluate")
        sums: dict = {}
        for xb, yb in batches.epoch():
            out = self.forward(xb, training=False)
            loss, _, _ = self._loss_and_grad(yb, out)
            _accumulate(sums, self._step_metrics(yb, out, loss))
            progress.update(_means(sums))
            if stop is not None:
                stop.check()
        logs = _means(sums)
        progress.close(logs)
        return logs

    def evaluate(self, x=None, y=None, batch_size=None, verbose="auto", steps=None):
        """[loss, acc] over all samples (the last partial batch weighted by its size);
        x may be an iterator of (x, y) batches, run for `steps` batches (default len(x))."""
        self._require_compiled("evaluate")
        batches = self._batches(x, y, batch_size, False, steps, "x")
        return self._as_result(self._evaluate_batches(batches, _verbosity(verbose)))

    def evaluate_generator(self, generator, steps=None, verbose=0):
        return self.evaluate(generator, steps=steps, verbose=verbose)

    def predict(self, x, batch_size=None, verbose="auto", steps=None):
        """Outputs for x, batch by batch at inference (no caches, no dropout); x may be an
        iterator yielding x or (x, y) batches, run for `steps` batches (default len(x))."""
        batches = self._batches(x, None, batch_size, False, steps, "x") if _is_iterator(x) \
            else _ArrayBatches(self, x, None, _check_batch_size(batch_size, self._label()),
                               False, None, "x", steps)
        progress = Progress(batches.steps, _verbosity(verbose) if batches.steps > 1 else 0,
                            desc="predict")
        outputs = []
        for xb, _ in batches.epoch(labels=False):
            outputs.append(self.forward(xb))
            progress.update({})
        progress.close({})
        if not outputs:
            return np.empty((0,) + tuple(self.output_shape[1:]), dtype=self.leaf_layers()[-1].dtype)
        return np.concatenate(outputs)

    def predict_generator(self, generator, steps=None, verbose=0):
        return self.predict(generator, steps=steps, verbose=verbose)

    # -- summary ----------------------------------------------------------------
    def summary(self, line_length=None, print_fn=print, show_algorithms=False) -> None:
        """Keras's table: Layer (type) | Output Shape | Param #, then the totals.
        show_algorithms adds a column with how each Conv2D computes (its plan: im2col,
        winograd4, ...; a nested model counts its layers' algorithms)."""
        if not self.built:
            raise ValueError(f"{self._label()}: this model has not been built yet; give the "
                             f"first layer input_shape=... or call the model on data first")
        print_fn(summary_text(self, line_length, show_algorithms))

    def get_config(self) -> dict:
        return {"name": self.name, "trainable": self.trainable,
                "layers": [{"class_name": type(layer).__name__, "config": layer.get_config()}
                           for layer in self.layers]}


@register()
class Functional(Sequential):
    """A chain of layers that Keras saved as a functional model (keras.Model(inputs,
    outputs)). It runs as a Sequential, shows as one '(Functional)' row inside another
    model, and is written back as a Functional config."""

    functional = True


def summary_text(model: Sequential, line_length=None, show_algorithms=False) -> str:
    """The summary as Keras 2 prints it for a Sequential model (the lecture's tables).

    Keras 2 uses 65 characters with columns ending at 45 %, 85 % and 100 % and cuts
    what does not fit; with line_length=None the columns widen instead, so that
    'max_pooling2d_1 (MaxPooling2D)' is printed whole. show_algorithms: a fourth column,
    Algorithm (the table grows by its width).
    """
    rows = []
    for layer in model.layers:
        kind = "Functional" if getattr(layer, "functional", False) else type(layer).__name__
        rows.append([f"{layer.name} ({kind})", format_shape(layer.output_shape),
                     f"{layer.count_params()}"]
                    + ([_algorithms_of(layer)] if show_algorithms else []))
    if line_length is None:
        widths = [max([29] + [len(r[0]) + 1 for r in rows]),
                  max([26] + [len(r[1]) + 1 for r in rows]),
                  max([10] + [len(r[2]) for r in rows])]
        positions = [widths[0], widths[0] + widths[1], sum(widths)]
        line_length = positions[-1]
    else:
        positions = [int(line_length * p) for p in (0.45, 0.85, 1.0)]
    header = ["Layer (type)", "Output Shape", "Param #"]
    if show_algorithms:
        width = max([len("Algorithm")] + [len(r[3]) for r in rows]) + 2
        positions.append(positions[-1] + width)
        line_length = positions[-1]
        header.append("  Algorithm")
        rows = [r[:3] + [f"  {r[3]}"] for r in rows]

    def row(fields):
        line = ""
        for field, end in zip(fields, positions):
            line = (line[:-1] + " ") if line else ""
            line = (line + str(field))[:end]
            line += " " * (end - len(line))
        return line.rstrip()

    lines = [f'Model: "{model.name}"', "_" * line_length,
             row(header), "=" * line_length]
    for i, fields in enumerate(rows):
        lines.append(row(fields))
        lines.append(("=" if i == len(rows) - 1 else "_") * line_length)
    trainable = sum(w.size for w in model.trainable_weights)
    total = model.count_params()
    lines += [f"Total params: {total:,}", f"Trainable params: {trainable:,}",
              f"Non-trainable params: {total - trainable:,}", "_" * line_length]
    return "\n".join(lines)


def _algorithms_of(layer) -> str:
    """A Conv2D's plan; for a nested model, how many of its layers run each algorithm."""
    plan = getattr(layer, "plan", None)
    if plan is not None:
        return plan.describe()
    if not hasattr(layer, "layers"):
        return ""
    counts: dict = {}
    for inner in layer.layers:
        text = _algorithms_of(inner)
        for part in text.split(", ") if text else ():
            name, _, count = part.partition(" x")
            counts[name] = counts.get(name, 0) + (int(count) if count else 1)
    return ", ".join(f"{name} x{count}" for name, count in counts.items())


def _is_iterator(x) -> bool:
    return hasattr(x, "__next__") and not isinstance(x, np.ndarray)


class _ArrayBatches:
    """Batches of arrays: a new permutation each epoch when shuffling."""

    def __init__(self, model, x, y, batch_size, shuffle, rng, what, steps=None):
        self.x, self.y = model._prepare(x, y, what)
        self.batch_size, self.shuffle, self.rng = batch_size, shuffle, rng
        self.steps = math.ceil(len(self.x) / batch_size)
        if steps is not None:
            self.steps = min(self.steps, int(steps))

    def epoch(self, labels=True):
        n = len(self.x)
        order = self.rng.permutation(n) if self.shuffle else None
        for step in range(self.steps):
            part = slice(step * self.batch_size, (step + 1) * self.batch_size)
            idx = order[part] if order is not None else part
            yield self.x[idx], (self.y[idx] if labels and self.y is not None else None)

    # What a ValidationCache needs: the samples by index, and each batch's indices.
    @property
    def samples(self):
        return len(self.x)

    def cache_obstacle(self):
        """Why the validation cache cannot serve these batches, or None."""
        if self.shuffle:
            return "the arrays are shuffled every epoch"
        return "the arrays have no labels" if self.y is None else None

    def load(self, index_array):
        return self.x[index_array], self.y[index_array], index_array

    def index_batches(self):
        n = len(self.x)
        return [np.arange(step * self.batch_size, min(n, (step + 1) * self.batch_size))
                for step in range(self.steps)]


class _IteratorBatches:
    """`steps` batches from an endless iterator (it keeps its position between epochs)."""

    def __init__(self, model, iterator, steps, what):
        if steps is None:
            try:
                steps = len(iterator)
            except TypeError:
                raise ValueError(f"{model._label()}: `{what}` is an iterator without a length; "
                                 f"give steps_per_epoch / validation_steps / steps") from None
        if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps <= 0:
            raise ValueError(f"{model._label()}: the number of steps for `{what}` must be a "
                             f"positive int; received {steps!r}")
        self.model, self.iterator, self.steps, self.what = model, iterator, int(steps), what

    def epoch(self, labels=True):
        for _ in range(self.steps):
            xb, yb = _split_batch(next(self.iterator))
            yield self._checked(xb, yb, labels)

    def _checked(self, xb, yb, labels=True):
        if labels and yb is None:
            raise ValueError(f"{self.model._label()}: `{self.what}` yields batches without "
                             f"labels (class_mode=None?); training and evaluation need (x, y)")
        return self.model._prepare(xb, yb if labels else None, self.what)

    # What a ValidationCache needs: the samples by index, and each batch's indices.
    @property
    def samples(self):
        return self.iterator.n

    @property
    def batch_size(self):
        return self.iterator.batch_size

    def cache_obstacle(self):
        """Why the validation cache cannot serve these batches, or None."""
        # What the cache needs of an iterator (minicnn.preprocessing.iterators.Iterator has
        # it): the samples by index, and the indices of the batches next() would give.
        if not all(callable(getattr(self.iterator, name, None))
                   for name in ("load_samples", "advance")):
            return (f"`{self.what}` is not a minicnn iterator (flow_from_directory, flow), so "
                    f"its samples cannot be read by index")
        generator = getattr(self.iterator, "image_data_generator", None)
        if generator is not None and getattr(generator, "is_random", True):
            return f"the generator of `{self.what}` draws random transformations"
        return None

    def load(self, index_array):
        """(x, y, kept) for the samples index_array; x, y None when none of them was read."""
        batch, kept = self.iterator.load_samples(index_array)
        if batch is None:
            return None, None, kept
        xb, yb = _split_batch(batch)
        xb, yb = self._checked(xb, yb)
        return xb, yb, kept

    def index_batches(self):
        """The sample indices of this epoch's batches; moves the iterator as epoch() does."""
        return self.iterator.advance(self.steps)


class _StopBetweenSteps:
    """While fit runs: Ctrl-C (SIGINT) or SIGTERM stops training at the end of the step in
    progress, by a KeyboardInterrupt raised from here, between two steps. Raised inside a
    kernel instead (Python's own handler), it could surface as another error from deep in
    Numba or BLAS; a second signal still interrupts at once. Outside the main thread (where
    handlers cannot be set) signals keep their usual effect."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.received = None
        self._previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for signum in self.SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc):
        for signum, handler in self._previous.items():
            with contextlib.suppress(ValueError, TypeError):
                signal.signal(signum, handler)
        return False

    def _handle(self, signum, frame):
        if self.received is not None:
            raise KeyboardInterrupt(f"signal {signum}, twice")
        self.received = signum

    def check(self):
        if self.received is not None:
            raise KeyboardInterrupt(f"signal {self.received}")


def _split_batch(batch):
    """(x, y) of a batch an iterator returned: (x, y), (x,) or x alone (y None)."""
    if isinstance(batch, (tuple, list)):
        return batch[0], (batch[1] if len(batch) > 1 else None)
    return batch, None


def _check_batch_size(batch_size, owner: str) -> int:
    if batch_size is None:
        return 32
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) \
            or batch_size <= 0:
        raise ValueError(f"{owner}: batch_size must be a positive int; received {batch_size!r}")
    return int(batch_size)


def _verbosity(verbose) -> int:
    return 1 if verbose == "auto" else int(verbose)


def _pool_after_monotone_conv(layer, after) -> bool:
    """Whether `after` is a max-pooling of the output of the linear or ReLU convolution
    `layer`: at inference the pooling can take the convolution's bias and activation."""
    return (hasattr(layer, "forward_pooled") and hasattr(after, "forward_after_conv")
            and getattr(layer, "activation", None) in ("linear", "relu"))


def _pool_after_relu_conv(before, layer) -> bool:
    """Whether `layer` is a max-pooling whose input is the output of the ReLU convolution
    `before`: their backward passes can run as one (backward_through_relu)."""
    return (hasattr(layer, "backward_through_relu") and hasattr(before, "backward_from_dz")
            and getattr(before, "activation", None) == "relu")
