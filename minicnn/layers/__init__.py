"""minicnn layers: Conv2D, MaxPooling2D, Dense, Flatten, Dropout, Activation."""
from minicnn.layers.base import Layer, clear_session
from minicnn.layers.conv import (
    Conv2D,
    set_winograd_min_channels,
    set_winograd_tile,
    set_workspace_limit,
)
from minicnn.layers.core import Activation, Dense, Dropout, Flatten
from minicnn.layers.conv_algorithms import ALGORITHMS, ConvSettings, conv_settings
from minicnn.layers.pooling import MaxPooling2D

__all__ = ["ALGORITHMS", "Activation", "Conv2D", "ConvSettings", "Dense", "Dropout", "Flatten",
           "Layer", "MaxPooling2D", "clear_session", "conv_settings", "set_winograd_min_channels", "set_winograd_tile",
           "set_workspace_limit"]
