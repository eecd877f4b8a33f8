import numpy as np
import pytest
import keras
import tensorflow_probability as tfp

from kerasvae import likelihoods
from tests.helpers import to_numpy as np_

tfd = tfp.distributions
RNG = np.random.default_rng(0)

# The math is checked in float64 (float32 behaviour has tests of its own).
pytestmark = pytest.mark.usefixtures("float64")


def test_bernoulli_matches_tfp_on_grey_levels_and_binary_targets():
    logits = RNG.normal(0.0, 3.0, (10, 4, 4, 1))
    for x in (RNG.random((10, 4, 4, 1)), (RNG.random((10, 4, 4, 1)) > 0.5).astype("float64")):
        ours = np_(likelihoods.Bernoulli().log_prob(x, logits))
        # TFP's Bernoulli log_prob is x*l - softplus(l) for any x in [0, 1].
        ref = tfd.Bernoulli(logits=logits, dtype=np.float64).log_prob(x).numpy().sum(axis=(1, 2, 3))
        np.testing.assert_allclose(ours, ref, rtol=1e-6)  # TFP computes this one in float32


def test_bernoulli_is_finite_and_exact_for_extreme_logits():
    logits = np.array([[-200.0, 200.0, -200.0, 200.0]])
    x = np.array([[0.0, 1.0, 1.0, 0.0]])
    np.testing.assert_allclose(np_(likelihoods.Bernoulli().log_prob(x, logits)), [-400.0], rtol=1e-12)
    probs = np_(likelihoods.Bernoulli().mean(logits))
    np.testing.assert_allclose(probs, [[0.0, 1.0, 0.0, 1.0]], atol=1e-30)


def test_gaussian_fixed_and_learned_variance_match_tfp():
    x, mean = RNG.normal(size=(6, 5)), RNG.normal(size=(6, 5))
    fixed = likelihoods.Gaussian(scale=0.3)
    np.testing.assert_allclose(
        np_(fixed.log_prob(x, mean)), tfd.Normal(mean, 0.3).log_prob(x).numpy().sum(-1), rtol=1e-10
    )
    log_var = RNG.uniform(-3, 2, (6, 5))
    learned = likelihoods.Gaussian(learn_variance=True)
    np.testing.assert_allclose(
        np_(learned.log_prob(x, [mean, log_var])),
        tfd.Normal(mean, np.exp(0.5 * log_var)).log_prob(x).numpy().sum(-1),
        rtol=1e-10,
    )
    # The clamp stops the density from diverging on a constant pixel.
    clamped = np_(learned.log_prob(mean, [mean, np.full_like(mean, -100.0)]))
    assert np.all(np.isfinite(clamped))


def test_check_data_names_the_problem_and_value():
    with pytest.raises(ValueError, match=r"\[0, 1\].*Received values in \[0, 255\]"):
        likelihoods.Bernoulli().check_data(np.array([0.0, 255.0]))
    with pytest.raises(ValueError, match="1 NaN or infinite"):
        likelihoods.Gaussian().check_data(np.array([0.0, np.nan]))
    with pytest.raises(ValueError, match="two outputs"):
        likelihoods.Gaussian(learn_variance=True).log_prob(np.zeros((1, 2)), np.zeros((1, 2)))
    with pytest.raises(ValueError, match="scale=0"):
        likelihoods.Gaussian(scale=0)
    with pytest.raises(ValueError, match="likelihood='poisson'"):
        likelihoods.get("poisson")


def test_likelihoods_serialize():
    for obj in (likelihoods.Bernoulli(), likelihoods.Gaussian(scale=0.5, learn_variance=True)):
        config = keras.saving.serialize_keras_object(obj)
        revived = keras.saving.deserialize_keras_object(config)
        assert type(revived) is type(obj) and revived.get_config() == obj.get_config()
