"""Property-based bad input for the layers: Sampling and the posterior heads."""

import keras
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from keras import ops

import kerasvae
from tests.helpers import to_numpy
from tests.properties import (
    arrays,
    assert_names,
    batch_shapes,
    not_positive_ints,
    small,
    with_non_finite,
)

# Random shapes make JAX compile every op anew for each case (seconds per
# test), so these properties run once, on TensorFlow; the same functions are
# checked on JAX at fixed shapes by the unit tests (tests/layers/).
pytestmark = pytest.mark.requires_tensorflow



def _tril(draw, shape, k):
    """Random lower-triangular factors with a positive diagonal."""
    raw = draw(arrays(shape + (k, k), -2.0, 2.0))
    tril = np.tril(raw)
    diagonal = np.abs(np.diagonal(raw, axis1=-2, axis2=-1)) + 0.1
    idx = np.arange(k)
    tril[..., idx, idx] = diagonal
    return tril.astype("float32")


@small(20)
@given(data=st.data(), lead=batch_shapes(), k=st.integers(1, 4), covariance=st.sampled_from(["diagonal", "full"]))
def test_sampling_is_mean_plus_scaled_noise_for_any_batch_shape(data, lead, k, covariance):
    shape = lead + (k,)
    mean = data.draw(arrays(shape))
    second = data.draw(arrays(shape, -4.0, 4.0)) if covariance == "diagonal" else _tril(data.draw, lead, k)
    layer = kerasvae.Sampling(covariance=covariance, seed=0)
    z = to_numpy(layer([ops.convert_to_tensor(mean), ops.convert_to_tensor(second)], seed=7))
    eps = to_numpy(keras.random.normal(shape, seed=7))
    if covariance == "diagonal":
        expected = mean + np.exp(0.5 * second.astype("float64")) * eps
    else:
        expected = mean + np.einsum("...ij,...j->...i", second.astype("float64"), eps)
    assert z.shape == shape
    np.testing.assert_allclose(z, expected, rtol=1e-5, atol=1e-5)
    deterministic = to_numpy(layer([ops.convert_to_tensor(mean), ops.convert_to_tensor(second)], deterministic=True))
    np.testing.assert_array_equal(deterministic, mean)


@small(15)
@given(data=st.data(), n=st.integers(1, 5), k=st.integers(1, 4))
def test_sampling_keeps_non_finite_values_in_their_own_rows(data, n, k):
    mean = data.draw(arrays((n, k)))
    log_var = data.draw(arrays((n, k), -3.0, 3.0))
    log_var, bad_rows = with_non_finite(data.draw, log_var, values=(np.nan, np.inf))
    z = to_numpy(kerasvae.Sampling(seed=0)([ops.convert_to_tensor(mean), ops.convert_to_tensor(log_var)]))
    assert np.all(np.isfinite(z[~bad_rows]))
    assert not np.all(np.isfinite(z[bad_rows]), axis=-1).any()


@small(15)
@given(
    mean_shape=st.lists(st.integers(1, 4), min_size=1, max_size=3).map(tuple),
    second_shape=st.lists(st.integers(1, 4), min_size=1, max_size=4).map(tuple),
    covariance=st.sampled_from(["diagonal", "full"]),
)
def test_sampling_refuses_mismatched_shapes_naming_both(mean_shape, second_shape, covariance):
    expected = mean_shape if covariance == "diagonal" else mean_shape + (mean_shape[-1],)
    layer = kerasvae.Sampling(covariance=covariance)
    mean = ops.zeros(mean_shape)
    second = ops.zeros(second_shape)
    if second_shape == expected:
        assert tuple(layer([mean, second]).shape) == mean_shape
        return
    with pytest.raises(ValueError) as info:
        layer([mean, second])
    assert_names(info.value, f"z_mean.shape={mean_shape}", f".shape={second_shape}")


@small(10)
@given(count=st.integers(0, 4), single=st.booleans())
def test_sampling_refuses_anything_but_two_tensors(count, single):
    inputs = ops.zeros((2, 2)) if single else [ops.zeros((2, 2))] * count
    if not single and count == 2:
        assert tuple(kerasvae.Sampling()(inputs).shape) == (2, 2)
        return
    with pytest.raises(ValueError, match="list of two tensors") as info:
        kerasvae.Sampling()(inputs)
    assert_names(info.value, f"of length {1 if single else count}")


@small(15)
@given(value=not_positive_ints, layer=st.sampled_from(["GaussianPosterior", "CholeskyPosterior"]))
def test_posteriors_refuse_a_latent_dim_that_is_not_a_positive_int(value, layer):
    with pytest.raises(ValueError) as info:
        getattr(kerasvae, layer)(latent_dim=value)
    assert_names(info.value, f"latent_dim={value!r}")


@small(15)
@given(data=st.data(), lead=batch_shapes(max_side=3), features=st.integers(1, 5), k=st.integers(1, 4))
def test_cholesky_posterior_gives_a_valid_factor_for_any_batch_shape(data, lead, features, k):
    x = data.draw(arrays(lead + (features,), -20.0, 20.0))
    layer = kerasvae.CholeskyPosterior(k, min_diagonal=1e-4)
    mean, tril = (to_numpy(t) for t in layer(ops.convert_to_tensor(x)))
    assert mean.shape == lead + (k,) and tril.shape == lead + (k, k)
    np.testing.assert_array_equal(np.triu(tril, 1), 0.0)
    assert np.all(np.diagonal(tril, axis1=-2, axis2=-1) >= 1e-4)


@small(15)
@given(data=st.data(), lead=batch_shapes(max_side=3), features=st.integers(1, 5), k=st.integers(1, 4))
def test_gaussian_posterior_clamp_holds_for_any_batch_shape(data, lead, features, k):
    x = data.draw(arrays(lead + (features,), -50.0, 50.0))
    layer = kerasvae.GaussianPosterior(k, log_var_min=-3.0, log_var_max=2.0)
    mean, log_var = (to_numpy(t) for t in layer(ops.convert_to_tensor(x)))
    assert mean.shape == log_var.shape == lead + (k,)
    assert np.all((log_var >= -3.0) & (log_var <= 2.0))
