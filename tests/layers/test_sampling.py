import numpy as np
import pytest
import keras
from keras import ops

import kerasvae
from tests.helpers import gradients, run_layer_serialization_test


def draw(layer, mean, second, **kwargs):
    return ops.convert_to_numpy(layer([ops.convert_to_tensor(mean), ops.convert_to_tensor(second)], **kwargs))


def test_diagonal_draws_have_the_requested_mean_and_variance():
    n, mean, log_var = 100_000, np.array([1.5, -2.0, 0.0], "float32"), np.array([0.0, 1.0, -2.0], "float32")
    z = draw(
        kerasvae.Sampling(seed=1),
        np.broadcast_to(mean, (n, 3)).copy(),
        np.broadcast_to(log_var, (n, 3)).copy(),
    )
    np.testing.assert_allclose(z.mean(0), mean, atol=4 * np.sqrt(np.exp(log_var.max()) / n) + 1e-3)
    np.testing.assert_allclose(z.var(0), np.exp(log_var), rtol=0.02)


def test_full_covariance_draws_have_covariance_l_lt():
    n = 100_000
    tril = np.array([[1.0, 0.0], [0.8, 0.5]], "float32")
    z = draw(
        kerasvae.Sampling(covariance="full", seed=2),
        np.zeros((n, 2), "float32"),
        np.broadcast_to(tril, (n, 2, 2)).copy(),
    )
    np.testing.assert_allclose(np.cov(z.T), tril @ tril.T, atol=0.02)


def test_same_seed_same_draws_and_another_seed_differs():
    mean, log_var = np.zeros((4, 5), "float32"), np.zeros((4, 5), "float32")
    a = draw(kerasvae.Sampling(seed=3), mean, log_var)
    b = draw(kerasvae.Sampling(seed=3), mean, log_var)
    c = draw(kerasvae.Sampling(seed=4), mean, log_var)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    layer = kerasvae.Sampling(seed=3)
    assert not np.allclose(draw(layer, mean, log_var), draw(layer, mean, log_var))


def test_deterministic_returns_the_mean():
    mean = np.arange(6, dtype="float32").reshape(2, 3)
    np.testing.assert_array_equal(
        draw(kerasvae.Sampling(), mean, np.zeros_like(mean), deterministic=True), mean
    )


@pytest.mark.parametrize("shape", [(7,), (2, 7), (2, 3, 7)])
def test_any_rank(shape):
    z = draw(kerasvae.Sampling(seed=0), np.zeros(shape, "float32"), np.zeros(shape, "float32"))
    assert z.shape == shape


def test_reparameterized_gradients_reach_mean_and_log_variance():
    # With a fixed seed the noise eps is the same in both calls, so
    # dz/dmean = 1 and dz/dlog_var = exp(log_var / 2) * eps / 2.
    mean = np.array([[0.3, -1.0]], "float32")
    log_var = np.array([[0.5, -0.7]], "float32")
    z = draw(kerasvae.Sampling(seed=5), mean, log_var)
    eps = (z - mean) / np.exp(0.5 * log_var)
    d_mean, d_log_var = gradients(lambda m, v: kerasvae.Sampling(seed=5)([m, v]), mean, log_var)
    np.testing.assert_allclose(d_mean, np.ones_like(mean), rtol=1e-6)
    np.testing.assert_allclose(d_log_var, 0.5 * np.exp(0.5 * log_var) * eps, rtol=1e-5)


@pytest.mark.parametrize("policy,dtype", [("mixed_float16", "float16"), ("mixed_bfloat16", "bfloat16")])
def test_works_under_mixed_precision_policies(policy, dtype):
    keras.config.set_dtype_policy(policy)
    inputs = keras.Input((8,))
    z_mean, z_log_var = kerasvae.GaussianPosterior(4)(inputs)
    z = kerasvae.Sampling(seed=0)([z_mean, z_log_var])
    model = keras.Model(inputs, z)
    out = model(np.random.rand(5, 8).astype("float32"))
    assert keras.backend.standardize_dtype(out.dtype) == dtype
    assert np.all(np.isfinite(ops.convert_to_numpy(ops.cast(out, "float32"))))


def test_bad_inputs_name_the_shapes():
    layer = kerasvae.Sampling()
    with pytest.raises(ValueError, match=r"z_mean.shape=\(2, 3\), z_log_var.shape=\(2, 4\)"):
        layer([np.zeros((2, 3), "float32"), np.zeros((2, 4), "float32")])
    with pytest.raises(ValueError, match="list of two tensors"):
        layer(np.zeros((2, 3), "float32"))
    with pytest.raises(ValueError, match=r"scale_tril.shape=\(2, 3\)"):
        kerasvae.Sampling(covariance="full")([np.zeros((2, 3), "float32"), np.zeros((2, 3), "float32")])
    with pytest.raises(ValueError, match="covariance='banana'"):
        kerasvae.Sampling(covariance="banana")


def test_serialization_keeps_seed_and_covariance():
    revived = run_layer_serialization_test(kerasvae.Sampling(covariance="full", seed=11, name="s"))
    assert (revived.seed, revived.covariance) == (11, "full")
