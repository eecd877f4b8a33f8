from kerasvae.models.beta_vae import BetaVAE
from kerasvae.models.conditional_vae import ConditionalVAE
from kerasvae.models.vae import VAE

__all__ = ["BetaVAE", "ConditionalVAE", "VAE"]
