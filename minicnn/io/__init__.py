"""Files: Keras-layout model and weight files, the VGG16 weights converter (and, from
minicnn.atomic, the atomic writes they all use)."""
from minicnn.atomic import atomic_path

__all__ = ["atomic_path"]
