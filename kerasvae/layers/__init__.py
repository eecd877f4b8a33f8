from kerasvae.layers.cholesky_posterior import CholeskyPosterior
from kerasvae.layers.gaussian_posterior import GaussianPosterior
from kerasvae.layers.sampling import Sampling

__all__ = ["CholeskyPosterior", "GaussianPosterior", "Sampling"]
