"""kerasvae: variational autoencoders for Keras 3."""

__version__ = "0.1.0"

from kerasvae import divergences, likelihoods, networks
from kerasvae.layers import CholeskyPosterior, GaussianPosterior, Sampling
from kerasvae.likelihoods import Bernoulli, Gaussian
from kerasvae.models import VAE

__all__ = [
    "Bernoulli",
    "CholeskyPosterior",
    "Gaussian",
    "GaussianPosterior",
    "Sampling",
    "VAE",
    "divergences",
    "likelihoods",
    "networks",
]
