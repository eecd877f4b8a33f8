import numpy as np
import pytest
import keras

import kerasvae
from kerasvae.models import BetaVAE
from tests.helpers import DATA_SHAPE, random_images, save_and_load, to_numpy
from tests.models import numpy_reference as ref

LATENT = 2


def networks():
    keras.utils.set_random_seed(0)
    encoder = kerasvae.networks.build_mlp_encoder(DATA_SHAPE, LATENT, hidden_units=(8,))
    decoder = kerasvae.networks.build_mlp_decoder(LATENT, DATA_SHAPE, hidden_units=(8,))
    ref.make_posterior_nearly_deterministic(encoder)
    return encoder, decoder


def numpy_terms(model, x):
    """Batch-mean -log p(x | z), KL per dimension (batch, latent), z = z_mean."""
    mean, log_var = ref.encoder_forward(model.encoder, x)
    logits = ref.decoder_forward(model.decoder, mean)
    return -np.mean(ref.bernoulli_log_prob(x, logits)), ref.kl_per_dimension(mean, log_var)


def losses_at(model, x, step):
    model.kl_step.assign(step)
    return {k: float(to_numpy(v)) for k, v in model.compute_vae_losses(x, training=False).items()}


def test_plain_beta_vae_weights_the_kl_by_beta():
    x = random_images(6)
    model = BetaVAE(*networks(), seed=0)
    assert model.beta == 4.0 and model.loss_keys == ("loss", "reconstruction_loss", "kl_loss", "beta")
    recon, kl_dims = numpy_terms(model, x)
    kl = kl_dims.sum(-1).mean()
    losses = losses_at(model, x, 0)
    np.testing.assert_allclose(losses["reconstruction_loss"], recon, rtol=1e-5)
    np.testing.assert_allclose(losses["kl_loss"], kl, rtol=1e-5)
    np.testing.assert_allclose(losses["loss"], recon + 4.0 * kl, rtol=1e-5)
    assert losses["beta"] == 4.0


def test_capacity_loss_ramps_then_plateaus_against_numpy():
    x = random_images(6)
    encoder, decoder = networks()
    probe = BetaVAE(encoder, decoder)
    recon, kl_dims = numpy_terms(probe, x)
    kl = kl_dims.sum(-1).mean()  # about 40 nats: the near-zero posterior variance costs KL
    # C_max = 2 KL: the KL term is above C early in the ramp and below it later,
    # so both signs of |KL - C| are exercised.
    model = BetaVAE(encoder, decoder, max_capacity=2 * kl, capacity_steps=100, gamma=10.0)
    assert model.loss_keys[-1] == "capacity"
    for step in (0, 30, 70, 100, 250):
        capacity = 2 * kl * min(1.0, step / 100)
        losses = losses_at(model, x, step)
        np.testing.assert_allclose(losses["capacity"], capacity, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(losses["kl_loss"], kl, rtol=1e-5)
        np.testing.assert_allclose(losses["reconstruction_loss"], recon, rtol=1e-5)
        np.testing.assert_allclose(losses["loss"], recon + 10.0 * abs(kl - capacity), rtol=1e-5)
        assert losses["beta"] == 10.0  # gamma is the weight applied; beta (4) is not used


def test_kl_schedule_multiplies_gamma_and_free_bits_compose_with_capacity():
    x = random_images(6)
    encoder, decoder = networks()
    model = BetaVAE(
        encoder, decoder, max_capacity=50.0, capacity_steps=100, gamma=10.0,
        kl_schedule=kerasvae.schedules.LinearWarmup(50), free_bits=30.0,
    )
    recon, kl_dims = numpy_terms(model, x)
    # Each dimension's batch KL (about 20 nats) is under 30 free bits: R = 2 * 30.
    assert np.all(kl_dims.mean(0) < 30.0)
    regularizer = np.maximum(kl_dims.mean(0), 30.0).sum()
    for step, warmup in ((30, 0.6), (80, 1.0)):
        capacity = 50.0 * min(1.0, step / 100)
        losses = losses_at(model, x, step)
        np.testing.assert_allclose(losses["beta"], 10.0 * warmup, rtol=1e-6)
        np.testing.assert_allclose(losses["kl_term"], abs(regularizer - capacity), rtol=1e-5)
        np.testing.assert_allclose(
            losses["loss"], recon + 10.0 * warmup * abs(regularizer - capacity), rtol=1e-5
        )


@pytest.mark.compiled_step
def test_fit_logs_the_capacity_of_each_step_and_resumes_it_after_saving(tmp_path):
    x = random_images(16)
    model = BetaVAE(*networks(), max_capacity=5.0, capacity_steps=4, gamma=10.0, seed=0)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    # One step per epoch: each epoch logs one forward pass.
    history = model.fit(x, epochs=6, batch_size=16, verbose=0).history
    np.testing.assert_allclose(history["capacity"], [0.0, 1.25, 2.5, 3.75, 5.0, 5.0], atol=1e-6)
    expected = np.add(history["reconstruction_loss"], 10.0 * np.abs(np.subtract(history["kl_loss"], history["capacity"])))
    np.testing.assert_allclose(history["loss"], expected, rtol=1e-5)
    reloaded = save_and_load(model, str(tmp_path / "capacity.keras"))
    assert isinstance(reloaded, BetaVAE)
    for key in ("beta", "max_capacity", "capacity_steps", "gamma", "seed"):
        assert reloaded.get_config()[key] == model.get_config()[key], key
    assert int(to_numpy(reloaded.kl_step)) == 6
    results = reloaded.evaluate(x, batch_size=16, verbose=0, return_dict=True)
    assert results["capacity"] == 5.0
    np.testing.assert_allclose(reloaded.predict(x[:3], verbose=0), model.predict(x[:3], verbose=0), atol=1e-6)


def test_bad_arguments_name_the_value():
    encoder, decoder = networks()
    with pytest.raises(ValueError, match="max_capacity=-1"):
        BetaVAE(encoder, decoder, max_capacity=-1)
    with pytest.raises(ValueError, match="max_capacity=inf"):
        BetaVAE(encoder, decoder, max_capacity=float("inf"))
    with pytest.raises(ValueError, match="capacity_steps=0"):
        BetaVAE(encoder, decoder, max_capacity=25.0, capacity_steps=0)
    with pytest.raises(ValueError, match="gamma=-5"):
        BetaVAE(encoder, decoder, max_capacity=25.0, gamma=-5)
    with pytest.raises(ValueError, match="beta=-1"):
        BetaVAE(encoder, decoder, beta=-1)
