"""Closed-form KL divergences and log-densities of Gaussians.

Every function here is pure `keras.ops`, so it runs on any Keras backend.
Conventions, written down once for the whole package:

- The event (latent) dimension is the last axis; leading axes are batch axes.
- Diagonal Gaussians are given by `mean` and `log_var` (log-variance), never by
  a standard deviation, so that no `log(exp(.))` round trip loses precision.
- Full-covariance Gaussians are given by `mean` and `scale_tril`, the lower
  triangular Cholesky factor L of the covariance (S = L L^T) with a positive
  diagonal.
- Results are summed over the event axis: one number per batch element.

Formulas (k = event size):

```
KL(N(m, diag(v)) || N(0, I))     = 1/2 sum(m^2 + v - 1 - log v)
KL(N(m0, diag(v0)) || N(m1, diag(v1)))
                                 = 1/2 sum(v0/v1 + (m1 - m0)^2 / v1 - 1 + log v1 - log v0)
KL(N(m0, S0) || N(m1, S1))       = 1/2 [tr(S1^-1 S0) + (m1 - m0)^T S1^-1 (m1 - m0) - k
                                        + log det S1 - log det S0]
```

Every term is written so that no large quantities cancel near the prior or
near equal distributions, where the KL is tiny:

- `v - 1 - log v` is `f(log v)` with `f(u) = exp(u) - 1 - u`, evaluated as
  `expm1(u) - u`, and by its Taylor series when |u| is small (there `expm1(u)`
  and `u` agree in all but the last few digits, so their difference would keep
  only a few correct ones).
- With Cholesky factors, `M = L1^-1 L0` (one triangular solve, no inverse) is
  lower triangular with diagonal `diag(L0) / diag(L1)`, and

  ```
  tr(S1^-1 S0) - k + log det S1 - log det S0
      = sum_i f(2 log M_ii) + sum_{i != j} M_ij^2
  ```

  a sum of non-negative terms, with `log M_ii = log(diag(L0)_i / diag(L1)_i)` taken from
  the difference of the diagonals when they are close.
  The naive form, `||M||_F^2 - k + 2 sum log diag L1 - 2 sum log diag L0`,
  subtracts numbers of size k to leave one of size (log-variance)^2, and
  loses half its value in float32 at a log-variance of 3e-4.
  `KL(q || N(0, I))` is the case L1 = I, M = L0. The Mahalanobis term is
  `||L1^-1 (m1 - m0)||^2`, from the same solve.
"""

import math

from keras import ops

LOG_2PI = math.log(2.0 * math.pi)


def _check_same_shape(name_a, a, name_b, b):
    if tuple(a.shape) != tuple(b.shape):
        raise ValueError(
            f"{name_a} and {name_b} must have the same shape. Received: "
            f"{name_a}.shape={tuple(a.shape)}, {name_b}.shape={tuple(b.shape)}"
        )


def _check_scale_tril(mean, scale_tril, mean_name="mean", tril_name="scale_tril"):
    expected = tuple(mean.shape) + (mean.shape[-1],)
    if tuple(scale_tril.shape) != expected:
        raise ValueError(
            f"{tril_name} must have shape {mean_name}.shape + (k,) = {expected}. "
            f"Received: {mean_name}.shape={tuple(mean.shape)}, "
            f"{tril_name}.shape={tuple(scale_tril.shape)}"
        )


# f(u) = exp(u) - 1 - u = u^2/2 * sum_n 2 u^n / (n + 2)!. Below |u| = 0.05 it
# comes from these 8 terms (truncation error ~1e-17 relative); above, from
# expm1(u) - u, whose relative error is about 2 eps / |u| (40 ulps at 0.05).
_SERIES_THRESHOLD = 0.05
_SERIES = tuple(2.0 / math.factorial(n + 2) for n in range(8))


def _variance_term(log_ratio):
    """`exp(u) - 1 - u` for `u = log_ratio`, to full relative precision for any `u`."""
    u = log_ratio
    small = ops.abs(u) < _SERIES_THRESHOLD
    # Evaluate the series only where it is used, so that neither branch can
    # overflow (and no inf * 0 reaches the gradient of the unused branch).
    u_small = ops.where(small, u, ops.zeros_like(u))
    series = ops.zeros_like(u) + _SERIES[-1]
    for coefficient in _SERIES[-2::-1]:
        series = series * u_small + coefficient
    series = 0.5 * ops.square(u_small) * series
    return ops.where(small, series, ops.expm1(u) - u)


def _log_diagonal(scale_tril):
    return ops.log(ops.diagonal(scale_tril, axis1=-2, axis2=-1))


def _log_ratio(a, b):
    """log(a / b) for positive a, b, to full relative precision when a ~ b.

    For b / 2 < a < 3 b / 2, `a - b` is exact in floating point (Sterbenz), so
    `log1p((a - b) / b)` keeps every digit of a small ratio, which
    `log(a) - log(b)` would cancel away; elsewhere the latter is the accurate one.
    """
    difference = a - b
    near = ops.abs(difference) < 0.5 * b
    # Outside `near`, log1p could see an argument below -1 (NaN, also in the
    # gradient of the branch not taken): feed it 0 there.
    safe_difference = ops.where(near, difference, ops.zeros_like(difference))
    return ops.where(near, ops.log1p(safe_difference / b), ops.log(a) - ops.log(b))


def _log_det_from_tril(scale_tril):
    return 2.0 * ops.sum(_log_diagonal(scale_tril), axis=-1)


def _off_diagonal_square_sum(matrix):
    """sum_{i != j} M_ij^2 over the last two axes (no diagonal to cancel)."""
    k = matrix.shape[-1]
    mask = ops.cast(1.0 - ops.eye(k), matrix.dtype)
    return ops.sum(ops.square(matrix * mask), axis=(-2, -1))


def _scale_divergence(log_diagonal_ratio, off_diagonal):
    """tr(M M^T) - k - 2 sum log diag M, as a sum of non-negative terms."""
    return ops.sum(_variance_term(2.0 * log_diagonal_ratio), axis=-1) + off_diagonal


def kl_diagonal_standard_normal(mean, log_var):
    """KL(N(mean, diag(exp(log_var))) || N(0, I)), summed over the last axis."""
    _check_same_shape("mean", mean, "log_var", log_var)
    return 0.5 * ops.sum(ops.square(mean) + _variance_term(log_var), axis=-1)


def kl_diagonal_diagonal(mean0, log_var0, mean1, log_var1):
    """KL(N(mean0, diag(exp(log_var0))) || N(mean1, diag(exp(log_var1))))."""
    _check_same_shape("mean0", mean0, "log_var0", log_var0)
    _check_same_shape("mean1", mean1, "log_var1", log_var1)
    _check_same_shape("mean0", mean0, "mean1", mean1)
    mahalanobis = ops.square(mean1 - mean0) * ops.exp(-log_var1)
    return 0.5 * ops.sum(mahalanobis + _variance_term(log_var0 - log_var1), axis=-1)


def kl_full_standard_normal(mean, scale_tril):
    """KL(N(mean, L L^T) || N(0, I)) for the lower-triangular factor `scale_tril`."""
    _check_scale_tril(mean, scale_tril)
    scale = _scale_divergence(_log_diagonal(scale_tril), _off_diagonal_square_sum(scale_tril))
    mahalanobis = ops.sum(ops.square(mean), axis=-1)
    return 0.5 * (scale + mahalanobis)


def kl_full_full(mean0, scale_tril0, mean1, scale_tril1):
    """KL(N(mean0, L0 L0^T) || N(mean1, L1 L1^T)) from Cholesky factors.

    `mean1`/`scale_tril1` broadcast against the batch of `mean0`/`scale_tril0`
    when they have fewer leading axes (for example one shared prior).
    """
    _check_scale_tril(mean0, scale_tril0, "mean0", "scale_tril0")
    _check_scale_tril(mean1, scale_tril1, "mean1", "scale_tril1")
    if mean0.shape[-1] != mean1.shape[-1]:
        raise ValueError(
            "Both Gaussians must have the same event size. Received: "
            f"mean0.shape={tuple(mean0.shape)}, mean1.shape={tuple(mean1.shape)}"
        )
    k = mean0.shape[-1]
    batch_shape = ops.shape(scale_tril0)
    scale_tril1 = ops.broadcast_to(scale_tril1, batch_shape)
    diff = ops.broadcast_to(mean1, ops.shape(mean0)) - mean0
    # L1^-1 L0 and L1^-1 (m1 - m0) in a single triangular solve.
    rhs = ops.concatenate([scale_tril0, ops.expand_dims(diff, -1)], axis=-1)
    solved = ops.solve_triangular(scale_tril1, rhs, lower=True)
    # M = L1^-1 L0 is lower triangular with diagonal diag(L0) / diag(L1).
    log_ratio = _log_ratio(
        ops.diagonal(scale_tril0, axis1=-2, axis2=-1), ops.diagonal(scale_tril1, axis1=-2, axis2=-1)
    )
    scale = _scale_divergence(log_ratio, _off_diagonal_square_sum(solved[..., :k]))
    mahalanobis = ops.sum(ops.square(solved[..., k]), axis=-1)
    return 0.5 * (scale + mahalanobis)


def diagonal_normal_log_prob(x, mean, log_var):
    """log N(x; mean, diag(exp(log_var))), summed over the last axis."""
    return -0.5 * ops.sum(
        LOG_2PI + log_var + ops.square(x - mean) * ops.exp(-log_var), axis=-1
    )


def standard_normal_log_prob(x):
    """log N(x; 0, I), summed over the last axis."""
    return -0.5 * ops.sum(LOG_2PI + ops.square(x), axis=-1)


def full_normal_log_prob(x, mean, scale_tril):
    """log N(x; mean, L L^T), summed over the event axis."""
    k = mean.shape[-1]
    diff = ops.expand_dims(x - mean, -1)
    white = ops.squeeze(ops.solve_triangular(scale_tril, diff, lower=True), -1)
    return -0.5 * (
        k * LOG_2PI + ops.sum(ops.square(white), axis=-1) + _log_det_from_tril(scale_tril)
    )
