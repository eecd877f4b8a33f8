"""Networks of the two-level hierarchical VAE (`kerasvae.models.HierarchicalVAE`).

Each builder returns a dict of four built functional models, ready for
`HierarchicalVAE(**networks)`:

```
encoder:     x        -> [z2_mean, z2_log_var]    q(z2 | x)
z1_encoder:  [x, z2]  -> [z1_mean, z1_log_var]    q(z1 | x, z2)
z1_prior:    z2       -> [z1_mean, z1_log_var]    p(z1 | z2)
decoder:     [z1, z2] -> likelihood parameters    p(x | z1, z2)
```

As in Tomczak and Welling's HVAE, z2 is read straight from x, z1 from x and
z2 (each through its own branch, joined by a further layer), and the decoder
reads z1 and z2 through separate branches joined the same way. Hidden layers
are gated dense layers (`gated=True`, published) or He-initialized ReLU dense
layers; log-variances are clipped to [-6, 2] as by the published hardtanh.
`build_hierarchical_gated_conv` builds the published convolutional HVAE;
`build_hierarchical_conv` a lighter convolutional one (at 28x28, 13 million
multiply-adds an image through its encoders and decoder against 221 million).
"""

import keras

from kerasvae.layers.gated_conv import GatedConv2D, torch_conv_uniform
from kerasvae.layers.gated_dense import GatedDense, he_normal
from kerasvae.networks.gated_mlp import dense_image_heads, gated_posterior_head
from kerasvae.networks.mlp import _check_positive_int


def _hidden(units, gated, name):
    if gated:
        return GatedDense(units, name=name)
    return keras.layers.Dense(units, activation="relu", kernel_initializer=he_normal(), name=name)


def _check_common(data_shape, z1_dim, z2_dim, hidden_units, num_outputs):
    _check_positive_int("z1_dim", z1_dim)
    _check_positive_int("z2_dim", z2_dim)
    _check_positive_int("hidden_units", hidden_units)
    if num_outputs not in (1, 2):
        raise ValueError(f"num_outputs must be 1 or 2. Received: num_outputs={num_outputs!r}")
    data_shape = tuple(data_shape)
    if not data_shape or not all(isinstance(d, int) and d > 0 for d in data_shape):
        raise ValueError(
            f"data_shape must be a tuple of positive integers. Received: data_shape={data_shape!r}"
        )
    return data_shape


def _check_image_shape(data_shape, stride, divisor_text):
    if len(data_shape) != 3 or data_shape[0] % stride or data_shape[1] % stride:
        raise ValueError(
            f"data_shape must be (height, width, channels) with height and width divisible "
            f"by {divisor_text}. Received: data_shape={data_shape}"
        )


def _z1_prior(z2_dim, z1_dim, hidden_units, gated, log_var_min, log_var_max):
    z2 = keras.Input(shape=(z2_dim,), name="z2")
    h = _hidden(hidden_units, gated, "hidden_0")(z2)
    h = _hidden(hidden_units, gated, "hidden_1")(h)
    outputs = gated_posterior_head(h, z1_dim, "diagonal", log_var_min, log_var_max, name="p_z1")
    return keras.Model(z2, outputs, name="z1_prior")


def _join(a, b, hidden_units, gated, prefix):
    """Each input through its own hidden layer, then one more on both."""
    a = _hidden(hidden_units, gated, f"{prefix}_a")(a)
    b = _hidden(hidden_units, gated, f"{prefix}_b")(b)
    joint = keras.layers.Concatenate(name=f"{prefix}_concat")([a, b])
    return _hidden(hidden_units, gated, f"{prefix}_joint")(joint)


def build_hierarchical_mlp(
    data_shape,
    z1_dim=40,
    z2_dim=40,
    hidden_units=300,
    gated=True,
    log_var_min=-6.0,
    log_var_max=2.0,
    num_outputs=1,
):
    """Builds the HVAE networks of Tomczak and Welling (MLP, 300 gated units).

    Args:
        data_shape: tuple of int. Shape of one example, e.g. `(28, 28, 1)`.
        z1_dim: int. Size of the lower latent z1 (40 in the paper).
        z2_dim: int. Size of the top latent z2 (40 in the paper).
        hidden_units: int. Width of every hidden layer.
        gated: bool. Gated dense hidden layers (published) or ReLU ones.
        log_var_min, log_var_max: float or None. Log-variance clamp.
        num_outputs: int. Decoder heads: 1 (logits or mean) or 2 (mean and
            per-pixel log-variance).

    Returns:
        A dict `{"encoder", "z1_encoder", "z1_prior", "decoder"}` of built
        functional `keras.Model`s.

    Reference:
        Tomczak and Welling, "VAE with a VampPrior", AISTATS 2018.
    """
    data_shape = _check_common(data_shape, z1_dim, z2_dim, hidden_units, num_outputs)

    def head(h, dim, name):
        return gated_posterior_head(h, dim, "diagonal", log_var_min, log_var_max, name=name)

    # q(z2 | x)
    x = keras.Input(shape=data_shape, name="x")
    h = keras.layers.Flatten()(x)
    h = _hidden(hidden_units, gated, "hidden_0")(h)
    h = _hidden(hidden_units, gated, "hidden_1")(h)
    encoder = keras.Model(x, head(h, z2_dim, "q_z2"), name="z2_encoder")
    # q(z1 | x, z2)
    x = keras.Input(shape=data_shape, name="x")
    z2 = keras.Input(shape=(z2_dim,), name="z2")
    h = _join(keras.layers.Flatten()(x), z2, hidden_units, gated, "q_z1")
    z1_encoder = keras.Model([x, z2], head(h, z1_dim, "q_z1"), name="z1_encoder")
    # p(x | z1, z2)
    z1 = keras.Input(shape=(z1_dim,), name="z1")
    z2 = keras.Input(shape=(z2_dim,), name="z2")
    h = _join(z1, z2, hidden_units, gated, "p_x")
    outputs = dense_image_heads(h, data_shape, num_outputs)
    decoder = keras.Model([z1, z2], outputs[0] if num_outputs == 1 else outputs, name="decoder")
    return {
        "encoder": encoder,
        "z1_encoder": z1_encoder,
        "z1_prior": _z1_prior(z2_dim, z1_dim, hidden_units, gated, log_var_min, log_var_max),
        "decoder": decoder,
    }


def _conv_features(x, filters, prefix):
    h = x
    for i, f in enumerate(filters):
        h = keras.layers.Conv2D(
            f, 3, strides=2, padding="same", activation="relu",
            kernel_initializer=he_normal(), name=f"{prefix}_conv_{i}",
        )(h)
    return keras.layers.Flatten(name=f"{prefix}_flatten")(h)


def build_hierarchical_conv(
    data_shape,
    z1_dim=40,
    z2_dim=40,
    filters=(32, 64),
    hidden_units=300,
    gated=True,
    log_var_min=-6.0,
    log_var_max=2.0,
    num_outputs=1,
):
    """Builds convolutional HVAE networks for images of any size divisible by 2^len(filters).

    Both encoders read x through their own stack of stride-2 3x3 ReLU
    convolutions (each halves height and width); the decoder joins its z1 and
    z2 branches, projects to a `(h / 2^L, w / 2^L, filters[-1])` map and
    mirrors the stack with transposed convolutions, ending in a 3x3
    convolution with one (or two, `num_outputs=2`) outputs per channel. The
    dense layers are gated as in the MLP (`gated=True`). With the default
    two layers, any height and width divisible by 4 works (28x28x1, 32x32x3,
    64x64x3).

    Returns:
        A dict `{"encoder", "z1_encoder", "z1_prior", "decoder"}` of built
        functional `keras.Model`s.

    Reference:
        Tomczak and Welling, "VAE with a VampPrior", AISTATS 2018 (whose
        convolutional HVAE uses gated convolutions and a full-resolution
        decoder, `build_hierarchical_gated_conv`; these are plain, lighter
        ones).
    """
    data_shape = _check_common(data_shape, z1_dim, z2_dim, hidden_units, num_outputs)
    filters = tuple(filters)
    if not filters:
        raise ValueError(f"filters must hold at least one width. Received: filters={filters!r}")
    for f in filters:
        _check_positive_int("filters", f)
    stride = 2 ** len(filters)
    _check_image_shape(data_shape, stride, f"{stride} (2 ** len(filters))")

    def head(h, dim, name):
        return gated_posterior_head(h, dim, "diagonal", log_var_min, log_var_max, name=name)

    # q(z2 | x)
    x = keras.Input(shape=data_shape, name="x")
    h = _hidden(hidden_units, gated, "hidden")(_conv_features(x, filters, "q_z2"))
    encoder = keras.Model(x, head(h, z2_dim, "q_z2"), name="z2_encoder")
    # q(z1 | x, z2)
    x = keras.Input(shape=data_shape, name="x")
    z2 = keras.Input(shape=(z2_dim,), name="z2")
    h = _join(_conv_features(x, filters, "q_z1"), z2, hidden_units, gated, "q_z1")
    z1_encoder = keras.Model([x, z2], head(h, z1_dim, "q_z1"), name="z1_encoder")
    # p(x | z1, z2)
    z1 = keras.Input(shape=(z1_dim,), name="z1")
    z2 = keras.Input(shape=(z2_dim,), name="z2")
    h = _join(z1, z2, hidden_units, gated, "p_x")
    height, width, channels = data_shape[0] // stride, data_shape[1] // stride, data_shape[2]
    h = keras.layers.Dense(
        height * width * filters[-1], activation="relu", kernel_initializer=he_normal(),
        name="project",
    )(h)
    h = keras.layers.Reshape((height, width, filters[-1]))(h)
    for i, f in enumerate(reversed(filters)):
        h = keras.layers.Conv2DTranspose(
            f, 3, strides=2, padding="same", activation="relu",
            kernel_initializer=he_normal(), name=f"deconv_{i}",
        )(h)
    heads = ["logits_or_mean", "log_var"][:num_outputs]
    outputs = [keras.layers.Conv2D(channels, 3, padding="same", name=name)(h) for name in heads]
    decoder = keras.Model([z1, z2], outputs[0] if num_outputs == 1 else outputs, name="decoder")
    return {
        "encoder": encoder,
        "z1_encoder": z1_encoder,
        "z1_prior": _z1_prior(z2_dim, z1_dim, hidden_units, gated, log_var_min, log_var_max),
        "decoder": decoder,
    }


def _gated_conv_features(x, kernel_sizes, filters, feature_channels, prefix):
    """Published encoder stack: at each resolution a gated convolution, then
    a stride-2 gated 3x3 one; then a narrow gated 3x3 convolution, flattened."""
    h = x
    for i, (kernel_size, f) in enumerate(zip(kernel_sizes, filters)):
        h = GatedConv2D(f, kernel_size, name=f"{prefix}_gated_conv_{2 * i}")(h)
        h = GatedConv2D(f, 3, strides=2, name=f"{prefix}_gated_conv_{2 * i + 1}")(h)
    h = GatedConv2D(feature_channels, 3, name=f"{prefix}_gated_conv_{2 * len(filters)}")(h)
    return keras.layers.Flatten(name=f"{prefix}_flatten")(h)


def build_hierarchical_gated_conv(
    data_shape,
    z1_dim=40,
    z2_dim=40,
    filters=(32, 64),
    feature_channels=6,
    decoder_filters=64,
    decoder_layers=4,
    hidden_units=300,
    log_var_min=-6.0,
    log_var_max=2.0,
    num_outputs=1,
):
    """Builds the convolutional HVAE networks of Tomczak and Welling (gated convolutions).

    The published convHVAE's structure, for images whose height and width
    are divisible by 4:

    - q(z2 | x): gated convolutions 7x7 (32), 3x3 stride 2 (32), 5x5 (64),
      3x3 stride 2 (64) and 3x3 (6), flattened (6 x 7 x 7 = 294 features at
      28x28), then the mean and clipped log-variance heads.
    - q(z1 | x, z2): the same stack with 3x3 kernels throughout, beside z2
      through a gated dense layer as wide as the flattened features; the two
      joined by a gated dense layer of `hidden_units`.
    - p(z1 | z2): two gated dense layers, as in the MLP.
    - p(x | z1, z2): z1 and z2 each through a gated dense layer, joined by
      one as wide as the image and reshaped to it, then `decoder_layers`
      gated 3x3 convolutions of `decoder_filters` channels at full
      resolution and a 1x1 convolution per output.

    Gated convolutions are linear-by-sigmoid (`GatedConv2D`); the dense
    layers are He-initialized and the convolutions' kernels keep PyTorch's
    default initialization, as in the published code (their biases start at
    zero here). Where it departs from the published code: a stride-2
    convolution pads its even input by one row and column after it
    (Keras's "same"), where PyTorch's `padding=1` pads one on each side (the
    same sizes, a grid shifted by a pixel); with `num_outputs=2` the second
    head is left unclamped for the likelihood to read (the published grey-level
    model clamps it to [-4.5, 0] for its discretized logistic). At 28x28 its
    encoders and decoder cost 221 million multiply-adds an image, 17 times
    `build_hierarchical_conv`'s lighter stacks (13 million); the decoder's
    four gated convolutions at full resolution are 174 million of them.

    Args:
        data_shape: tuple of int. `(height, width, channels)`.
        z1_dim, z2_dim: int. Sizes of the two latents (40 each published).
        filters: tuple of 2 ints. Encoder widths before and after the first
            stride (32 and 64 published).
        feature_channels: int. Channels of the encoders' last convolution
            (6 published).
        decoder_filters: int. Channels of the decoder's convolutions (64).
        decoder_layers: int. Number of the decoder's convolutions (4).
        hidden_units: int. Width of the gated dense layers (300).
        log_var_min, log_var_max: float or None. Log-variance clamp.
        num_outputs: int. Decoder heads: 1 (logits or mean) or 2 (mean and
            per-pixel log-variance).

    Returns:
        A dict `{"encoder", "z1_encoder", "z1_prior", "decoder"}` of built
        functional `keras.Model`s.

    Reference:
        Tomczak and Welling, "VAE with a VampPrior", AISTATS 2018.
    """
    data_shape = _check_common(data_shape, z1_dim, z2_dim, hidden_units, num_outputs)
    filters = tuple(filters)
    if len(filters) != 2:
        raise ValueError(f"filters must hold two widths. Received: filters={filters!r}")
    for name, value in [("filters", f) for f in filters] + [
        ("feature_channels", feature_channels),
        ("decoder_filters", decoder_filters),
        ("decoder_layers", decoder_layers),
    ]:
        _check_positive_int(name, value)
    _check_image_shape(data_shape, 4, "4")
    height, width, channels = data_shape
    features = feature_channels * (height // 4) * (width // 4)

    def head(h, dim, name):
        return gated_posterior_head(h, dim, "diagonal", log_var_min, log_var_max, name=name)

    # q(z2 | x)
    x = keras.Input(shape=data_shape, name="x")
    h = _gated_conv_features(x, (7, 5), filters, feature_channels, "q_z2")
    encoder = keras.Model(x, head(h, z2_dim, "q_z2"), name="z2_encoder")
    # q(z1 | x, z2)
    x = keras.Input(shape=data_shape, name="x")
    z2 = keras.Input(shape=(z2_dim,), name="z2")
    h_x = _gated_conv_features(x, (3, 3), filters, feature_channels, "q_z1")
    h_z2 = GatedDense(features, name="q_z1_z2")(z2)
    h = keras.layers.Concatenate(name="q_z1_concat")([h_x, h_z2])
    h = GatedDense(hidden_units, name="q_z1_joint")(h)
    z1_encoder = keras.Model([x, z2], head(h, z1_dim, "q_z1"), name="z1_encoder")
    # p(x | z1, z2)
    z1 = keras.Input(shape=(z1_dim,), name="z1")
    z2 = keras.Input(shape=(z2_dim,), name="z2")
    h = keras.layers.Concatenate(name="p_x_concat")(
        [GatedDense(hidden_units, name="p_x_z1")(z1), GatedDense(hidden_units, name="p_x_z2")(z2)]
    )
    h = GatedDense(height * width * channels, name="p_x_joint")(h)
    h = keras.layers.Reshape(data_shape, name="p_x_image")(h)
    for i in range(decoder_layers):
        h = GatedConv2D(decoder_filters, 3, name=f"p_x_gated_conv_{i}")(h)
    heads = ["logits_or_mean", "log_var"][:num_outputs]
    outputs = [
        keras.layers.Conv2D(channels, 1, kernel_initializer=torch_conv_uniform(), name=name)(h)
        for name in heads
    ]
    decoder = keras.Model([z1, z2], outputs[0] if num_outputs == 1 else outputs, name="decoder")
    return {
        "encoder": encoder,
        "z1_encoder": z1_encoder,
        "z1_prior": _z1_prior(z2_dim, z1_dim, hidden_units, True, log_var_min, log_var_max),
        "decoder": decoder,
    }
