import numpy as np
import pytest

import kerasvae
from tests.helpers import run_layer_serialization_test, to_numpy

SHAPE = (6, 5, 1)


def _images(n, seed=0):
    return np.random.default_rng(seed).random((n,) + SHAPE)


def test_normal_init_draws_the_raw_weights_and_squashes_them():
    layer = kerasvae.layers.PseudoInputs(400, (28, 28, 1), mean=-0.05, stddev=0.01)
    raw = to_numpy(layer.raw)
    assert raw.shape == (400, 28, 28, 1)
    # 313,600 draws: mean and std within a few standard errors of (-0.05, 0.01).
    assert abs(raw.mean() + 0.05) < 1e-4 and abs(raw.std() - 0.01) < 1e-4
    u = to_numpy(layer(None))
    np.testing.assert_allclose(u, 1.0 / (1.0 + np.exp(-raw)), rtol=1e-6)
    assert tuple(layer.compute_output_shape()) == (400, 28, 28, 1)


@pytest.mark.parametrize("activation", ["sigmoid", "hardtanh", "linear"])
def test_array_init_sets_the_pseudo_inputs_to_the_images(activation):
    images = _images(4)
    images[0, 0, 0, 0], images[1, 0, 0, 0] = 0.0, 1.0  # black and white pixels
    layer = kerasvae.layers.PseudoInputs(4, SHAPE, init=images, activation=activation)
    u = to_numpy(layer(None))
    # The sigmoid keeps pixels 1e-3 inside (0, 1) so its logit stays finite.
    np.testing.assert_allclose(u, images, atol=1.001e-3 if activation == "sigmoid" else 1e-6)
    assert np.all(np.isfinite(to_numpy(layer.raw)))


def test_activations_map_the_raw_weights_into_the_data_range():
    raw = np.linspace(-3, 3, np.prod((2,) + SHAPE)).reshape((2,) + SHAPE)
    for activation, expected in (
        ("sigmoid", 1.0 / (1.0 + np.exp(-raw))),
        ("hardtanh", np.clip(raw, 0.0, 1.0)),
        ("linear", raw),
    ):
        layer = kerasvae.layers.PseudoInputs(2, SHAPE, activation=activation)
        layer.raw.assign(raw.astype("float32"))
        np.testing.assert_allclose(to_numpy(layer(None)), expected, rtol=1e-6, atol=1e-7)


def test_pseudo_inputs_are_trainable_weights():
    layer = kerasvae.layers.PseudoInputs(3, SHAPE)
    assert [w.shape for w in layer.trainable_weights] == [(3,) + SHAPE]


def test_bad_arguments_echo_the_value():
    with pytest.raises(ValueError, match=r"\(3, 6, 5, 1\).*data shape \(6, 5, 1\).*init.shape=\(3, 30\)"):
        kerasvae.layers.PseudoInputs(3, SHAPE, init=np.zeros((3, 30)))
    with pytest.raises(ValueError, match=r"\[0, 1\].*Received values in \[0, 255\]"):
        kerasvae.layers.PseudoInputs(2, SHAPE, init=np.linspace(0, 255, 60).reshape((2,) + SHAPE))
    with pytest.raises(ValueError, match="num_components=0"):
        kerasvae.layers.PseudoInputs(0, SHAPE)
    with pytest.raises(ValueError, match="activation='relu'"):
        kerasvae.layers.PseudoInputs(2, SHAPE, activation="relu")
    with pytest.raises(ValueError, match="init='uniform'"):
        kerasvae.layers.PseudoInputs(2, SHAPE, init="uniform")
    with pytest.raises(ValueError, match=r"data_shape=\(0, 3\)"):
        kerasvae.layers.PseudoInputs(2, (0, 3))
    nan_images = _images(2)
    nan_images[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="finite"):
        kerasvae.layers.PseudoInputs(2, SHAPE, init=nan_images)


def test_serialization():
    layer = kerasvae.layers.PseudoInputs(3, SHAPE, init=_images(3), activation="hardtanh")
    revived = run_layer_serialization_test(layer)
    assert revived.num_components == 3 and revived.data_shape == SHAPE
    assert revived.activation == "hardtanh"
