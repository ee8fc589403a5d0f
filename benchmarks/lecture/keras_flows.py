"""The lecture's five cats-vs-dogs flows in Keras 3 / TensorFlow CPU, the reference for minicnn's.

    python benchmarks/lecture/keras_flows.py FLOW [FLOW ...] | all  [--data DIR] [options]

Flows (hyperparameters as in the lecture, ../shared/seed/, after Chollet's chapter 5):

  scratch           Conv 32/64/128/128 (3x3 relu, each + MaxPool 2x2), Flatten, Dense 512 relu,
                    Dense 1 sigmoid on 150x150x3; rescale 1/255; batch 20, 100 steps x 30
                    epochs, 50 validation steps; RMSprop lr 1e-4, binary cross-entropy, acc.
  augment           the same + Dropout(0.5) after Flatten; training images augmented (rotation
                    40, width/height shift 0.2, shear 0.2, zoom 0.2, horizontal flip, fill
                    nearest); batch 32, 100 steps x 100 epochs, 50 validation steps.
  features          the ImageNet VGG16 conv base run once over train/validation/test (batch 20,
                    rescale only) -> 4x4x512 = 8192 features per image; Dense 256 relu (input
                    8192), Dropout 0.5, Dense 1 sigmoid; RMSprop lr 2e-5, 30 epochs, batch 20.
  features-augment  frozen conv base + Flatten + Dense 256 relu + Dense 1 sigmoid, augmented
                    training images, batch 20, 100 steps x 30 epochs, 50 validation steps,
                    RMSprop lr 2e-5. Saves its weights (model.weights.h5) for finetune.
  finetune          the features-augment model, block5_conv1..3 unfrozen, RMSprop lr 1e-5,
                    batch 20, 100 steps x 100 epochs, 50 validation steps.

The data are read as in the lecture: Keras's legacy ImageDataGenerator.flow_from_directory
(keras.src.legacy.preprocessing.image, which needs scipy), classes in sorted order (cats = 0,
dogs = 1), shuffled, the training iterator's own seed = --seed. Keras 3 treats that iterator
as a finite PyDataset and would end an epoch at the end of a pass (2000 images at batch 32 =
63 batches, not the lecture's 100 steps), so the iterators are passed to fit wrapped in an
endless Python generator, as Keras 2's fit_generator used them: an epoch may cross the end of
a pass, and the validation iterator keeps its position from one epoch to the next.

Each flow writes into its folder (--out, default runs/keras/<flow>/):
  history.json   {"epoch": [0, 1, ...], "history": {"loss", "acc", "val_loss", "val_acc"},
                 "params": {...}}: the layout of minicnn's History.save;
  metrics.json   final_val_acc, best_val_acc, best_epoch (1-based), test_acc (test/ with
                 rescale only, every image once, batch 20), seconds and train_seconds (both
                 the sum of the epochs' wall times, validation included), total_seconds (this
                 session's whole flow: model building, feature extraction, test), images_per_second
                 (training images / seconds),
                 epochs, steps_per_epoch, batch_size, seed, engine "keras", versions, onednn
                 ("on"/"off" as TensorFlow used it) and onednn_setting ("default", "on",
                 "off"), plus per-epoch seconds and the flow's other settings.
  checkpoint.keras, progress.json   after every epoch: the whole model (optimizer state
                 included) and the epochs run so far (history, seconds, sessions).
Files are written under a temporary name and renamed into place.

--resume continues a flow that was stopped from its checkpoint.keras and progress.json (same
flow, steps, batch and seed, else it refuses; --epochs may be raised): the epochs already run are kept, the model and its
optimizer state are reloaded, and fit goes on from the next epoch. The iterators and the
augmentation's random draws restart, seeded with seed + epochs done, so a resumed run is as
random as an unbroken one but not draw for draw the same. seconds then sums the epochs of all
sessions; metrics.json lists them (sessions: first epoch, epochs run, start time, CPU model
and load average of each), since a machine may change between sessions.

--onednn on|off sets TF_ENABLE_ONEDNN_OPTS before TensorFlow is imported; without it the
variable is left as it is (TensorFlow's own default: on for x86 Linux builds).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.dirname(HERE))
from harness import load_average, machine_info  # noqa: E402

DEFAULT_DATA = os.path.normpath(os.path.join(REPO, "..", "shared", "data", "cats_and_dogs_small"))
DEFAULT_WEIGHTS = os.path.join(REPO, "weights", "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5")
TARGET_SIZE = (150, 150)
CLASSES = ("cats", "dogs")
SPLITS = ("train", "validation", "test")
TEST_BATCH = 20            # the lecture's test generator (batch 20, rescale only)

# The lecture's schedule per flow. steps None: one pass over the arrays per epoch (features).
FLOWS = {
    "scratch":          dict(epochs=30, steps=100, val_steps=50, batch=20, lr=1e-4),
    "augment":          dict(epochs=100, steps=100, val_steps=50, batch=32, lr=1e-4),
    "features":         dict(epochs=30, steps=None, val_steps=None, batch=20, lr=2e-5),
    "features-augment": dict(epochs=30, steps=100, val_steps=50, batch=20, lr=2e-5),
    "finetune":         dict(epochs=100, steps=100, val_steps=50, batch=20, lr=1e-5),
}

AUGMENTATION = dict(rotation_range=40, width_shift_range=0.2, height_shift_range=0.2,
                    shear_range=0.2, zoom_range=0.2, horizontal_flip=True, fill_mode="nearest")


def log(message):
    print(f"[keras_flows] {message}", flush=True)


# ----------------------------------------------------------------------------- files
def write_atomic(path, write, suffix=".tmp"):
    """write(tmp_path) fills a temporary file beside `path`, which then replaces `path`.
    `suffix` ends the temporary name (Keras insists on '.weights.h5' for weight files)."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=suffix, dir=folder)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json(path, obj):
    def write(tmp):
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2)
            f.write("\n")
    write_atomic(path, write)


# ----------------------------------------------------------------------------- data
def check_data(data):
    missing = [os.path.join(data, s, c) for s in SPLITS for c in CLASSES
               if not os.path.isdir(os.path.join(data, s, c))]
    if missing:
        sys.exit(f"keras_flows: --data {data!r} must hold train/, validation/ and test/, each "
                 f"with cats/ and dogs/; missing: {', '.join(missing)}")


def directory_iterator(keras_image, data, split, batch, augment=False, shuffle=True, seed=None):
    """flow_from_directory on data/split as in the lecture (rescale 1/255, 150x150, binary)."""
    extra = AUGMENTATION if augment else {}
    datagen = keras_image.ImageDataGenerator(rescale=1 / 255, **extra)
    return datagen.flow_from_directory(os.path.join(data, split), target_size=TARGET_SIZE,
                                       batch_size=batch, class_mode="binary",
                                       classes=list(CLASSES), shuffle=shuffle, seed=seed)


def endless(iterator):
    """The iterator as an endless generator of batches, as Keras 2's fit_generator drew them:
    next() follows the iterator's own loop, so a pass's short last batch is drawn, the next
    pass reshuffles, and the position carries over from one epoch to the next."""
    while True:
        yield next(iterator)


def images_drawn(n, batch, steps):
    """Images in the first `steps` batches of the legacy iterator's endless loop over n images:
    batches of `batch` and, at the end of each pass, one batch of what is left."""
    total, position = 0, 0
    for _ in range(steps):
        size = min(batch, n - position)
        total += size
        position = position + batch if n > position + batch else 0
    return total


# ----------------------------------------------------------------------------- models
def scratch_model(keras, dropout):
    from keras import layers
    stack = [keras.Input(shape=TARGET_SIZE + (3,))]
    for filters in (32, 64, 128, 128):
        stack += [layers.Conv2D(filters, (3, 3), activation="relu"), layers.MaxPooling2D((2, 2))]
    stack.append(layers.Flatten())
    if dropout:
        stack.append(layers.Dropout(0.5))
    stack += [layers.Dense(512, activation="relu"), layers.Dense(1, activation="sigmoid")]
    return keras.Sequential(stack, name="cnn_dropout" if dropout else "cnn")


def vgg16_base(keras, weights_path):
    """The ImageNet VGG16 conv base at 150x150x3 from a local file (None: random weights,
    for a model whose weights are loaded afterwards)."""
    return keras.applications.VGG16(weights=weights_path, include_top=False,
                                    input_shape=TARGET_SIZE + (3,))


def classifier_on_base(keras, conv_base):
    """conv_base + Flatten + Dense 256 relu + Dense 1 sigmoid: 16,812,353 parameters."""
    from keras import layers
    return keras.Sequential([keras.Input(shape=TARGET_SIZE + (3,)), conv_base, layers.Flatten(),
                             layers.Dense(256, activation="relu"),
                             layers.Dense(1, activation="sigmoid")], name="vgg16_classifier")


def unfreeze_from(conv_base, first):
    """The lecture's unfreeze_weights(conv_base, from = "block5_conv1"): the base trainable
    from layer `first` on, the layers before it frozen."""
    conv_base.trainable = True
    trainable = False
    for layer in conv_base.layers:
        trainable = trainable or layer.name == first
        layer.trainable = trainable


def compile_model(keras, model, lr):
    model.compile(optimizer=keras.optimizers.RMSprop(learning_rate=lr),
                  loss="binary_crossentropy", metrics=["acc"])


def count_params(model):
    trainable = sum(int(w.numpy().size) for w in model.trainable_weights)
    return model.count_params(), trainable


# ----------------------------------------------------------------------------- one flow
def epoch_timer(keras):
    """A Keras callback whose .seconds lists each epoch's wall time (validation included)."""
    class EpochTimes(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.seconds = []

        def on_epoch_begin(self, epoch, logs=None):
            self._start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self._start)
    return EpochTimes()


METRIC_KEYS = ("loss", "acc", "val_loss", "val_acc")
CHECKPOINT = "checkpoint.keras"
PROGRESS = "progress.json"


def new_progress(schedule):
    return {"schedule": schedule, "history": {key: [] for key in METRIC_KEYS},
            "epoch_seconds": [], "sessions": []}


def load_progress(out, schedule):
    """The epochs a stopped run of this flow finished, from out/progress.json (None: nothing
    to resume). A folder holding another flow's or schedule's run is refused."""
    path = os.path.join(out, PROGRESS)
    if not (os.path.isfile(path) and os.path.isfile(os.path.join(out, CHECKPOINT))):
        return None
    with open(path) as f:
        progress = json.load(f)
    if progress.get("schedule") != schedule:
        sys.exit(f"keras_flows: --resume: {path} was written by a run with "
                 f"{progress.get('schedule')}, not {schedule}; give another --out or drop "
                 f"--resume to start over")
    return progress


def checkpointer(keras, out, progress, times):
    """A Keras callback that, after every epoch, writes the model to out/checkpoint.keras and
    the epoch's metrics and seconds to out/progress.json (both atomically). It must follow
    `times` in the callback list, so that epoch's seconds are known."""
    class Checkpoint(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            write_atomic(os.path.join(out, CHECKPOINT), self.model.save, suffix=".keras")
            for key in METRIC_KEYS:
                progress["history"][key].append(float(logs[key]))
            progress["epoch_seconds"].append(times.seconds[-1])
            progress["sessions"][-1]["epochs"] += 1
            write_json(os.path.join(out, PROGRESS), progress)
    return Checkpoint()


def run_flow(flow, args, out, keras, keras_image, environment):
    import numpy as np

    flow_start = time.perf_counter()
    cfg = dict(FLOWS[flow])
    epochs = args.epochs or cfg["epochs"]
    batch = cfg["batch"]
    steps = cfg["steps"] if cfg["steps"] is None else (args.steps_per_epoch or cfg["steps"])
    val_steps = cfg["val_steps"] if cfg["val_steps"] is None else (
        args.validation_steps or cfg["val_steps"])
    schedule = {"flow": flow, "steps": steps, "validation_steps": val_steps,
                "batch_size": batch, "seed": args.seed}      # --epochs may grow on --resume
    progress = load_progress(out, schedule) if args.resume else None
    done = len(progress["epoch_seconds"]) if progress else 0
    if progress is None:
        progress = new_progress(schedule)
    machine = machine_info()
    progress["sessions"].append({"first_epoch": done + 1, "epochs": 0,
                                 "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                 "cpu_model": machine["cpu_model"], "simd": machine["simd"],
                                 "load_average": load_average()})
    keras.utils.set_random_seed(args.seed + done)
    keras.backend.clear_session()
    data = args.data
    extra = {}
    log(f"{flow}: {epochs} epochs, batch {batch}, "
        + (f"{steps} steps, {val_steps} validation steps" if steps else "one pass per epoch")
        + f", RMSprop lr {cfg['lr']:g}, seed {args.seed}, out {out}"
        + (f"; resuming after epoch {done}" if done else ""))

    test = directory_iterator(keras_image, data, "test", TEST_BATCH, shuffle=False)
    times = epoch_timer(keras)
    callbacks = [times, checkpointer(keras, out, progress, times)]

    def build(make):
        """The flow's model: make() compiled, or on --resume the checkpoint's model."""
        if done:
            return keras.models.load_model(os.path.join(out, CHECKPOINT))
        model = make()
        compile_model(keras, model, cfg["lr"])
        return model

    if flow == "features":
        if args.steps_per_epoch or args.validation_steps:
            log("features: --steps-per-epoch and --validation-steps do not apply (each epoch "
                "is one pass over the extracted features, as in the lecture)")
        conv_base = vgg16_base(keras, args.vgg16_weights)
        start = time.perf_counter()
        features = {}
        for split in SPLITS:
            it = test if split == "test" else directory_iterator(
                keras_image, data, split, batch, shuffle=False)
            x = conv_base.predict(it, verbose=0)
            features[split] = (x.reshape(len(x), -1), it.classes.astype("float32"))
            log(f"features: {split} {x.shape} from {it.n} images")
        extra["feature_extraction_seconds"] = time.perf_counter() - start
        model = build(lambda: keras.Sequential([keras.Input(shape=(4 * 4 * 512,)),
                                                keras.layers.Dense(256, activation="relu"),
                                                keras.layers.Dropout(0.5),
                                                keras.layers.Dense(1, activation="sigmoid")],
                                               name="head"))
        (xt, yt), (xv, yv), (xs, ys) = features["train"], features["validation"], features["test"]
        if done < epochs:
            model.fit(xt, yt, batch_size=batch, epochs=epochs, initial_epoch=done,
                      validation_data=(xv, yv), verbose=2, callbacks=callbacks)
        steps = math.ceil(len(xt) / batch)
        train_images = len(xt) * epochs
        test_loss, test_acc = model.evaluate(xs, ys, batch_size=TEST_BATCH, verbose=0)
    else:
        augment = flow != "scratch"
        train = directory_iterator(keras_image, data, "train", batch, augment=augment,
                                   seed=args.seed + done)
        val = directory_iterator(keras_image, data, "validation", batch,
                                 seed=args.seed + 1 + done)

        def make():
            if flow == "scratch" or flow == "augment":
                return scratch_model(keras, dropout=flow == "augment")
            conv_base = vgg16_base(keras, args.vgg16_weights if flow == "features-augment"
                                   else None)
            model = classifier_on_base(keras, conv_base)
            if flow == "features-augment":
                conv_base.trainable = False
            else:
                model.load_weights(finetune_start(args))
                unfreeze_from(conv_base, "block5_conv1")
            return model

        if flow == "finetune":
            extra["start_weights"] = os.path.abspath(finetune_start(args))

        model = build(make)
        if done < epochs:                                # the iterators shuffle, not fit
            model.fit(endless(train), steps_per_epoch=steps, epochs=epochs, initial_epoch=done,
                      validation_data=endless(val), validation_steps=val_steps,
                      shuffle=False, verbose=2, callbacks=callbacks)
        train_images = sum(images_drawn(train.n, batch, steps * session["epochs"])
                           for session in progress["sessions"])
        test_loss, test_acc = model.evaluate(test, verbose=0)
        if flow == "features-augment":
            weights_path = os.path.join(out, "model.weights.h5")
            write_atomic(weights_path, model.save_weights, suffix=".weights.h5")
            log(f"features-augment: weights written to {weights_path} (finetune starts there)")

    if progress["sessions"][-1]["epochs"] == 0:           # resumed after the last epoch
        progress["sessions"].pop()
    params, trainable = count_params(model)
    h = progress["history"]
    seconds = sum(progress["epoch_seconds"])
    write_json(os.path.join(out, "history.json"),
               {"epoch": list(range(len(h["val_acc"]))), "history": h,
                "params": {"epochs": epochs, "steps": steps, "batch_size": batch,
                           "validation_steps": val_steps, "engine": "keras", "flow": flow}})
    val_acc = h["val_acc"]
    best = int(np.argmax(val_acc))
    metrics = {
        "flow": flow, "engine": "keras",
        "final_val_acc": val_acc[-1], "best_val_acc": val_acc[best], "best_epoch": best + 1,
        "test_acc": float(test_acc), "test_loss": float(test_loss),
        "seconds": seconds, "train_seconds": seconds,
        "total_seconds": time.perf_counter() - flow_start,
        "images_per_second": train_images / seconds,
        "epochs": epochs, "epochs_run": len(val_acc), "steps_per_epoch": steps,
        "validation_steps": val_steps,
        "batch_size": batch, "seed": args.seed,
        "learning_rate": cfg["lr"], "images_trained": train_images,
        "epoch_seconds": progress["epoch_seconds"], "sessions": progress["sessions"],
        "params": params, "trainable_params": trainable,
        **extra, **environment,
    }
    write_json(os.path.join(out, "metrics.json"), metrics)
    log(f"{flow}: val acc final {val_acc[-1]:.4f}, best {val_acc[best]:.4f} (epoch {best + 1}), "
        f"test acc {test_acc:.4f}, {seconds:.1f} s, {train_images / seconds:.1f} images/s "
        f"-> {out}")


# ----------------------------------------------------------------------------- main
def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                epilog="\n\n".join(__doc__.split("\n\n")[1:]),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("flows", nargs="+", metavar="FLOW", choices=list(FLOWS) + ["all"],
                   help=f"one or more of {', '.join(FLOWS)}, or all (run in that order)")
    p.add_argument("--data", help="folder with train/, validation/, test/, each with cats/ and "
                                  "dogs/ (default: $MINICNN_DATA, else "
                                  "../shared/data/cats_and_dogs_small next to the repository)")
    p.add_argument("--epochs", type=int, help="epochs (default: the lecture's, per flow)")
    p.add_argument("--steps-per-epoch", type=int, help="training steps per epoch (default 100)")
    p.add_argument("--validation-steps", type=int, help="validation steps per epoch (default 50)")
    p.add_argument("--seed", type=int, default=0, help="seed of Keras/TF/NumPy and of the "
                                                       "iterators (default 0)")
    p.add_argument("--out", help="output folder of the flow (default runs/keras/<flow>); "
                                 "only with a single flow")
    p.add_argument("--out-root", default=os.path.join("runs", "keras"),
                   help="with several flows: each writes to OUT_ROOT/<flow> (default runs/keras)")
    p.add_argument("--vgg16-weights", default=DEFAULT_WEIGHTS,
                   help="the Keras notop VGG16 .h5 (default: weights/"
                        "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5 in the repository)")
    p.add_argument("--start-weights", help="finetune: the features-augment model's weights "
                                           "(default: features-augment/model.weights.h5 beside "
                                           "finetune's output folder)")
    p.add_argument("--resume", action="store_true",
                   help="continue each flow from the checkpoint.keras and progress.json in its "
                        "folder, if there are any (the epochs run are kept)")
    p.add_argument("--onednn", choices=("on", "off"),
                   help="set TF_ENABLE_ONEDNN_OPTS (default: TensorFlow's own default)")
    args = p.parse_args(argv)
    flows = list(FLOWS) if "all" in args.flows else list(dict.fromkeys(args.flows))
    if args.out and len(flows) > 1:
        p.error("--out names one flow's folder; with several flows use --out-root")
    for name in ("epochs", "steps_per_epoch", "validation_steps"):
        value = getattr(args, name)
        if value is not None and value < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1; received {value}")
    args.flows = [f for f in FLOWS if f in flows]          # always the lecture's order
    args.data = args.data or os.environ.get("MINICNN_DATA") or DEFAULT_DATA
    return args


def flow_out(args, flow):
    return args.out or os.path.join(args.out_root, flow)


def finetune_start(args):
    """The weights finetune starts from: --start-weights, else the model.weights.h5 that
    features-augment writes beside finetune's own output folder."""
    return args.start_weights or os.path.join(
        os.path.dirname(os.path.abspath(flow_out(args, "finetune"))), "features-augment",
        "model.weights.h5")


def check_inputs(args):
    """Every file the chosen flows read must exist before TensorFlow is even imported."""
    check_data(args.data)
    if {"features", "features-augment"} & set(args.flows) and not os.path.isfile(
            args.vgg16_weights):
        sys.exit(f"keras_flows: no VGG16 weight file {args.vgg16_weights!r}; give "
                 f"--vgg16-weights FILE or write it with `minicnn weights vgg16` "
                 f"(see weights/README.md)")
    if ("finetune" in args.flows and "features-augment" not in args.flows
            and not os.path.isfile(finetune_start(args))):
        sys.exit(f"keras_flows: finetune starts from the features-augment model, but "
                 f"{finetune_start(args)!r} does not exist; run features-augment first "
                 f"(`all` runs it first) or give --start-weights FILE")


def onednn_in_effect():
    """'on' or 'off' as TensorFlow applies TF_ENABLE_ONEDNN_OPTS (its default included), read
    from a private TensorFlow module: 'unknown' if that moves."""
    try:
        from tensorflow.python.util import _pywrap_util_port
        return "on" if _pywrap_util_port.IsMklEnabled() else "off"
    except (ImportError, AttributeError):
        return "unknown"


def main(argv=None):
    args = parse_args(argv)
    check_inputs(args)
    # TensorFlow reads TF_ENABLE_ONEDNN_OPTS once, at import: set it before the import below.
    if args.onednn:
        os.environ["TF_ENABLE_ONEDNN_OPTS"] = "1" if args.onednn == "on" else "0"
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import numpy as np
    import tensorflow as tf
    import keras
    from keras.src.legacy.preprocessing import image as keras_image

    environment = {
        "versions": {"python": platform.python_version(), "keras": keras.__version__,
                     "tensorflow": tf.__version__, "numpy": np.__version__},
        "onednn": onednn_in_effect(),
        "onednn_setting": args.onednn or "default",
        "backend": keras.backend.backend(),
        "cpus": (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                 else os.cpu_count()),
        "data": os.path.abspath(args.data),
        "command": "python benchmarks/lecture/keras_flows.py " + " ".join(
            sys.argv[1:] if argv is None else argv),
    }
    log(f"keras {keras.__version__}, tensorflow {tf.__version__}, oneDNN "
        f"{environment['onednn']} ({environment['onednn_setting']})")
    for flow in args.flows:
        run_flow(flow, args, flow_out(args, flow), keras, keras_image, environment)
    return 0


if __name__ == "__main__":
    sys.exit(main())
