"""minicnn: a convnet engine in NumPy and Numba, with explicit backprop and Keras semantics."""
from minicnn import runtime  # noqa: F401  (first: process settings before Numba starts)
from minicnn import layers, losses, metrics, optimizers
from minicnn import callbacks
from minicnn.callbacks import Callback, EarlyStopping, History, ModelCheckpoint
from minicnn.layers import clear_session
from minicnn.model import Sequential
from minicnn.validation_cache import ValidationCache
# The file formats and applications register themselves (minicnn.registry) on import.
from minicnn.io import hdf5 as _hdf5, model_file as _model_file  # noqa: F401
from minicnn import applications  # noqa: F401

from minicnn.version import __version__

def save_model(model, path, include_optimizer=True):
    """Keras's legacy HDF5 model file (model.save)."""
    model.save(path, include_optimizer=include_optimizer)


def load_model(path, compile=True):
    """A model from a Keras legacy HDF5 model file, written by minicnn or by Keras."""
    return _model_file.load_model(path, compile=compile)


# The lecture's R names.
save_model_hdf5 = save_model
load_model_hdf5 = load_model

__all__ = ["Callback", "EarlyStopping", "History", "ModelCheckpoint", "Sequential", "callbacks",
           "clear_session", "layers", "load_model", "load_model_hdf5", "losses", "metrics",
           "optimizers", "save_model", "save_model_hdf5", "ValidationCache", "__version__"]
