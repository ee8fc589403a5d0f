"""minicnn: a convnet engine in NumPy and Numba, with explicit backprop and Keras semantics."""
from minicnn import runtime  # noqa: F401  (first: process settings before Numba starts)
from minicnn import layers, losses, metrics, optimizers
from minicnn.callbacks import History
from minicnn.layers import clear_session
from minicnn.model import Sequential

__version__ = "0.1.0"

__all__ = ["History", "Sequential", "clear_session", "layers", "losses", "metrics",
           "optimizers", "__version__"]
