from kerasvae.models.beta_vae import BetaVAE
from kerasvae.models.vae import VAE

__all__ = ["BetaVAE", "VAE"]
