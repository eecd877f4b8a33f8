"""kerasvae: variational autoencoders for Keras 3."""

__version__ = "0.1.0"

# The command line picks the backend and silences TensorFlow's start-up before
# Keras is imported; a no-op when kerasvae is imported by a program.
from kerasvae import _startup  # noqa: E402

_startup.prepare_command_line()

from kerasvae import (
    callbacks,
    data,
    divergences,
    evaluation,
    likelihoods,
    networks,
    pretrained,
    schedules,
    zoo,
)
from kerasvae.layers import CholeskyPosterior, GaussianPosterior, Sampling
from kerasvae.likelihoods import Bernoulli, DiscretizedLogistic, Gaussian
from kerasvae.models import IWAE, VAE, BetaVAE, ConditionalVAE, HierarchicalVAE, VampPriorVAE


def export_saved_model(model, base_path, version=None, overwrite=False):
    """Exports `model` to `<base_path>/<version>/` for TF Serving.

    See `kerasvae.export.export_saved_model`; imported on first use so that
    `import kerasvae` stays light on the JAX backend.
    """
    from kerasvae.export import export_saved_model as _export

    return _export(model, base_path, version=version, overwrite=overwrite)


__all__ = [
    "Bernoulli",
    "BetaVAE",
    "ConditionalVAE",
    "DiscretizedLogistic",
    "HierarchicalVAE",
    "IWAE",
    "VampPriorVAE",
    "CholeskyPosterior",
    "Gaussian",
    "GaussianPosterior",
    "Sampling",
    "VAE",
    "callbacks",
    "data",
    "divergences",
    "evaluation",
    "export_saved_model",
    "likelihoods",
    "networks",
    "pretrained",
    "schedules",
    "zoo",
]
