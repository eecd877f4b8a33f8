import numpy as np
import pytest
from keras import ops

import kerasvae
from kerasvae import networks
from tests.helpers import conv_case, gradients, to_numpy


def test_published_mlp_has_the_papers_layers_and_sizes():
    encoder = networks.build_gated_mlp_encoder((28, 28, 1))
    decoder = networks.build_gated_mlp_decoder(40, (28, 28, 1))
    gated = [l for l in encoder.layers if isinstance(l, kerasvae.layers.GatedDense)]
    assert [l.units for l in gated] == [300, 300]
    assert [tuple(t.shape) for t in encoder.outputs] == [(None, 40), (None, 40)]
    # 784 -> gated 300 -> gated 300 -> (mean, log-variance) of 40: two
    # weight matrices per gated layer.
    expected = (784 * 600 + 600) + (300 * 600 + 600) + 2 * (300 * 40 + 40)
    assert encoder.count_params() == expected
    assert decoder.count_params() == (40 * 600 + 600) + (300 * 600 + 600) + (300 * 784 + 784)
    assert tuple(decoder.outputs[0].shape) == (None, 28, 28, 1)


def test_log_variance_head_clips_like_hardtanh():
    """hardtanh(min=-6, max=2): identity inside, constant outside, no gradient outside."""
    encoder = networks.build_gated_mlp_encoder((4,), latent_dim=3, hidden_units=(5,))
    head = encoder.get_layer("posterior")
    assert (head.log_var_min, head.log_var_max) == (-6.0, 2.0)
    # Features that push the raw log-variance well past both ends.
    features = np.random.default_rng(0).normal(size=(64, 5)).astype("float32") * 40.0
    raw = to_numpy(head.log_var_dense(features))
    assert raw.min() < -6.0 and raw.max() > 2.0 and np.any((raw > -6) & (raw < 2))
    _, log_var = head(features)
    np.testing.assert_allclose(to_numpy(log_var), np.clip(raw, -6.0, 2.0), rtol=1e-6, atol=1e-6)
    (grad,) = gradients(lambda f: head(f)[1][:, 0], features)
    inside = (raw[:, 0] > -6.0) & (raw[:, 0] < 2.0)
    kernel = to_numpy(head.log_var_dense.kernel)[:, 0]
    np.testing.assert_allclose(grad[inside], np.broadcast_to(kernel, grad[inside].shape), rtol=1e-5)
    np.testing.assert_array_equal(grad[~inside], 0.0)


SMALL_WIDTHS = {
    "mlp": {},
    "conv": {"filters": (4, 4)},
    "gated_conv": {"filters": (4, 4), "feature_channels": 2, "decoder_filters": 4, "decoder_layers": 2},
}


@pytest.mark.parametrize("shape", [(28, 28, 1), (32, 32, 3), (64, 64, 3)])
@pytest.mark.parametrize("builder", ["mlp", conv_case(), conv_case("gated_conv")])
def test_hierarchical_networks_build_for_sides_divisible_by_four(shape, builder):
    build = getattr(networks, f"build_hierarchical_{builder}")
    nets = build(shape, z1_dim=3, z2_dim=2, hidden_units=8, **SMALL_WIDTHS[builder])
    x = np.random.default_rng(0).random((2,) + shape).astype("float32")
    z2_mean, z2_log_var = nets["encoder"](x)
    assert tuple(z2_mean.shape) == tuple(z2_log_var.shape) == (2, 2)
    z1_mean, _ = nets["z1_encoder"]([ops.convert_to_tensor(x), z2_mean])
    assert tuple(z1_mean.shape) == (2, 3)
    p_mean, _ = nets["z1_prior"](z2_mean)
    assert tuple(p_mean.shape) == (2, 3)
    assert tuple(nets["decoder"]([z1_mean, z2_mean]).shape) == (2,) + shape


def test_published_gated_conv_hvae_has_the_papers_layers_and_sizes():
    nets = networks.build_hierarchical_gated_conv((28, 28, 1))

    def gated_conv(cin, cout, k):
        return 2 * (cin * k * k * cout + cout)

    def gated_dense(n_in, n_out):
        return 2 * (n_in * n_out + n_out)

    heads = 2 * (300 * 40 + 40)  # mean and log-variance of a 40-d latent from 300 features
    features = 6 * 7 * 7  # the encoders' last maps, flattened: 294 as published
    stack_z2 = gated_conv(1, 32, 7) + gated_conv(32, 32, 3) + gated_conv(32, 64, 5) + gated_conv(64, 64, 3)
    stack_z1 = gated_conv(1, 32, 3) + gated_conv(32, 32, 3) + gated_conv(32, 64, 3) + gated_conv(64, 64, 3)
    last = gated_conv(64, 6, 3)
    assert nets["encoder"].count_params() == stack_z2 + last + 2 * (features * 40 + 40)
    assert nets["z1_encoder"].count_params() == (
        stack_z1 + last + gated_dense(40, features) + gated_dense(2 * features, 300) + heads
    )
    assert nets["z1_prior"].count_params() == gated_dense(40, 300) + gated_dense(300, 300) + heads
    assert nets["decoder"].count_params() == (
        2 * gated_dense(40, 300) + gated_dense(600, 784) + gated_conv(1, 64, 3) + 3 * gated_conv(64, 64, 3)
        + (64 * 1 + 1)
    )

    def count(model):
        return sum(isinstance(l, kerasvae.layers.GatedConv2D) for l in model.layers)

    assert [count(nets[k]) for k in ("encoder", "z1_encoder", "z1_prior", "decoder")] == [5, 5, 0, 4]
    assert tuple(nets["encoder"].get_layer("q_z2_flatten").output.shape) == (None, features)
    assert tuple(nets["decoder"].outputs[0].shape) == (None, 28, 28, 1)
    # The decoder's convolutions run at full resolution, as published.
    assert tuple(nets["decoder"].get_layer("p_x_gated_conv_3").output.shape) == (None, 28, 28, 64)
    # Dense layers He-initialized (normal), convolutions PyTorch's uniform, as published.
    layers = [l for m in nets.values() for l in m.layers]
    convs = [l.conv for l in layers if isinstance(l, kerasvae.layers.GatedConv2D)]
    convs.append(nets["decoder"].get_layer("logits_or_mean"))
    dense = [l for l in layers if isinstance(l, kerasvae.layers.GatedDense)]
    assert {c.kernel_initializer.get_config()["distribution"] for c in convs} == {"uniform"}
    assert {c.kernel_initializer.get_config()["scale"] for c in convs} == {1.0 / 3.0}
    assert {d.kernel_initializer.get_config()["distribution"] for d in dense} == {"untruncated_normal"}


def test_hierarchical_mlp_is_gated_or_relu():
    gated = networks.build_hierarchical_mlp((8, 8, 1), hidden_units=6)
    plain = networks.build_hierarchical_mlp((8, 8, 1), hidden_units=6, gated=False)

    def count(nets):
        return sum(isinstance(l, kerasvae.layers.GatedDense) for m in nets.values() for l in m.layers)

    # q(z2|x): 2, q(z1|x,z2): 3, p(z1|z2): 2, p(x|z1,z2): 3.
    assert count(gated) == 10 and count(plain) == 0


def test_bad_shapes_are_refused_with_the_value():
    with pytest.raises(ValueError, match=r"divisible by 4.*data_shape=\(30, 30, 1\)"):
        networks.build_hierarchical_conv((30, 30, 1))
    with pytest.raises(ValueError, match=r"divisible by 4.*data_shape=\(30, 30, 1\)"):
        networks.build_hierarchical_gated_conv((30, 30, 1))
    with pytest.raises(ValueError, match=r"two widths.*filters=\(32,\)"):
        networks.build_hierarchical_gated_conv((28, 28, 1), filters=(32,))
    with pytest.raises(ValueError, match="decoder_layers=0"):
        networks.build_hierarchical_gated_conv((28, 28, 1), decoder_layers=0)
    with pytest.raises(ValueError, match="z1_dim=0"):
        networks.build_hierarchical_mlp((28, 28, 1), z1_dim=0)
    with pytest.raises(ValueError, match="hidden_units"):
        networks.build_gated_mlp_encoder((28, 28, 1), hidden_units=())
    with pytest.raises(ValueError, match="num_outputs=3"):
        networks.build_gated_mlp_decoder(4, (28, 28, 1), num_outputs=3)
