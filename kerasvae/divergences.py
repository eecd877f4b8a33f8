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

`v - 1 - log v` is evaluated as `expm1(log v) - log v`, which keeps its
precision when `v` is close to 1 (near-equal distributions), where the naive
form cancels catastrophically. With Cholesky factors, `tr(S1^-1 S0)` is
`||L1^-1 L0||_F^2`, the Mahalanobis term is `||L1^-1 (m1 - m0)||^2`, and
`log det S = 2 sum(log diag L)`: triangular solves only, no explicit inverse.
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


def _variance_term(log_ratio):
    """`exp(d) - 1 - d`, accurate for small `d`."""
    return ops.expm1(log_ratio) - log_ratio


def _log_det_from_tril(scale_tril):
    diagonal = ops.diagonal(scale_tril, axis1=-2, axis2=-1)
    return 2.0 * ops.sum(ops.log(diagonal), axis=-1)


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
    k = mean.shape[-1]
    trace = ops.sum(ops.square(scale_tril), axis=(-2, -1))
    mahalanobis = ops.sum(ops.square(mean), axis=-1)
    return 0.5 * (trace + mahalanobis - k - _log_det_from_tril(scale_tril))


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
    trace = ops.sum(ops.square(solved[..., :k]), axis=(-2, -1))
    mahalanobis = ops.sum(ops.square(solved[..., k]), axis=-1)
    log_det_ratio = _log_det_from_tril(scale_tril1) - _log_det_from_tril(scale_tril0)
    return 0.5 * (trace + mahalanobis - k + log_det_ratio)


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
