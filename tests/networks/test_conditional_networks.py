import numpy as np
import pytest
import keras

import kerasvae
from tests.helpers import DATA_SHAPE, random_images, to_numpy

NUM_CLASSES = 3


def test_defaults_are_unconditional_and_unchanged():
    for model in (
        kerasvae.networks.build_mlp_encoder(DATA_SHAPE, 2, hidden_units=(8,)),
        kerasvae.networks.build_conv_encoder(DATA_SHAPE, 2, filters=(4,), dense_units=8),
    ):
        assert [t.name for t in model.inputs] == ["x"]
        assert not any("label" in layer.name for layer in model.layers)
    for model in (
        kerasvae.networks.build_mlp_decoder(2, DATA_SHAPE, hidden_units=(8,)),
        kerasvae.networks.build_conv_decoder(2, DATA_SHAPE, filters=(4,), dense_units=8),
    ):
        assert [t.name for t in model.inputs] == ["z"]
        assert not any("label" in layer.name for layer in model.layers)


@pytest.mark.parametrize("network", ["mlp", "conv"])
def test_conditional_networks_take_a_one_hot_label_second(network):
    kwargs = {"hidden_units": (8,)} if network == "mlp" else {"filters": (4,), "dense_units": 8}
    encoder = getattr(kerasvae.networks, f"build_{network}_encoder")(
        DATA_SHAPE, 2, num_classes=NUM_CLASSES, **kwargs
    )
    decoder = getattr(kerasvae.networks, f"build_{network}_decoder")(
        2, DATA_SHAPE, num_classes=NUM_CLASSES, num_outputs=2, **kwargs
    )
    assert [t.name for t in encoder.inputs] == ["x", "label_onehot"]
    assert [t.name for t in decoder.inputs] == ["z", "label_onehot"]
    assert tuple(encoder.inputs[1].shape) == tuple(decoder.inputs[1].shape) == (None, NUM_CLASSES)
    onehot = np.eye(NUM_CLASSES, dtype="float32")[[0, 2]]
    mean, log_var = encoder([random_images(2), onehot])
    assert tuple(mean.shape) == tuple(log_var.shape) == (2, 2)
    outputs = decoder([np.zeros((2, 2), "float32"), onehot])
    assert [tuple(o.shape) for o in outputs] == [(2,) + DATA_SHAPE] * 2


def test_conv_encoder_broadcasts_the_label_as_constant_channels():
    encoder = kerasvae.networks.build_conv_encoder(
        DATA_SHAPE, 2, filters=(4,), dense_units=8, num_classes=NUM_CLASSES
    )
    assert tuple(encoder.get_layer("conv_0").kernel.shape) == (3, 3, 1 + NUM_CLASSES, 4)
    stacked = keras.Model(encoder.inputs, encoder.get_layer("concat_label").output)
    x, onehot = random_images(2), np.eye(NUM_CLASSES, dtype="float32")[[1, 2]]
    planes = to_numpy(stacked([x, onehot]))
    np.testing.assert_array_equal(planes[..., :1], x)
    np.testing.assert_array_equal(
        planes[..., 1:], np.broadcast_to(onehot[:, None, None, :], (2, 28, 28, NUM_CLASSES))
    )


def test_bad_num_classes_names_the_value():
    for build, args in (
        (kerasvae.networks.build_mlp_encoder, (DATA_SHAPE, 2)),
        (kerasvae.networks.build_mlp_decoder, (2, DATA_SHAPE)),
        (kerasvae.networks.build_conv_encoder, (DATA_SHAPE, 2)),
        (kerasvae.networks.build_conv_decoder, (2, DATA_SHAPE)),
    ):
        with pytest.raises(ValueError, match="num_classes=0"):
            build(*args, num_classes=0)
        with pytest.raises(ValueError, match="num_classes=2.5"):
            build(*args, num_classes=2.5)
