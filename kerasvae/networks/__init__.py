from kerasvae.networks.conv import build_conv_decoder, build_conv_encoder
from kerasvae.networks.mlp import build_mlp_decoder, build_mlp_encoder

__all__ = ["build_conv_decoder", "build_conv_encoder", "build_mlp_decoder", "build_mlp_encoder"]
