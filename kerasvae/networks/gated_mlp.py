import math

import keras

from kerasvae.layers.cholesky_posterior import CholeskyPosterior
from kerasvae.layers.gated_dense import GatedDense, he_normal
from kerasvae.layers.gaussian_posterior import GaussianPosterior
from kerasvae.networks.mlp import _check_positive_int


def gated_posterior_head(features, latent_dim, covariance="diagonal", log_var_min=-6.0,
                         log_var_max=2.0, name="posterior"):
    """A He-initialized posterior head; the log-variance clipped like hardtanh."""
    if covariance == "diagonal":
        return GaussianPosterior(
            latent_dim,
            log_var_min=log_var_min,
            log_var_max=log_var_max,
            kernel_initializer=he_normal(),
            name=name,
        )(features)
    if covariance == "full":
        return CholeskyPosterior(latent_dim, kernel_initializer=he_normal(), name=name)(features)
    raise ValueError(
        f"covariance must be 'diagonal' or 'full'. Received: covariance={covariance!r}"
    )


def check_hidden_units(hidden_units):
    hidden_units = tuple(hidden_units)
    if not hidden_units:
        raise ValueError(
            f"hidden_units must hold at least one width. Received: hidden_units={hidden_units!r}"
        )
    for units in hidden_units:
        _check_positive_int("hidden_units", units)
    return hidden_units


def build_gated_mlp_encoder(
    input_shape,
    latent_dim=40,
    hidden_units=(300, 300),
    covariance="diagonal",
    log_var_min=-6.0,
    log_var_max=2.0,
    name="gated_mlp_encoder",
):
    """Builds the VampPrior paper's encoder: gated dense layers, then a Gaussian head.

    `x -> flatten -> GatedDense(300) -> GatedDense(300) -> [z_mean, z_log_var]`
    with a linear mean and a log-variance clipped to `[-6, 2]` (the published
    hardtanh), every kernel He-initialized.

    Args:
        input_shape: tuple. Shape of one example, e.g. `(28, 28, 1)`.
        latent_dim: int. Size of the latent space (40 in the paper).
        hidden_units: tuple of int. Width of each gated layer.
        covariance: str. `"diagonal"` (published) or `"full"`.
        log_var_min, log_var_max: float or None. The log-variance clamp.
        name: str. Model name.

    Returns:
        A built functional `keras.Model`, `x -> [z_mean, z_log_var]`.

    Reference:
        Tomczak and Welling, "VAE with a VampPrior", AISTATS 2018.
    """
    _check_positive_int("latent_dim", latent_dim)
    hidden_units = check_hidden_units(hidden_units)
    inputs = keras.Input(shape=tuple(input_shape), name="x")
    h = keras.layers.Flatten()(inputs)
    for i, units in enumerate(hidden_units):
        h = GatedDense(units, name=f"gated_{i}")(h)
    outputs = gated_posterior_head(h, latent_dim, covariance, log_var_min, log_var_max)
    return keras.Model(inputs, outputs, name=name)


def build_gated_mlp_decoder(
    latent_dim=40,
    output_shape=(28, 28, 1),
    hidden_units=(300, 300),
    num_outputs=1,
    name="gated_mlp_decoder",
):
    """Builds the VampPrior paper's decoder: gated dense layers, then a linear output.

    `z -> GatedDense(300) -> GatedDense(300) -> Dense(prod(output_shape))`,
    reshaped to `output_shape`. The output has no activation: Bernoulli logits
    (the paper's sigmoid output, applied by the likelihood) or a Gaussian
    mean; `num_outputs=2` adds a per-pixel log-variance head.

    Returns:
        A built functional `keras.Model`, `z -> output_shape`.
    """
    _check_positive_int("latent_dim", latent_dim)
    hidden_units = check_hidden_units(hidden_units)
    if num_outputs not in (1, 2):
        raise ValueError(f"num_outputs must be 1 or 2. Received: num_outputs={num_outputs!r}")
    inputs = keras.Input(shape=(latent_dim,), name="z")
    h = inputs
    for i, units in enumerate(hidden_units):
        h = GatedDense(units, name=f"gated_{i}")(h)
    outputs = dense_image_heads(h, output_shape, num_outputs)
    return keras.Model(inputs, outputs[0] if num_outputs == 1 else outputs, name=name)


def dense_image_heads(features, output_shape, num_outputs):
    """He-initialized linear heads reshaped to `output_shape` (logits/mean, log-variance)."""
    size = math.prod(output_shape)
    heads = ["logits_or_mean", "log_var"][:num_outputs]
    return [
        keras.layers.Reshape(tuple(output_shape), name=f"{head}_reshape")(
            keras.layers.Dense(size, kernel_initializer=he_normal(), name=head)(features)
        )
        for head in heads
    ]
