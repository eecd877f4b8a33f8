from kerasvae.networks.conv import build_conv_decoder, build_conv_encoder
from kerasvae.networks.gated_mlp import build_gated_mlp_decoder, build_gated_mlp_encoder
from kerasvae.networks.hierarchical import (
    build_hierarchical_conv,
    build_hierarchical_gated_conv,
    build_hierarchical_mlp,
)
from kerasvae.networks.mlp import build_mlp_decoder, build_mlp_encoder

__all__ = [
    "build_conv_decoder",
    "build_conv_encoder",
    "build_gated_mlp_decoder",
    "build_gated_mlp_encoder",
    "build_hierarchical_conv",
    "build_hierarchical_gated_conv",
    "build_hierarchical_mlp",
    "build_mlp_decoder",
    "build_mlp_encoder",
]
