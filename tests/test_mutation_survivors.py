"""Tests that kill the survivors of scripts/mutation_test.py (see tests/MUTATION.md).

Each test guards a number the package computes that no other test pinned down
sharply enough for a planted bug to fail it. References are independent:
NumPy in float64 or tensorflow_probability.
"""

import numpy as np
import pytest
import keras
import tensorflow_probability as tfp

import kerasvae
from kerasvae import divergences
from tests.helpers import to_numpy

tfd = tfp.distributions
RNG = np.random.default_rng(2026_11_28)


def random_tril(shape, k, rng=RNG):
    tril = np.tril(rng.normal(0.0, 0.5, shape + (k, k)), -1)
    idx = np.arange(k)
    tril[..., idx, idx] = rng.uniform(0.3, 2.0, shape + (k,))
    return tril


# === Densities over leading axes: importance sampling evaluates log q(z | x)
# on z of shape (K, batch, latent_dim), so the event axis is the last one
# whatever the rank (divergences.py:199, the sum over the whitened residual).
# As in VAE.log_importance_weights, the posterior is broadcast to (K, batch, ...).
def test_full_normal_log_prob_sums_the_last_axis_under_two_leading_axes(float64):
    draws, batch, k = 4, 3, 2  # batch != k: summing any other axis changes the shape or the value
    mean, tril = RNG.normal(size=(batch, k)), random_tril((batch,), k)
    z = RNG.normal(size=(draws, batch, k))
    stacked_mean = np.broadcast_to(mean, (draws, batch, k)).copy()
    stacked_tril = np.broadcast_to(tril, (draws, batch, k, k)).copy()
    ours = to_numpy(divergences.full_normal_log_prob(z, stacked_mean, stacked_tril))
    expected = tfd.MultivariateNormalTriL(loc=mean, scale_tril=tril).log_prob(z).numpy()
    assert ours.shape == (draws, batch)
    np.testing.assert_allclose(ours, expected, rtol=1e-10)


# === log(a / b) in float32 far below the prior's scale (divergences.py:106).
# For b/2 < a < 3b/2, a - b is exact and log1p((a - b) / b) keeps every digit;
# far from b, a - b is rounded to about eps * b, which is an error of eps * b / a
# in the ratio: 6e-8 / 1e-5 = 6e-3 nats at a posterior scale 1e-5 of the
# prior's. log(a) - log(b) there is accurate to a few ulps of the KL.
def test_kl_full_full_keeps_float32_precision_for_tiny_scale_ratios():
    ratios = np.array([1e-5, 1e-4, 3e-3, 0.3, 1.9])
    prior_scales = np.array([1.0, 0.37, 2.9, 1.3, 0.8])
    tril0 = np.diag(ratios * prior_scales)[None].astype("float32")
    tril1 = np.diag(prior_scales)[None].astype("float32")
    mean = np.zeros((1, len(ratios)), "float32")
    ours = float(to_numpy(divergences.kl_full_full(mean, tril0, mean, tril1))[0])
    r = np.diagonal(tril0[0]).astype(np.float64) / np.diagonal(tril1[0]).astype(np.float64)
    expected = 0.5 * np.sum(r**2 - 1.0 - 2.0 * np.log(r))  # ~ 19.3 nats
    # float32 rounding of the inputs is already in `r`; what is left is the
    # computation's own error, a few ulps (1e-7 relative). The rounded a - b
    # branch is off by ~3e-3 nats (1.5e-4 relative).
    assert abs(ours - expected) < 1e-6 * expected


# === Sampling's symbolic output shape (layers/sampling.py:113): z has the
# shape of z_mean, also when the second input is a (k, k) Cholesky factor.
def test_full_covariance_sampling_in_a_functional_model_has_the_mean_shape():
    k = 3
    mean_in = keras.Input(shape=(k,))
    tril_in = keras.Input(shape=(k, k))
    z = kerasvae.Sampling(covariance="full", seed=0)([mean_in, tril_in])
    assert tuple(z.shape) == (None, k)
    scaled = keras.layers.Dense(1, use_bias=False, kernel_initializer="ones")(z)
    model = keras.Model([mean_in, tril_in], scaled)
    mean = np.arange(2 * k, dtype="float32").reshape(2, k)
    zero_tril = np.zeros((2, k, k), "float32")  # no noise: z = mean
    np.testing.assert_allclose(to_numpy(model([mean, zero_tril])), mean.sum(-1, keepdims=True), rtol=1e-6)


# === kl_full_full over two leading axes (divergences.py:177, the Mahalanobis
# sum): the event axis is the last one whatever the rank.
def test_kl_full_full_sums_the_last_axis_under_two_leading_axes(float64):
    shape, k = (4, 3), 2  # no leading size equals k
    mean0, tril0 = RNG.normal(size=shape + (k,)), random_tril(shape, k)
    mean1, tril1 = RNG.normal(size=shape + (k,)), random_tril(shape, k)
    ours = to_numpy(divergences.kl_full_full(mean0, tril0, mean1, tril1))
    expected = tfd.kl_divergence(
        tfd.MultivariateNormalTriL(loc=mean0, scale_tril=tril0),
        tfd.MultivariateNormalTriL(loc=mean1, scale_tril=tril1),
    ).numpy()
    assert ours.shape == shape
    np.testing.assert_allclose(ours, expected, rtol=1e-9)


# === The importance-sampled estimate (evaluation.py) ===
def exact_ppca_model():
    from tests.test_estimators_exact import PPCA

    ppca = PPCA(orthogonal=True, seed=3)
    return ppca, ppca.vae("diagonal")


def test_chunks_that_do_not_divide_k_still_draw_k_samples():
    # With the exact posterior every weight is p(x), so the estimate is
    # log(n_drawn / K) + log p(x): one draw too many in the last chunk
    # (6 for K = 5) is off by log(6/5) = 0.18 nats; float32 rounding of
    # the terms (~10 nats) leaves below 1e-5 (test_estimators_exact.py).
    ppca, model = exact_ppca_model()
    x = ppca.sample(6, seed=8)
    estimate = kerasvae.evaluation.importance_sampled_log_likelihood(
        model, x, num_samples=5, chunk_size=2, seed=1
    )
    np.testing.assert_allclose(estimate, ppca.log_marginal(x), rtol=0, atol=2e-4)


def imperfect_ppca_model():
    """Weights that vary with the draws, so that each draw shows in the estimate."""
    from tests.test_estimators_exact import PPCA

    ppca = PPCA(orthogonal=True, seed=3)
    sd = np.sqrt(np.diag(ppca.posterior_cov))
    return ppca, ppca.vae("diagonal", mean_shift=0.4 * sd, cov_factor=1.5)


def test_default_chunk_is_the_documented_ten_thousand_latents_per_pass():
    # chunk_size=None: "a pass decodes about 10,000 latents", i.e. 10_000 //
    # batch_size draws per pass; the chunking decides which draws a seed gives.
    from kerasvae.evaluation import importance_sampled_log_likelihood as estimate

    ppca, model = imperfect_ppca_model()
    x = ppca.sample(4, seed=6)
    kwargs = dict(num_samples=15, batch_size=1000, seed=2)
    default = estimate(model, x, **kwargs)  # 10_000 // 1000 = 10 draws, then 5
    np.testing.assert_array_equal(default, estimate(model, x, chunk_size=10, **kwargs))
    # The check can fail: another chunking gives other draws.
    assert not np.array_equal(default, estimate(model, x, chunk_size=15, **kwargs))


def test_evaluate_vae_summary_numbers_match_their_parts():
    # The default seed (0), the standard error from as few as two examples,
    # and the negative ELBO as the sum of its parts (the loss of a beta = 1 VAE).
    from kerasvae.evaluation import importance_sampled_log_likelihood as estimate

    ppca, model = imperfect_ppca_model()
    model.compile(optimizer="adam")
    x = ppca.sample(8, seed=7)
    metrics = kerasvae.evaluation.evaluate_vae(model, x, num_importance_samples=7, nll_examples=2)
    log_px = estimate(model, x[:2], num_samples=7, batch_size=100, seed=0)
    assert metrics["nll_importance_sampled"] == pytest.approx(-log_px.mean(), rel=1e-6)
    assert metrics["nll_standard_error"] == pytest.approx(log_px.std(ddof=1) / np.sqrt(2), rel=1e-6)
    assert metrics["nll_standard_error"] > 0
    # Both parts are several nats here (the reconstruction term ~ 10, the KL ~ 1):
    # dropping either one is off by far more than float32 rounding.
    assert metrics["kl_loss"] > 0.1 and abs(metrics["reconstruction_loss"]) > 1.0
    expected = metrics["reconstruction_loss"] + metrics["kl_loss"]
    assert metrics["negative_elbo"] == pytest.approx(expected, rel=1e-6)
    assert metrics["negative_elbo"] == pytest.approx(metrics["loss"], rel=1e-5)


# === Step logs under MultiWorkerMirroredStrategy (training/tensorflow.py:15):
# Keras reduces each log over the replicas along axis 0, so a log must be a
# one-element vector holding the replica's value. The strategy configures
# collective ops process-wide, so it runs in a fresh process (one worker).
MULTI_WORKER_LOGS = """
import json, os
os.environ.pop("TF_CONFIG", None)
import tensorflow as tf
from kerasvae.training.tensorflow import _step_logs
with tf.distribute.MultiWorkerMirroredStrategy().scope():
    logs = _step_logs({"loss": tf.constant(1.5), "kl_loss": tf.constant(0.25)})
print(json.dumps({k: [list(v.shape), v.numpy().tolist()] for k, v in logs.items()}))
"""


@pytest.mark.requires_tensorflow
def test_multi_worker_step_logs_are_one_element_vectors_of_the_value():
    import json
    import os
    import subprocess
    import sys

    import kerasvae as package

    root = os.path.dirname(os.path.dirname(os.path.abspath(package.__file__)))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND="tensorflow")
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    result = subprocess.run(
        [sys.executable, "-c", MULTI_WORKER_LOGS], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    logs = json.loads(result.stdout.strip().splitlines()[-1])
    assert logs == {"loss": [[1], [1.5]], "kl_loss": [[1], [0.25]]}


# === log(1 - exp(-d)) on all three branches (likelihoods.py:202-204): the
# width of a discretized-logistic bin, against NumPy's float64 expm1. Below
# d = 1e-5 the series log d - d/2 is off by d^2/24 (< 5e-12 nats, 4e-13
# relative); a wrong sign of its d/2 term is off by d (5e-8 relative at the
# smallest d here), and a wrong branch gives NaN or the wrong tail.
def test_log1mexp_matches_numpy_on_every_branch(float64):
    from kerasvae.likelihoods import log1mexp

    d = np.array([1e-6, 5e-6, 9.9e-6, 2e-5, 1e-3, 0.1, 0.6, 0.7, 2.0, 40.0, 800.0])
    ours = to_numpy(log1mexp(d, np.log(d)))
    # atol: for large d the reference rounds 1 - exp(-40) = 1 - 4e-18 to 1.
    np.testing.assert_allclose(ours, np.log(-np.expm1(-d)), rtol=1e-11, atol=1e-15)
