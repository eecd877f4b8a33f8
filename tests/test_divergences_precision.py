"""KL closed forms near the prior, against exact arithmetic; gradients against tfp.

Near the prior (or near equal distributions) the KL is of the size of the
squared log-variance while the naive formulas add and subtract numbers of
size k: in float32 they lose half the value at a log-variance of 3e-4 and all
of it below 1e-5. The references here are computed from the very same float32
inputs with Python's `decimal` at 60 digits, so the tests measure only the
rounding of our float32 evaluation, and each test also shows that the naive
formula fails it (the test tells a stable form from an unstable one).
"""

from decimal import Decimal, getcontext

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from kerasvae import divergences
from tests.helpers import float64_context, gradients, to_numpy as np_

tfd = tfp.distributions
getcontext().prec = 60

# Log-variances of q relative to p: the scale of the effect guarded.
NEAR = [3e-4, -3e-4, 1e-5, 1e-7]
# Our float32 forms keep a relative error of a few float32 ulps per term
# (measured: below 3e-5, the triangular solve's rounding included); the naive
# ones are off by 5% or more at 3e-4 and by orders of magnitude below.
RTOL32 = 2e-4


# === Exact references (decimal, 60 digits) ===
def _dec(array):
    return np.vectorize(lambda v: Decimal(float(v)), otypes=[object])(np.asarray(array, np.float64))


def exact_kl_full_full(mean0, tril0, mean1, tril1):
    """The textbook formula, in 60-digit arithmetic, for one pair."""
    k = len(mean0)
    tril0, tril1, diff = _dec(tril0), _dec(tril1), _dec(mean1) - _dec(mean0)
    rhs = np.concatenate([tril0, diff[:, None]], axis=1)
    solved = np.empty_like(rhs)
    for i in range(k):  # forward substitution: L1 X = [L0 | m1 - m0]
        solved[i] = (rhs[i] - sum((tril1[i, j] * solved[j] for j in range(i)), Decimal(0))) / tril1[i, i]
    trace = sum(v * v for v in solved[:, :k].ravel())
    mahalanobis = sum(v * v for v in solved[:, k])
    log_det = 2 * sum(tril1[i, i].ln() - tril0[i, i].ln() for i in range(k))
    return float((trace + mahalanobis - k + log_det) / 2)


def exact_kl_diagonal_diagonal(mean0, log_var0, mean1, log_var1):
    m0, v0, m1, v1 = (_dec(a) for a in (mean0, log_var0, mean1, log_var1))
    total = sum(
        ((a - b).exp() - 1 - (a - b) + (mb - ma) ** 2 / b.exp()) for ma, a, mb, b in zip(m0, v0, m1, v1)
    )
    return float(total / 2)


def naive_kl_full_full(mean0, tril0, mean1, tril1):
    """The previous float32 form: ||M||_F^2 - k + log-det difference."""
    k = len(mean0)
    solved = np.linalg.solve(tril1, np.concatenate([tril0, (mean1 - mean0)[:, None]], 1)).astype(np.float32)
    log_det = 2 * np.sum(np.log(np.diag(tril1))) - 2 * np.sum(np.log(np.diag(tril0)))
    return 0.5 * (np.sum(solved[:, :k] ** 2) - np.float32(k) + log_det + np.sum(solved[:, k] ** 2))


def near_prior_full(log_var, k=8, seed=0):
    """q = N(m, L L^T) within about `log_var` of N(0, I), in float32."""
    rng = np.random.default_rng(seed)
    size = abs(log_var)
    tril = np.diag(np.exp(0.5 * log_var * rng.uniform(0.5, 1.5, k)))
    tril += np.tril(rng.normal(0.0, size, (k, k)), -1)
    mean = rng.normal(0.0, size, k)
    return mean.astype(np.float32), tril.astype(np.float32)


def near_equal_full(log_var, prior, k=6, seed=0):
    """A pair q, p with q = p up to relative changes of about `log_var`."""
    rng = np.random.default_rng(seed)
    size = abs(log_var)
    tril1 = np.diag(rng.uniform(0.5, 2.0, k))
    if prior == "general":
        tril1 += np.tril(rng.normal(0.0, 0.3, (k, k)), -1)
    change = np.tril(rng.normal(0.0, size, (k, k)), -1) + np.diag(
        np.expm1(0.5 * log_var * rng.uniform(0.5, 1.5, k))
    )
    tril0 = tril1 @ (np.eye(k) + change)
    mean1 = rng.normal(size=k)
    mean0 = mean1 + rng.normal(0.0, size, k)
    return [a.astype(np.float32) for a in (mean0, tril0, mean1, tril1)]


def relative_error(value, exact):
    return abs(float(value) - exact) / exact


# === float32 near the prior ===
@pytest.mark.parametrize("log_var", NEAR)
def test_kl_full_standard_normal_keeps_its_value_in_float32_near_the_prior(log_var):
    mean, tril = near_prior_full(log_var)
    ours = np_(divergences.kl_full_standard_normal(mean[None], tril[None]))[0]
    assert ours.dtype == np.float32
    exact = exact_kl_full_full(mean, tril, np.zeros_like(mean), np.eye(len(mean)))
    assert relative_error(ours, exact) < RTOL32, (ours, exact)
    identity = np.eye(len(mean), dtype=np.float32)
    naive = naive_kl_full_full(mean, tril, np.zeros_like(mean), identity)
    assert relative_error(naive, exact) > 50 * RTOL32  # the old form fails this test


# With a non-diagonal p, M = L1^-1 L0 itself is only determined by the float32
# inputs to about eps32 * |L| / |log_var| relative (a one-ulp change of an entry
# of L0 moves the exact KL that much), so no float32 evaluation can do better
# than that: the general case is checked at the log-variances where this is
# below the tolerance, the diagonal-p case everywhere.
@pytest.mark.parametrize(
    "log_var,prior",
    [(v, "diagonal") for v in NEAR] + [(v, "general") for v in NEAR if abs(v) >= 3e-4],
)
def test_kl_full_full_keeps_its_value_in_float32_near_equal(log_var, prior):
    mean0, tril0, mean1, tril1 = near_equal_full(log_var, prior)
    ours = np_(divergences.kl_full_full(mean0[None], tril0[None], mean1[None], tril1[None]))[0]
    assert ours.dtype == np.float32
    exact = exact_kl_full_full(mean0, tril0, mean1, tril1)
    assert relative_error(ours, exact) < RTOL32, (ours, exact)
    assert relative_error(naive_kl_full_full(mean0, tril0, mean1, tril1), exact) > 50 * RTOL32


@pytest.mark.parametrize("log_var", NEAR)
def test_diagonal_forms_keep_their_value_in_float32_near_the_prior(log_var):
    rng = np.random.default_rng(1)
    log_var0 = (log_var * rng.uniform(0.5, 1.5, 16)).astype(np.float32)
    mean0 = rng.normal(0.0, abs(log_var), 16).astype(np.float32)
    zeros = np.zeros(16, np.float32)
    exact = exact_kl_diagonal_diagonal(mean0, log_var0, zeros, zeros)
    ours = np_(divergences.kl_diagonal_standard_normal(mean0[None], log_var0[None]))[0]
    assert relative_error(ours, exact) < RTOL32, (ours, exact)
    naive = 0.5 * np.sum(mean0**2 + np.exp(log_var0) - np.float32(1.0) - log_var0)
    assert relative_error(naive, exact) > 50 * RTOL32
    # Against a shifted prior: the log-variance difference is what matters.
    log_var1 = rng.uniform(-2.0, 2.0, 16).astype(np.float32)
    mean1 = rng.normal(size=16).astype(np.float32)
    log_var0 = (log_var1 + log_var0).astype(np.float32)
    mean0 = (mean1 + mean0).astype(np.float32)
    exact = exact_kl_diagonal_diagonal(mean0, log_var0, mean1, log_var1)
    ours = np_(divergences.kl_diagonal_diagonal(mean0[None], log_var0[None], mean1[None], log_var1[None]))[0]
    assert relative_error(ours, exact) < RTOL32, (ours, exact)


def test_float64_is_accurate_far_below_float32_scales():
    # In float64 the naive forms lose everything near a log-variance of 1e-9;
    # the stable ones keep about 13 digits.
    with float64_context():
        mean, tril = near_prior_full(1e-9)
        mean, tril = mean.astype(np.float64), tril.astype(np.float64)
        exact = exact_kl_full_full(mean, tril, np.zeros(8), np.eye(8))
        ours = np_(divergences.kl_full_standard_normal(mean[None], tril[None]))[0]
        assert ours.dtype == np.float64
        assert relative_error(ours, exact) < 1e-11, (ours, exact)
        log_var = np.full((1, 8), 1e-9)
        ours = np_(divergences.kl_diagonal_standard_normal(np.zeros((1, 8)), log_var))[0]
        exact = exact_kl_diagonal_diagonal(np.zeros(8), log_var[0], np.zeros(8), np.zeros(8))
        assert relative_error(ours, exact) < 1e-11, (ours, exact)


@pytest.mark.parametrize("u", [0.0499, 0.0501, -0.0499, -0.0501, 0.3, -3.0, 30.0])
def test_variance_term_is_accurate_on_both_sides_of_the_series_switch(u):
    # f(u) = exp(u) - 1 - u switches from a series to expm1(u) - u at |u| = 0.05.
    # The series keeps a few ulps (its truncation is ~1e-17 relative); expm1(u) - u
    # loses about 2 eps / |u| (40 ulps at the switch, measured up to 5e-15 in
    # float64 and 3e-6 in float32). A wrong series coefficient, even the last
    # one (3e-14 at |u| = 0.0499), is outside these bounds.
    exact = float(Decimal(u).exp() - 1 - Decimal(u))
    rtol64 = 1e-14 if abs(u) < 0.05 else 4e-14
    for dtype, rtol in (("float32", 1e-5), ("float64", rtol64)):
        with float64_context():
            value = np_(divergences.kl_diagonal_standard_normal(np.zeros((1, 1), dtype), np.full((1, 1), u, dtype)))
        assert relative_error(2.0 * value[0], exact) < rtol, (dtype, value, exact)


# === Gradients against tfp ===
def tf_gradients(fn, *args):
    """d sum(fn(*args)) / d args with TensorFlow, whatever the Keras backend."""
    tensors = [tf.constant(a, tf.float64) for a in args]
    with tf.GradientTape() as tape:
        tape.watch(tensors)
        total = tf.reduce_sum(fn(*tensors))
    return [g.numpy() for g in tape.gradient(total, tensors)]


def tfp_diag(mean, log_var):
    return tfd.MultivariateNormalDiag(loc=mean, scale_diag=tf.exp(0.5 * log_var))


def tfp_tril(mean, tril):
    return tfd.MultivariateNormalTriL(loc=mean, scale_tril=tril)


def standard(k):
    return tfd.MultivariateNormalDiag(loc=tf.zeros(k, tf.float64), scale_diag=tf.ones(k, tf.float64))


def random_log_var(rng, n, k):
    # Half the entries near 0, on both sides of the series switch, half far away.
    near = rng.uniform(-0.08, 0.08, (n, k))
    far = rng.uniform(-6.0, 4.0, (n, k))
    return np.where(rng.random((n, k)) < 0.5, near, far)


def random_tril(rng, n, k, near_identity=False):
    if near_identity:
        diag = np.exp(0.5 * rng.uniform(-0.08, 0.08, (n, k)))
        off = rng.normal(0.0, 1e-2, (n, k, k))
    else:
        diag = rng.uniform(0.1, 3.0, (n, k))
        off = rng.normal(0.0, 0.7, (n, k, k))
    tril = np.tril(off, -1)
    tril[:, np.arange(k), np.arange(k)] = diag
    return tril


def assert_gradients_match(ours, reference, lower_triangular=()):
    for index, (a, b) in enumerate(zip(ours, reference)):
        if index in lower_triangular:  # tfp ignores the upper triangle
            a, b = np.tril(a), np.tril(b)
        np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-10, err_msg=f"argument {index}")


@pytest.mark.usefixtures("float64")
def test_kl_diagonal_standard_normal_gradient_matches_tfp():
    rng = np.random.default_rng(2)
    mean, log_var = rng.normal(size=(40, 5)), random_log_var(rng, 40, 5)
    ours = gradients(divergences.kl_diagonal_standard_normal, mean, log_var)
    reference = tf_gradients(lambda m, v: tfd.kl_divergence(tfp_diag(m, v), standard(5)), mean, log_var)
    assert_gradients_match(ours, reference)


@pytest.mark.usefixtures("float64")
def test_kl_diagonal_diagonal_gradient_matches_tfp():
    rng = np.random.default_rng(3)
    mean0, mean1 = rng.normal(size=(40, 5)), rng.normal(size=(40, 5))
    log_var1 = rng.uniform(-3.0, 3.0, (40, 5))
    log_var0 = log_var1 + random_log_var(rng, 40, 5)
    args = (mean0, log_var0, mean1, log_var1)
    ours = gradients(divergences.kl_diagonal_diagonal, *args)
    reference = tf_gradients(
        lambda m0, v0, m1, v1: tfd.kl_divergence(tfp_diag(m0, v0), tfp_diag(m1, v1)), *args
    )
    assert_gradients_match(ours, reference)


@pytest.mark.usefixtures("float64")
@pytest.mark.parametrize("near_identity", [False, True])
def test_kl_full_standard_normal_gradient_matches_tfp(near_identity):
    rng = np.random.default_rng(4)
    mean, tril = rng.normal(size=(30, 4)), random_tril(rng, 30, 4, near_identity)
    ours = gradients(divergences.kl_full_standard_normal, mean, tril)
    reference = tf_gradients(lambda m, t: tfd.kl_divergence(tfp_tril(m, t), standard(4)), mean, tril)
    assert_gradients_match(ours, reference, lower_triangular=(1,))


@pytest.mark.usefixtures("float64")
@pytest.mark.parametrize("near_equal", [False, True])
def test_kl_full_full_gradient_matches_tfp(near_equal):
    rng = np.random.default_rng(5)
    mean1, tril1 = rng.normal(size=(30, 4)), random_tril(rng, 30, 4)
    if near_equal:
        mean0 = mean1 + rng.normal(0.0, 1e-3, (30, 4))
        tril0 = tril1 @ random_tril(rng, 30, 4, near_identity=True)
    else:
        mean0, tril0 = rng.normal(size=(30, 4)), random_tril(rng, 30, 4)
    args = (mean0, tril0, mean1, tril1)
    ours = gradients(divergences.kl_full_full, *args)
    reference = tf_gradients(
        lambda m0, t0, m1, t1: tfd.kl_divergence(tfp_tril(m0, t0), tfp_tril(m1, t1)), *args
    )
    assert_gradients_match(ours, reference, lower_triangular=(1, 3))
