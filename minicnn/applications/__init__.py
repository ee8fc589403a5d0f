"""Ready-made models: the lecture's convnets and Keras's VGG16."""
from minicnn.applications import lecture
from minicnn.applications.vgg16 import VGG16, preprocess_input

__all__ = ["VGG16", "lecture", "preprocess_input"]
