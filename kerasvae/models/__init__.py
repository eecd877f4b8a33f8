from kerasvae.models.vae import VAE

__all__ = ["VAE"]
