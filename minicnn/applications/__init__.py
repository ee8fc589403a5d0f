"""Ready-made models: the lecture's convnets (and, later, VGG16)."""
from minicnn.applications import lecture

__all__ = ["lecture"]
