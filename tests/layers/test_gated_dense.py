import numpy as np
import pytest

import kerasvae
from tests.helpers import gradients, run_layer_serialization_test, to_numpy


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def test_output_is_the_linear_branch_gated_by_a_sigmoid():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 7)).astype("float32")
    layer = kerasvae.layers.GatedDense(4, bias_initializer="random_normal")
    out = to_numpy(layer(x))
    kernel, bias = (to_numpy(w) for w in (layer.kernel, layer.bias))
    linear = x @ kernel[:, :4] + bias[:4]
    gate = x @ kernel[:, 4:] + bias[4:]
    np.testing.assert_allclose(out, linear * _sigmoid(gate), rtol=1e-5, atol=1e-6)
    # Both branches matter: neither the ungated map nor the gate alone matches.
    assert np.abs(out - linear).max() > 0.1 and np.abs(out - _sigmoid(gate)).max() > 0.1


def test_activation_applies_to_the_linear_branch_only():
    x = np.random.default_rng(1).normal(size=(6, 3)).astype("float32")
    layer = kerasvae.layers.GatedDense(8, activation="relu")
    out = to_numpy(layer(x))
    kernel = to_numpy(layer.kernel)
    expected = np.maximum(x @ kernel[:, :8], 0.0) * _sigmoid(x @ kernel[:, 8:])
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)


def test_kernel_is_he_initialized_without_truncation():
    fan_in, units = 400, 500
    layer = kerasvae.layers.GatedDense(units)
    layer.build((None, fan_in))
    kernel = to_numpy(layer.kernel)
    assert kernel.shape == (fan_in, 2 * units)
    std = np.sqrt(2.0 / fan_in)
    # 400k draws: the sample std is within 0.5% of the truth (its own
    # standard error is 0.11%); Keras' truncated "he_normal" would give
    # 0.88 * std, and Glorot sqrt(2 / (fan_in + fan_out)) 0.53 * std.
    np.testing.assert_allclose(kernel.std(), std, rtol=5e-3)
    assert abs(kernel.mean()) < 5 * std / np.sqrt(kernel.size)
    # An untruncated normal reaches past 2 sigma (4.6% of draws).
    assert 0.03 < np.mean(np.abs(kernel) > 2 * std) < 0.06
    np.testing.assert_array_equal(to_numpy(layer.bias), 0.0)


def test_gradient_matches_finite_differences_of_the_formula():
    layer = kerasvae.layers.GatedDense(3)
    x = np.random.default_rng(2).normal(size=(4, 5))
    layer.build(x.shape)
    kernel, bias = to_numpy(layer.kernel).astype("float64"), to_numpy(layer.bias)

    def f(inputs):
        h = inputs @ kernel + bias
        return (h[:, :3] * _sigmoid(h[:, 3:])).sum()

    (grad,) = gradients(layer, x.astype("float32"))
    eps = 1e-4
    numeric = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        step = np.zeros_like(x)
        step[index] = eps
        numeric[index] = (f(x + step) - f(x - step)) / (2 * eps)
    np.testing.assert_allclose(grad, numeric, rtol=1e-3, atol=1e-4)


def test_bad_units_echo_the_value():
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match=f"units={bad!r}"):
            kerasvae.layers.GatedDense(bad)


def test_serialization():
    revived = run_layer_serialization_test(kerasvae.layers.GatedDense(7, activation="tanh"))
    assert revived.units == 7
    assert revived.get_config()["kernel_initializer"]["config"]["distribution"] == "untruncated_normal"
