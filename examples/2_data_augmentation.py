"""Flow 2 of the lecture (6.2, data augmentation): the same convnet with Dropout(0.5), trained
on randomly transformed images so that it never sees the same picture twice.

The data is the lecture's folder layout, train/, validation/ and test/, each with cats/ and
dogs/ (`minicnn data split`); `--data sample` uses the small sample bundled with the package.

The defaults are the lecture's: rotations up to 40 degrees, shifts of 0.2, shear 0.2, zoom
0.2, horizontal flips, fill 'nearest'; batches of 32, 100 steps per epoch, 100 epochs,
RMSprop with lr 1e-4, 50 validation steps. For a quick look:

    python examples/2_data_augmentation.py --data sample --epochs 2 --steps-per-epoch 5

Writes into --out: augmented.png (four random versions of one training cat),
cats_and_dogs_small_2.h5, history.json, history.png and test.json.
"""
import os

import minicnn as mc
from minicnn import layers, optimizers
from minicnn.plotting import plot_image_grid
from minicnn.preprocessing.image import ImageDataGenerator, generator_next, img_to_array, load_img

import _common                                      # the command line, folders and output files

parser = _common.lecture_parser(__doc__)
_common.add_schedule_options(parser, epochs=100, batch_size=32)
_common.add_output_options(parser, "runs/2_data_augmentation")
args = parser.parse_args()

train_dir, validation_dir, test_dir = _common.data_folders(parser, args.data)
os.makedirs(args.out, exist_ok=True)

# --- Data augmentation: a random transformation of every image, every time it is drawn.
datagen = ImageDataGenerator(
    rescale=1 / 255,
    rotation_range=40,             # degrees, 0-180
    width_shift_range=0.2,         # fractions of the width and the height
    height_shift_range=0.2,
    shear_range=0.2,               # degrees in today's Keras (radians in the lecture's 2.0.8)
    zoom_range=0.2,
    horizontal_flip=True,          # no left-right asymmetry in real-world pictures
    fill_mode="nearest",           # how the pixels that appear after a warp are filled
)

# --- Showing some augmented training images: one cat, four random versions of it.
train_cats_dir = os.path.join(train_dir, "cats")
fnames = sorted(os.path.join(train_cats_dir, f) for f in os.listdir(train_cats_dir))
img_path = fnames[min(2, len(fnames) - 1)]          # fnames[[3]] in R, which counts from 1
img = load_img(img_path, target_size=(150, 150))    # read the image and resize it
img_array = img_to_array(img)                       # an array of shape (150, 150, 3)
img_array = img_array.reshape(1, 150, 150, 3)       # array_reshape to (1, 150, 150, 3)
augmentation_generator = datagen.flow(img_array, batch_size=1, seed=args.seed)
images = []
for i in range(4):                                  # the iterator is endless: stop after 4
    batch = generator_next(augmentation_generator)
    images.append(batch[0])
try:
    plot_image_grid(images, os.path.join(args.out, "augmented.png"), title=os.path.basename(img_path))
except ImportError as error:                        # matplotlib is an optional extra
    print(f"no plot: {error}")

# --- The network, now with layer_dropout after layer_flatten.
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
    layers.Dropout(0.5),
    layers.Dense(512, activation="relu"),
    layers.Dense(1, activation="sigmoid"),
], seed=args.seed)

model.compile(
    loss="binary_crossentropy",
    optimizer=optimizers.RMSprop(learning_rate=1e-4),
    metrics=["acc"],
)

# --- Training the convnet with the augmenting generator. Note that the validation data
# must not be augmented!
test_datagen = ImageDataGenerator(rescale=1 / 255)

train_generator = datagen.flow_from_directory(
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

history = model.fit(
    train_generator,
    steps_per_epoch=args.steps_per_epoch,
    epochs=args.epochs,
    validation_data=validation_generator,
    validation_steps=args.validation_steps,
)

# --- Saving the model.
model.save(os.path.join(args.out, "cats_and_dogs_small_2.h5"))

# --- The curves: training and validation now stay together (about 82 % in the lecture).
_common.save_history(history, args.out, "CNN + data augmentation")

# --- Accuracy on the test images.
if args.test_steps > 0 and os.path.isdir(test_dir):
    test_generator = test_datagen.flow_from_directory(
        test_dir, target_size=(150, 150), batch_size=args.batch_size, class_mode="binary")
    test_loss, test_acc = model.evaluate(test_generator, steps=args.test_steps, verbose=0)
    _common.save_test_result(args.out, test_loss, test_acc, "acc")
print(f"wrote {args.out}")
