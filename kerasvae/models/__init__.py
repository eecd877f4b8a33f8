from kerasvae.models.beta_vae import BetaVAE
from kerasvae.models.conditional_vae import ConditionalVAE
from kerasvae.models.hierarchical_vae import HierarchicalVAE
from kerasvae.models.iwae import IWAE
from kerasvae.models.vae import VAE
from kerasvae.models.vampprior_vae import VampPriorVAE

__all__ = ["BetaVAE", "ConditionalVAE", "HierarchicalVAE", "IWAE", "VAE", "VampPriorVAE"]
