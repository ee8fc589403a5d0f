"""Where the lecture's book goes next (5.4): convnets are not black boxes. Three figures of what
the lecture's models learned, each from the model's own forward and backward
(minicnn.visualize; the math is in docs/visualize.md):

  1. activations.png  the CNN's feature maps for a photo of a cat, layer by layer: the first
                      layers keep edges and colours, the deeper ones are sparse and abstract;
  2. filters.png      the input patterns that VGG16's filters (ImageNet weights) answer to
                      most, found by gradient ascent on the input, block1_conv1 .. block4_conv1:
                      colours and edges, then finer and richer textures;
  3. heatmaps.png     for a cat and a dog: the photo, the Grad-CAM heatmap of the predicted
                      class over it (where the decision comes from) and the saliency map
                      (which pixels move the score most).

The models are model files of the lecture's flows: --cnn the CNN of flow 1 or 2
(runs/lecture/scratch/model.h5 after `minicnn lecture scratch`), --classifier the fine-tuned
VGG16 model of flow 5 (runs/lecture/finetune/model.h5), or any model file with a Conv2D
layer; it defaults to the --cnn model. The photos default to a cat and a dog of the sample
bundled with the package (validation images, never trained on).

    python examples/6_what_the_convnet_learned.py --cnn runs/lecture/scratch/model.h5 \\
        --classifier runs/lecture/finetune/model.h5

Needs the ImageNet VGG16 weights (once: `minicnn weights vgg16`) and matplotlib.
"""
import argparse
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import minicnn as mc  # noqa: E402
from minicnn import datasets, visualize  # noqa: E402
from minicnn.applications import VGG16  # noqa: E402
from minicnn.layers import Conv2D  # noqa: E402
from minicnn.preprocessing.image import img_to_array, load_img  # noqa: E402

SAMPLE = datasets.sample_dir() / "validation"
parser = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--cnn", required=True, help="the lecture CNN's model file (flow 1 or 2)")
parser.add_argument("--classifier", help="the model file for the heatmaps (default: --cnn)")
parser.add_argument("--cat", default=SAMPLE / "cats" / "cat.1002.jpg", help="a photo of a cat")
parser.add_argument("--dog", default=SAMPLE / "dogs" / "dog.1005.jpg", help="a photo of a dog")
parser.add_argument("--filters", type=int, default=8, help="filters per VGG16 layer (default 8)")
parser.add_argument("--steps", type=int, default=40, help="gradient ascent steps (default 40)")
parser.add_argument("--size", type=int, default=150, help="the patterns' size (default 150)")
parser.add_argument("--out", default="runs/6_what_the_convnet_learned", help="output folder")
args = parser.parse_args()
os.makedirs(args.out, exist_ok=True)


def photo_for(model, path):
    """(the photo as the model takes it, rescaled by 1/255 as in the lecture; the photo)"""
    _, h, w, _ = model.input_shape
    image = img_to_array(load_img(path, target_size=(h, w), interpolation="bilinear"))
    return image / 255, image


def save(fig, name):
    path = os.path.join(args.out, name)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    print(f"wrote {path}")


# --- 1. Activations: every conv layer's first 16 channels for the cat photo.
cnn = mc.load_model(args.cnn, compile=False)
x, _ = photo_for(cnn, args.cat)
convs = [layer.name for layer in cnn.leaf_layers() if isinstance(layer, Conv2D)]
acts = visualize.activations(cnn, x, convs)
fig, axes = plt.subplots(len(convs), 1, figsize=(12, 1.1 * len(convs)), squeeze=False)
for ax, (name, a) in zip(axes[:, 0], acts.items()):
    ax.imshow(visualize.activation_image(a[0, :, :, :16]), cmap="viridis", aspect="equal")
    ax.set_title(f"{name}: channels 0-15 of {a.shape[3]}, {a.shape[1]}x{a.shape[2]}",
                 fontsize=9, loc="left")
    ax.axis("off")
save(fig, "activations.png")

# --- 2. Filter patterns of VGG16 with the ImageNet weights.
base = VGG16(weights="imagenet", include_top=False, input_shape=(args.size, args.size, 3))
names = ["block1_conv1", "block2_conv1", "block3_conv1", "block4_conv1"]
fig, axes = plt.subplots(len(names), 1, figsize=(12, 1.9 * len(names)), squeeze=False)
for ax, name in zip(axes[:, 0], names):
    patterns = visualize.filter_patterns(base, name, args.filters, steps=args.steps, verbose=1)
    ax.imshow(visualize.pattern_grid(patterns))
    ax.set_title(f"{name}: filters 0-{args.filters - 1}", fontsize=9, loc="left")
    ax.axis("off")
save(fig, "filters.png")

# --- 3. Grad-CAM of the predicted class, and saliency, for a cat and a dog.
classifier = mc.load_model(args.classifier or args.cnn, compile=False)
last_conv = [layer.name for layer in classifier.leaf_layers() if isinstance(layer, Conv2D)][-1]
fig, axes = plt.subplots(2, 3, figsize=(9, 6.4))
for row, path in zip(axes, [args.cat, args.dog]):
    x, photo = photo_for(classifier, path)
    z = visualize.logit(classifier, x)[0]
    predicted = int(z >= 0)                               # 1: dogs, 0: cats (folder order)
    cam = visualize.grad_cam(classifier, x, last_conv, class_index=predicted)[0]
    pictures = [photo.astype(np.uint8), visualize.heatmap_overlay(photo, cam),
                visualize.saliency_image(visualize.saliency(classifier, x)[0])]
    titles = [f"{os.path.basename(path)}: p(dog) = {1 / (1 + np.exp(-z)):.3f}",
              f"Grad-CAM at {last_conv}, class {'dog' if predicted else 'cat'}",
              "saliency |d z / d x|"]
    for ax, picture, title in zip(row, pictures, titles):
        ax.imshow(picture, cmap="gray" if picture.ndim == 2 else None)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
save(fig, "heatmaps.png")
