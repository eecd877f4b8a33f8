"""KL closed forms, three ways: NumPy, tensorflow_probability, Monte Carlo."""

import numpy as np
import pytest
import tensorflow_probability as tfp

from kerasvae import divergences
from tests.helpers import gradients, to_numpy as np_

tfd = tfp.distributions
RNG = np.random.default_rng(1234)

# The math is checked in float64 (float32 near the prior: test_divergences_precision.py).
pytestmark = pytest.mark.usefixtures("float64")


def random_diag(n, k, log_var_range=(-3.0, 3.0), rng=RNG):
    mean = rng.normal(0.0, 2.0, (n, k))
    log_var = rng.uniform(*log_var_range, (n, k))
    return mean, log_var


def random_tril(n, k, rng=RNG, diag_range=(0.05, 3.0)):
    tril = np.tril(rng.normal(0.0, 0.7, (n, k, k)), -1)
    idx = np.arange(k)
    tril[:, idx, idx] = rng.uniform(*diag_range, (n, k))
    return tril


def tfp_diag(mean, log_var):
    return tfd.MultivariateNormalDiag(loc=mean, scale_diag=np.exp(0.5 * log_var))


def tfp_tril(mean, tril):
    return tfd.MultivariateNormalTriL(loc=mean, scale_tril=tril)


def tfp_kl(p, q):
    return tfd.kl_divergence(p, q).numpy()


# === Diagonal vs N(0, I) ===
@pytest.mark.parametrize("log_var_range", [(-3.0, 3.0), (-20.0, -10.0), (10.0, 20.0)])
def test_kl_diagonal_standard_matches_numpy_and_tfp(log_var_range):
    mean, log_var = random_diag(200, 7, log_var_range)
    ours = np_(divergences.kl_diagonal_standard_normal(mean, log_var))
    numpy_ref = 0.5 * np.sum(mean**2 + np.exp(log_var) - 1.0 - log_var, axis=-1)
    standard = tfd.MultivariateNormalDiag(loc=np.zeros(7), scale_diag=np.ones(7))
    np.testing.assert_allclose(ours, numpy_ref, rtol=1e-10)
    np.testing.assert_allclose(ours, tfp_kl(tfp_diag(mean, log_var), standard), rtol=1e-6)


def test_kl_is_zero_for_the_prior_itself():
    zeros = np.zeros((3, 5))
    np.testing.assert_allclose(np_(divergences.kl_diagonal_standard_normal(zeros, zeros)), 0.0)
    eye = np.broadcast_to(np.eye(5), (3, 5, 5))
    np.testing.assert_allclose(np_(divergences.kl_full_standard_normal(zeros, eye)), 0.0, atol=1e-12)


# === Diagonal vs diagonal ===
@pytest.mark.parametrize("near", [False, True])
def test_kl_diagonal_diagonal_matches_tfp(near):
    mean0, log_var0 = random_diag(300, 6, (-8.0, 8.0))
    if near:
        mean1 = mean0 + RNG.normal(0.0, 1e-4, mean0.shape)
        log_var1 = log_var0 + RNG.normal(0.0, 1e-4, log_var0.shape)
    else:
        mean1, log_var1 = random_diag(300, 6, (-8.0, 8.0))
    ours = np_(divergences.kl_diagonal_diagonal(mean0, log_var0, mean1, log_var1))
    ref = tfp_kl(tfp_diag(mean0, log_var0), tfp_diag(mean1, log_var1))
    np.testing.assert_allclose(ours, ref, rtol=1e-6, atol=1e-12)
    assert np.all(ours >= 0.0)


def test_kl_diagonal_diagonal_reduces_to_standard_case():
    mean, log_var = random_diag(50, 4)
    zeros = np.zeros_like(mean)
    np.testing.assert_allclose(
        np_(divergences.kl_diagonal_diagonal(mean, log_var, zeros, zeros)),
        np_(divergences.kl_diagonal_standard_normal(mean, log_var)),
        rtol=1e-12,
    )


# === Full covariance ===
@pytest.mark.parametrize("k", [1, 3, 8])
def test_kl_full_standard_matches_tfp(k):
    mean = RNG.normal(0.0, 1.5, (100, k))
    tril = random_tril(100, k)
    ours = np_(divergences.kl_full_standard_normal(mean, tril))
    standard = tfd.MultivariateNormalDiag(loc=np.zeros(k), scale_diag=np.ones(k))
    np.testing.assert_allclose(ours, tfp_kl(tfp_tril(mean, tril), standard), rtol=1e-8)


@pytest.mark.parametrize("k", [2, 5])
@pytest.mark.parametrize("case", ["random", "near_equal", "extreme_scales"])
def test_kl_full_full_matches_tfp(k, case):
    n = 100
    mean0, tril0 = RNG.normal(0.0, 1.0, (n, k)), random_tril(n, k)
    if case == "random":
        mean1, tril1 = RNG.normal(0.0, 1.0, (n, k)), random_tril(n, k)
    elif case == "near_equal":
        mean1 = mean0 + RNG.normal(0.0, 1e-5, (n, k))
        tril1 = tril0 + np.tril(RNG.normal(0.0, 1e-5, (n, k, k)))
    else:
        tril0 = random_tril(n, k, diag_range=(1e-3, 1e-2))
        mean1, tril1 = RNG.normal(0.0, 1.0, (n, k)), random_tril(n, k, diag_range=(10.0, 100.0))
    ours = np_(divergences.kl_full_full(mean0, tril0, mean1, tril1))
    ref = tfp_kl(tfp_tril(mean0, tril0), tfp_tril(mean1, tril1))
    np.testing.assert_allclose(ours, ref, rtol=1e-6, atol=1e-9)


def test_kl_full_full_agrees_with_diagonal_formula_for_diagonal_factors():
    mean0, log_var0 = random_diag(40, 4)
    mean1, log_var1 = random_diag(40, 4)
    tril0 = np.stack([np.diag(np.exp(0.5 * v)) for v in log_var0])
    tril1 = np.stack([np.diag(np.exp(0.5 * v)) for v in log_var1])
    np.testing.assert_allclose(
        np_(divergences.kl_full_full(mean0, tril0, mean1, tril1)),
        np_(divergences.kl_diagonal_diagonal(mean0, log_var0, mean1, log_var1)),
        rtol=1e-9,
    )


def test_kl_full_full_broadcasts_a_shared_prior():
    mean0, tril0 = RNG.normal(size=(10, 3)), random_tril(10, 3)
    mean1, tril1 = RNG.normal(size=(3,)), random_tril(1, 3)[0]
    ours = np_(divergences.kl_full_full(mean0, tril0, mean1, tril1))
    ref = tfp_kl(tfp_tril(mean0, tril0), tfp_tril(mean1, tril1))
    np.testing.assert_allclose(ours, ref, rtol=1e-8)


# === Monte Carlo ===
def test_closed_forms_match_monte_carlo_estimates():
    rng = np.random.default_rng(7)
    k, draws = 3, 200_000
    mean0, tril0 = rng.normal(size=k), random_tril(1, k, rng=rng)[0]
    mean1, tril1 = rng.normal(size=k), random_tril(1, k, rng=rng, diag_range=(0.5, 2.0))[0]
    z = mean0 + rng.standard_normal((draws, k)) @ tril0.T
    rep = lambda a: np.broadcast_to(a, (draws,) + a.shape)  # noqa: E731
    log_ratio = np_(divergences.full_normal_log_prob(z, rep(mean0), rep(tril0))) - np_(
        divergences.full_normal_log_prob(z, rep(mean1), rep(tril1))
    )
    estimate, stderr = log_ratio.mean(), log_ratio.std() / np.sqrt(draws)
    closed = np_(divergences.kl_full_full(mean0[None], tril0[None], mean1[None], tril1[None]))[0]
    assert abs(estimate - closed) < 5 * stderr

    mean, log_var = rng.normal(size=(1, k)), rng.uniform(-2, 1, (1, k))
    z = mean + np.exp(0.5 * log_var) * rng.standard_normal((draws, k))
    log_ratio = np_(divergences.diagonal_normal_log_prob(z, mean, log_var)) - np_(
        divergences.standard_normal_log_prob(z)
    )
    closed = np_(divergences.kl_diagonal_standard_normal(mean, log_var))[0]
    assert abs(log_ratio.mean() - closed) < 5 * log_ratio.std() / np.sqrt(draws)


def test_log_probs_match_tfp():
    mean, log_var = random_diag(20, 4)
    x = RNG.normal(size=(20, 4))
    np.testing.assert_allclose(
        np_(divergences.diagonal_normal_log_prob(x, mean, log_var)),
        tfp_diag(mean, log_var).log_prob(x).numpy(),
        rtol=1e-10,
    )
    tril = random_tril(20, 4)
    np.testing.assert_allclose(
        np_(divergences.full_normal_log_prob(x, mean, tril)),
        tfp_tril(mean, tril).log_prob(x).numpy(),
        rtol=1e-8,
    )


# === Gradients and errors ===
def test_gradients_are_finite_and_match_the_analytic_derivative():
    mean, log_var = random_diag(8, 5, (-15.0, 15.0))
    d_mean, d_log_var = gradients(divergences.kl_diagonal_standard_normal, mean, log_var)
    np.testing.assert_allclose(d_mean, mean, rtol=1e-10)
    np.testing.assert_allclose(d_log_var, 0.5 * (np.exp(log_var) - 1.0), rtol=1e-10)
    grads = gradients(
        divergences.kl_full_full, RNG.normal(size=(4, 3)), random_tril(4, 3),
        RNG.normal(size=(4, 3)), random_tril(4, 3),
    )
    assert all(np.all(np.isfinite(g)) for g in grads)


def test_mismatched_shapes_raise_with_the_shapes():
    with pytest.raises(ValueError, match=r"mean.shape=\(2, 3\), log_var.shape=\(2, 4\)"):
        divergences.kl_diagonal_standard_normal(np.zeros((2, 3)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"scale_tril.shape=\(2, 3\)"):
        divergences.kl_full_standard_normal(np.zeros((2, 3)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="same event size"):
        divergences.kl_full_full(
            np.zeros((2, 3)), np.zeros((2, 3, 3)), np.zeros((2, 4)), np.zeros((2, 4, 4))
        )
