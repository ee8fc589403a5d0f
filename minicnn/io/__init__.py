"""Files: atomic writes, Keras-layout HDF5 weight files, the VGG16 weights converter."""
from minicnn.io.atomic import atomic_path

__all__ = ["atomic_path"]
