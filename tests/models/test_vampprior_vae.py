import numpy as np
import pytest
import keras
from scipy.special import logsumexp

import kerasvae
from kerasvae import divergences, networks, schedules
from kerasvae.models import VampPriorVAE
from kerasvae.models.vampprior_vae import mixture_log_prob
from tests.helpers import (
    DATA_SHAPE,
    conv_case,
    gradients,
    random_images,
    save_and_load,
    to_numpy,
)

LOSS_KEYS = {"loss", "reconstruction_loss", "kl_loss", "beta"}
LATENT, COMPONENTS = 3, 5


def tiny_vampprior(latent_dim=LATENT, num_components=COMPONENTS, init_seed=3, **kwargs):
    """Gated 16-unit nets, seeded; pseudo-inputs from random images.

    The encoder's mean head is scaled up so that the mixture components lie
    well apart (about 1 to 3 standard deviations): a prior made of one
    component, or N(0, I), is then far from the mixture.
    """
    keras.utils.set_random_seed(init_seed)
    encoder = networks.build_gated_mlp_encoder(DATA_SHAPE, latent_dim, hidden_units=(16,))
    kernel = encoder.get_layer("posterior").mean_dense.kernel
    kernel.assign(4.0 * kernel)
    decoder = networks.build_gated_mlp_decoder(latent_dim, DATA_SHAPE, hidden_units=(16,))
    kwargs.setdefault("pseudo_input_init", random_images(num_components, seed=init_seed))
    return VampPriorVAE(encoder, decoder, num_components=num_components, seed=0, **kwargs)


def compiled(model):
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    return model


def components(model):
    """The encoder's Gaussians at the pseudo-inputs, by a direct encoder call."""
    mean, log_var = model.encoder(model.pseudo_inputs(None))
    return to_numpy(mean).astype("float64"), to_numpy(log_var).astype("float64")


def normal_log_prob(z, mean, log_var):
    return -0.5 * np.sum(np.log(2 * np.pi) + log_var + (z - mean) ** 2 / np.exp(log_var), axis=-1)


def numpy_mixture_log_prob(z, means, log_vars):
    per_component = normal_log_prob(z[..., None, :], means, log_vars)
    return logsumexp(per_component, axis=-1) - np.log(len(means))


# === The prior ===
def test_prior_log_prob_matches_tfp_mixture_same_family():
    import tensorflow_probability as tfp

    tfd = tfp.distributions
    model = tiny_vampprior()
    means, log_vars = components(model)
    # The components are distinct: a prior made of any one of them would differ.
    assert np.ptp(means, axis=0).max() > 0.5
    mixture = tfd.MixtureSameFamily(
        tfd.Categorical(logits=np.zeros(COMPONENTS)),
        tfd.MultivariateNormalDiag(loc=means, scale_diag=np.exp(0.5 * log_vars)),
    )
    z = np.random.default_rng(0).normal(size=(4, 6, LATENT)) * 1.5  # leading axes (4, 6)
    expected = mixture.log_prob(z).numpy()
    actual = to_numpy(model.prior_log_prob(z.astype("float32")))
    assert actual.shape == (4, 6)
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-5)
    one_component = normal_log_prob(z, means[0], log_vars[0])
    assert np.abs(one_component - expected).max() > 0.5


def harsh_mixture(min_log_var, seed=0, num_components=50, latent_dim=40):
    """Components 1.5 apart with variances down to exp(min_log_var), and draws near them."""
    rng = np.random.default_rng(seed)
    means = rng.normal(0.0, 2.0, size=(num_components, latent_dim))
    log_vars = rng.uniform(min_log_var, 1.0, size=(num_components, latent_dim))
    pick = rng.integers(0, num_components, 300)
    own = means[pick] + np.exp(0.5 * log_vars[pick]) * rng.normal(size=(300, latent_dim))
    near = means[pick] + 1e-3 * rng.normal(size=(300, latent_dim))
    return np.concatenate([own, near]), means, log_vars


@pytest.mark.parametrize("min_log_var", [-3.0, -8.0])
def test_mixture_log_prob_in_float32_matches_float64_where_variances_are_small(min_log_var):
    # The expanded quadratic form alone is off by 4e-4 nats here at -3 and
    # 3e-2 at -8 (cancellation); the direct form of the leading components
    # brings it to float32's own precision (under 1e-4 on values up to ~60).
    z, means, log_vars = harsh_mixture(min_log_var)
    expected = numpy_mixture_log_prob(z, means, log_vars)
    f32 = [a.astype("float32") for a in (z, means, log_vars)]
    actual = to_numpy(mixture_log_prob(*f32))
    assert np.abs(expected).max() < 100
    np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-4)


def test_mixture_log_prob_gradients_equal_the_direct_forms():
    z, means, log_vars = (a.astype("float32") for a in harsh_mixture(-4.0, num_components=20))
    z = z[::20]

    def direct(z, means, log_vars):
        per_component = divergences.diagonal_normal_log_prob(
            keras.ops.expand_dims(z, -2), means, log_vars
        )
        return keras.ops.logsumexp(per_component, axis=-1)

    actual = gradients(mixture_log_prob, z, means, log_vars)
    expected = gradients(direct, z, means, log_vars)
    for name, a, e in zip(("z", "means", "log_vars"), actual, expected):
        assert np.abs(e).max() > 1.0, name  # the gradient is not vacuous
        np.testing.assert_allclose(a, e, rtol=1e-3, atol=1e-3 * np.abs(e).max(), err_msg=name)


def test_kl_is_log_q_minus_log_p_at_the_training_draw():
    model = tiny_vampprior()
    x = random_images(6, seed=1)
    out = model.negative_elbo(x, seed=11)
    # The Sampling layer's draw for seed 11, reproduced; everything else in NumPy.
    eps = to_numpy(keras.random.normal((6, LATENT), dtype="float32", seed=11)).astype("float64")
    mean, log_var = (to_numpy(t).astype("float64") for t in model.encoder(x))
    z = mean + np.exp(0.5 * log_var) * eps
    kl = normal_log_prob(z, mean, log_var) - numpy_mixture_log_prob(z, *components(model))
    np.testing.assert_allclose(to_numpy(out["kl_loss"]), kl, rtol=1e-4, atol=1e-4)
    logits = to_numpy(model.decoder(z.astype("float32"))).astype("float64")
    reconstruction = -np.sum(x * logits - np.logaddexp(0.0, logits), axis=(1, 2, 3))
    np.testing.assert_allclose(to_numpy(out["reconstruction_loss"]), reconstruction, rtol=1e-5)
    np.testing.assert_allclose(
        to_numpy(out["negative_elbo"]), reconstruction + kl, rtol=1e-5, atol=1e-4
    )


def test_kl_estimate_mean_matches_an_independent_monte_carlo_kl():
    model = tiny_vampprior()
    x = random_images(1, seed=2)
    n = 4000
    kl = to_numpy(model.elbo_terms(np.repeat(x, n, axis=0))["kl_loss"]).astype("float64")
    # KL(q || p) = E_q[log q - log p] with 200,000 NumPy draws of z.
    mean, log_var = (to_numpy(t).astype("float64")[0] for t in model.encoder(x))
    z = mean + np.exp(0.5 * log_var) * np.random.default_rng(0).normal(size=(200_000, LATENT))
    samples = normal_log_prob(z, mean, log_var) - numpy_mixture_log_prob(z, *components(model))
    expected, expected_se = samples.mean(), samples.std() / np.sqrt(samples.size)
    tolerance = 4 * np.hypot(kl.std() / np.sqrt(n), expected_se)
    # The tolerance (about 0.05 nats) is far below what a wrong prior costs:
    # log C = 1.6 nats, or the KL against N(0, I) instead of the mixture.
    standard_kl = 0.5 * np.sum(mean**2 + np.exp(log_var) - 1 - log_var)
    assert tolerance < 0.1 and abs(standard_kl - expected) > 10 * tolerance
    assert abs(kl.mean() - expected) < tolerance, (kl.mean(), expected, tolerance)


def test_kl_does_not_split_by_dimension():
    model = tiny_vampprior()
    assert model.kl_per_dimension(model.encode(random_images(2))) is None
    assert model.elbo_terms(random_images(2))["kl_dims"] is None


# === Sampling ===
def test_latent_from_noise_picks_the_component_from_the_uniform():
    model = tiny_vampprior()
    assert model.prior_noise_dims == (LATENT, 1)
    means, log_vars = components(model)
    normal = np.random.default_rng(0).normal(size=(7, LATENT)).astype("float32")
    uniform = np.array([[0.0], [0.19], [0.2], [0.5], [0.79], [0.8], [0.9999999]], "float32")
    index = np.array([0, 0, 1, 2, 3, 4, 4])
    expected = means[index] + np.exp(0.5 * log_vars[index]) * normal
    np.testing.assert_allclose(to_numpy(model.latent_from_noise(normal, uniform)), expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="uniform=None"):
        model.latent_from_noise(normal)


def test_samples_follow_the_mixture_mean_and_variance():
    model = tiny_vampprior()
    means, log_vars = components(model)
    mixture_mean = means.mean(axis=0)
    mixture_var = (np.exp(log_vars) + means**2).mean(axis=0) - mixture_mean**2
    n = 20_000
    z = to_numpy(model.sample_latent(n, seed=0)).astype("float64")
    centered = z - mixture_mean
    mean_se = np.sqrt(mixture_var / n)
    var_se = np.sqrt(np.mean(centered**4, axis=0) - mixture_var**2) / np.sqrt(n)
    np.testing.assert_array_less(np.abs(z.mean(axis=0) - mixture_mean), 4.5 * mean_se)
    np.testing.assert_array_less(np.abs(z.var(axis=0) - mixture_var), 4.5 * var_se)
    # A draw from N(0, I) or from one component would be many errors away.
    assert np.max(np.abs(mixture_mean) / mean_se) > 20
    assert np.max(np.abs(means[0] - mixture_mean) / mean_se) > 20
    images = to_numpy(model.sample(3, seed=1))
    assert images.shape == (3,) + DATA_SHAPE
    np.testing.assert_array_equal(images, to_numpy(model.sample(3, seed=1)))


# === Importance sampling ===
def test_log_importance_weights_match_numpy():
    model = tiny_vampprior()
    x = random_images(3, seed=4)
    log_w = to_numpy(model.log_importance_weights(x, num_samples=4, seed=5))
    eps = to_numpy(keras.random.normal((4, 3, LATENT), dtype="float32", seed=5)).astype("float64")
    mean, log_var = (to_numpy(t).astype("float64") for t in model.encoder(x))
    z = mean + np.exp(0.5 * log_var) * eps
    logits = to_numpy(model.decoder(z.reshape(-1, LATENT).astype("float32"))).astype("float64")
    tiled = np.tile(x, (4, 1, 1, 1))
    log_px = np.sum(tiled * logits - np.logaddexp(0.0, logits), axis=(1, 2, 3)).reshape(4, 3)
    expected = (
        log_px + numpy_mixture_log_prob(z, *components(model)) - normal_log_prob(z, mean, log_var)
    )
    np.testing.assert_allclose(log_w, expected, rtol=1e-5, atol=1e-3)


# === Training and the Keras workflow ===
@pytest.mark.compiled_step
@pytest.mark.parametrize("networks_kind", ["gated_mlp", conv_case()])
def test_fit_evaluate_predict(networks_kind):
    if networks_kind == "conv":
        shape = (8, 8, 3)
        keras.utils.set_random_seed(0)
        encoder = networks.build_conv_encoder(shape, LATENT, filters=(4, 4), dense_units=8)
        decoder = networks.build_conv_decoder(LATENT, shape, filters=(4, 4), dense_units=8)
        x = np.random.default_rng(0).random((32,) + shape).astype("float32")
        # Pseudo-inputs from images: near-constant ones can leave every ReLU
        # of a 4-filter convolution dead, and then no gradient reaches them.
        model = VampPriorVAE(encoder, decoder, num_components=4, pseudo_input_init=x[:4], seed=0)
    else:
        model, x = tiny_vampprior(), random_images(32)
    compiled(model)
    raw_before = to_numpy(model.pseudo_inputs.raw)
    history = model.fit(x, epochs=1, batch_size=8, validation_data=(x[:8],), verbose=0)
    assert set(history.history) == LOSS_KEYS | {f"val_{k}" for k in LOSS_KEYS}
    assert all(np.isfinite(v).all() for v in history.history.values())
    # The pseudo-inputs are trained with the rest.
    assert np.abs(to_numpy(model.pseudo_inputs.raw) - raw_before).max() > 1e-5
    results = model.evaluate(x, batch_size=16, verbose=0, return_dict=True)
    np.testing.assert_allclose(
        results["loss"], results["reconstruction_loss"] + results["kl_loss"], rtol=1e-5
    )
    assert model.predict(x[:5], verbose=0).shape == (5,) + x.shape[1:]


def test_kl_schedule_and_beta_weight_the_estimated_kl():
    x = random_images(16)
    model = compiled(tiny_vampprior(beta=2.0, kl_schedule=schedules.LinearWarmup(8)))
    model.fit(x, epochs=1, batch_size=8, verbose=0)  # 2 steps
    assert int(to_numpy(model.kl_step)) == 2
    results = model.evaluate(x, batch_size=16, verbose=0, return_dict=True)
    np.testing.assert_allclose(results["beta"], 2.0 * 2 / 8, rtol=1e-6)
    np.testing.assert_allclose(
        results["loss"], results["reconstruction_loss"] + 0.5 * results["kl_loss"], rtol=1e-5
    )


def test_free_bits_hold_the_whole_kl_as_one_group():
    x = random_images(16)
    model = compiled(tiny_vampprior(free_bits=5.0))
    results = model.evaluate(x, batch_size=16, verbose=0, return_dict=True)
    assert results["kl_loss"] < 5.0 * LATENT  # the floor is active
    np.testing.assert_allclose(results["kl_term"], 5.0 * LATENT, rtol=1e-6)
    np.testing.assert_allclose(results["loss"], results["reconstruction_loss"] + 15.0, rtol=1e-5)
    model = compiled(tiny_vampprior(free_bits=1e-6))
    results = model.evaluate(x, batch_size=16, verbose=0, return_dict=True)
    assert results["kl_loss"] > 1e-3
    np.testing.assert_allclose(results["kl_term"], results["kl_loss"], rtol=1e-5)
    history = model.fit(x, epochs=1, batch_size=8, verbose=0)
    assert np.isfinite(history.history["kl_term"][0])


# === Saving ===
def test_keras_file_round_trip(tmp_path):
    x = random_images(16)
    model = compiled(
        tiny_vampprior(pseudo_input_activation="hardtanh", kl_schedule=schedules.LinearWarmup(10))
    )
    model.fit(x, epochs=1, batch_size=8, verbose=0)
    reloaded = save_and_load(model, str(tmp_path / "vampprior.keras"))
    assert isinstance(reloaded, VampPriorVAE)
    assert (reloaded.num_components, reloaded.pseudo_input_activation) == (COMPONENTS, "hardtanh")
    np.testing.assert_array_equal(
        to_numpy(reloaded.pseudo_inputs(None)), to_numpy(model.pseudo_inputs(None))
    )
    np.testing.assert_array_equal(model.predict(x, verbose=0), reloaded.predict(x, verbose=0))
    z = np.random.default_rng(0).normal(size=(4, LATENT)).astype("float32")
    np.testing.assert_allclose(
        to_numpy(reloaded.prior_log_prob(z)), to_numpy(model.prior_log_prob(z)), rtol=1e-6
    )
    assert int(to_numpy(reloaded.kl_step)) == 2
    reloaded.fit(x, epochs=1, batch_size=8, verbose=0)


# === Bad input ===
def test_bad_arguments_are_refused_with_the_value():
    encoder = networks.build_gated_mlp_encoder(DATA_SHAPE, LATENT, hidden_units=(8,))
    decoder = networks.build_gated_mlp_decoder(LATENT, DATA_SHAPE, hidden_units=(8,))
    with pytest.raises(ValueError, match=r"\(4, 28, 28, 1\).*data shape \(28, 28, 1\).*init.shape=\(4, 784\)"):
        VampPriorVAE(encoder, decoder, num_components=4, pseudo_input_init=np.zeros((4, 784)))
    with pytest.raises(ValueError, match="num_components=0"):
        VampPriorVAE(encoder, decoder, num_components=0)
    with pytest.raises(ValueError, match="diagonal.*covariance='full'"):
        full = networks.build_mlp_encoder(DATA_SHAPE, LATENT, hidden_units=(8,), covariance="full")
        VampPriorVAE(full, decoder, covariance="full")
    with pytest.raises(ValueError, match="z=None"):
        tiny_vampprior().kl_divergence(tiny_vampprior().encode(random_images(1)))
