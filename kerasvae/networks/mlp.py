import math

import keras

from kerasvae.layers.cholesky_posterior import CholeskyPosterior
from kerasvae.layers.gaussian_posterior import GaussianPosterior


def _check_positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive integer. Received: {name}={value!r}")


def check_num_classes(num_classes):
    if num_classes is not None:
        _check_positive_int("num_classes", num_classes)


def label_input(num_classes):
    """The second input of a conditional network: a one-hot label row."""
    return keras.Input(shape=(num_classes,), name="label_onehot")


def posterior_head(features, latent_dim, covariance, log_var_min=None, log_var_max=None):
    """Applies the posterior layer of the chosen covariance family."""
    if covariance == "full":
        return CholeskyPosterior(latent_dim, name="posterior")(features)
    if covariance == "diagonal":
        return GaussianPosterior(
            latent_dim, log_var_min=log_var_min, log_var_max=log_var_max, name="posterior"
        )(features)
    raise ValueError(
        f"covariance must be 'diagonal' or 'full'. Received: covariance={covariance!r}"
    )


def build_mlp_encoder(
    input_shape,
    latent_dim,
    hidden_units=(512, 256),
    activation="relu",
    covariance="diagonal",
    log_var_min=None,
    log_var_max=None,
    num_classes=None,
    name="mlp_encoder",
):
    """Builds a dense encoder `x -> [z_mean, z_log_var]` (or `[z_mean, scale_tril]`).

    With `num_classes` the encoder is conditional (for
    `kerasvae.models.ConditionalVAE`): it takes `[x, label_onehot]`, the
    one-hot label of width `num_classes` concatenated to the flattened `x`.

    Args:
        input_shape: tuple. Shape of one example, e.g. `(28, 28, 1)`.
        latent_dim: int. Size of the latent space.
        hidden_units: tuple of int. Width of each hidden layer.
        activation: str. Activation of the hidden layers.
        covariance: str. `"diagonal"` or `"full"`.
        log_var_min, log_var_max: float or None. Optional log-variance clamp.
        num_classes: int or None. Width of the one-hot label input; `None`
            (default) builds an unconditional encoder with the single input `x`.
        name: str. Model name.

    Returns:
        A built functional `keras.Model`.
    """
    _check_positive_int("latent_dim", latent_dim)
    check_num_classes(num_classes)
    for units in hidden_units:
        _check_positive_int("hidden_units", units)
    inputs = keras.Input(shape=tuple(input_shape), name="x")
    h = keras.layers.Flatten()(inputs)
    if num_classes is not None:
        label = label_input(num_classes)
        h = keras.layers.Concatenate(name="concat_label")([h, label])
        inputs = [inputs, label]
    for i, units in enumerate(hidden_units):
        h = keras.layers.Dense(units, activation=activation, name=f"dense_{i}")(h)
    outputs = posterior_head(h, latent_dim, covariance, log_var_min, log_var_max)
    return keras.Model(inputs, outputs, name=name)


def build_mlp_decoder(
    latent_dim,
    output_shape,
    hidden_units=(256, 512),
    activation="relu",
    num_outputs=1,
    num_classes=None,
    name="mlp_decoder",
):
    """Builds a dense decoder `z -> likelihood parameters` of `output_shape`.

    The output has no activation: logits for the Bernoulli likelihood, the mean
    for a Gaussian. With `num_outputs=2` a second head gives a per-pixel
    log-variance (for `Gaussian(learn_variance=True)`) or log-scale (for
    `DiscretizedLogistic`). With `num_classes` the decoder is conditional: it
    takes `[z, label_onehot]`, the one-hot label concatenated to z.

    Returns:
        A built functional `keras.Model`.
    """
    _check_positive_int("latent_dim", latent_dim)
    check_num_classes(num_classes)
    inputs = keras.Input(shape=(latent_dim,), name="z")
    h = inputs
    if num_classes is not None:
        label = label_input(num_classes)
        h = keras.layers.Concatenate(name="concat_label")([h, label])
        inputs = [inputs, label]
    for i, units in enumerate(hidden_units):
        _check_positive_int("hidden_units", units)
        h = keras.layers.Dense(units, activation=activation, name=f"dense_{i}")(h)
    size = math.prod(output_shape)
    heads = ["logits_or_mean", "log_var"][:num_outputs]
    outputs = [
        keras.layers.Reshape(tuple(output_shape), name=f"{head}_reshape")(
            keras.layers.Dense(size, name=head)(h)
        )
        for head in heads
    ]
    return keras.Model(inputs, outputs[0] if num_outputs == 1 else outputs, name=name)
