from kerasvae.layers.cholesky_posterior import CholeskyPosterior
from kerasvae.layers.gated_conv import GatedConv2D
from kerasvae.layers.gated_dense import GatedDense
from kerasvae.layers.gaussian_posterior import GaussianPosterior
from kerasvae.layers.pseudo_inputs import PseudoInputs
from kerasvae.layers.sampling import Sampling

__all__ = ["CholeskyPosterior", "GatedConv2D", "GatedDense", "GaussianPosterior", "PseudoInputs", "Sampling"]
