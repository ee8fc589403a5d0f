"""The lecture's models, as minicnn code (the R/Keras original beside each).

    model_no_max_pool <- keras_model_sequential() %>%
      layer_conv_2d(filters = 32, kernel_size = c(3, 3), activation = "relu",
                    input_shape = c(28, 28, 1)) %>%
      layer_conv_2d(filters = 64, kernel_size = c(3, 3), activation = "relu") %>%
      layer_conv_2d(filters = 64, kernel_size = c(3, 3), activation = "relu")

    model <- keras_model_sequential() %>%
      layer_conv_2d(filters = 32, kernel_size = c(3, 3), activation = "relu",
                    input_shape = c(150, 150, 3)) %>%
      layer_max_pooling_2d(pool_size = c(2, 2)) %>%
      ... 64, 128, 128 filters, each followed by max-pooling ...
      layer_flatten() %>%
      layer_dropout(rate = 0.5) %>%              # the augmentation flow only
      layer_dense(units = 512, activation = "relu") %>%
      layer_dense(units = 1, activation = "sigmoid")
"""
from minicnn.layers import Conv2D, Dense, Dropout, Flatten, MaxPooling2D
from minicnn.model import Sequential


def no_max_pool(seed=None) -> Sequential:
    """Three 3x3 convolutions on 28x28x1, no pooling: 55,744 parameters."""
    return Sequential([
        Conv2D(32, (3, 3), activation="relu", input_shape=(28, 28, 1)),
        Conv2D(64, (3, 3), activation="relu"),
        Conv2D(64, (3, 3), activation="relu"),
    ], seed=seed)


def cnn(input_shape=(150, 150, 3), dropout=False, seed=None) -> Sequential:
    """The cats-vs-dogs convnet from scratch: 3,453,121 parameters at 150x150x3.

    dropout=True adds Dropout(0.5) after Flatten, as in the augmentation flow.
    """
    layers = [
        Conv2D(32, (3, 3), activation="relu", input_shape=input_shape),
        MaxPooling2D((2, 2)),
        Conv2D(64, (3, 3), activation="relu"),
        MaxPooling2D((2, 2)),
        Conv2D(128, (3, 3), activation="relu"),
        MaxPooling2D((2, 2)),
        Conv2D(128, (3, 3), activation="relu"),
        MaxPooling2D((2, 2)),
        Flatten(),
    ]
    if dropout:
        layers.append(Dropout(0.5))
    layers += [Dense(512, activation="relu"), Dense(1, activation="sigmoid")]
    return Sequential(layers, seed=seed)


def cnn_dropout(input_shape=(150, 150, 3), seed=None) -> Sequential:
    return cnn(input_shape, dropout=True, seed=seed)


MODELS = {"no-max-pool": no_max_pool, "cnn": cnn, "cnn-dropout": cnn_dropout}
