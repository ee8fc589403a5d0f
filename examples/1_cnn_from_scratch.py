"""Flow 1 of the lecture (6.2): a convnet trained from scratch on the small cats-vs-dogs set.

The lecture's R code, step by step, in minicnn. The data is the lecture's folder layout,
train/, validation/ and test/, each with cats/ and dogs/ (`minicnn data split` makes it from
Kaggle's train folder); `--data sample` uses the small sample bundled with the package.

The defaults are the lecture's: batches of 20, 100 steps per epoch, 30 epochs, RMSprop with
lr 1e-4, 50 validation steps. For a quick look:

    python examples/1_cnn_from_scratch.py --data sample --epochs 2 --steps-per-epoch 5

Writes into --out: cats_and_dogs_small_1.h5 (the model, as the lecture saves it),
history.json, history.png (the lecture's loss and accuracy curves) and test.json.
"""
import os

import minicnn as mc
from minicnn import layers, optimizers
from minicnn.preprocessing.image import ImageDataGenerator, generator_next

import _common                                      # the command line, folders and output files

parser = _common.lecture_parser(__doc__)
_common.add_schedule_options(parser, epochs=30, batch_size=20)
_common.add_output_options(parser, "runs/1_cnn_from_scratch")
args = parser.parse_args()

train_dir, validation_dir, test_dir = _common.data_folders(parser, args.data)
os.makedirs(args.out, exist_ok=True)

# --- The network: alternating layer_conv_2d (relu) and layer_max_pooling_2d, one pair more
# than for MNIST, so that the maps are 7 x 7 when they reach layer_flatten.
model = mc.Sequential([
    layers.Conv2D(32, (3, 3), activation="relu", input_shape=(150, 150, 3)),
    layers.MaxPooling2D((2, 2)),
    layers.Conv2D(64, (3, 3), activation="relu"),
    layers.MaxPooling2D((2, 2)),
    layers.Conv2D(128, (3, 3), activation="relu"),
    layers.MaxPooling2D((2, 2)),
    layers.Conv2D(128, (3, 3), activation="relu"),
    layers.MaxPooling2D((2, 2)),
    layers.Flatten(),
    layers.Dense(512, activation="relu"),
    layers.Dense(1, activation="sigmoid"),
], seed=args.seed)

model.summary()                                     # Total params: 3,453,121

model.compile(
    loss="binary_crossentropy",
    optimizer=optimizers.RMSprop(learning_rate=1e-4),
    metrics=["acc"],
)

# --- Data preprocessing: read the JPEGs, decode them to RGB pixels, make float tensors,
# rescale [0, 255] to [0, 1].
train_datagen = ImageDataGenerator(rescale=1 / 255)
validation_datagen = ImageDataGenerator(rescale=1 / 255)

train_generator = train_datagen.flow_from_directory(
    train_dir,                                      # the target folder
    target_size=(150, 150),                         # every image resized to 150 x 150
    batch_size=args.batch_size,
    class_mode="binary",                            # binary labels for binary_crossentropy
    seed=args.seed,
)
validation_generator = validation_datagen.flow_from_directory(
    validation_dir,
    target_size=(150, 150),
    batch_size=args.batch_size,
    class_mode="binary",
    seed=args.seed,
)

batch = generator_next(train_generator)            # str(batch): the images and the labels
print(f"batch: x {batch[0].shape} {batch[0].dtype}, y {batch[1].shape}: {batch[1][:10]}")

# --- Training the model with the batch generator.
history = model.fit(
    train_generator,
    steps_per_epoch=args.steps_per_epoch,
    epochs=args.epochs,
    validation_data=validation_generator,
    validation_steps=args.validation_steps,
)

# --- Saving the model.
model.save(os.path.join(args.out, "cats_and_dogs_small_1.h5"))

# --- The loss and accuracy curves, training vs validation: the model overfits.
_common.save_history(history, args.out, "CNN from scratch")

# --- Accuracy on the test images (the book evaluates the model on test/ at the end).
if args.test_steps > 0 and os.path.isdir(test_dir):
    test_generator = ImageDataGenerator(rescale=1 / 255).flow_from_directory(
        test_dir, target_size=(150, 150), batch_size=args.batch_size, class_mode="binary")
    test_loss, test_acc = model.evaluate(test_generator, steps=args.test_steps, verbose=0)
    _common.save_test_result(args.out, test_loss, test_acc, "acc")
print(f"wrote {args.out}")
