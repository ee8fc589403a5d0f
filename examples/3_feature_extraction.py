"""Flow 3 of the lecture (6.3, fast feature extraction without augmentation): run the
pretrained VGG16 conv base once over every image, then train a small classifier on the
(4, 4, 512) features it returns.

Needs the ImageNet VGG16 weights (once: `minicnn weights vgg16`). The data is the lecture's
folder layout, train/, validation/ and test/, each with cats/ and dogs/ (`minicnn data
split`); `--data sample` uses the small sample bundled with the package (no test/).

The defaults are the lecture's: batches of 20, every image of each folder (2000, 1000 and
1000 in the lecture), Dense(256) + Dropout(0.5) + Dense(1), RMSprop with lr 2e-5, 30 epochs.
The conv base is the expensive part (about 0.1 s per image on a small CPU). For a quick look:

    python examples/3_feature_extraction.py --data sample --max-images 40 --epochs 5

Writes into --out: features.npz (the features and labels of each folder), history.json,
history.png and test.json.
"""
import os

import minicnn as mc   # before NumPy: minicnn.runtime sets OpenBLAS's thread timeout
from minicnn import layers, optimizers
from minicnn.applications import VGG16
from minicnn.preprocessing.image import ImageDataGenerator, generator_next
import numpy as np

import _common                                      # the command line, folders and output files

parser = _common.lecture_parser(__doc__)
parser.add_argument("--epochs", type=int, default=30)
parser.add_argument("--batch-size", type=int, default=20)
parser.add_argument("--steps-per-epoch", type=int, default=None,
                    help="batches per epoch (default: all the training features)")
parser.add_argument("--max-images", type=int, default=None,
                    help="extract at most this many images per folder (default: all)")
_common.add_output_options(parser, "runs/3_feature_extraction")
args = parser.parse_args()

train_dir, validation_dir, test_dir = _common.data_folders(parser, args.data)
os.makedirs(args.out, exist_ok=True)

# --- The VGG16 conv base, trained on ImageNet: weights from ImageNet, no densely connected
# classifier on top, 150 x 150 RGB inputs.
conv_base = VGG16(
    weights="imagenet",
    include_top=False,
    input_shape=(150, 150, 3),
)
conv_base.summary()                                 # (None, 4, 4, 512), 14,714,688 params

# --- Fast feature extraction: each image goes through the conv base once.
datagen = ImageDataGenerator(rescale=1 / 255)
batch_size = args.batch_size


def extract_features(directory, sample_count=None):
    generator = datagen.flow_from_directory(
        directory=directory,
        target_size=(150, 150),
        batch_size=batch_size,
        class_mode="binary",
        seed=args.seed,
    )
    if sample_count is None:                        # the lecture passes 2000, 1000 and 1000
        sample_count = generator.samples
    features = np.zeros((sample_count, 4, 4, 512), dtype="float32")
    labels = np.zeros(sample_count, dtype="float32")
    i = 0
    while True:
        inputs_batch, labels_batch = generator_next(generator)
        features_batch = conv_base.predict(inputs_batch, verbose=0)
        start = i * batch_size                      # index_range, counted from 0
        stop = min(start + len(inputs_batch), sample_count)
        features[start:stop] = features_batch[:stop - start]
        labels[start:stop] = labels_batch[:stop - start]
        i += 1
        # The generator yields batches forever: stop once sample_count images are in.
        if i * batch_size >= sample_count:
            break
    return {"features": features, "labels": labels}


def images_in(directory):
    """The number of images in directory/cats and directory/dogs, at most --max-images."""
    n = sum(len(os.listdir(os.path.join(directory, c))) for c in ("cats", "dogs"))
    return n if args.max_images is None else min(n, args.max_images)


train = extract_features(train_dir, images_in(train_dir))
validation = extract_features(validation_dir, images_in(validation_dir))
splits = {"train": train, "validation": validation}
if os.path.isdir(test_dir):
    test = extract_features(test_dir, images_in(test_dir))
    splits["test"] = test
np.savez(os.path.join(args.out, "features.npz"),
         **{f"{name}_{key}": value for name, split in splits.items() for key, value in split.items()})


# --- Flatten the (samples, 4, 4, 512) features to (samples, 8192) for a dense classifier.
def reshape_features(features):
    return features.reshape(len(features), 4 * 4 * 512)


for split in splits.values():
    split["features"] = reshape_features(split["features"])

# --- The densely connected classifier, with dropout, trained on the features.
model = mc.Sequential([
    layers.Dense(256, activation="relu", input_shape=(4 * 4 * 512,)),
    layers.Dropout(0.5),
    layers.Dense(1, activation="sigmoid"),
], seed=args.seed)

model.compile(
    optimizer=optimizers.RMSprop(learning_rate=2e-5),
    loss="binary_crossentropy",
    metrics=["accuracy"],
)

history = model.fit(
    train["features"], train["labels"],
    epochs=args.epochs,
    batch_size=batch_size,
    steps_per_epoch=args.steps_per_epoch,
    validation_data=(validation["features"], validation["labels"]),
)

# --- The curves: about 90 % validation accuracy in the lecture, overfitting from the start.
_common.save_history(history, args.out, "VGG16 features + dense classifier")

# --- Accuracy on the test features.
if "test" in splits:
    test_loss, test_acc = model.evaluate(test["features"], test["labels"], batch_size=batch_size,
                                         verbose=0)
    _common.save_test_result(args.out, test_loss, test_acc, "accuracy")
print(f"wrote {args.out}")
