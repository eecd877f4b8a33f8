import keras
import numpy as np
import pytest

import kerasvae
from tests.helpers import run_layer_serialization_test, save_and_load, to_numpy


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _conv_valid(x, kernel, bias, stride):
    """Cross-correlation of NHWC `x` with an HWIO kernel, no padding, by loops."""
    kh, kw, _, out = kernel.shape
    rows = (x.shape[1] - kh) // stride + 1
    cols = (x.shape[2] - kw) // stride + 1
    y = np.zeros((x.shape[0], rows, cols, out))
    for i in range(rows):
        for j in range(cols):
            patch = x[:, i * stride : i * stride + kh, j * stride : j * stride + kw, :]
            y[:, i, j, :] = np.tensordot(patch, kernel, axes=([1, 2, 3], [0, 1, 2]))
    return y + bias


@pytest.mark.parametrize("stride", [1, 2])
def test_output_is_one_convolution_gated_by_another(stride):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 7, 7, 3)).astype("float32")
    layer = kerasvae.layers.GatedConv2D(
        4, 3, strides=stride, padding="valid", bias_initializer="random_normal"
    )
    out = to_numpy(layer(x))
    kernel, bias = to_numpy(layer.conv.kernel), to_numpy(layer.conv.bias)
    linear = _conv_valid(x, kernel[..., :4], bias[:4], stride)
    gate = _conv_valid(x, kernel[..., 4:], bias[4:], stride)
    np.testing.assert_allclose(out, linear * _sigmoid(gate), rtol=1e-4, atol=1e-5)
    assert out.shape == ((2, 5, 5, 4) if stride == 1 else (2, 3, 3, 4))
    # Both branches matter: neither the ungated map nor the gate alone matches.
    assert np.abs(out - linear).max() > 0.1 and np.abs(out - _sigmoid(gate)).max() > 0.1


def test_same_padding_keeps_the_size_and_strides_halve_it():
    x = np.zeros((1, 28, 28, 1), "float32")
    assert tuple(kerasvae.layers.GatedConv2D(6, 7)(x).shape) == (1, 28, 28, 6)
    layer = kerasvae.layers.GatedConv2D(6, 3, strides=2)
    assert tuple(layer(x).shape) == (1, 14, 14, 6) == layer.compute_output_shape((1, 28, 28, 1))


def test_activation_applies_to_the_linear_branch_only():
    x = np.random.default_rng(1).normal(size=(3, 4, 4, 2)).astype("float32")
    layer = kerasvae.layers.GatedConv2D(5, 1, activation="relu")
    out = to_numpy(layer(x))
    kernel = to_numpy(layer.conv.kernel)[0, 0]  # a 1x1 convolution is a matrix product per pixel
    expected = np.maximum(x @ kernel[:, :5], 0.0) * _sigmoid(x @ kernel[:, 5:])
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)


def test_kernel_has_pytorchs_default_uniform_bound():
    # PyTorch's Conv2d draws U(-1/sqrt(fan_in), 1/sqrt(fan_in)); fan_in is
    # kernel height x width x input channels, not counting the gate's half.
    layer = kerasvae.layers.GatedConv2D(64, 3)
    layer.build((None, 28, 28, 64))
    kernel = to_numpy(layer.conv.kernel)
    assert kernel.shape == (3, 3, 64, 128)
    bound = 1.0 / np.sqrt(3 * 3 * 64)
    assert np.abs(kernel).max() <= bound
    # A uniform on [-b, b] fills it (max near b) with std b / sqrt(3);
    # He's normal would give 4.2x that std.
    assert np.abs(kernel).max() > 0.99 * bound
    np.testing.assert_allclose(kernel.std(), bound / np.sqrt(3.0), rtol=1e-2)
    np.testing.assert_array_equal(to_numpy(layer.conv.bias), 0.0)


def test_bad_arguments_echo_the_value():
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match=f"filters={bad!r}"):
            kerasvae.layers.GatedConv2D(bad, 3)
    with pytest.raises(ValueError, match="padding='causal'"):
        kerasvae.layers.GatedConv2D(4, 3, padding="causal")


def test_serialization_and_saved_weights(tmp_path):
    layer = kerasvae.layers.GatedConv2D(7, 5, strides=2, activation="tanh")
    revived = run_layer_serialization_test(layer)
    assert (revived.filters, revived.conv.kernel_size, revived.conv.strides) == (7, (5, 5), (2, 2))
    assert revived.get_config()["kernel_initializer"]["config"]["distribution"] == "uniform"
    inputs = keras.Input((8, 8, 1))
    model = keras.Model(inputs, kerasvae.layers.GatedConv2D(3, 3)(inputs))
    x = np.random.default_rng(2).random((2, 8, 8, 1)).astype("float32")
    reloaded = save_and_load(model, str(tmp_path / "gated.keras"))
    np.testing.assert_allclose(to_numpy(reloaded(x)), to_numpy(model(x)), rtol=1e-6)


def test_mixed_precision_computes_in_half_and_keeps_float32_weights():
    layer = kerasvae.layers.GatedConv2D(4, 3, dtype="mixed_bfloat16")
    out = layer(np.ones((1, 8, 8, 2), "float32"))
    assert keras.backend.standardize_dtype(out.dtype) == "bfloat16"
    assert keras.backend.standardize_dtype(layer.conv.kernel.dtype) == "float32"
