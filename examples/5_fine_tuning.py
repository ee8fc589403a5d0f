"""Flow 5 of the lecture (6.3, fine-tuning): unfreeze the top block of the VGG16 conv base
and train it together with the classifier, at a very low learning rate.

The lecture's five steps:
  1. add the classifier on top of the trained conv base;
  2. freeze the conv base;
  3. train the added part (flow 4: --head-epochs, lr 2e-5);
  4. unfreeze some layers of the conv base (block5);
  5. train them and the added part together (--epochs, lr 1e-5).

Needs the ImageNet VGG16 weights (once: `minicnn weights vgg16`). The data is the lecture's
folder layout, train/, validation/ and test/, each with cats/ and dogs/ (`minicnn data
split`); `--data sample` uses the small sample bundled with the package (no test/).

The defaults are the lecture's: the augmentation of flow 2, batches of 20, 100 steps per
epoch, 30 epochs for the classifier, then 100 epochs of fine-tuning, 50 validation steps.
For a quick look:

    python examples/5_fine_tuning.py --data sample --head-epochs 1 --epochs 2 \\
        --steps-per-epoch 3 --validation-steps 2

Writes into --out: history_head.json and history_head.png (step 3), history.json and
history.png (step 5), test.json.
"""
import os

import minicnn as mc
from minicnn import layers, optimizers
from minicnn.applications import VGG16
from minicnn.preprocessing.image import ImageDataGenerator

import _common                                      # the command line, folders and output files

parser = _common.lecture_parser(__doc__)
parser.add_argument("--head-epochs", type=int, default=30,
                    help="epochs of step 3, the classifier alone on the frozen base")
_common.add_schedule_options(parser, epochs=100, batch_size=20,
                             epochs_help="epochs of step 5, fine-tuning")
_common.add_output_options(parser, "runs/5_fine_tuning")
args = parser.parse_args()

train_dir, validation_dir, test_dir = _common.data_folders(parser, args.data)
os.makedirs(args.out, exist_ok=True)

# --- The data, as in flow 4: augmented training images, plain validation images.
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
    train_dir, target_size=(150, 150), batch_size=args.batch_size, class_mode="binary",
    seed=args.seed)
validation_generator = test_datagen.flow_from_directory(
    validation_dir, target_size=(150, 150), batch_size=args.batch_size, class_mode="binary",
    seed=args.seed)

# --- Step 1: add the classifier on top of the conv base trained on ImageNet.
conv_base = VGG16(weights="imagenet", include_top=False, input_shape=(150, 150, 3))
model = mc.Sequential([
    conv_base,
    layers.Flatten(),
    layers.Dense(256, activation="relu"),
    layers.Dense(1, activation="sigmoid"),
], seed=args.seed)

# --- Step 2: freeze the conv base.
conv_base.trainable = False                         # freeze_weights(conv_base) in R

# --- Step 3: train the added part (flow 4).
model.compile(
    loss="binary_crossentropy",
    optimizer=optimizers.RMSprop(learning_rate=2e-5),
    metrics=["accuracy"],
)
history_head = model.fit(
    train_generator,
    steps_per_epoch=args.steps_per_epoch,
    epochs=args.head_epochs,
    validation_data=validation_generator,
    validation_steps=args.validation_steps,
)
_common.save_history(history_head, args.out, "step 3: the classifier on the frozen VGG16 base",
                     name="history_head")

# --- Step 4: unfreeze the top of the conv base, block5 (its three convolutions); blocks 1-4
# stay frozen: they hold the generic features (edges, colours, textures), block5 the most
# ImageNet-specific ones.
conv_base.trainable = True                          # unfreeze_weights(conv_base,
for layer in conv_base.layers:                      #     from = "block5_conv1") in R
    layer.trainable = layer.name.startswith("block5")
model.summary()                                     # Trainable params: 9,177,089

# --- Step 5: train block5 and the classifier together, with a very low learning rate so that
# the updates do not wreck the pretrained representations.
model.compile(
    loss="binary_crossentropy",
    optimizer=optimizers.RMSprop(learning_rate=1e-5),
    metrics=["accuracy"],
)
history = model.fit(
    train_generator,
    steps_per_epoch=args.steps_per_epoch,
    epochs=args.epochs,
    validation_data=validation_generator,
    validation_steps=args.validation_steps,
)
_common.save_history(history, args.out, "step 5: fine-tuning block5 and the classifier")

# --- Accuracy on the test images: about 97 % in the lecture.
if args.test_steps > 0 and os.path.isdir(test_dir):
    test_generator = test_datagen.flow_from_directory(
        test_dir, target_size=(150, 150), batch_size=args.batch_size, class_mode="binary")
    test_loss, test_acc = model.evaluate(test_generator, steps=args.test_steps, verbose=0)
    _common.save_test_result(args.out, test_loss, test_acc, "accuracy")
print(f"wrote {args.out}")
