import numpy as np
import pytest
import keras
from scipy.special import logsumexp

from kerasvae import networks, schedules
from kerasvae.models import HierarchicalVAE
from tests.helpers import DATA_SHAPE, conv_case, random_images, save_and_load, to_numpy

LOSS_KEYS = {"loss", "reconstruction_loss", "kl_loss", "beta"}
Z1, Z2, COMPONENTS = 2, 3, 4
PRIORS = ["standard", "vampprior"]


def tiny_hvae(prior="standard", seed=0, **kwargs):
    """16-unit gated HVAE, seeded, with every ELBO term moderate and well away from 0.

    At He initialization p(z1 | z2) often has variances at the clamp (e^-6),
    which makes KL1 thousands of nats with a heavy tail; a Monte Carlo test
    needs finite-variance terms, so that head is damped, the decoder's logits
    too, and q(z2 | x)'s means spread so that KL2 is a few nats.
    """
    keras.utils.set_random_seed(seed)
    nets = networks.build_hierarchical_mlp(DATA_SHAPE, z1_dim=Z1, z2_dim=Z2, hidden_units=16)
    for kernel, scale in (
        (nets["encoder"].get_layer("q_z2").mean_dense.kernel, 2.0),
        (nets["z1_prior"].get_layer("p_z1").log_var_dense.kernel, 0.1),
        (nets["decoder"].get_layer("logits_or_mean").kernel, 0.3),
    ):
        kernel.assign(scale * kernel)
    if prior == "vampprior":
        kwargs.setdefault("pseudo_input_init", random_images(COMPONENTS, seed=seed + 7))
    return HierarchicalVAE(**nets, prior=prior, num_components=COMPONENTS, seed=0, **kwargs)


def compiled(model):
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    return model


def f64(t):
    return to_numpy(t).astype("float64")


def normal_log_prob(z, mean, log_var):
    return -0.5 * np.sum(np.log(2 * np.pi) + log_var + (z - mean) ** 2 / np.exp(log_var), axis=-1)


def z2_prior_log_prob(model, z2):
    if model.prior == "standard":
        return normal_log_prob(z2, 0.0, 0.0)
    means, log_vars = (f64(t) for t in model.encoder(model.pseudo_inputs(None)))
    return logsumexp(normal_log_prob(z2[..., None, :], means, log_vars), axis=-1) - np.log(COMPONENTS)


def numpy_draw(model, x, eps):
    """Everything the ELBO needs, from direct network calls and given noise (K, batch, Z1 + Z2)."""
    k, batch = eps.shape[:2]
    m2, lv2 = (f64(t) for t in model.encoder(x))
    z2 = m2 + np.exp(0.5 * lv2) * eps[..., Z1:]
    flat_z2 = z2.reshape(-1, Z2).astype("float32")
    flat_x = np.tile(x, (k, 1, 1, 1))
    m1, lv1 = (f64(t) for t in model.z1_encoder(tensors(flat_x, flat_z2)))
    z1 = m1 + np.exp(0.5 * lv1) * eps[..., :Z1].reshape(-1, Z1)
    pm, plv = (f64(t) for t in model.z1_prior(flat_z2))
    logits = f64(model.decoder(tensors(z1, flat_z2)))
    log_px = np.sum(flat_x * logits - np.logaddexp(0.0, logits), axis=(1, 2, 3))
    return dict(m2=m2, lv2=lv2, z2=z2, m1=m1, lv1=lv1, z1=z1, pm=pm, plv=plv, log_px=log_px)


def tensors(*arrays):
    """A list input for a functional model: float32 tensors, never arrays."""
    return [keras.ops.convert_to_tensor(np.asarray(a, "float32")) for a in arrays]


def noise(shape, seed):
    """The model's draw for an integer seed: one normal call of this shape."""
    return f64(keras.random.normal(shape, seed=seed))


# === The loss against its documented terms ===
@pytest.mark.parametrize("prior", PRIORS)
def test_negative_elbo_is_the_sum_of_its_documented_terms(prior):
    model = tiny_hvae(prior)
    x = random_images(5, seed=1)
    d = numpy_draw(model, x, noise((1, 5, Z1 + Z2), seed=3))
    reconstruction = -d["log_px"]
    kl1 = 0.5 * np.sum(
        d["plv"] - d["lv1"] + (np.exp(d["lv1"]) + (d["m1"] - d["pm"]) ** 2) / np.exp(d["plv"]) - 1,
        axis=-1,
    )
    if prior == "standard":
        kl2 = 0.5 * np.sum(d["m2"] ** 2 + np.exp(d["lv2"]) - 1 - d["lv2"], axis=-1)
    else:
        z2 = d["z2"][0]
        kl2 = normal_log_prob(z2, d["m2"], d["lv2"]) - z2_prior_log_prob(model, z2)
    # Each term is, for some example, far above the sum's tolerance (below
    # 0.01 nats), so a dropped or mis-signed term fails the comparison.
    assert np.abs(kl1).max() > 0.5 and np.abs(kl2).max() > 0.5
    terms = model.elbo_terms(x, seed=3)
    np.testing.assert_allclose(f64(terms["kl_z1"]), kl1, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(f64(terms["kl_z2"]), kl2, rtol=1e-4, atol=1e-4)
    out = model.negative_elbo(x, seed=3)
    np.testing.assert_allclose(f64(out["reconstruction_loss"]), reconstruction, rtol=1e-5)
    np.testing.assert_allclose(f64(out["kl_loss"]), kl1 + kl2, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(
        f64(out["negative_elbo"]), reconstruction + kl1 + kl2, rtol=1e-5, atol=1e-3
    )


@pytest.mark.parametrize("prior", PRIORS)
def test_log_importance_weights_are_the_all_sample_elbo_integrand(prior):
    """log w = log p(x|z1,z2) + log p(z1|z2) + log p(z2) - log q(z1|x,z2) - log q(z2|x)."""
    model = tiny_hvae(prior)
    x = random_images(3, seed=2)
    log_w = f64(model.log_importance_weights(x, num_samples=4, seed=9))
    assert log_w.shape == (4, 3)
    d = numpy_draw(model, x, noise((4, 3, Z1 + Z2), seed=9))
    z2 = d["z2"].reshape(-1, Z2)
    expected = (
        d["log_px"]
        + normal_log_prob(d["z1"], d["pm"], d["plv"])
        + z2_prior_log_prob(model, z2)
        - normal_log_prob(d["z1"], d["m1"], d["lv1"])
        - normal_log_prob(d["z2"], d["m2"], d["lv2"]).reshape(-1)
    ).reshape(4, 3)
    np.testing.assert_allclose(log_w, expected, rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("prior", PRIORS)
def test_closed_form_kl_terms_keep_the_mean_of_the_all_sample_elbo(prior):
    """E[-negative_elbo] (closed-form KL1, KL2) equals E[log w] (every term sampled).

    Both use the same seed, so the same draws: an example tiled n times and
    n samples of one example ask for the same n * (Z1 + Z2) normal numbers.
    The reconstruction term then cancels draw by draw and only the KL
    estimators' difference is left, whose mean must be 0.
    """
    model = tiny_hvae(prior)
    x = random_images(1, seed=4)
    n = 6000
    terms = model.elbo_terms(np.repeat(x, n, axis=0), seed=8)
    log_w = f64(model.log_importance_weights(x, num_samples=n, seed=8))[:, 0]
    difference = -f64(terms["reconstruction_loss"]) - f64(terms["kl_loss"]) - log_w
    tolerance = 4 * difference.std() / np.sqrt(n)
    # Same draws: the difference is far less spread than the bound itself.
    assert difference.std() < 0.5 * log_w.std()
    # The guard: the z1-level KL's mean is several times the tolerance, so a
    # wrong closed form (or a missing term) moves the mean out of range.
    assert f64(terms["kl_z1"]).mean() > 5 * tolerance
    assert abs(difference.mean()) < tolerance, (difference.mean(), tolerance)


# === The prior and sampling on z = concat([z1, z2]) ===
@pytest.mark.parametrize("prior", PRIORS)
def test_prior_log_prob_is_log_p_z2_plus_log_p_z1_given_z2(prior):
    model = tiny_hvae(prior)
    z = np.random.default_rng(0).normal(size=(2, 4, Z1 + Z2)).astype("float32")
    z1, z2 = z[..., :Z1].astype("float64"), z[..., Z1:]
    pm, plv = (f64(t).reshape(2, 4, Z1) for t in model.z1_prior(z2.reshape(-1, Z2)))
    expected = z2_prior_log_prob(model, z2.astype("float64")) + normal_log_prob(z1, pm, plv)
    actual = f64(model.prior_log_prob(z))
    assert actual.shape == (2, 4)
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("prior", PRIORS)
def test_latent_from_noise_is_an_ancestral_draw(prior):
    model = tiny_hvae(prior)
    assert model.latent_dim == Z1 + Z2
    assert model.prior_noise_dims == (Z1 + Z2, 1 if prior == "vampprior" else 0)
    normal = np.random.default_rng(1).normal(size=(6, Z1 + Z2)).astype("float32")
    uniform = np.linspace(0.0, 0.99, 6).reshape(6, 1).astype("float32")
    eps1, eps2 = normal[:, :Z1].astype("float64"), normal[:, Z1:].astype("float64")
    if prior == "standard":
        z2 = eps2
    else:
        means, log_vars = (f64(t) for t in model.encoder(model.pseudo_inputs(None)))
        index = np.floor(uniform[:, 0] * COMPONENTS).astype(int)
        z2 = means[index] + np.exp(0.5 * log_vars[index]) * eps2
    pm, plv = (f64(t) for t in model.z1_prior(z2.astype("float32")))
    expected = np.concatenate([pm + np.exp(0.5 * plv) * eps1, z2], axis=-1)
    actual = f64(model.latent_from_noise(normal, uniform if prior == "vampprior" else None))
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-5)
    samples = to_numpy(model.sample(3, seed=2))
    assert samples.shape == (3,) + DATA_SHAPE
    np.testing.assert_array_equal(samples, to_numpy(model.sample(3, seed=2)))


def test_encode_and_reconstruct_use_the_deterministic_path():
    model = tiny_hvae("vampprior")
    x = random_images(3, seed=5)
    outputs = {k: f64(v) for k, v in model.encode_outputs(x).items()}
    m2, lv2 = (f64(t) for t in model.encoder(x))
    m1, lv1 = (f64(t) for t in model.z1_encoder(tensors(x, m2)))
    np.testing.assert_allclose(outputs["z2_mean"], m2, rtol=1e-6)
    np.testing.assert_allclose(outputs["z1_log_var"], lv1, rtol=1e-6)
    np.testing.assert_allclose(outputs["z_mean"], np.concatenate([m1, m2], -1), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(outputs["z_log_var"], np.concatenate([lv1, lv2], -1), rtol=1e-5, atol=1e-6)
    z_mean, _ = model.encode(x)
    np.testing.assert_allclose(f64(z_mean), outputs["z_mean"], rtol=1e-6)
    logits = f64(model.decoder(tensors(m1, m2)))
    np.testing.assert_allclose(f64(model.reconstruct(x)), 1 / (1 + np.exp(-logits)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(f64(model.decode(z_mean)), f64(model.reconstruct(x)), rtol=1e-6)


# === Training and the Keras workflow ===
@pytest.mark.compiled_step
@pytest.mark.parametrize("prior", PRIORS)
@pytest.mark.parametrize("builder", ["mlp", conv_case()])
def test_fit_evaluate_predict(prior, builder):
    if builder == "conv":
        shape = (8, 8, 3)
        nets = networks.build_hierarchical_conv(shape, z1_dim=Z1, z2_dim=Z2, filters=(4, 4), hidden_units=8)
        model = HierarchicalVAE(**nets, prior=prior, num_components=COMPONENTS, seed=0)
        x = np.random.default_rng(0).random((32,) + shape).astype("float32")
    else:
        model, x = tiny_hvae(prior), random_images(32)
    compiled(model)
    history = model.fit(x, epochs=1, batch_size=8, validation_data=(x[:8],), verbose=0)
    assert set(history.history) == LOSS_KEYS | {f"val_{k}" for k in LOSS_KEYS}
    assert all(np.isfinite(v).all() for v in history.history.values())
    results = model.evaluate(x, batch_size=16, verbose=0, return_dict=True)
    np.testing.assert_allclose(
        results["loss"], results["reconstruction_loss"] + results["kl_loss"], rtol=1e-5
    )
    assert model.predict(x[:5], verbose=0).shape == (5,) + x.shape[1:]


@pytest.mark.parametrize("prior", PRIORS)
def test_kl_schedule_and_free_bits(prior):
    x = random_images(16)
    model = compiled(tiny_hvae(prior, beta=2.0, kl_schedule=schedules.LinearWarmup(8)))
    model.fit(x, epochs=1, batch_size=8, verbose=0)  # 2 steps
    results = model.evaluate(x, batch_size=16, verbose=0, return_dict=True)
    np.testing.assert_allclose(results["beta"], 0.5, rtol=1e-6)
    np.testing.assert_allclose(
        results["loss"], results["reconstruction_loss"] + 0.5 * results["kl_loss"], rtol=1e-5
    )
    # Free bits: a floor above the KL holds the regularizer at the floor
    # (per dimension for the standard prior, one group for the VampPrior:
    # both sum to free_bits * latent_dim here).
    floor = 40.0
    model = compiled(tiny_hvae(prior, free_bits=floor))
    results = model.evaluate(x, batch_size=16, verbose=0, return_dict=True)
    assert results["kl_loss"] < floor
    np.testing.assert_allclose(results["kl_term"], floor * (Z1 + Z2), rtol=1e-6)
    model = compiled(tiny_hvae(prior, free_bits=1e-6))
    results = model.evaluate(x, batch_size=16, verbose=0, return_dict=True)
    np.testing.assert_allclose(results["kl_term"], results["kl_loss"], rtol=1e-5)
    assert np.isfinite(model.fit(x, epochs=1, batch_size=8, verbose=0).history["kl_term"][0])


def test_free_bits_split_by_dimension_with_the_standard_prior():
    model = tiny_hvae("standard", free_bits=1.0)
    x = random_images(8, seed=6)
    kl_dims = f64(model.elbo_terms(x, seed=1)["kl_dims"])
    assert kl_dims.shape == (8, Z1 + Z2)
    np.testing.assert_allclose(kl_dims.sum(-1), f64(model.elbo_terms(x, seed=1)["kl_loss"]), rtol=1e-5)
    assert tiny_hvae("vampprior").elbo_terms(x)["kl_dims"] is None


# === Saving ===
@pytest.mark.parametrize("prior", PRIORS)
def test_keras_file_round_trip(prior, tmp_path):
    x = random_images(16)
    model = compiled(tiny_hvae(prior))
    model.fit(x, epochs=1, batch_size=8, verbose=0)
    reloaded = save_and_load(model, str(tmp_path / "hvae.keras"))
    assert isinstance(reloaded, HierarchicalVAE) and reloaded.prior == prior
    assert (reloaded.z1_dim, reloaded.z2_dim) == (Z1, Z2)
    np.testing.assert_array_equal(model.predict(x, verbose=0), reloaded.predict(x, verbose=0))
    np.testing.assert_allclose(
        f64(reloaded.negative_elbo(x[:4])["negative_elbo"]),
        f64(model.negative_elbo(x[:4])["negative_elbo"]),
        rtol=1e-6,
    )
    z = np.random.default_rng(0).normal(size=(3, Z1 + Z2)).astype("float32")
    np.testing.assert_allclose(f64(reloaded.prior_log_prob(z)), f64(model.prior_log_prob(z)), rtol=1e-6)
    reloaded.fit(x, epochs=1, batch_size=8, verbose=0)


# === Bad input ===
def test_bad_networks_and_arguments_are_refused_with_the_value():
    nets = networks.build_hierarchical_mlp(DATA_SHAPE, z1_dim=Z1, z2_dim=Z2, hidden_units=8)
    with pytest.raises(ValueError, match="prior='gaussian'"):
        HierarchicalVAE(**nets, prior="gaussian")
    other = networks.build_hierarchical_mlp(DATA_SHAPE, z1_dim=4, z2_dim=Z2, hidden_units=8)
    with pytest.raises(ValueError, match=r"decoder must take \[z1, z2\].*\(None, 2\), \(None, 3\).*Received: \[\(None, 4\), \(None, 3\)\]"):
        HierarchicalVAE(**dict(nets, decoder=other["decoder"]))
    with pytest.raises(ValueError, match=r"z1_prior must output.*z1_dim=2.*width 4"):
        HierarchicalVAE(**dict(nets, z1_prior=other["z1_prior"]))
    flat = networks.build_mlp_decoder(Z1 + Z2, DATA_SHAPE, hidden_units=(8,))
    with pytest.raises(ValueError, match=r"decoder of HierarchicalVAE must have 2 input\(s\).*\(None, 5\)"):
        HierarchicalVAE(**dict(nets, decoder=flat))
    wide = networks.build_hierarchical_mlp(DATA_SHAPE, z1_dim=Z1, z2_dim=6, hidden_units=8)
    with pytest.raises(ValueError, match=r"z1_encoder must take \[x, z2\].*Received: \[\(None, 28, 28, 1\), \(None, 6\)\]"):
        HierarchicalVAE(**dict(nets, z1_encoder=wide["z1_encoder"]))
    with pytest.raises(ValueError, match="covariance='full'"):
        HierarchicalVAE(**nets, covariance="full")
    with pytest.raises(ValueError, match="num_components=0"):
        HierarchicalVAE(**nets, prior="vampprior", num_components=0)
    model = HierarchicalVAE(**nets)
    with pytest.raises(NotImplementedError, match="elbo_terms"):
        model.kl_divergence(model.encode(random_images(1)))
    with pytest.raises(ValueError, match="uniform=None"):
        HierarchicalVAE(**nets, prior="vampprior", num_components=2).latent_from_noise(
            np.zeros((1, Z1 + Z2), "float32")
        )
