"""The model zoo: a table from a preset name to its networks and defaults.

Tests loop over `PRESETS`, so a new entry is tested by adding one row.
"""

import dataclasses

from kerasvae.models.vae import VAE
from kerasvae.networks.conv import build_conv_decoder, build_conv_encoder
from kerasvae.networks.mlp import build_mlp_decoder, build_mlp_encoder


@dataclasses.dataclass(frozen=True)
class Preset:
    """One zoo entry: how to build the networks and how to train them."""

    description: str
    network: str  # "mlp" or "conv"
    latent_dim: int
    data_shape: tuple = (28, 28, 1)
    covariance: str = "diagonal"
    likelihood: str = "bernoulli"
    beta: float = 1.0
    network_kwargs: dict = dataclasses.field(default_factory=dict)
    epochs: int = 30
    batch_size: int = 128
    learning_rate: float = 1e-3


PRESETS = {
    "mlp_fashion_mnist": Preset(
        "Dense 784-512-256 encoder and mirror decoder, 16-d diagonal posterior, Bernoulli.",
        network="mlp",
        latent_dim=16,
    ),
    "mlp_full_cov_fashion_mnist": Preset(
        "Dense encoder with a full-covariance (Cholesky) 8-d posterior, Bernoulli.",
        network="mlp",
        latent_dim=8,
        covariance="full",
    ),
    "conv_fashion_mnist": Preset(
        "Two stride-2 conv layers (32, 64) and mirror decoder, 16-d posterior, Bernoulli.",
        network="conv",
        latent_dim=16,
        epochs=20,
    ),
}

_BUILDERS = {
    "mlp": (build_mlp_encoder, build_mlp_decoder),
    "conv": (build_conv_encoder, build_conv_decoder),
}


def get_preset(name):
    if name not in PRESETS:
        raise ValueError(f"Unknown preset. Expected one of {sorted(PRESETS)}. Received: {name!r}")
    return PRESETS[name]


def build(name, seed=None, **overrides):
    """Builds the (uncompiled) VAE of a preset; `overrides` replace Preset fields."""
    preset = dataclasses.replace(get_preset(name), **overrides)
    build_encoder, build_decoder = _BUILDERS[preset.network]
    encoder = build_encoder(
        preset.data_shape, preset.latent_dim, covariance=preset.covariance, **preset.network_kwargs
    )
    decoder = build_decoder(preset.latent_dim, preset.data_shape, **preset.network_kwargs)
    return VAE(
        encoder,
        decoder,
        likelihood=preset.likelihood,
        beta=preset.beta,
        covariance=preset.covariance,
        seed=seed,
        name=name,
    )
