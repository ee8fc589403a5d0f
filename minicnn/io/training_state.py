"""What a model file holds for training: the training configuration (loss, metrics,
optimizer), the optimizer's state (slots and iteration count, in Keras's order and names),
and what Keras has no place for (the `minicnn` attribute: the seed, RMSprop's
epsilon_inside_sqrt and the random generators' states, so that training resumes exactly).
"""
from __future__ import annotations

import warnings

import numpy as np

from minicnn import losses, optimizers
from minicnn import metrics as metrics_lib
from minicnn.io import hdf5
from minicnn.io.keras_compat import epsilon_inside_sqrt
from minicnn.layers import Dropout
from minicnn.model import Sequential

_KERAS_OPTIMIZERS = {            # minicnn class -> (Keras class, Keras's default name)
    optimizers.RMSprop: ("RMSprop", "rm_sprop"),
    optimizers.Adam: ("Adam", "adam"),
    optimizers.SGD: ("SGD", "sgd"),
}


def _keras_loss(loss):
    if isinstance(loss, losses.BinaryCrossentropy):
        if not loss.from_logits:
            return "binary_crossentropy"
        return {"class_name": "BinaryCrossentropy",
                "config": {"name": "binary_crossentropy", "reduction": "sum_over_batch_size",
                           "from_logits": True, "label_smoothing": 0.0, "axis": -1}}
    if isinstance(loss, losses.MeanSquaredError):
        return "mean_squared_error"
    raise ValueError(f"save_model: the loss {type(loss).__name__} has no Keras equivalent "
                     f"known to minicnn; save with include_optimizer=False")


def _keras_optimizer(optimizer) -> dict:
    known = _KERAS_OPTIMIZERS.get(type(optimizer))
    if known is None:
        raise ValueError(f"save_model: the optimizer {type(optimizer).__name__} has no Keras "
                         f"equivalent known to minicnn; save with include_optimizer=False")
    class_name, name = known
    config = {"name": name, "learning_rate": optimizer.learning_rate, "weight_decay": None,
              "clipnorm": None, "global_clipnorm": None, "clipvalue": None, "use_ema": False,
              "ema_momentum": 0.99, "ema_overwrite_frequency": None, "loss_scale_factor": None,
              "gradient_accumulation_steps": None}
    if isinstance(optimizer, optimizers.RMSprop):
        config.update(rho=optimizer.rho, momentum=optimizer.momentum,
                      epsilon=optimizer.epsilon, centered=False)
    elif isinstance(optimizer, optimizers.Adam):
        config.update(beta_1=optimizer.beta_1, beta_2=optimizer.beta_2,
                      epsilon=optimizer.epsilon, amsgrad=False)
    else:
        config.update(momentum=optimizer.momentum, nesterov=optimizer.nesterov)
    return {"class_name": class_name, "config": config}


def training_config(model) -> dict:
    return {"loss": _keras_loss(model.loss), "loss_weights": None,
            "metrics": list(model.metrics) or None, "weighted_metrics": None,
            "run_eagerly": False, "steps_per_execution": 1, "jit_compile": False,
            "optimizer_config": _keras_optimizer(model.optimizer)}


def _weight_paths(model) -> dict:
    """id(array) -> Keras's path of every weight ('sequential/conv2d/kernel', and
    'vgg16/block1_conv1/kernel' inside a model), the names model_weights uses."""
    return {id(array): name for layer in model.layers
            for name, array in hdf5._layer_weights(layer, model.name)}


def optimizer_entries(model) -> list[tuple[str, np.ndarray]]:
    """What Keras keeps in /optimizer_weights: iteration, learning_rate, the slots."""
    optimizer = model.optimizer
    prefix = _KERAS_OPTIMIZERS[type(optimizer)][1]
    weights = model.trainable_weights
    paths = _weight_paths(model)
    state = optimizer.get_state(weights)
    entries = [(f"{prefix}/iteration", np.asarray(optimizer.iterations, dtype=np.int64)),
               (f"{prefix}/learning_rate", np.asarray(optimizer.learning_rate, dtype=np.float32))]
    for slot, i in optimizer.slot_layout(len(weights)):
        path = paths[id(weights[i])].replace("/", "_")
        entries.append((f"{prefix}/{path}_{optimizer.keras_slot_names[slot]}", state[i][slot]))
    return entries


def _rng_states(model, prefix="") -> dict:
    """The states of the generators that draw Dropout masks, by layer path."""
    states = {}
    for layer in model.layers:
        path = f"{prefix}{layer.name}"
        if isinstance(layer, Sequential):
            states.update(_rng_states(layer, path + "/"))
        elif isinstance(layer, Dropout) and layer.rng is not None:
            states[path] = layer.rng.bit_generator.state
    return states


def minicnn_extras(model, include_optimizer: bool) -> dict:
    seed = model.seed if isinstance(model.seed, (int, np.integer)) else None
    extras = {"seed": None if seed is None else int(seed),
              "dropout_rng_states": _rng_states(model),
              "shuffle_rng_state": model._shuffle_rng.bit_generator.state}
    if include_optimizer and isinstance(model.optimizer, optimizers.RMSprop):
        extras["epsilon_inside_sqrt"] = model.optimizer.epsilon_inside_sqrt
    return extras


def write_optimizer_weights(group, entries) -> None:
    """As hdf5._write_group, with scalars (iteration, learning_rate) kept 0-d as Keras
    writes them (np.ascontiguousarray would make them shape (1,))."""
    hdf5._save_attribute(group, "weight_names", [n.encode("utf8") for n, _ in entries])
    for name, value in entries:
        value = np.asarray(value)
        group.create_dataset(name, data=value if value.ndim == 0 else
                             np.ascontiguousarray(value), track_times=False)


_OPTIMIZER_CLASSES = {"rmsprop": optimizers.RMSprop, "adam": optimizers.Adam,
                      "sgd": optimizers.SGD}


# Options minicnn does not implement: each must be absent or have its neutral value.
_NEUTRAL_OPTIONS = ("decay", "weight_decay", "clipnorm", "clipvalue", "global_clipnorm",
                    "use_ema", "gradient_accumulation_steps", "loss_scale_factor", "centered",
                    "amsgrad")


_COMPILE_YOURSELF = "load with compile=False and compile the model yourself"


def optimizer_from_keras(entry, extras, ctx):
    class_name = str(entry.get("class_name", "")).split(">")[-1]   # 'Custom>Adam' (tf.keras 2.11)
    config = dict(entry.get("config") or {})
    cls = _OPTIMIZER_CLASSES.get(class_name.lower())
    if cls is None:
        raise ctx.error(f"the optimizer {class_name!r} is not one minicnn has (RMSprop, Adam, "
                        f"SGD); {_COMPILE_YOURSELF}")
    for key in _NEUTRAL_OPTIONS:
        if config.get(key) not in (None, False, 0, 0.0):
            raise ctx.error(f"optimizer {class_name}: {key}={config[key]!r} is not supported "
                            f"by minicnn; {_COMPILE_YOURSELF}")
    defaults = cls().get_config()
    lr = config.get("learning_rate", config.get("lr", defaults["learning_rate"]))
    if not isinstance(lr, (int, float)) or isinstance(lr, bool):
        raise ctx.error(f"optimizer {class_name}: learning_rate {lr!r} (a schedule?) is not "
                        f"supported; {_COMPILE_YOURSELF}")
    kwargs = {"learning_rate": float(lr)}
    for key in defaults:
        if key in ("name", "learning_rate", "epsilon_inside_sqrt"):
            continue
        value = config.get(key)
        kwargs[key] = defaults[key] if value is None else value   # Keras 2.0: epsilon None
    if cls is optimizers.RMSprop:
        kwargs["epsilon_inside_sqrt"] = extras.get(
            "epsilon_inside_sqrt", epsilon_inside_sqrt(ctx.keras_version))
    try:
        return cls.from_config(kwargs)
    except (TypeError, ValueError) as e:
        raise ctx.error(f"optimizer {class_name}: {e}; {_COMPILE_YOURSELF}") from None


def loss_from_keras(loss, ctx):
    if isinstance(loss, list) and len(loss) == 1:
        return loss_from_keras(loss[0], ctx)
    if isinstance(loss, dict) and "class_name" not in loss and len(loss) == 1:
        return loss_from_keras(next(iter(loss.values())), ctx)      # {output name: loss}
    if isinstance(loss, dict):
        config = loss.get("config") or {}
        if isinstance(config, str):                                  # a serialized function
            return loss_from_keras(config, ctx)
        if loss.get("class_name") == "BinaryCrossentropy" and \
                not config.get("label_smoothing"):
            return losses.BinaryCrossentropy(from_logits=bool(config.get("from_logits")))
        if loss.get("class_name") == "MeanSquaredError":
            return losses.MeanSquaredError()
    elif isinstance(loss, str):
        try:
            return losses.get(loss)
        except ValueError:
            pass
    raise ctx.error(f"the loss {loss!r} is not one minicnn has (binary_crossentropy, "
                    f"mean_squared_error); {_COMPILE_YOURSELF}")


def metrics_from_keras(metrics, ctx) -> list:
    names = []

    def walk(m):
        if isinstance(m, str):
            names.append(m)
        elif isinstance(m, list):
            for x in m:
                walk(x)
        elif isinstance(m, dict) and "class_name" in m:
            config = m.get("config") or {}
            if isinstance(config, str):
                names.append(config)
            elif m["class_name"] in ("BinaryAccuracy", "MeanMetricWrapper") and \
                    config.get("name") in metrics_lib.ACCURACY_NAMES:
                names.append(config["name"])
            elif m["class_name"] == "BinaryAccuracy":
                names.append("binary_accuracy")
            else:
                names.append(config.get("name", m["class_name"]))
        elif isinstance(m, dict):                                  # {output name: metrics}
            for x in m.values():
                walk(x)

    walk(metrics)
    try:
        return metrics_lib.resolve(names)
    except ValueError as e:
        raise ctx.error(f"{e}; {_COMPILE_YOURSELF}") from None


def _slot_aliases(optimizer) -> dict:
    """minicnn slot -> the names Keras gives it: Keras 3's suffixes, tf.keras 2's slots."""
    tf_keras = {"velocity": ("rms",), "m": ("m",), "v": ("v",)}
    return {slot: (keras,) + tf_keras.get(slot, ())
            for slot, keras in optimizer.keras_slot_names.items() if slot in optimizer.slot_names}


def _state_from_arrays(optimizer, arrays, n_weights):
    """[{slot: array}] per trainable weight from the file's slot arrays [(name, array)]:
    by the slot each name ends with, each slot's arrays in weight order; or, when the names
    do not say, in Keras 3's order. None when neither fits."""
    aliases = _slot_aliases(optimizer)
    by_slot = {slot: [] for slot in optimizer.slot_names}
    for name, value in arrays:
        last = name.split("/")[-1].split(":")[0]
        kinds = [slot for slot, names in aliases.items()
                 if any(last == a or last.endswith("_" + a) for a in names)]
        if len(kinds) != 1:
            by_slot = None
            break
        by_slot[kinds[0]].append(value)
    if by_slot is not None and all(len(v) == n_weights for v in by_slot.values()):
        return [{slot: by_slot[slot][i] for slot in optimizer.slot_names}
                for i in range(n_weights)]
    layout = optimizer.slot_layout(n_weights)
    if len(arrays) != len(layout):
        return None
    state = [{} for _ in range(n_weights)]
    for (slot, i), (_, value) in zip(layout, arrays):
        state[i][slot] = value
    return state


def restore_optimizer_state(model, names, values, ctx, strict: bool) -> None:
    optimizer = model.optimizer
    weights = model.trainable_weights
    iterations, arrays = 0, []
    for name, value in zip(names, values):
        last = name.split("/")[-1].split(":")[0]
        if value.ndim == 0:
            if last in ("iteration", "iterations", "iter"):
                iterations = int(value)
            continue                    # learning_rate (in the config too), hyperparameters
        arrays.append((name, value))
    if arrays:
        state = _state_from_arrays(optimizer, arrays, len(weights))
    else:
        # Keras saves an optimizer that never stepped without slots: they are all zeros.
        state = optimizer.get_state(weights)
    problem = None
    if state is None:
        problem = (f"the file's optimizer state ({len(arrays)} slot arrays) does not fit "
                   f"{type(optimizer).__name__} with {len(weights)} trainable weights "
                   f"({len(optimizer.slot_layout(len(weights)))} slot arrays)")
    else:
        try:
            optimizer.set_state(weights, iterations, state)
        except ValueError as e:
            problem = f"the file's optimizer state does not fit the model: {e}"
    if problem is not None:
        if strict:
            raise ctx.error(problem)
        warnings.warn(f"{ctx.path}: {problem}; training starts with a fresh optimizer state",
                      stacklevel=3)


_BIT_GENERATORS = ("PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64")


def _generator(state):
    if not isinstance(state, dict) or state.get("bit_generator") not in _BIT_GENERATORS:
        return None
    bit_generator = getattr(np.random, state["bit_generator"])()
    bit_generator.state = state
    return np.random.Generator(bit_generator)


def restore_rng_states(model, extras) -> None:
    for path, state in (extras.get("dropout_rng_states") or {}).items():
        layer = model
        for name in path.split("/"):
            layer = next((l for l in getattr(layer, "layers", []) if l.name == name), None)
        rng = _generator(state)
        if isinstance(layer, Dropout) and rng is not None:
            layer.rng = rng
    rng = _generator(extras.get("shuffle_rng_state"))
    if rng is not None:
        model._shuffle_rng = rng
