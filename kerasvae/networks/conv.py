import keras

from kerasvae.networks.mlp import _check_positive_int, check_num_classes, label_input, posterior_head


def build_conv_encoder(
    input_shape=(28, 28, 1),
    latent_dim=16,
    filters=(32, 64),
    dense_units=256,
    covariance="diagonal",
    log_var_min=None,
    log_var_max=None,
    num_classes=None,
    name="conv_encoder",
):
    """Builds a convolutional encoder: stride-2 3x3 convolutions, then a dense layer.

    Each convolution halves the spatial size, so the input's height and width
    must be divisible by `2 ** len(filters)`.

    With `num_classes` the encoder is conditional and takes `[x,
    label_onehot]`: the one-hot label is broadcast over the image as
    `num_classes` constant channels concatenated to `x`, so every
    convolution sees the class (standard layers only: `RepeatVector` and
    `Reshape`, no `Lambda`, so the model loads with `safe_mode=True`).

    Returns:
        A built functional `keras.Model`, `x -> [z_mean, z_log_var]`.
    """
    _check_positive_int("latent_dim", latent_dim)
    stride = 2 ** len(filters)
    if len(input_shape) != 3 or input_shape[0] % stride or input_shape[1] % stride:
        raise ValueError(
            f"input_shape must be (height, width, channels) with height and width "
            f"divisible by {stride}. Received: input_shape={tuple(input_shape)}"
        )
    check_num_classes(num_classes)
    inputs = keras.Input(shape=tuple(input_shape), name="x")
    h = inputs
    if num_classes is not None:
        label = label_input(num_classes)
        height, width = input_shape[0], input_shape[1]
        planes = keras.layers.RepeatVector(height * width, name="label_repeat")(label)
        planes = keras.layers.Reshape((height, width, num_classes), name="label_planes")(planes)
        h = keras.layers.Concatenate(axis=-1, name="concat_label")([h, planes])
        inputs = [inputs, label]
    for i, f in enumerate(filters):
        h = keras.layers.Conv2D(f, 3, strides=2, padding="same", activation="relu", name=f"conv_{i}")(h)
    h = keras.layers.Flatten()(h)
    h = keras.layers.Dense(dense_units, activation="relu", name="dense")(h)
    outputs = posterior_head(h, latent_dim, covariance, log_var_min, log_var_max)
    return keras.Model(inputs, outputs, name=name)


def build_conv_decoder(
    latent_dim=16,
    output_shape=(28, 28, 1),
    filters=(64, 32),
    dense_units=256,
    num_outputs=1,
    num_classes=None,
    name="conv_decoder",
):
    """Builds the mirror of `build_conv_encoder` with transposed convolutions.

    The output has no activation (logits for Bernoulli, a mean for Gaussian);
    `num_outputs=2` adds a per-pixel log-variance (or log-scale) head. With
    `num_classes` the decoder is conditional and takes `[z, label_onehot]`,
    the one-hot label concatenated to z before the dense layers.

    Returns:
        A built functional `keras.Model`, `z -> output_shape`.
    """
    _check_positive_int("latent_dim", latent_dim)
    stride = 2 ** len(filters)
    height, width, channels = output_shape
    if height % stride or width % stride:
        raise ValueError(
            f"output_shape height and width must be divisible by {stride}. "
            f"Received: output_shape={tuple(output_shape)}"
        )
    check_num_classes(num_classes)
    inputs = keras.Input(shape=(latent_dim,), name="z")
    h = inputs
    if num_classes is not None:
        label = label_input(num_classes)
        h = keras.layers.Concatenate(name="concat_label")([h, label])
        inputs = [inputs, label]
    h = keras.layers.Dense(dense_units, activation="relu", name="dense")(h)
    h = keras.layers.Dense(
        (height // stride) * (width // stride) * filters[0], activation="relu", name="project"
    )(h)
    h = keras.layers.Reshape((height // stride, width // stride, filters[0]))(h)
    for i, f in enumerate(filters):
        h = keras.layers.Conv2DTranspose(
            f, 3, strides=2, padding="same", activation="relu", name=f"deconv_{i}"
        )(h)
    heads = ["logits_or_mean", "log_var"][:num_outputs]
    outputs = [keras.layers.Conv2D(channels, 3, padding="same", name=head)(h) for head in heads]
    return keras.Model(inputs, outputs[0] if num_outputs == 1 else outputs, name=name)
