"""The importance-sampled log-likelihood against exact marginal likelihoods.

Two models whose log p(x) is known without sampling:

- probabilistic PCA, p(z) = N(0, I), p(x | z) = N(W z + b, s^2 I): a linear
  decoder (one Dense layer) with `Gaussian(scale=s)`, whose marginal is
  log p(x) = log N(x; b, W W^T + s^2 I) and whose posterior is Gaussian,
  N(A (x - b), s^2 M^-1) with M = W^T W + s^2 I and A = M^-1 W^T;
- a 1-D latent model with a nonlinear Bernoulli decoder, integrated by the
  trapezoid rule on a fine grid.

With the exact posterior as encoder every importance weight equals p(x), so
the estimate is log p(x) for every K to float32 rounding: any wrong or missing
term (log p(z), log q, log K, a sign) shows at once. With an imperfect encoder
the estimate approaches log p(x) from below; its expected gap is known:
KL(q || p(z | x)) at K = 1 and chi^2(p(z | x) || q) / (2K) + O(1/K^2) for large
K (the delta method), both computed exactly here.
"""

import math

import keras
import numpy as np
import pytest

import kerasvae
from kerasvae.evaluation import importance_sampled_log_likelihood

LOG_2PI = math.log(2.0 * math.pi)


# === Building a VAE with chosen weights ===
def linear_encoder(data_dim, latent_dim, covariance):
    x = keras.Input((data_dim,), name="x")
    mean = keras.layers.Dense(latent_dim, name="z_mean")(x)
    if covariance == "diagonal":
        second = keras.layers.Dense(latent_dim, name="z_log_var")(x)
    else:
        flat = keras.layers.Dense(latent_dim * latent_dim, name="scale_tril_flat")(x)
        second = keras.layers.Reshape((latent_dim, latent_dim))(flat)
    return keras.Model(x, [mean, second])


def set_encoder(encoder, kernel, bias, second):
    """q(z | x) = N(kernel^T x + bias, ...) with an input-free second parameter."""
    mean_layer = encoder.get_layer("z_mean")
    second_layer = encoder.get_layer("z_log_var" if len(np.shape(second)) == 1 else "scale_tril_flat")
    mean_layer.set_weights([kernel, bias])
    second_layer.set_weights([np.zeros(second_layer.kernel.shape), np.ravel(second)])


def linear_vae(weights, offset, scale, covariance="diagonal"):
    data_dim, latent_dim = weights.shape
    z = keras.Input((latent_dim,), name="z")
    decoder = keras.Model(z, keras.layers.Dense(data_dim, name="mean")(z))
    decoder.get_layer("mean").set_weights([weights.T, offset])
    encoder = linear_encoder(data_dim, latent_dim, covariance)
    return kerasvae.VAE(
        encoder, decoder, likelihood=kerasvae.Gaussian(scale=scale), covariance=covariance, seed=0
    )


# === Probabilistic PCA ===
class PPCA:
    def __init__(self, data_dim=6, latent_dim=2, scale=0.5, orthogonal=False, seed=0):
        rng = np.random.default_rng(seed)
        weights = rng.normal(0.0, 1.5, (data_dim, latent_dim))
        if orthogonal:  # W^T W diagonal: the exact posterior is a diagonal Gaussian
            q, _ = np.linalg.qr(weights)
            weights = q * rng.uniform(1.0, 3.0, latent_dim)
        self.weights, self.scale = weights, scale
        self.offset = rng.normal(0.0, 1.0, data_dim)
        m = weights.T @ weights + scale**2 * np.eye(latent_dim)
        self.posterior_cov = scale**2 * np.linalg.inv(m)
        self.posterior_map = np.linalg.solve(m, weights.T)  # A: mean = A (x - b)

    def sample(self, n, seed=1):
        rng = np.random.default_rng(seed)
        z = rng.standard_normal((n, self.weights.shape[1]))
        x = z @ self.weights.T + self.offset + self.scale * rng.standard_normal((n, len(self.offset)))
        return x.astype("float32")

    def log_marginal(self, x):
        """log N(x; b, W W^T + s^2 I), float64."""
        cov = self.weights @ self.weights.T + self.scale**2 * np.eye(len(self.offset))
        diff = np.asarray(x, np.float64) - self.offset
        _, log_det = np.linalg.slogdet(cov)
        maha = np.einsum("ni,ij,nj->n", diff, np.linalg.inv(cov), diff)
        return -0.5 * (len(self.offset) * LOG_2PI + log_det + maha)

    def posterior_mean(self, x):
        return (np.asarray(x, np.float64) - self.offset) @ self.posterior_map.T

    def vae(self, covariance, mean_shift=None, cov_factor=1.0):
        """The VAE whose encoder is q(z | x) = N(mean(x) + shift, cov_factor * posterior cov)."""
        latent_dim = self.weights.shape[1]
        shift = np.zeros(latent_dim) if mean_shift is None else mean_shift
        model = linear_vae(self.weights, self.offset, self.scale, covariance)
        kernel = self.posterior_map.T
        bias = -self.offset @ self.posterior_map.T + shift
        cov = cov_factor * self.posterior_cov
        if covariance == "diagonal":
            assert np.allclose(cov, np.diag(np.diag(cov)), atol=1e-12), "needs orthogonal=True"
            second = np.log(np.diag(cov))
        else:
            second = np.linalg.cholesky(cov)
        set_encoder(model.encoder, kernel, bias, second)
        return model


def gaussian_kl(mean0, cov0, mean1, cov1):
    k = len(mean0)
    inv1 = np.linalg.inv(cov1)
    diff = mean1 - mean0
    return 0.5 * (
        np.trace(inv1 @ cov0) + diff @ inv1 @ diff - k + np.linalg.slogdet(cov1)[1] - np.linalg.slogdet(cov0)[1]
    )


def gaussian_chi2(mean_p, cov_p, mean_q, cov_q):
    """chi^2(p || q) = E_q[(p / q)^2] - 1 = integral p^2 / q - 1, for Gaussians."""
    inv_p, inv_q = np.linalg.inv(cov_p), np.linalg.inv(cov_q)
    a = 2.0 * inv_p - inv_q  # must be positive definite (q wider than p / 2)
    b = 2.0 * inv_p @ mean_p - inv_q @ mean_q
    c = -mean_p @ inv_p @ mean_p + 0.5 * mean_q @ inv_q @ mean_q
    # (2 pi)^(-k/2) from p^2 / q cancels the (2 pi)^(k/2) of the Gaussian integral.
    log_integral = (
        -np.linalg.slogdet(cov_p)[1]
        + 0.5 * np.linalg.slogdet(cov_q)[1]
        - 0.5 * np.linalg.slogdet(a)[1]
        + 0.5 * b @ np.linalg.solve(a, b)
        + c
    )
    return math.exp(log_integral) - 1.0


@pytest.mark.parametrize("covariance", ["diagonal", "full"])
def test_exact_posterior_gives_log_p_x_for_every_k(covariance):
    ppca = PPCA(orthogonal=covariance == "diagonal")
    x = ppca.sample(50)
    exact = ppca.log_marginal(x)
    model = ppca.vae(covariance)
    for k in (1, 40):
        estimate = importance_sampled_log_likelihood(model, x, num_samples=k, batch_size=25, seed=k)
        assert estimate.shape == (50,)
        # Every weight is p(x): only float32 rounding of terms of size ~10 is
        # left (measured: below 3e-6). A missing log K (3.7 nats at K = 40),
        # log p(z) (>= 1.8 nats here) or log q, or a flipped sign, is off by
        # orders of magnitude more.
        np.testing.assert_allclose(estimate, exact, rtol=0, atol=2e-4, err_msg=f"K={k}")


@pytest.mark.parametrize("covariance", ["diagonal", "full"])
def test_imperfect_posterior_approaches_log_p_x_from_below(covariance):
    ppca = PPCA(orthogonal=covariance == "diagonal", seed=3)
    n = 1000
    x = ppca.sample(n, seed=4)
    exact = ppca.log_marginal(x)
    sd = np.sqrt(np.diag(ppca.posterior_cov))
    shift, factor = 0.4 * sd, 1.5
    model = ppca.vae(covariance, mean_shift=shift, cov_factor=factor)
    # The gap's expectation does not depend on x here (same shift, same covariances).
    mean_p = np.zeros(2)
    kl = gaussian_kl(mean_p + shift, factor * ppca.posterior_cov, mean_p, ppca.posterior_cov)
    chi2 = gaussian_chi2(mean_p, ppca.posterior_cov, mean_p + shift, factor * ppca.posterior_cov)
    assert 0.1 < kl < chi2 < 1.0  # a gap large enough to see, small enough for the delta method

    gaps, stderrs = {}, {}
    for k in (1, 10, 1000):
        estimate = importance_sampled_log_likelihood(model, x, num_samples=k, batch_size=100, seed=k)
        gap = exact - estimate
        gaps[k] = gap.mean()
        stderr = stderrs[k] = gap.std(ddof=1) / math.sqrt(n)
        if k == 1:
            expected, slack = kl, 0.0  # exactly the ELBO's gap
        else:
            # Delta method; the next term is O(chi2^2 / K^2) (below 5e-3 at K = 10).
            expected, slack = chi2 / (2 * k), chi2**2 / k**2
        assert abs(gaps[k] - expected) < 4 * stderr + slack, (k, gaps[k], expected, stderr)
    # From below, and closer as K grows.
    assert gaps[1] > gaps[10] > gaps[1000] > -4 * stderrs[1000]


def test_default_is_the_documented_protocol_of_100_samples():
    # The README's and evaluate_vae's figures use K = 100; so does a bare call.
    ppca = PPCA(orthogonal=True, seed=3)
    sd = np.sqrt(np.diag(ppca.posterior_cov))
    model = ppca.vae("diagonal", mean_shift=0.4 * sd, cov_factor=1.5)  # weights vary with the draws
    x = ppca.sample(8, seed=6)
    np.testing.assert_array_equal(
        importance_sampled_log_likelihood(model, x, seed=5),
        importance_sampled_log_likelihood(model, x, num_samples=100, seed=5),
    )
    assert not np.array_equal(
        importance_sampled_log_likelihood(model, x, num_samples=100, seed=5),
        importance_sampled_log_likelihood(model, x, num_samples=200, seed=5),
    )


# === 1-D latent, nonlinear decoder, quadrature ===
class OneDimensional:
    """p(z) = N(0, 1), p(x | z) = Bernoulli(logits = V tanh(U z + c) + d), 10 pixels."""

    def __init__(self, seed=0, data_dim=10, hidden=16):
        rng = np.random.default_rng(seed)
        self.u = rng.normal(0.0, 2.0, (1, hidden))
        self.c = rng.normal(0.0, 1.0, hidden)
        self.v = rng.normal(0.0, 1.0, (hidden, data_dim))
        self.d = rng.normal(0.0, 0.5, data_dim)
        self.grid = np.linspace(-12.0, 12.0, 24001)

    def logits(self, z):
        return np.tanh(np.asarray(z, np.float64)[:, None] * self.u + self.c) @ self.v + self.d

    def sample(self, n, rng):
        logits = self.logits(rng.standard_normal(n))
        return (rng.random(logits.shape) < 1.0 / (1.0 + np.exp(-logits))).astype("float32")

    def log_joint_on_grid(self, x):
        logits = self.logits(self.grid)  # (grid, pixels)
        log_lik = np.asarray(x, np.float64) @ logits.T - np.logaddexp(0.0, logits).sum(axis=1)
        return log_lik - 0.5 * (LOG_2PI + self.grid**2)  # (n, grid)

    def posterior(self, x):
        """log p(x) and the log posterior density on the grid, by the trapezoid rule."""
        log_joint = self.log_joint_on_grid(x)
        top = log_joint.max(axis=1, keepdims=True)
        integral = np.trapezoid(np.exp(log_joint - top), self.grid, axis=1)
        log_px = np.log(integral) + top[:, 0]
        return log_px, log_joint - log_px[:, None]

    def moments(self, density):
        mean = np.trapezoid(density * self.grid, self.grid, axis=1)
        var = np.trapezoid(density * (self.grid - mean[:, None]) ** 2, self.grid, axis=1)
        return mean, var

    def vae(self, x, q_mean, q_log_var):
        """A VAE with this decoder and a linear encoder that maps each x[i] to q_i.

        The points are affinely independent, so a linear map interpolates them.
        """
        data_dim, hidden = self.v.shape[1], self.v.shape[0]
        z = keras.Input((1,), name="z")
        h = keras.layers.Dense(hidden, activation="tanh", name="hidden")(z)
        decoder = keras.Model(z, keras.layers.Dense(data_dim, name="logits")(h))
        decoder.get_layer("hidden").set_weights([self.u, self.c])
        decoder.get_layer("logits").set_weights([self.v, self.d])
        encoder = linear_encoder(data_dim, 1, "diagonal")
        design = np.concatenate([x, np.ones((len(x), 1))], axis=1).astype(np.float64)
        targets = np.stack([q_mean, q_log_var], axis=1)
        solution = np.linalg.lstsq(design, targets, rcond=None)[0]
        assert np.allclose(design @ solution, targets, atol=1e-9)
        encoder.get_layer("z_mean").set_weights([solution[:-1, :1], solution[-1, :1]])
        encoder.get_layer("z_log_var").set_weights([solution[:-1, 1:], solution[-1, 1:]])
        return kerasvae.VAE(encoder, decoder, likelihood="bernoulli", seed=0)


def test_one_dimensional_latent_matches_quadrature():
    model_1d = OneDimensional()
    rng = np.random.default_rng(5)
    x = model_1d.sample(6, rng)
    while np.linalg.matrix_rank(np.concatenate([x, np.ones((6, 1))], 1)) < 6:
        x = model_1d.sample(6, rng)
    log_px, log_post = model_1d.posterior(x)
    density = np.exp(log_post)
    mean, var = model_1d.moments(density)
    # An imperfect Gaussian q: shifted by 0.3 sd and wider. The decoder's tanh
    # saturates, so the posterior's tails are the prior's, exp(-z^2 / 2): q's
    # variance must exceed 1/2 for the importance weights to have a finite
    # variance (chi^2 < infinity), hence the + 0.6.
    q_mean, q_var = mean + 0.3 * np.sqrt(var), 1.4 * var + 0.6
    model = model_1d.vae(x, q_mean, np.log(q_var))
    grid = model_1d.grid
    log_q = -0.5 * (LOG_2PI + np.log(q_var)[:, None] + (grid - q_mean[:, None]) ** 2 / q_var[:, None])
    # KL(q || p(z | x)) and chi^2(p(z | x) || q), by the same quadrature.
    kl = np.trapezoid(np.exp(log_q) * (log_q - log_post), grid, axis=1)
    chi2 = np.trapezoid(np.exp(2.0 * log_post - log_q), grid, axis=1) - 1.0
    assert np.all(kl > 0.05) and np.all(chi2 < 5.0), (kl, chi2)

    # Each x repeated: independent estimates, so a standard error per x.
    for k, repeats in ((1, 2000), (1000, 200)):
        rows = np.repeat(x, repeats, axis=0)
        estimate = importance_sampled_log_likelihood(model, rows, num_samples=k, batch_size=200, seed=k)
        gap = log_px[:, None] - estimate.reshape(6, repeats)
        stderr = gap.std(axis=1, ddof=1) / math.sqrt(repeats)
        expected = kl if k == 1 else chi2 / (2 * k)
        slack = 0.0 if k == 1 else chi2**2 / k**2
        np.testing.assert_array_less(np.abs(gap.mean(axis=1) - expected), 4 * stderr + slack + 1e-4)
