"""Property-based checks of divergences and likelihoods on any shape and bad values.

Every value is checked against a NumPy computation in float64.
"""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from keras import ops

from kerasvae import divergences, likelihoods
from tests.helpers import to_numpy
from tests.properties import arrays, assert_names, batch_shapes, small, with_non_finite

# Random shapes make JAX compile every op anew for each case (seconds per
# test), so these properties run once, on TensorFlow; the same functions are
# checked on JAX at fixed shapes by the unit tests (tests/test_divergences.py,
# tests/test_likelihoods.py).
pytestmark = pytest.mark.requires_tensorflow



def _np_tril(draw, lead, k):
    raw = draw(arrays(lead + (k, k), -1.5, 1.5)).astype("float64")
    tril = np.tril(raw)
    idx = np.arange(k)
    tril[..., idx, idx] = np.abs(raw[..., idx, idx]) + 0.3
    return tril.astype("float32")


def _t(x):
    return ops.convert_to_tensor(x)


# === Divergences ===
@small(20)
@given(data=st.data(), lead=batch_shapes(), k=st.integers(1, 4))
def test_diagonal_kls_match_numpy_for_any_batch_shape(data, lead, k):
    shape = lead + (k,)
    m0, v0, m1, v1 = (data.draw(arrays(shape, -3.0, 3.0)).astype("float64") for _ in range(4))
    kl0 = to_numpy(divergences.kl_diagonal_standard_normal(_t(m0.astype("float32")), _t(v0.astype("float32"))))
    expected0 = 0.5 * np.sum(m0**2 + np.exp(v0) - 1.0 - v0, axis=-1)
    np.testing.assert_allclose(kl0, expected0, rtol=1e-4, atol=1e-4)
    kl = to_numpy(
        divergences.kl_diagonal_diagonal(*(_t(a.astype("float32")) for a in (m0, v0, m1, v1)))
    )
    expected = 0.5 * np.sum(np.exp(v0 - v1) + (m1 - m0) ** 2 / np.exp(v1) - 1.0 + v1 - v0, axis=-1)
    np.testing.assert_allclose(kl, expected, rtol=1e-4, atol=1e-3)
    assert kl.shape == lead


@small(15)
@given(data=st.data(), lead=batch_shapes(max_rank=2, max_side=3), k=st.integers(1, 3), shared_prior=st.booleans())
def test_full_covariance_kls_match_numpy(data, lead, k, shared_prior):
    m0 = data.draw(arrays(lead + (k,), -2.0, 2.0))
    l0 = _np_tril(data.draw, lead, k)
    prior_lead = () if shared_prior else lead
    m1 = data.draw(arrays(prior_lead + (k,), -2.0, 2.0))
    l1 = _np_tril(data.draw, prior_lead, k)
    s0 = l0.astype("float64") @ np.swapaxes(l0, -1, -2).astype("float64")
    s1 = np.broadcast_to(l1.astype("float64") @ np.swapaxes(l1, -1, -2).astype("float64"), s0.shape)
    diff = np.broadcast_to(m1, m0.shape).astype("float64") - m0
    s1_inv = np.linalg.inv(s1) if s1.size else s1
    expected = 0.5 * (
        np.trace(s1_inv @ s0, axis1=-2, axis2=-1)
        + np.einsum("...i,...ij,...j->...", diff, s1_inv, diff)
        - k
        + np.linalg.slogdet(s1)[1]
        - np.linalg.slogdet(s0)[1]
    ) if s0.size else np.zeros(lead)
    kl = to_numpy(divergences.kl_full_full(_t(m0), _t(l0), _t(m1), _t(l1)))
    np.testing.assert_allclose(kl, expected, rtol=1e-3, atol=1e-3)
    standard = to_numpy(divergences.kl_full_standard_normal(_t(m0), _t(l0)))
    expected_standard = 0.5 * (
        np.trace(s0, axis1=-2, axis2=-1) + np.sum(m0.astype("float64") ** 2, -1) - k - np.linalg.slogdet(s0)[1]
    ) if s0.size else np.zeros(lead)
    np.testing.assert_allclose(standard, expected_standard, rtol=1e-3, atol=1e-3)


@small(15)
@given(
    a=st.lists(st.integers(1, 4), min_size=1, max_size=3).map(tuple),
    b=st.lists(st.integers(1, 4), min_size=1, max_size=3).map(tuple),
)
def test_divergences_refuse_mismatched_shapes_naming_both(a, b):
    if a == b:
        assert to_numpy(divergences.kl_diagonal_standard_normal(ops.zeros(a), ops.zeros(b))).shape == a[:-1]
        return
    with pytest.raises(ValueError) as info:
        divergences.kl_diagonal_standard_normal(ops.zeros(a), ops.zeros(b))
    assert_names(info.value, f"mean.shape={a}", f"log_var.shape={b}")
    with pytest.raises(ValueError) as info:
        divergences.kl_full_standard_normal(ops.zeros(a), ops.zeros(b))
    assert_names(info.value, f"mean.shape={a}", f"scale_tril.shape={b}")


@small(15)
@given(data=st.data(), n=st.integers(1, 5), k=st.integers(1, 4))
def test_non_finite_parameters_stay_in_their_rows(data, n, k):
    mean, bad = with_non_finite(data.draw, data.draw(arrays((n, k))))
    log_var = data.draw(arrays((n, k), -3.0, 3.0))
    kl = to_numpy(divergences.kl_diagonal_standard_normal(_t(mean), _t(log_var)))
    log_p = to_numpy(divergences.diagonal_normal_log_prob(_t(np.zeros((n, k), "float32")), _t(mean), _t(log_var)))
    for values in (kl, log_p):
        assert np.all(np.isfinite(values[~bad])) and not np.any(np.isfinite(values[bad]))


@small(15)
@given(data=st.data(), lead=batch_shapes(), k=st.integers(1, 4))
def test_log_densities_match_numpy(data, lead, k):
    shape = lead + (k,)
    x, mean = data.draw(arrays(shape)), data.draw(arrays(shape))
    log_var = data.draw(arrays(shape, -3.0, 3.0))
    expected = -0.5 * np.sum(
        math.log(2 * math.pi) + log_var + (x.astype("float64") - mean) ** 2 / np.exp(log_var.astype("float64")), -1
    )
    got = to_numpy(divergences.diagonal_normal_log_prob(_t(x), _t(mean), _t(log_var)))
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-3)
    standard = to_numpy(divergences.standard_normal_log_prob(_t(x)))
    np.testing.assert_allclose(standard, -0.5 * np.sum(math.log(2 * math.pi) + x.astype("float64") ** 2, -1), rtol=1e-5, atol=1e-4)


# === Likelihoods ===
@small(20)
@given(data=st.data(), n=st.integers(0, 4), event=st.lists(st.integers(1, 3), min_size=0, max_size=3).map(tuple))
def test_bernoulli_log_prob_matches_numpy_even_for_large_logits(data, n, event):
    shape = (n,) + event
    x = data.draw(arrays(shape, 0.0, 1.0))
    logits = data.draw(arrays(shape, -80.0, 80.0))
    got = to_numpy(likelihoods.Bernoulli().log_prob(_t(x), _t(logits)))
    lg = logits.astype("float64")
    expected = x * lg - np.logaddexp(0.0, lg)
    expected = expected.reshape(n, int(np.prod(event))).sum(-1)
    assert got.shape == (n,)
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-3)


@small(15)
@given(data=st.data(), n=st.integers(0, 4), scale=st.floats(0.05, 20.0), learn=st.booleans())
def test_gaussian_log_prob_matches_numpy(data, n, scale, learn):
    shape = (n, 2, 3)
    x, mean = data.draw(arrays(shape)), data.draw(arrays(shape))
    likelihood = likelihoods.Gaussian(scale=scale, learn_variance=learn, min_log_var=-4.0)
    if learn:
        log_var = data.draw(arrays(shape, -6.0, 3.0))
        output = [_t(mean), _t(log_var)]
        lv = np.maximum(log_var.astype("float64"), -4.0)
    else:
        output = _t(mean)
        lv = np.full(shape, 2.0 * math.log(scale))
    expected = -0.5 * (math.log(2 * math.pi) + lv + (x.astype("float64") - mean) ** 2 / np.exp(lv))
    got = to_numpy(likelihood.log_prob(_t(x), output))
    np.testing.assert_allclose(got, expected.reshape(n, 6).sum(-1), rtol=1e-4, atol=1e-3)


@small(20)
@given(
    data=st.data(),
    shape=st.lists(st.integers(0, 3), min_size=1, max_size=4).map(tuple),
    kind=st.sampled_from(["ok", "non_finite", "out_of_range"]),
)
def test_check_data_accepts_valid_targets_and_names_what_is_wrong(data, shape, kind):
    x = data.draw(arrays(shape, 0.0, 1.0))
    if kind == "non_finite" and x.size:
        x, _ = with_non_finite(data.draw, x)
    elif kind == "out_of_range" and x.size:
        x.flat[data.draw(st.integers(0, x.size - 1))] = data.draw(st.sampled_from([-0.5, 1.5, 255.0]))
    else:
        kind = "ok"
    if kind == "ok":
        likelihoods.Bernoulli().check_data(x)
        likelihoods.Gaussian().check_data(x)
        return
    with pytest.raises(ValueError) as info:
        likelihoods.Bernoulli().check_data(x)
    if kind == "non_finite":
        bad = x.size - int(np.isfinite(x).sum())
        assert_names(info.value, f"{bad} NaN or infinite value(s) out of {x.size}")
        with pytest.raises(ValueError, match="must be finite"):
            likelihoods.Gaussian().check_data(x)
    else:
        assert_names(info.value, f"[{float(x.min()):g}, {float(x.max()):g}]")
        likelihoods.Gaussian().check_data(x)


@small(15)
@given(
    scale=st.one_of(st.floats(allow_nan=True), st.text(max_size=2), st.none(), st.booleans()),
    min_log_var=st.one_of(st.floats(allow_nan=True), st.text(max_size=2), st.none()),
)
def test_gaussian_refuses_non_finite_or_non_numeric_parameters(scale, min_log_var):
    valid_scale = isinstance(scale, float) and math.isfinite(scale) and scale > 0
    valid_min = isinstance(min_log_var, float) and math.isfinite(min_log_var)
    if valid_scale and valid_min:
        likelihood = likelihoods.Gaussian(scale=scale, min_log_var=min_log_var)
        assert likelihood.scale == scale
        return
    with pytest.raises(ValueError) as info:
        likelihoods.Gaussian(scale=scale, min_log_var=min_log_var)
    assert_names(info.value, f"scale={scale!r}" if not valid_scale else f"min_log_var={min_log_var!r}")
