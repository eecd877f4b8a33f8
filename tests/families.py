"""Every model family, built tiny: one row per family, so the reliability
tests (distribution, crash safety, bad input) loop over the table.

A family is tested once its class is importable from `kerasvae.models`;
`test_every_family_has_a_row` fails when a family lands without a row here.
"""

import numpy as np

import kerasvae

DATA_SHAPE = (4, 4, 1)
LATENT_DIM = 2
HIDDEN = (8,)
NUM_CLASSES = 3


def _mlp(latent_dim=LATENT_DIM, num_classes=None, data_shape=DATA_SHAPE):
    extra = {} if num_classes is None else {"num_classes": num_classes}
    encoder = kerasvae.networks.build_mlp_encoder(data_shape, latent_dim, hidden_units=HIDDEN, **extra)
    decoder = kerasvae.networks.build_mlp_decoder(latent_dim, data_shape, hidden_units=HIDDEN, **extra)
    return encoder, decoder


def _vae(models, seed, **kwargs):
    return models.VAE(*_mlp(), seed=seed, **kwargs)


def _beta_vae(models, seed, **kwargs):
    # Plain beta-VAE: the capacity objective |mean KL - C| (like free bits) is a
    # non-linear function of the batch mean, so under data parallelism each
    # replica penalizes its own slice's mean and the update differs from one
    # device by design; the capacity form is covered in tests/models/test_beta_vae.py.
    return models.BetaVAE(*_mlp(), beta=4.0, seed=seed, **kwargs)


def _conditional_vae(models, seed, **kwargs):
    return models.ConditionalVAE(*_mlp(num_classes=NUM_CLASSES), num_classes=NUM_CLASSES, seed=seed, **kwargs)


def _iwae(models, seed, **kwargs):
    return models.IWAE(*_mlp(), num_samples=3, seed=seed, **kwargs)


def _vampprior_vae(models, seed, **kwargs):
    return models.VampPriorVAE(*_mlp(), num_components=3, seed=seed, **kwargs)


def _hierarchical_vae(models, seed, **kwargs):
    networks = kerasvae.networks.build_hierarchical_mlp(
        DATA_SHAPE, z1_dim=LATENT_DIM, z2_dim=LATENT_DIM, hidden_units=HIDDEN[0]
    )
    kwargs.setdefault("prior", "standard")
    return models.HierarchicalVAE(**networks, seed=seed, **kwargs)


BUILDERS = {
    "VAE": _vae,
    "BetaVAE": _beta_vae,
    "ConditionalVAE": _conditional_vae,
    "IWAE": _iwae,
    "VampPriorVAE": _vampprior_vae,
    "HierarchicalVAE": _hierarchical_vae,
}


def model_classes():
    """Every public model class of `kerasvae.models` (VAE and its subclasses)."""
    models = kerasvae.models
    names = getattr(models, "__all__", [n for n in dir(models) if not n.startswith("_")])
    return {
        name: getattr(models, name)
        for name in names
        if isinstance(getattr(models, name), type) and issubclass(getattr(models, name), models.VAE)
    }


def available_families():
    """Names of the families present in this checkout that have a row here."""
    return [name for name in BUILDERS if name in model_classes()]


def build(name, seed=0, **kwargs):
    """The tiny model of family `name` (uncompiled)."""
    return BUILDERS[name](kerasvae.models, seed, **kwargs)


def family_data(model, num_examples, seed=0):
    """`(x, y)`: images in [0, 1] for `model`, and labels if it is conditional."""
    rng = np.random.default_rng(seed)
    x = rng.random((num_examples,) + tuple(model.data_shape), dtype=np.float32)
    if model.num_classes is None:
        return x, None
    return x, rng.integers(0, model.num_classes, size=num_examples).astype("int64")
