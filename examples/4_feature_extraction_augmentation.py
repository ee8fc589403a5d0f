"""Flow 4 of the lecture (6.3, feature extraction with data augmentation): the frozen VGG16
conv base inside the model, with a dense classifier on top, trained end to end on augmented
images. Far slower than flow 3 (every image goes through the conv base at every epoch), but
augmentation now fights overfitting.

Needs the ImageNet VGG16 weights (once: `minicnn weights vgg16`). The data is the lecture's
folder layout, train/, validation/ and test/, each with cats/ and dogs/ (`minicnn data
split`); `--data sample` uses the small sample bundled with the package (no test/).

The defaults are the lecture's: the augmentation of flow 2, batches of 20, 100 steps per
epoch, 30 epochs, RMSprop with lr 2e-5, 50 validation steps. For a quick look:

    python examples/4_feature_extraction_augmentation.py --data sample --epochs 2 \\
        --steps-per-epoch 3 --validation-steps 2

Writes into --out: history.json, history.png and test.json.
"""
import os

import minicnn as mc
from minicnn import layers, optimizers
from minicnn.applications import VGG16
from minicnn.preprocessing.image import ImageDataGenerator

import _common                                      # the command line, folders and output files

parser = _common.lecture_parser(__doc__)
_common.add_schedule_options(parser, epochs=30, batch_size=20)
_common.add_output_options(parser, "runs/4_feature_extraction_augmentation")
args = parser.parse_args()

train_dir, validation_dir, test_dir = _common.data_folders(parser, args.data)
os.makedirs(args.out, exist_ok=True)

# --- The VGG16 conv base, trained on ImageNet.
conv_base = VGG16(weights="imagenet", include_top=False, input_shape=(150, 150, 3))

# --- Adding a densely connected classifier on top of the conv base: a model is a layer.
model = mc.Sequential([
    conv_base,
    layers.Flatten(),
    layers.Dense(256, activation="relu"),
    layers.Dense(1, activation="sigmoid"),
], seed=args.seed)
model.summary()                                     # vgg16 (Functional): 14,714,688; 16,812,353 in all

# --- Freeze the conv base before compiling and training: otherwise the representations it
# learned on ImageNet would be destroyed by the large gradients of the new, random classifier.
conv_base.trainable = False                         # freeze_weights(conv_base) in R
model.summary()                                     # Trainable params: 2,097,665

# --- The augmenting generator for training; the validation data is not augmented!
train_datagen = ImageDataGenerator(
    rescale=1 / 255,
    rotation_range=40,
    width_shift_range=0.2,
    height_shift_range=0.2,
    shear_range=0.2,
    zoom_range=0.2,
    horizontal_flip=True,
    fill_mode="nearest",
)
test_datagen = ImageDataGenerator(rescale=1 / 255)

train_generator = train_datagen.flow_from_directory(
    train_dir,                                      # the target folder
    target_size=(150, 150),                         # every image resized to 150 x 150
    batch_size=args.batch_size,
    class_mode="binary",                            # binary labels for binary_crossentropy
    seed=args.seed,
)
validation_generator = test_datagen.flow_from_directory(
    validation_dir,
    target_size=(150, 150),
    batch_size=args.batch_size,
    class_mode="binary",
    seed=args.seed,
)

model.compile(
    loss="binary_crossentropy",
    optimizer=optimizers.RMSprop(learning_rate=2e-5),
    metrics=["accuracy"],
)

history = model.fit(
    train_generator,
    steps_per_epoch=args.steps_per_epoch,
    epochs=args.epochs,
    validation_data=validation_generator,
    validation_steps=args.validation_steps,
)

# --- The curves: about 96 % validation accuracy in the lecture, and much less overfitting.
_common.save_history(history, args.out, "VGG16 (frozen) + classifier, data augmentation")

# --- Accuracy on the test images.
if args.test_steps > 0 and os.path.isdir(test_dir):
    test_generator = test_datagen.flow_from_directory(
        test_dir, target_size=(150, 150), batch_size=args.batch_size, class_mode="binary")
    test_loss, test_acc = model.evaluate(test_generator, steps=args.test_steps, verbose=0)
    _common.save_test_result(args.out, test_loss, test_acc, "accuracy")
print(f"wrote {args.out}")
