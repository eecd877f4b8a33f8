"""The model zoo: a table from a preset name to its family, networks and defaults.

Tests loop over `PRESETS`, so a new entry is tested by adding one row. Every
preset builds for any image shape whose sides divide by 4 (28x28x1, 32x32x3,
64x64x3, ...): `build(name, data_shape=(32, 32, 3))`.

```python
for name in kerasvae.zoo.list_presets():
    print(name, kerasvae.zoo.get_preset(name).family)
model = kerasvae.zoo.build("vampprior_mlp", data_shape=(28, 28, 1), latent_dim=40)
```
"""

import dataclasses

from kerasvae import likelihoods
from kerasvae.models.beta_vae import BetaVAE
from kerasvae.models.conditional_vae import ConditionalVAE
from kerasvae.models.hierarchical_vae import HierarchicalVAE
from kerasvae.models.iwae import IWAE
from kerasvae.models.vae import VAE
from kerasvae.models.vampprior_vae import VampPriorVAE
from kerasvae.networks.conv import build_conv_decoder, build_conv_encoder
from kerasvae.networks.gated_mlp import build_gated_mlp_decoder, build_gated_mlp_encoder
from kerasvae.networks.hierarchical import (
    build_hierarchical_conv,
    build_hierarchical_gated_conv,
    build_hierarchical_mlp,
)
from kerasvae.networks.mlp import build_mlp_decoder, build_mlp_encoder

FAMILIES = {
    "vae": VAE,
    "beta_vae": BetaVAE,
    "conditional_vae": ConditionalVAE,
    "iwae": IWAE,
    "vampprior_vae": VampPriorVAE,
    "hierarchical_vae": HierarchicalVAE,
}

NETWORKS = ("mlp", "gated_mlp", "conv", "gated_conv")

REFERENCES = {
    "vae": "Kingma and Welling, Auto-Encoding Variational Bayes, ICLR 2014",
    "beta_vae": "Higgins et al., beta-VAE, ICLR 2017; Burgess et al., Understanding "
    "disentangling in beta-VAE, 2018 (capacity)",
    "conditional_vae": "Sohn et al., Learning Structured Output Representation using Deep "
    "Conditional Generative Models, NeurIPS 2015",
    "iwae": "Burda et al., Importance Weighted Autoencoders, ICLR 2016; Tucker et al., "
    "Doubly Reparameterized Gradient Estimators, ICLR 2019 (DReG)",
    "vampprior_vae": "Tomczak and Welling, VAE with a VampPrior, AISTATS 2018",
    "hierarchical_vae": "Tomczak and Welling, VAE with a VampPrior, AISTATS 2018 (HVAE)",
}


@dataclasses.dataclass(frozen=True)
class Preset:
    """One zoo entry: the family, how to build its networks and how to train it.

    For the hierarchical family `latent_dim` is the size of each of its two
    levels (z1 and z2).
    """

    description: str
    family: str
    network: str
    latent_dim: int
    data_shape: tuple = (28, 28, 1)
    covariance: str = "diagonal"
    likelihood: str = "bernoulli"
    model_kwargs: dict = dataclasses.field(default_factory=dict)
    network_kwargs: dict = dataclasses.field(default_factory=dict)
    epochs: int = 30
    batch_size: int = 128
    learning_rate: float = 1e-3

    @property
    def reference(self):
        return REFERENCES[self.family]


_PUBLISHED_MLP = {"hidden_units": (300, 300)}

PRESETS = {
    # === Plain VAE ===
    "mlp_fashion_mnist": Preset(
        "Dense 784-512-256 encoder and mirror decoder, 16-d diagonal posterior, Bernoulli.",
        family="vae",
        network="mlp",
        latent_dim=16,
    ),
    "mlp_full_cov_fashion_mnist": Preset(
        "Dense encoder with a full-covariance (Cholesky) 8-d posterior, Bernoulli.",
        family="vae",
        network="mlp",
        latent_dim=8,
        covariance="full",
    ),
    "conv_fashion_mnist": Preset(
        "Two stride-2 conv layers (32, 64) and mirror decoder, 16-d posterior, Bernoulli.",
        family="vae",
        network="conv",
        latent_dim=16,
        epochs=20,
    ),
    "vae_gated_mlp": Preset(
        "The published MLP VAE: two gated dense layers of 300, 40-d posterior with the "
        "log-variance clamped to [-6, 2], Bernoulli (the standard-prior row of the table).",
        family="vae",
        network="gated_mlp",
        latent_dim=40,
        network_kwargs=_PUBLISHED_MLP,
        batch_size=100,
        learning_rate=5e-4,
    ),
    # === beta-VAE ===
    "beta_vae_mlp": Preset(
        "beta-VAE with beta = 4 on the dense networks, 10-d posterior.",
        family="beta_vae",
        network="mlp",
        latent_dim=10,
        model_kwargs={"beta": 4.0},
    ),
    "beta_vae_conv": Preset(
        "beta-VAE with beta = 4 on the conv networks, 10-d posterior.",
        family="beta_vae",
        network="conv",
        latent_dim=10,
        model_kwargs={"beta": 4.0},
        epochs=20,
    ),
    "capacity_vae_conv": Preset(
        "Capacity-controlled beta-VAE (gamma = 1000, C raised to 25 nats over 100k steps), "
        "conv networks, 10-d posterior.",
        family="beta_vae",
        network="conv",
        latent_dim=10,
        model_kwargs={"beta": 1.0, "gamma": 1000.0, "max_capacity": 25.0, "capacity_steps": 100_000},
        epochs=20,
    ),
    # === Conditional VAE ===
    "cvae_mlp": Preset(
        "Conditional VAE: the one-hot class enters the dense encoder and decoder, 16-d posterior.",
        family="conditional_vae",
        network="mlp",
        latent_dim=16,
        model_kwargs={"num_classes": 10},
    ),
    "cvae_conv": Preset(
        "Conditional VAE on the conv networks (class planes beside the image, one-hot beside z).",
        family="conditional_vae",
        network="conv",
        latent_dim=16,
        model_kwargs={"num_classes": 10},
        epochs=20,
    ),
    # === IWAE ===
    "iwae_mlp": Preset(
        "IWAE with K = 5 importance samples on the published gated MLP, 40-d posterior.",
        family="iwae",
        network="gated_mlp",
        latent_dim=40,
        model_kwargs={"num_samples": 5},
        network_kwargs=_PUBLISHED_MLP,
        batch_size=100,
        learning_rate=5e-4,
    ),
    "iwae_dreg_mlp": Preset(
        "IWAE, K = 5, trained with the doubly reparameterized gradient (DReG), gated MLP.",
        family="iwae",
        network="gated_mlp",
        latent_dim=40,
        model_kwargs={"num_samples": 5, "gradient_estimator": "dreg"},
        network_kwargs=_PUBLISHED_MLP,
        batch_size=100,
        learning_rate=5e-4,
    ),
    "iwae_conv": Preset(
        "IWAE with K = 5 on the conv networks, 16-d posterior.",
        family="iwae",
        network="conv",
        latent_dim=16,
        model_kwargs={"num_samples": 5},
        epochs=20,
    ),
    # === VampPrior ===
    "vampprior_mlp": Preset(
        "The published VampPrior VAE: gated MLP 300x2, 40-d posterior, 500 pseudo-inputs.",
        family="vampprior_vae",
        network="gated_mlp",
        latent_dim=40,
        model_kwargs={"num_components": 500},
        network_kwargs=_PUBLISHED_MLP,
        batch_size=100,
        learning_rate=5e-4,
    ),
    "vampprior_conv": Preset(
        "VampPrior VAE on the conv networks, 16-d posterior, 500 pseudo-inputs.",
        family="vampprior_vae",
        network="conv",
        latent_dim=16,
        model_kwargs={"num_components": 500},
        epochs=20,
    ),
    # === Two-level hierarchical ===
    "hvae_mlp": Preset(
        "The published two-level HVAE with a VampPrior on z2: gated MLP 300, z1 and z2 40-d each.",
        family="hierarchical_vae",
        network="gated_mlp",
        latent_dim=40,
        model_kwargs={"prior": "vampprior", "num_components": 500},
        batch_size=100,
        learning_rate=5e-4,
    ),
    "hvae_conv": Preset(
        "Two-level HVAE with a VampPrior on z2, conv feature stacks, z1 and z2 40-d each.",
        family="hierarchical_vae",
        network="conv",
        latent_dim=40,
        model_kwargs={"prior": "vampprior", "num_components": 500},
        batch_size=100,
        learning_rate=5e-4,
    ),
    "hvae_gated_conv": Preset(
        "The published convolutional two-level HVAE with a VampPrior on z2: gated convolutions, "
        "z1 and z2 40-d each.",
        family="hierarchical_vae",
        network="gated_conv",
        latent_dim=40,
        model_kwargs={"prior": "vampprior", "num_components": 500},
        batch_size=100,
        learning_rate=5e-4,
    ),
}


def list_presets(family=None):
    """Names of the presets, optionally of one family."""
    if family is not None and family not in FAMILIES:
        raise ValueError(f"Unknown family. Expected one of {sorted(FAMILIES)}. Received: family={family!r}")
    return sorted(name for name, p in PRESETS.items() if family is None or p.family == family)


def get_preset(name):
    if name not in PRESETS:
        raise ValueError(f"Unknown preset. Expected one of {sorted(PRESETS)}. Received: {name!r}")
    return PRESETS[name]


def _check_data_shape(data_shape):
    shape = tuple(data_shape)
    if (
        len(shape) != 3
        or not all(isinstance(d, int) and d > 0 for d in shape)
        or shape[0] % 4
        or shape[1] % 4
    ):
        raise ValueError(
            "data_shape must be (height, width, channels) with height and width divisible "
            f"by 4. Received: data_shape={data_shape!r}"
        )
    return shape


def _flat_networks(preset, data_shape, latent_dim, num_outputs, num_classes):
    kwargs = dict(preset.network_kwargs)
    if preset.network == "gated_mlp":
        if num_classes is not None:
            raise ValueError(f"The gated MLP has no conditional form. Received: num_classes={num_classes}")
        encoder = build_gated_mlp_encoder(data_shape, latent_dim, covariance=preset.covariance, **kwargs)
        decoder = build_gated_mlp_decoder(latent_dim, data_shape, num_outputs=num_outputs, **kwargs)
        return encoder, decoder
    build_encoder, build_decoder = {
        "mlp": (build_mlp_encoder, build_mlp_decoder),
        "conv": (build_conv_encoder, build_conv_decoder),
    }[preset.network]
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    encoder = build_encoder(data_shape, latent_dim, covariance=preset.covariance, **kwargs)
    decoder = build_decoder(latent_dim, data_shape, num_outputs=num_outputs, **kwargs)
    return encoder, decoder


def build(name, data_shape=None, latent_dim=None, seed=None, **model_kwargs):
    """Builds the (uncompiled) model of a preset.

    Args:
        name: str. A preset name (`list_presets()`).
        data_shape: tuple or None. Image shape `(height, width, channels)`
            with sides divisible by 4; the preset's (28, 28, 1) by default.
        latent_dim: int or None. Overrides the preset's latent size.
        seed: int or None. Seed of the model's sampling.
        **model_kwargs: override the family's constructor arguments (e.g.
            `beta`, `kl_schedule`, `free_bits`, `num_samples`).
    """
    preset = get_preset(name)
    data_shape = _check_data_shape(data_shape or preset.data_shape)
    latent_dim = preset.latent_dim if latent_dim is None else latent_dim
    if isinstance(latent_dim, bool) or not isinstance(latent_dim, int) or latent_dim <= 0:
        raise ValueError(f"latent_dim must be a positive integer. Received: latent_dim={latent_dim!r}")
    kwargs = {"likelihood": preset.likelihood, **preset.model_kwargs, **model_kwargs}
    likelihood = likelihoods.get(kwargs["likelihood"])
    num_outputs = getattr(likelihood, "num_decoder_outputs", 1)
    family = FAMILIES[preset.family]
    if preset.family == "hierarchical_vae":
        build_networks = {
            "gated_mlp": build_hierarchical_mlp,
            "conv": build_hierarchical_conv,
            "gated_conv": build_hierarchical_gated_conv,
        }[preset.network]
        networks = build_networks(
            data_shape, z1_dim=latent_dim, z2_dim=latent_dim, num_outputs=num_outputs, **preset.network_kwargs
        )
        return family(**networks, seed=seed, name=name, **kwargs)
    encoder, decoder = _flat_networks(preset, data_shape, latent_dim, num_outputs, kwargs.get("num_classes"))
    return family(encoder, decoder, covariance=preset.covariance, seed=seed, name=name, **kwargs)
