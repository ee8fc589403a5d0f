"""Files: atomic writes (and, later, Keras-compatible HDF5 model and weight files)."""
from minicnn.io.atomic import atomic_path

__all__ = ["atomic_path"]
