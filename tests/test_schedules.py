"""KL schedules and free bits: against their formulas, and through `fit` on each backend."""

import numpy as np
import pytest
import keras
from keras import ops

from kerasvae import schedules
from tests.helpers import random_images, save_and_load, tiny_vae, to_numpy


def linear_reference(t, steps, start):
    return start + (1 - start) * min(1.0, t / steps)


def cyclical_reference(t, cycle, ratio, num_cycles):
    if num_cycles is not None and t >= cycle * num_cycles:
        return 1.0
    tau = (t % cycle) / cycle
    return min(1.0, tau / ratio)


@pytest.mark.parametrize("start", [0.0, 0.25])
def test_linear_warmup_matches_its_formula(start):
    schedule = schedules.LinearWarmup(40, start=start)
    for t in (0, 1, 13, 39, 40, 41, 1000):
        assert float(to_numpy(schedule(t))) == pytest.approx(linear_reference(t, 40, start), abs=1e-6)


@pytest.mark.parametrize("num_cycles", [None, 2])
def test_cyclical_annealing_matches_its_formula(num_cycles):
    schedule = schedules.CyclicalAnnealing(10, ratio=0.5, num_cycles=num_cycles)
    for t in range(0, 35):
        expected = cyclical_reference(t, 10, 0.5, num_cycles)
        assert float(to_numpy(schedule(t))) == pytest.approx(expected, abs=1e-6), t


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: schedules.LinearWarmup(0), "warmup_steps=0"),
        (lambda: schedules.LinearWarmup(10, start=1.5), "start=1.5"),
        (lambda: schedules.CyclicalAnnealing(10, ratio=0.0), "ratio=0.0"),
        (lambda: schedules.CyclicalAnnealing(10, num_cycles=-1), "num_cycles=-1"),
        (lambda: schedules.get("linear"), "kl_schedule='linear'"),
    ],
)
def test_bad_schedules_are_refused_with_the_value(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_the_schedule_advances_once_per_training_step_and_is_logged():
    x = random_images(48)
    model = tiny_vae(beta=2.0, kl_schedule=schedules.LinearWarmup(8))
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    history = model.fit(x, epochs=2, batch_size=16, verbose=0)  # 3 steps an epoch
    assert int(to_numpy(model.kl_step)) == 6
    # The logged beta is the weight of the last step of each epoch (steps 2 and 5).
    np.testing.assert_allclose(history.history["beta"], [2.0 * 2 / 8, 2.0 * 5 / 8], rtol=1e-6)
    # Evaluation neither advances the counter nor changes the weight it reports.
    results = model.evaluate(x, batch_size=16, verbose=0, return_dict=True)
    assert int(to_numpy(model.kl_step)) == 6
    assert results["beta"] == pytest.approx(2.0 * 6 / 8)
    np.testing.assert_allclose(
        results["loss"], results["reconstruction_loss"] + 2.0 * 6 / 8 * results["kl_loss"], rtol=1e-5
    )


def test_the_step_counter_and_schedule_survive_a_keras_file(tmp_path):
    model = tiny_vae(kl_schedule=schedules.CyclicalAnnealing(6, ratio=0.5, num_cycles=3), free_bits=0.1)
    model.compile(optimizer="adam")
    model.fit(random_images(32), epochs=1, batch_size=8, verbose=0)
    restored = save_and_load(model, str(tmp_path / "m.keras"))
    assert int(to_numpy(restored.kl_step)) == 4
    assert restored.kl_schedule.get_config() == model.kl_schedule.get_config()
    assert restored.free_bits == pytest.approx(0.1)


def numpy_free_bits_loss(model, x, free_bits):
    """The loss with free bits, from the networks' outputs and the same draw."""
    z_mean, z_log_var = [np.asarray(t, "float64") for t in model.encode(x)]
    eps = np.asarray(keras.random.normal(z_mean.shape, seed=0), "float64")
    z = z_mean + np.exp(0.5 * z_log_var) * eps
    logits = np.asarray(model.decoder(z.astype("float32")), "float64").reshape(len(x), -1)
    flat = x.reshape(len(x), -1)
    reconstruction = -np.sum(flat * logits - np.logaddexp(0, logits), axis=1).mean()
    kl_dims = 0.5 * (z_mean**2 + np.exp(z_log_var) - 1 - z_log_var)
    regularizer = np.sum(np.maximum(kl_dims.mean(axis=0), free_bits))
    return reconstruction, regularizer


@pytest.mark.parametrize("free_bits", [0.0, 0.05, 5.0])
def test_free_bits_hold_each_dimension_at_the_threshold(free_bits):
    model = tiny_vae(latent_dim=3, free_bits=free_bits)
    x = random_images(16, seed=2)
    terms = model.elbo_terms(x, seed=0)
    regularizer = model.kl_regularizer(terms["kl_loss"], terms["kl_dims"], None, 0)
    reconstruction, expected = numpy_free_bits_loss(model, x, free_bits)
    np.testing.assert_allclose(float(to_numpy(regularizer)), expected, rtol=1e-4)
    np.testing.assert_allclose(float(to_numpy(ops.mean(terms["reconstruction_loss"]))), reconstruction, rtol=1e-4)
    if free_bits == 5.0:  # every dimension below the threshold: a constant, no gradient
        assert float(to_numpy(regularizer)) == pytest.approx(3 * 5.0)


def test_free_bits_on_a_full_covariance_hold_the_whole_kl():
    model = tiny_vae(latent_dim=3, covariance="full", free_bits=2.0)
    x = random_images(8)
    terms = model.elbo_terms(x, seed=0)
    assert terms["kl_dims"] is None
    regularizer = float(to_numpy(model.kl_regularizer(terms["kl_loss"], None, None, 0)))
    kl = float(to_numpy(ops.mean(terms["kl_loss"])))
    assert regularizer == pytest.approx(max(kl, 6.0), rel=1e-6)


def test_free_bits_are_logged_and_negative_values_refused():
    model = tiny_vae(free_bits=0.5)
    model.compile(optimizer="adam")
    history = model.fit(random_images(32), epochs=1, batch_size=16, verbose=0)
    assert history.history["kl_term"][0] >= 0.5 * 3 - 1e-6
    with pytest.raises(ValueError, match="free_bits=-1"):
        tiny_vae(free_bits=-1)
