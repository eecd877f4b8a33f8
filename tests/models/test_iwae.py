import math

import numpy as np
import pytest
import keras

import kerasvae
from kerasvae import data, schedules
from kerasvae.models import IWAE, VAE
from tests.helpers import DATA_SHAPE, random_images, save_and_load, to_numpy

LOSS_KEYS = {"loss", "reconstruction_loss", "kl_loss", "beta"}


def tiny_networks(latent_dim=3, data_shape=DATA_SHAPE, hidden=32, seed=0):
    keras.utils.set_random_seed(seed)
    encoder = kerasvae.networks.build_mlp_encoder(data_shape, latent_dim, hidden_units=(hidden,))
    decoder = kerasvae.networks.build_mlp_decoder(latent_dim, data_shape, hidden_units=(hidden,))
    return encoder, decoder


def tiny_iwae(num_samples=4, latent_dim=3, seed=0, **kwargs):
    return IWAE(*tiny_networks(latent_dim), num_samples=num_samples, seed=seed, **kwargs)


def compiled(model, lr=1e-3):
    model.compile(optimizer=keras.optimizers.Adam(lr))
    return model


# === Independent NumPy computations (float64) ===
def np_bernoulli_log_prob(x, logits):
    """log p(x | logits) summed over the event axes: x log s + (1 - x) log(1 - s)."""
    log_p = x * -np.logaddexp(0.0, -logits) + (1.0 - x) * -np.logaddexp(0.0, logits)
    return log_p.reshape(log_p.shape[:2] + (-1,)).sum(-1)


def np_normal_log_prob(z, mean, log_var):
    return -0.5 * np.sum(np.log(2 * np.pi) + log_var + (z - mean) ** 2 / np.exp(log_var), axis=-1)


def np_log_mean_exp(values, axis=0):
    top = values.max(axis=axis, keepdims=True)
    return np.squeeze(top, axis) + np.log(np.mean(np.exp(values - top), axis=axis))


def replay_noise(seed, shape, draws=1):
    """The noise of a fresh `Sampling(seed=seed)` layer's first `draws` calls."""
    generator = keras.random.SeedGenerator(seed)
    return [to_numpy(keras.random.normal(shape, seed=generator)).astype("float64") for _ in range(draws)]


def np_log_weights(model, x, eps):
    """NumPy log p(x | z_k), log p(z_k), log q(z_k | x) at z_k = mean + std * eps_k."""
    mean, log_var = (to_numpy(t).astype("float64") for t in model.encode(x))
    z = mean + np.exp(0.5 * log_var) * eps  # (K, batch, latent)
    logits = to_numpy(model.decoder(z.reshape(-1, z.shape[-1]).astype("float32")))
    logits = logits.astype("float64").reshape(z.shape[:2] + logits.shape[1:])
    log_px_z = np_bernoulli_log_prob(np.asarray(x, "float64")[None], logits)
    log_pz = np_normal_log_prob(z, 0.0, 0.0)
    log_qz = np_normal_log_prob(z, mean, log_var)
    return log_px_z, log_pz, log_qz


# === The bound against independent computations ===
@pytest.mark.parametrize("beta,weighted", [(1.0, False), (0.5, True)])
def test_bound_is_the_numpy_log_mean_exp_of_the_same_draws(beta, weighted):
    num_samples, seed = 4, 7
    x = random_images(6)
    model = tiny_iwae(num_samples=num_samples, seed=seed, beta=beta)
    sample_weight = np.array([1.0, 0.0, 2.0, 1.0, 0.5, 3.0], "float32") if weighted else None
    losses = model.compute_vae_losses(x, sample_weight=sample_weight)
    (eps,) = replay_noise(seed, (num_samples, 6, 3))
    log_px_z, log_pz, log_qz = np_log_weights(model, x, eps)
    bound = np_log_mean_exp(log_px_z + beta * (log_pz - log_qz))
    weights = np.ones(6) if sample_weight is None else sample_weight.astype("float64")
    mean = lambda v: np.sum(v * weights) / np.sum(weights)  # noqa: E731
    # The log weights differ across draws, so log-mean-exp is 10 tolerances
    # or more from the mean of the logs (a mean in place of logsumexp fails).
    jensen_gap = mean(bound - np.mean(log_px_z + beta * (log_pz - log_qz), axis=0))
    assert jensen_gap > 10 * 1e-5 * abs(mean(bound)), jensen_gap
    # float32 sums over 784 pixels of values near 540 nats: about 1e-3 nats.
    np.testing.assert_allclose(to_numpy(losses["loss"]), -mean(bound), rtol=1e-5)
    np.testing.assert_allclose(
        to_numpy(losses["reconstruction_loss"]), -mean(np.mean(log_px_z, 0)), rtol=1e-5
    )
    np.testing.assert_allclose(
        to_numpy(losses["kl_loss"]), mean(np.mean(log_qz - log_pz, 0)), rtol=1e-4, atol=1e-4
    )
    np.testing.assert_allclose(to_numpy(losses["beta"]), beta)


def test_log_importance_weights_match_the_base_class():
    model = tiny_iwae(num_samples=3)
    x = random_images(5)
    ours = to_numpy(model.log_importance_weights(x, seed=11))
    base = to_numpy(VAE.log_importance_weights(model, x, num_samples=3, seed=11))
    assert ours.shape == (3, 5)
    np.testing.assert_allclose(ours, base, rtol=1e-6)
    assert to_numpy(model.log_importance_weights(x, num_samples=2, seed=11)).shape == (2, 5)


def test_one_sample_is_the_vae_loss_with_the_same_noise_and_schedule():
    """K = 1: -L_1 = -log p(x | z) + b (log q(z | x) - log p(z)), the VAE's draw.

    Both models share networks, seed and KL schedule, so they see the same z.
    The VAE uses the closed-form KL, which the single-draw log-ratio equals
    in expectation (E_q[log q - log p] = KL): checked per draw against NumPy.
    """
    seed, batch, steps = 5, 64, 3
    encoder, decoder = tiny_networks()
    options = dict(seed=seed, beta=0.5, kl_schedule=schedules.LinearWarmup(4, start=0.2))
    iwae = IWAE(encoder, decoder, num_samples=1, **options)
    vae = VAE(encoder, decoder, **options)
    x = np.tile(random_images(4), (batch // 4, 1, 1, 1))
    noise = replay_noise(seed, (1, batch, 3), draws=steps)
    mean, log_var = (to_numpy(t).astype("float64") for t in vae.encode(x))
    closed_kl = np.mean(0.5 * np.sum(mean**2 + np.exp(log_var) - 1 - log_var, axis=-1))
    for step in range(steps):
        ours = {k: float(to_numpy(v)) for k, v in iwae.compute_vae_losses(x, training=True).items()}
        theirs = {k: float(to_numpy(v)) for k, v in vae.compute_vae_losses(x, training=True).items()}
        weight = 0.5 * (0.2 + 0.8 * step / 4)
        np.testing.assert_allclose([ours["beta"], theirs["beta"]], weight, rtol=1e-6)
        np.testing.assert_allclose(ours["reconstruction_loss"], theirs["reconstruction_loss"], rtol=1e-6)
        _, log_pz, log_qz = np_log_weights(iwae, x, noise[step])
        mc_kl = (log_qz - log_pz)[0]
        np.testing.assert_allclose(
            ours["loss"], theirs["reconstruction_loss"] + weight * mc_kl.mean(), rtol=1e-5
        )
        np.testing.assert_allclose(theirs["loss"], theirs["reconstruction_loss"] + weight * closed_kl, rtol=1e-5)
        np.testing.assert_allclose(ours["kl_loss"], mc_kl.mean(), rtol=1e-4, atol=1e-4)


def linear_gaussian_iwae(num_samples, weights):
    """p(z) = N(0, 1), p(x | z) = N(W z + b, 0.5^2 I) in 2-D, q(z | x) = N(m, v) fixed."""
    x_in = keras.Input((2,))
    encoder = keras.Model(x_in, [keras.layers.Dense(1)(x_in), keras.layers.Dense(1)(x_in)])
    z_in = keras.Input((1,))
    decoder = keras.Model(z_in, keras.layers.Dense(2)(z_in))
    model = IWAE(encoder, decoder, num_samples=num_samples, likelihood=kerasvae.Gaussian(scale=0.5), seed=num_samples)
    encoder.set_weights(weights["encoder"])
    decoder.set_weights(weights["decoder"])
    return model


def test_bound_increases_with_k_as_an_exact_reference_says():
    """E[L_K] on a linear Gaussian model against exact and NumPy references.

    log p(x) and E[L_1] = log p(x) - KL(q || p(z | x)) are closed forms;
    E[L_K] for K > 1 comes from 10^5 independent NumPy draws. q is chosen
    off the posterior: the gap log p(x) - E[L_1] is 0.73 nats.
    """
    w, b, sigma = np.array([1.5, -1.0]), np.array([0.2, -0.1]), 0.5
    x = np.array([1.0, 0.5])
    marginal_cov = np.outer(w, w) + sigma**2 * np.eye(2)
    diff = x - b
    log_px = -0.5 * (
        2 * np.log(2 * np.pi) + np.linalg.slogdet(marginal_cov)[1] + diff @ np.linalg.solve(marginal_cov, diff)
    )
    post_var = 1.0 / (1.0 + w @ w / sigma**2)
    post_mean = post_var * w @ diff / sigma**2
    q_mean, q_var = post_mean + 0.25, 2.5 * post_var
    kl_q_post = 0.5 * (q_var / post_var + (q_mean - post_mean) ** 2 / post_var - 1 - np.log(q_var / post_var))
    weights = {
        "encoder": [np.zeros((2, 1)), np.array([q_mean]), np.zeros((2, 1)), np.array([np.log(q_var)])],
        "decoder": [w[None, :], b],
    }

    def np_bounds(num_samples, draws, rng):
        z = q_mean + math.sqrt(q_var) * rng.standard_normal((num_samples, draws))
        log_w = (
            -0.5 * np.sum(np.log(2 * np.pi * sigma**2) + (x - b - z[..., None] * w) ** 2 / sigma**2, -1)
            - 0.5 * (np.log(2 * np.pi) + z**2)
            + 0.5 * (np.log(2 * np.pi * q_var) + (z - q_mean) ** 2 / q_var)
        )
        return np_log_mean_exp(log_w)

    rng = np.random.default_rng(0)
    batch = 4000
    inputs = np.tile(x.astype("float32"), (batch, 1))
    model_means, references = {}, {}
    for num_samples in (1, 4, 32):
        reference = np_bounds(num_samples, 100_000, rng)
        references[num_samples] = reference.mean()
        model = linear_gaussian_iwae(num_samples, weights)
        model_means[num_samples] = -float(to_numpy(model.compute_vae_losses(inputs)["loss"]))
        tolerance = 4 * reference.std() * math.sqrt(1 / batch + 1 / 100_000)
        assert abs(model_means[num_samples] - references[num_samples]) < tolerance, (
            num_samples, model_means[num_samples], references[num_samples], tolerance
        )
    assert kl_q_post > 0.4, kl_q_post
    np.testing.assert_allclose(references[1], log_px - kl_q_post, atol=0.01)
    assert references[32] < log_px
    # The increases are many tolerances wide, so the model's ordering is not luck:
    # L_4 closes well over half of the gap to log p(x), L_32 most of the rest.
    assert references[4] - references[1] > 0.5 * kl_q_post
    assert model_means[4] - model_means[1] > 0.5 * kl_q_post
    assert model_means[32] - model_means[4] > 0.5 * (log_px - references[4])
    assert model_means[32] < log_px + 0.02


# === DReG ===
def estimator_gradients(models, x, repeats):
    """Per repeat, each model's flat gradient of what its training step differentiates.

    The models share their networks and their sampling seed, so in every
    repeat they see the same draws (and fresh draws in the next repeat).
    """
    variables = models[0].trainable_variables

    def objective(losses):
        return losses.get("objective", losses["loss"])

    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        @tf.function
        def step():
            flat = []
            for model in models:
                with tf.GradientTape() as tape:
                    value = objective(model.compute_vae_losses(x, training=True))
                flat.append(tf.concat([tf.reshape(g, [-1]) for g in tape.gradient(value, variables)], 0))
            return flat

        draws = [step() for _ in range(repeats)]
        return [np.stack([to_numpy(d[i]) for d in draws]) for i in range(len(models))]
    import jax
    import jax.numpy as jnp

    def value(trainable, non_trainable, model):
        mapping = list(zip(variables, trainable)) + list(zip(model.non_trainable_variables, non_trainable))
        with keras.StatelessScope(state_mapping=mapping) as scope:
            result = objective(model.compute_vae_losses(x, training=True))
        return result, [scope.get_current_value(v) for v in model.non_trainable_variables]

    trainable = [v.value for v in variables]

    def body(states, _):
        flat, new_states = [], []
        for model, state in zip(models, states):
            grads, state = jax.grad(value, has_aux=True)(trainable, state, model)
            flat.append(jnp.concatenate([g.reshape(-1) for g in grads]))
            new_states.append(state)
        return new_states, flat

    states = [[v.value for v in m.non_trainable_variables] for m in models]
    _, flat = jax.jit(lambda s: jax.lax.scan(body, s, None, length=repeats))(states)
    return [np.asarray(f) for f in flat]


@pytest.mark.parametrize("beta", [1.0, 0.5])
def test_dreg_is_unbiased_and_has_lower_encoder_variance(beta):
    """Tucker et al.: same expected gradient as the standard estimator, less variance.

    The two models share networks and noise. On the same draws the decoder
    gradients agree exactly. For the encoder, each parameter's mean
    difference over 300 repeats is within 5 standard errors of 0; a biased
    variant (weights w~ instead of w~^2, or w~^2 with beta = 0.5) was 20-100
    standard errors off on this model. The variance (summed over encoder
    parameters) measured 0.16-0.26 of the standard's.
    """
    shape, repeats = (8,), 300
    encoder, decoder = tiny_networks(latent_dim=2, data_shape=shape, hidden=16, seed=1)
    models = [
        IWAE(encoder, decoder, num_samples=8, gradient_estimator=estimator, beta=beta, seed=3)
        for estimator in ("standard", "dreg")
    ]
    x = (np.random.default_rng(0).random((4,) + shape) < 0.5).astype("float32")
    standard, dreg = estimator_gradients(models, x, repeats)
    num_encoder = sum(int(np.prod(v.shape)) for v in encoder.trainable_variables)
    assert [v.path for v in models[0].trainable_variables[: len(encoder.trainable_variables)]] == [
        v.path for v in encoder.trainable_variables
    ]
    np.testing.assert_allclose(
        dreg[:, num_encoder:], standard[:, num_encoder:], atol=1e-5 * np.abs(standard).max()
    )
    difference = standard[:, :num_encoder] - dreg[:, :num_encoder]
    standard_error = difference.std(axis=0, ddof=1) / math.sqrt(repeats)
    # Weights of inputs that are 0 in every example (or of dead ReLUs) get
    # no gradient from either estimator: their difference must be exactly 0.
    moving = standard_error > 0
    assert moving.sum() > 100, moving.sum()
    np.testing.assert_array_equal(difference[:, ~moving], 0.0)
    z_scores = difference.mean(axis=0)[moving] / standard_error[moving]
    assert np.abs(z_scores).max() < 5.0, np.abs(z_scores).max()
    ratio = dreg[:, :num_encoder].var(axis=0).sum() / standard[:, :num_encoder].var(axis=0).sum()
    assert ratio < 0.5, ratio


def test_standard_estimator_has_no_surrogate_and_dreg_only_in_training():
    x = random_images(4)
    assert "objective" not in tiny_iwae().compute_vae_losses(x, training=True)
    dreg = tiny_iwae(gradient_estimator="dreg")
    assert "objective" in dreg.compute_vae_losses(x, training=True)
    assert "objective" not in dreg.compute_vae_losses(x, training=False)


# === Training and the Keras workflow ===
@pytest.mark.compiled_step
@pytest.mark.parametrize("estimator", ["standard", "dreg"])
def test_fit_evaluate_predict(estimator):
    x = random_images(48)
    model = compiled(
        tiny_iwae(gradient_estimator=estimator, kl_schedule=schedules.LinearWarmup(6))
    )
    history = model.fit(x, epochs=2, batch_size=16, validation_data=(x[:16],), verbose=0)
    assert set(history.history) == LOSS_KEYS | {f"val_{k}" for k in LOSS_KEYS}
    assert all(np.all(np.isfinite(v)) for v in history.history.values())
    np.testing.assert_allclose(history.history["beta"], [2 / 6, 5 / 6], rtol=1e-6)
    assert int(to_numpy(model.kl_step)) == 6
    results = model.evaluate(x, batch_size=16, verbose=0, return_dict=True)
    assert set(results) == LOSS_KEYS
    # Jensen: log-mean-exp of the weights >= their mean, so -L_K <= mean -ELBO.
    assert results["loss"] <= results["reconstruction_loss"] + results["kl_loss"] + 1e-3
    assert model.predict(x[:5], verbose=0).shape == (5,) + DATA_SHAPE
    assert tuple(model.sample(2, seed=1).shape) == (2,) + DATA_SHAPE


@pytest.mark.compiled_step
def test_dreg_learns_on_real_fashion_mnist():
    x = data.load_fashion_mnist()[0][0][:1024]
    keras.utils.set_random_seed(0)
    model = compiled(tiny_iwae(num_samples=4, latent_dim=4, gradient_estimator="dreg"))
    before = model.evaluate(x, batch_size=256, verbose=0, return_dict=True)["loss"]
    model.fit(x, epochs=2, batch_size=32, verbose=0)
    after = model.evaluate(x, batch_size=256, verbose=0, return_dict=True)["loss"]
    # Untrained: about 545 nats (784 log 2). A sign error in the surrogate
    # would climb; 64 steps of the VAE bring this net near 400.
    assert before > 500 and after < 450, (before, after)


# === Saving ===
def test_keras_file_round_trip(tmp_path):
    x = random_images(32)
    model = compiled(
        tiny_iwae(num_samples=3, gradient_estimator="dreg", beta=0.5, kl_schedule=schedules.LinearWarmup(10))
    )
    model.fit(x, epochs=1, batch_size=16, verbose=0)
    reloaded = save_and_load(model, str(tmp_path / "iwae.keras"))
    assert isinstance(reloaded, IWAE)
    assert (reloaded.num_samples, reloaded.gradient_estimator, reloaded.beta) == (3, "dreg", 0.5)
    assert reloaded.kl_schedule.get_config() == model.kl_schedule.get_config()
    assert int(to_numpy(reloaded.kl_step)) == 2
    np.testing.assert_array_equal(model.predict(x, verbose=0), reloaded.predict(x, verbose=0))
    reloaded.fit(x, epochs=1, batch_size=16, verbose=0)
    assert int(reloaded.optimizer.iterations) == 4


# === Bad input ===
@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "5", None])
def test_bad_num_samples_is_refused_with_the_value(bad):
    with pytest.raises(ValueError, match=f"num_samples={bad!r}"):
        tiny_iwae(num_samples=bad)


def test_other_bad_arguments_are_refused_with_the_value():
    with pytest.raises(ValueError, match="gradient_estimator='reinforce'"):
        tiny_iwae(gradient_estimator="reinforce")
    with pytest.raises(ValueError, match="free bits.*free_bits=0.5"):
        tiny_iwae(free_bits=0.5)
    with pytest.raises(ValueError, match="num_samples=0"):
        tiny_iwae().log_importance_weights(random_images(2), num_samples=0)


@pytest.mark.compiled_step
def test_dreg_trains_under_mixed_precision():
    keras.config.set_dtype_policy("mixed_float16")
    x = data.load_fashion_mnist()[0][0][:512]
    model = tiny_iwae(num_samples=3, gradient_estimator="dreg")
    # SGD: its update scales with the gradient, so a loss scale left on the
    # gradients (or never applied) shows.
    model.compile(optimizer=keras.optimizers.SGD(1e-3, momentum=0.9))
    before = model.evaluate(x, batch_size=128, verbose=0, return_dict=True)["loss"]
    history = model.fit(x, epochs=2, batch_size=16, verbose=0)
    after = model.evaluate(x, batch_size=128, verbose=0, return_dict=True)["loss"]
    assert np.all(np.isfinite(history.history["loss"]))
    assert after < before - 100.0, (before, after)
