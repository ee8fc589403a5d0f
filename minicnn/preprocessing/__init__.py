"""Image loading, augmentation and batch iterators (Keras's preprocessing.image)."""
