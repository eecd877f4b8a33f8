from kerasvae.models.hierarchical_vae import HierarchicalVAE
from kerasvae.models.vae import VAE
from kerasvae.models.vampprior_vae import VampPriorVAE

__all__ = ["HierarchicalVAE", "VAE", "VampPriorVAE"]
