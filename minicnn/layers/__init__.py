"""minicnn layers: Conv2D, MaxPooling2D, Dense, Flatten, Dropout, Activation."""
from minicnn.layers.base import Layer, clear_session
from minicnn.layers.conv import (
    Conv2D,
    set_winograd_min_channels,
    set_winograd_tile,
    set_workspace_limit,
)
from minicnn.layers.core import Activation, Dense, Dropout, Flatten
from minicnn.layers.pooling import MaxPooling2D

__all__ = ["Activation", "Conv2D", "Dense", "Dropout", "Flatten", "Layer", "MaxPooling2D",
           "clear_session", "set_winograd_min_channels", "set_winograd_tile",
           "set_workspace_limit"]
