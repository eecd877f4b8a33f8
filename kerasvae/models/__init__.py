from kerasvae.models.iwae import IWAE
from kerasvae.models.vae import VAE

__all__ = ["IWAE", "VAE"]
