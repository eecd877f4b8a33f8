import os
import subprocess
import sys

import numpy as np
import pytest
import keras
from keras import ops

import kerasvae
from kerasvae import data, zoo
from tests.helpers import DATA_SHAPE, random_images, save_and_load, tiny_vae

LOSS_KEYS = {"loss", "reconstruction_loss", "kl_loss", "beta"}
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def compiled(model, lr=1e-3):
    model.compile(optimizer=keras.optimizers.Adam(lr))
    return model


@pytest.fixture(scope="module")
def fashion_subset():
    (x_train, _), (x_test, _) = data.load_fashion_mnist()
    return x_train[:2048], x_test[:512]


# === Training and the Keras workflow ===
@pytest.mark.compiled_step
def test_fit_on_arrays_and_datasets_reports_the_same_keys():
    x = random_images(64)
    model = compiled(tiny_vae())
    history = model.fit(x, epochs=1, batch_size=16, validation_data=(x[:16],), verbose=0)
    assert set(history.history) == LOSS_KEYS | {f"val_{k}" for k in LOSS_KEYS}
    history = model.fit(data.make_dataset(x, 16, seed=0), epochs=1, shuffle=False, verbose=0)
    assert set(history.history) == LOSS_KEYS
    results = model.evaluate(x, batch_size=32, verbose=0, return_dict=True)
    assert set(results) == LOSS_KEYS
    np.testing.assert_allclose(
        results["loss"], results["reconstruction_loss"] + results["kl_loss"], rtol=1e-5
    )
    assert model.predict(x[:5], verbose=0).shape == (5,) + DATA_SHAPE


@pytest.mark.compiled_step
def test_loss_goes_down_on_real_fashion_mnist(fashion_subset):
    x_train, x_test = fashion_subset
    keras.utils.set_random_seed(0)
    model = compiled(tiny_vae(latent_dim=8))
    before = model.evaluate(x_test, batch_size=256, verbose=0, return_dict=True)["loss"]
    model.fit(x_train, epochs=4, batch_size=32, verbose=0)
    after = model.evaluate(x_test, batch_size=256, verbose=0, return_dict=True)
    # An untrained net scores about 545 nats (784 * log 2); 256 steps on 2k
    # images bring a 32-unit VAE below 350 (about 360 after 96 steps).
    assert before > 500 and after["loss"] < 350, (before, after)
    assert after["kl_loss"] > 1.0  # the latent code is used


def test_beta_weights_the_kl_term():
    x = random_images(32)
    model = compiled(tiny_vae(beta=0.0))
    results = model.evaluate(x, verbose=0, return_dict=True)
    np.testing.assert_allclose(results["loss"], results["reconstruction_loss"], rtol=1e-6)
    model.beta = 4.0
    results = model.evaluate(x, verbose=0, return_dict=True)
    np.testing.assert_allclose(
        results["loss"], results["reconstruction_loss"] + 4.0 * results["kl_loss"], rtol=1e-5
    )
    with pytest.raises(ValueError, match="beta=-1"):
        model.beta = -1


@pytest.mark.parametrize(
    "covariance,likelihood",
    [("full", "bernoulli"), ("diagonal", kerasvae.Gaussian(scale=0.1)), ("diagonal", kerasvae.Gaussian(learn_variance=True))],
)
def test_other_posteriors_and_likelihoods_train(covariance, likelihood):
    model = compiled(tiny_vae(covariance=covariance, likelihood=likelihood))
    history = model.fit(random_images(64), epochs=2, batch_size=16, verbose=0)
    assert all(np.isfinite(v).all() for v in history.history.values())
    assert model.reconstruct(random_images(2)).shape == (2,) + DATA_SHAPE


def test_standard_callbacks_work(tmp_path):
    x = random_images(64)
    model = compiled(tiny_vae())
    callbacks = [
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=1),
        keras.callbacks.ModelCheckpoint(str(tmp_path / "best.keras"), monitor="val_loss", save_best_only=True),
        keras.callbacks.BackupAndRestore(str(tmp_path / "backup")),
        keras.callbacks.TensorBoard(str(tmp_path / "tb")),
    ]
    model.fit(x, epochs=2, batch_size=16, validation_data=(x[:16],), callbacks=callbacks, verbose=0)
    assert os.path.isfile(tmp_path / "best.keras")
    assert os.listdir(tmp_path / "tb")
    reloaded = keras.saving.load_model(tmp_path / "best.keras", safe_mode=True)
    assert isinstance(reloaded, kerasvae.VAE)


def test_backup_and_restore_resumes_an_interrupted_fit(tmp_path):
    class Interrupt(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise KeyboardInterrupt

    x = random_images(32)
    backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))
    model = compiled(tiny_vae())
    with pytest.raises(KeyboardInterrupt):
        model.fit(x, epochs=4, batch_size=16, callbacks=[backup, Interrupt()], verbose=0)
    fresh = compiled(tiny_vae())
    history = fresh.fit(x, epochs=4, batch_size=16, callbacks=[backup], verbose=0)
    assert len(history.history["loss"]) == 2  # epochs 3 and 4 only
    assert int(fresh.optimizer.iterations) == 8


def test_model_is_built_on_creation():
    model = tiny_vae()
    assert model.built and model.trainable_weights
    assert tuple(model(random_images(2)).shape) == (2,) + DATA_SHAPE


def test_inference_methods():
    model = tiny_vae(latent_dim=3)
    z_mean, z_log_var = model.encode(random_images(4))
    assert tuple(z_mean.shape) == tuple(z_log_var.shape) == (4, 3)
    probabilities = ops.convert_to_numpy(model.decode(np.zeros((2, 3), "float32")))
    assert probabilities.shape == (2,) + DATA_SHAPE and probabilities.min() >= 0 and probabilities.max() <= 1
    np.testing.assert_array_equal(
        ops.convert_to_numpy(model.sample(3, seed=1)), ops.convert_to_numpy(model.sample(3, seed=1))
    )
    for bad in (0, -2, 2.5, True):
        with pytest.raises(ValueError, match="num_samples"):
            model.sample(bad)


# === Saving ===
def test_keras_file_round_trip_is_identical_and_resumes_training(tmp_path):
    x = random_images(64)
    model = compiled(tiny_vae(beta=0.5))
    model.fit(x, epochs=1, batch_size=16, verbose=0)
    reloaded = save_and_load(model, str(tmp_path / "vae.keras"))
    assert isinstance(reloaded, kerasvae.VAE) and reloaded.beta == 0.5
    np.testing.assert_array_equal(model.predict(x, verbose=0), reloaded.predict(x, verbose=0))
    assert int(reloaded.optimizer.iterations) == int(model.optimizer.iterations) == 4
    for a, b in zip(model.optimizer.variables, reloaded.optimizer.variables):
        np.testing.assert_array_equal(ops.convert_to_numpy(a), ops.convert_to_numpy(b))
    reloaded.fit(x, epochs=1, batch_size=16, verbose=0)
    assert int(reloaded.optimizer.iterations) == 8


def test_keras_file_saved_before_fit_loads(tmp_path):
    reloaded = save_and_load(tiny_vae(covariance="full"), str(tmp_path / "untrained.keras"))
    assert reloaded.covariance == "full"


_SAVE = (
    "m = tiny_vae(); m.compile(optimizer='adam')\n"
    "m.fit(random_images(32), epochs=1, batch_size=16, verbose=0)\n"
    "m.save(PATH); np.save(PATH + '.npy', m.predict(random_images(4, seed=9), verbose=0))\n"
)
_LOAD = (
    "m = keras.saving.load_model(PATH, safe_mode=True)\n"
    "np.testing.assert_allclose(m.predict(random_images(4, seed=9), verbose=0), np.load(PATH + '.npy'), atol=1e-5)\n"
    "m.fit(random_images(32), epochs=1, batch_size=16, verbose=0)\n"
    "assert int(m.optimizer.iterations) == 4, int(m.optimizer.iterations)\n"
)


@pytest.mark.requires_tensorflow  # runs the JAX side in a subprocess: once per suite
@pytest.mark.parametrize("direction", ["jax_to_tensorflow", "tensorflow_to_jax"])
def test_keras_file_moves_between_backends(direction, tmp_path):
    """Trained and saved on one backend, the file predicts the same and trains
    on after loading under the other (Adam state included: 2 + 2 steps)."""
    path = str(tmp_path / "other_backend.keras")
    here = {"PATH": path, "np": np, "keras": keras, "tiny_vae": tiny_vae, "random_images": random_images}
    script = (
        "import numpy as np, keras, sys; sys.path.insert(0, %r)\n"
        "from tests.helpers import tiny_vae, random_images\nPATH = %r\n"
    ) % (REPO, path)
    env = dict(os.environ, KERAS_BACKEND="jax")
    if direction == "jax_to_tensorflow":
        subprocess.run([sys.executable, "-c", script + _SAVE], env=env, check=True, cwd=REPO, timeout=300)
        exec(_LOAD, here)
    else:
        exec(_SAVE, here)
        subprocess.run([sys.executable, "-c", script + _LOAD], env=env, check=True, cwd=REPO, timeout=300)


# === Mixed precision ===
@pytest.mark.compiled_step
@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_trains_under_mixed_precision(policy, fashion_subset):
    keras.config.set_dtype_policy(policy)
    x = fashion_subset[0][:1024]
    model = tiny_vae()
    # SGD, not Adam: Adam's update ignores the scale of the gradients and
    # would hide a loss scale applied to the gradients but not to the loss.
    model.compile(optimizer=keras.optimizers.SGD(1e-3, momentum=0.9))
    before = model.evaluate(x, verbose=0, return_dict=True)["loss"]
    history = model.fit(x, epochs=2, batch_size=16, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    # Learning, not just finite: gradients unscaled by 32768 but never scaled
    # up would stall here.
    after = model.evaluate(x, verbose=0, return_dict=True)["loss"]
    assert after < before - 100.0, (before, after)


# === Bad input ===
def test_bad_training_data_is_refused_with_the_value():
    model = compiled(tiny_vae())
    with pytest.raises(ValueError, match=r"x must have shape \(None, 28, 28, 1\).*x.shape=\(10, 28, 28\)"):
        model.fit(np.zeros((10, 28, 28), "float32"), verbose=0)
    with pytest.raises(ValueError, match=r"shape.*\(10, 784\)"):
        model.fit(np.zeros((10, 784), "float32"), verbose=0)
    with pytest.raises(ValueError, match=r"\[0, 1\].*\[0, 255\]"):
        model.fit(np.full((4,) + DATA_SHAPE, 255.0, "float32") * np.eye(28)[None, :, :, None], verbose=0)
    nan_images = random_images(4)
    nan_images[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="1 NaN or infinite"):
        model.fit(nan_images, verbose=0)
    with pytest.raises(ValueError, match=r"validation_data\[0\]"):
        model.fit(random_images(4), validation_data=(np.zeros((2, 5)),), verbose=0)
    with pytest.raises(ValueError, match=r"batches of shape \(None, 28, 28\)"):
        model.fit(data.make_dataset(np.zeros((8, 28, 28)), 4), verbose=0)


def test_mismatched_networks_are_refused():
    encoder = kerasvae.networks.build_mlp_encoder(DATA_SHAPE, 4, hidden_units=(8,))
    with pytest.raises(ValueError, match=r"decoder input must have shape \(None, 4\).*\(None, 3\)"):
        kerasvae.VAE(encoder, kerasvae.networks.build_mlp_decoder(3, DATA_SHAPE, hidden_units=(8,)))
    with pytest.raises(ValueError, match=r"decoder output shape.*\(None, 28, 28, 1\).*\(None, 14, 14, 1\)"):
        kerasvae.VAE(encoder, kerasvae.networks.build_mlp_decoder(4, (14, 14, 1), hidden_units=(8,)))
    with pytest.raises(ValueError, match="covariance='full'"):
        kerasvae.VAE(encoder, kerasvae.networks.build_mlp_decoder(4, DATA_SHAPE), covariance="full")
    with pytest.raises(ValueError, match="2 output"):
        kerasvae.VAE(encoder, kerasvae.networks.build_mlp_decoder(4, DATA_SHAPE), likelihood=kerasvae.Gaussian(learn_variance=True))
