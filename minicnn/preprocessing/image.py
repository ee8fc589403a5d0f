"""Keras's preprocessing.image in one place: image files in and out, random augmentation
and the iterators, with Keras's names and semantics.

Loading: `load_img` -> PIL image, `img_to_array` -> ndarray (H, W, C), `array_to_img`,
`save_img` (atomic). Augmentation: `ImageDataGenerator`, whose batched hot path
`augment_batch` is what the iterators call. The code lives in one module per concern, each
importing only those above it in this list:

    decoding.py    load_img, img_to_array, array_to_img, save_img (Pillow)
    transforms.py  transform_matrix: the affine matrix of one random transformation (the math)
    iterators.py   DirectoryIterator, NumpyArrayIterator, generator_next (files via decoding)
    generator.py   ImageDataGenerator (draws via transforms, batches via the iterators)
"""
from minicnn.preprocessing.decoding import (COLOR_MODES, INTERPOLATIONS, array_to_img,
                                            img_to_array, load_img, save_img)
from minicnn.preprocessing.generator import ImageDataGenerator
from minicnn.preprocessing.iterators import DirectoryIterator, NumpyArrayIterator, generator_next
from minicnn.preprocessing.transforms import transform_matrix

__all__ = ["COLOR_MODES", "INTERPOLATIONS", "DirectoryIterator", "ImageDataGenerator",
           "NumpyArrayIterator", "array_to_img", "generator_next", "img_to_array", "load_img",
           "save_img", "transform_matrix"]
