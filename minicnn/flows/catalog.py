"""The lecture's five flows as data: each one's model, hyperparameters and data settings.

    flow               model                                        data                      lecture's settings
    scratch            cnn: 4 x (Conv2D 3x3 + MaxPooling2D),         rescale 1/255             batch 20, 100 steps x 30 epochs,
                       Dense 512, Dense 1 (3,453,121 params)                                   validation 50 steps, RMSprop lr 1e-4
    augment            the same + Dropout(0.5) after Flatten         + the augmentation        batch 32, 100 steps x 100 epochs,
                                                                                               validation 50 steps, RMSprop lr 1e-4
    features           VGG16 conv base run once over every split;    the (N, 4, 4, 512)        batch 20, 30 epochs over all
                       Dense 256 + Dropout(0.5) + Dense 1 on the     features, flattened       features, RMSprop lr 2e-5
                       4*4*512 = 8192 features
    features-augment   frozen VGG16 base + Flatten + Dense 256 +     + the augmentation        batch 20, 100 steps x 30 epochs,
                       Dense 1 (16,812,353 params, 2,097,665 train.)                           validation 50 steps, RMSprop lr 2e-5
    finetune           the features-augment model, with block5 of    + the augmentation        batch 20, 100 steps x 100 epochs,
                       the base unfrozen (from block5_conv1 on)                                validation 50 steps, RMSprop lr 1e-5

The augmentation is the lecture's: rotation 40, shifts 0.2, shear 0.2, zoom 0.2, horizontal
flip, fill 'nearest'; validation and test images are only rescaled. Images are resized to
150x150 whatever their size, and the split may have any number of images: a step count
larger than a pass simply runs on into the next pass, as Keras's generators do.

Nothing here trains: minicnn.flows.runner runs a flow (checkpoints, resume, reports), and
minicnn.flows.data reads its images.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

LECTURE_AUGMENTATION = dict(rotation_range=40, width_shift_range=0.2, height_shift_range=0.2,
                            shear_range=0.2, zoom_range=0.2, horizontal_flip=True,
                            fill_mode="nearest")


TARGET_SIZE = (150, 150)


SPLITS = ("train", "validation", "test")


REQUIRED_SPLITS = ("train", "validation")


CHECKPOINT = "model.h5"


FINETUNE_FROM = "block5_conv1"    # the lecture: unfreeze_weights(conv_base, from = "block5_conv1")


@dataclass(frozen=True)
class Hyper:
    """The training settings of a flow. steps_per_epoch / validation_steps None: one pass."""
    batch_size: int
    steps_per_epoch: int | None
    epochs: int
    validation_steps: int | None
    learning_rate: float
    augment: bool


@dataclass(frozen=True)
class Flow:
    name: str
    title: str                    # above the history plot
    hyper: Hyper
    uses_vgg16: bool
    compile_seconds: float        # Numba's first-run compile of the flow's kernels, as
                                  # measured by benchmarks/bench_cold_start.py on 2 cores
    book_val_acc: float           # the validation accuracy the book reports for the flow
    seconds_per_image: float      # an epoch's seconds per training image, validation included,


FLOWS = {flow.name: flow for flow in (
    Flow("scratch", "CNN from scratch", Hyper(20, 100, 30, 50, 1e-4, False), False,
         compile_seconds=16, book_val_acc=0.71, seconds_per_image=0.014),
    Flow("augment", "CNN + augmentation + dropout", Hyper(32, 100, 100, 50, 1e-4, True), False,
         compile_seconds=16, book_val_acc=0.82, seconds_per_image=0.013),
    # features: 0.7 s per epoch of 2000 feature vectors, after ~300 s extracting 4000 images
    Flow("features", "VGG16 features + dense classifier", Hyper(20, None, 30, None, 2e-5, False),
         True, compile_seconds=10, book_val_acc=0.90, seconds_per_image=0.0054),
    Flow("features-augment", "VGG16 base (frozen) + augmentation", Hyper(20, 100, 30, 50, 2e-5, True),
         True, compile_seconds=12, book_val_acc=0.96, seconds_per_image=0.067),
    Flow("finetune", "VGG16 fine-tuning (block5)", Hyper(20, 100, 100, 50, 1e-5, True), True,
         compile_seconds=18, book_val_acc=0.97, seconds_per_image=0.062),
)}


# Without --data the flows run on the bundled sample (1000 train, 500 validation photos) as
# quick demos of one pass per epoch. The CNN from scratch shows the lecture's point in about
# two minutes on two cores: 10 epochs at 3x the lecture's learning rate take it from chance
# to ~0.70 validation accuracy while training accuracy runs ahead (overfitting); at the
# lecture's 1e-4 the same 10 epochs end near 0.65. The other flows run two epochs.
SAMPLE_OVERRIDES = dict(epochs=2, steps_per_epoch=None, validation_steps=None)


SAMPLE_FLOW_OVERRIDES = {"scratch": dict(epochs=10, learning_rate=3e-4)}


@dataclass
class Run:
    """One run of one flow: where, on what, with which settings."""
    flow: Flow
    data: str
    out: str
    hyper: Hyper
    seed: int
    sample: bool                  # data is the bundled sample
    base_model: str | None = None  # finetune: the features-augment model to start from

    @property
    def checkpoint(self) -> str:
        return os.path.join(self.out, CHECKPOINT)

    def settings(self) -> dict:
        """The settings recorded in the checkpoint and in metrics.json."""
        return {"flow": self.flow.name, "data": os.path.abspath(self.data), "seed": self.seed,
                **dataclasses.asdict(self.hyper)}


def compile_model(model, run: Run):
    from minicnn import optimizers

    model.compile(optimizer=optimizers.RMSprop(learning_rate=run.hyper.learning_rate),
                  loss="binary_crossentropy", metrics=["acc"])
    return model


def _conv_base():
    from minicnn.applications import VGG16

    return VGG16(weights="imagenet", include_top=False, input_shape=TARGET_SIZE + (3,))


def scratch_model(run: Run):
    from minicnn.applications import lecture
    return lecture.cnn(TARGET_SIZE + (3,), dropout=False, seed=run.seed)


def augment_model(run: Run):
    from minicnn.applications import lecture
    return lecture.cnn(TARGET_SIZE + (3,), dropout=True, seed=run.seed)


def features_model(run: Run):
    """Dense 256 relu on the 4*4*512 features, Dropout 0.5, Dense 1 sigmoid."""
    from minicnn.layers import Dense, Dropout
    from minicnn.model import Sequential
    return Sequential([Dense(256, activation="relu", input_shape=(4 * 4 * 512,)),
                       Dropout(0.5), Dense(1, activation="sigmoid")], seed=run.seed)


def features_augment_model(run: Run, conv_base=None):
    """The frozen conv base + Flatten + Dense 256 relu + Dense 1 sigmoid."""
    return frozen_base_with_head(conv_base or _conv_base(), run.seed)


def frozen_base_with_head(conv_base, seed):
    """conv_base, frozen, + Flatten + Dense 256 relu + Dense 1 sigmoid (flow 4's model)."""
    from minicnn.layers import Dense, Flatten
    from minicnn.model import Sequential
    model = Sequential([conv_base, Flatten(), Dense(256, activation="relu"),
                        Dense(1, activation="sigmoid")], seed=seed)
    conv_base.trainable = False
    return model


def finetune_model(run: Run):
    """The features-augment model (its last checkpoint, when the run has one; else a fresh
    base and head), with the base trainable from block5_conv1 on."""
    from minicnn.io.model_file import load_model

    if run.base_model and os.path.isfile(run.base_model):
        print(f"finetune: starting from {run.base_model}")
        model = load_model(run.base_model, compile=False)
    else:
        print(f"finetune: no features-augment model at {run.base_model}; starting from the "
              f"ImageNet base and an untrained head (the lecture fine-tunes the model that "
              f"'minicnn lecture features-augment' trains: run that first)")
        model = features_augment_model(run)
    unfreeze_from(model, FINETUNE_FROM)
    return model


def unfreeze_from(model, layer_name: str) -> None:
    """The lecture's unfreeze_weights(conv_base, from = layer_name): in the conv base (the
    model's first layer), layer_name and every layer after it train, the ones before not."""
    conv_base = model.layers[0]
    names = [layer.name for layer in getattr(conv_base, "layers", [])]
    if layer_name not in names:
        raise ValueError(f"finetune: expected a model whose first layer is the VGG16 conv base "
                         f"with a layer {layer_name!r}; its first layer is "
                         f"{conv_base.name!r} with layers {names}")
    conv_base.trainable = True
    start = names.index(layer_name)
    for i, layer in enumerate(conv_base.layers):
        layer.trainable = i >= start


MODELS = {"scratch": scratch_model, "augment": augment_model, "features": features_model,
          "features-augment": features_augment_model, "finetune": finetune_model}
