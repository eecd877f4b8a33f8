from kerasvae.layers.cholesky_posterior import CholeskyPosterior
from kerasvae.layers.gated_dense import GatedDense
from kerasvae.layers.gaussian_posterior import GaussianPosterior
from kerasvae.layers.pseudo_inputs import PseudoInputs
from kerasvae.layers.sampling import Sampling

__all__ = ["CholeskyPosterior", "GatedDense", "GaussianPosterior", "PseudoInputs", "Sampling"]
