"""The KL schedule reads the step before it is advanced, on every backend."""

import numpy as np
import keras

import kerasvae
from tests.helpers import random_images, tiny_vae, to_numpy


def test_advance_step_returns_the_step_before_the_increment():
    model = tiny_vae()
    model.kl_step.assign(7)
    step = model.advance_step(training=True)
    # On TensorFlow the variable itself would read 8 once incremented.
    assert int(to_numpy(step)) == 7 and int(to_numpy(model.kl_step)) == 8
    assert int(to_numpy(model.advance_step(training=False))) == 8
    assert int(to_numpy(model.kl_step)) == 8


def test_schedule_weight_logged_by_fit_is_the_weight_at_the_step_taken():
    model = tiny_vae(kl_schedule=kerasvae.schedules.LinearWarmup(10))
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    # One step per epoch, so each epoch's logged weight is w(t) at that step.
    history = model.fit(random_images(16), epochs=3, batch_size=16, verbose=0)
    np.testing.assert_allclose(history.history["beta"], [0.0, 0.1, 0.2], atol=1e-7)
    assert int(to_numpy(model.kl_step)) == 3
