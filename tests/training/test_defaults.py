import os

import keras
import numpy as np
import pytest

import kerasvae
from kerasvae.training import defaults

BACKEND = keras.backend.backend()

pytestmark = pytest.mark.compile_defaults


def tiny_vae(seed=0):
    keras.utils.set_random_seed(seed)
    encoder = kerasvae.networks.build_mlp_encoder((4, 4, 1), 2, hidden_units=(8,))
    decoder = kerasvae.networks.build_mlp_decoder(2, (4, 4, 1), hidden_units=(8,))
    return kerasvae.VAE(encoder, decoder, seed=seed)


def test_defaults_per_backend():
    assert defaults.compile_defaults(backend="tensorflow") == {
        "steps_per_execution": defaults.TF_STEPS_PER_EXECUTION
    }
    assert defaults.compile_defaults(backend="jax") == {}


def test_only_missing_keys_are_filled():
    model = None
    expected = defaults.compile_defaults(model)
    assert defaults.with_compile_defaults(model, {}) == expected
    explicit = {"steps_per_execution": 3, "jit_compile": True}
    assert defaults.with_compile_defaults(model, explicit) == {**expected, **explicit}
    # A debugging run keeps Keras's per-step behaviour.
    assert defaults.with_compile_defaults(model, {"run_eagerly": True}) == {"run_eagerly": True}


@pytest.mark.parametrize("steps_per_execution", [defaults.TF_STEPS_PER_EXECUTION, 3])
def test_steps_per_execution_gives_the_same_training(steps_per_execution):
    # Several steps per call must be the same steps: the same sampler noise
    # and the same updates. One Adam step moves weights by about the learning
    # rate (1e-3), so a skipped or repeated step or noise draw breaks 1e-5.
    x = np.random.default_rng(0).random((40, 4, 4, 1), dtype=np.float32)  # 5 batches of 8
    weights, losses = [], []
    initial = [keras.ops.convert_to_numpy(w) for w in tiny_vae().trainable_weights]
    for spe in (1, steps_per_execution):
        model = tiny_vae()
        model.compile(optimizer=keras.optimizers.Adam(1e-3), steps_per_execution=spe)
        history = model.fit(x, batch_size=8, epochs=3, shuffle=False, verbose=0)
        weights.append([keras.ops.convert_to_numpy(w) for w in model.trainable_weights])
        losses.append(history.history["loss"])
    for a, b in zip(*weights):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)
    np.testing.assert_allclose(losses[0], losses[1], rtol=1e-5)
    # ... and the comparison is not vacuous: 15 steps moved every weight.
    for trained, start in zip(weights[0], initial):
        assert np.max(np.abs(trained - start)) > 1e-3


def test_compile_fills_in_the_defaults_and_keeps_what_the_caller_gives():
    model = tiny_vae()
    model.compile(optimizer="adam")
    expected = defaults.TF_STEPS_PER_EXECUTION if BACKEND == "tensorflow" else 1
    assert model.steps_per_execution == expected
    model.compile(optimizer="adam", steps_per_execution=3)
    assert model.steps_per_execution == 3


def test_models_with_convolutions_get_no_tensorflow_default():
    dense = tiny_vae()
    keras.utils.set_random_seed(0)
    encoder = kerasvae.networks.build_conv_encoder((8, 8, 1), 2, filters=(4,))
    decoder = kerasvae.networks.build_conv_decoder(2, (8, 8, 1), filters=(4,))
    conv = kerasvae.VAE(encoder, decoder)
    assert not defaults.has_convolutions(dense)
    assert defaults.has_convolutions(conv)
    assert defaults.compile_defaults(conv, backend="tensorflow") == {}
    assert defaults.compile_defaults(dense, backend="tensorflow") == {
        "steps_per_execution": defaults.TF_STEPS_PER_EXECUTION
    }


@pytest.mark.parametrize("given", [{}, {"steps_per_execution": 3}])
def test_a_keras_file_keeps_what_the_caller_gave_and_reloads_compiled(given, tmp_path):
    from tests.helpers import save_and_load

    model = tiny_vae()
    model.compile(optimizer="adam", **given)
    x = np.random.default_rng(0).random((16, 4, 4, 1), dtype=np.float32)
    model.fit(x, epochs=1, batch_size=8, verbose=0)
    # Only what the caller gave is saved: the loading backend fills in its own defaults.
    config = model.get_compile_config()
    if given:
        assert config["steps_per_execution"] == 3
    elif defaults.compile_defaults(model):
        assert "steps_per_execution" not in config
    reloaded = save_and_load(model, str(tmp_path / "m.keras"))
    expected = given.get("steps_per_execution", defaults.compile_defaults(reloaded).get("steps_per_execution", 1))
    assert reloaded.steps_per_execution == expected
    assert int(reloaded.optimizer.iterations) == 2  # compiled on load, optimizer state restored


@pytest.mark.requires_tensorflow
def test_no_default_inside_a_distribution_strategy():
    import tensorflow as tf

    with tf.distribute.OneDeviceStrategy("/cpu:0").scope():
        model = tiny_vae()
        assert defaults.compile_defaults(model) == {}
        model.compile(optimizer="adam")
    assert model.steps_per_execution == 1
    assert defaults.compile_defaults(model) == {"steps_per_execution": defaults.TF_STEPS_PER_EXECUTION}


MIRRORED_SPE = r"""
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from tests.training.test_defaults import tiny_vae
with tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]).scope():
    model = tiny_vae()
    model.compile(optimizer="adam")  # no default under a strategy: accepted
    try:
        model.compile(optimizer="adam", steps_per_execution=4)
    except ValueError as error:
        print(error)
"""


@pytest.mark.requires_tensorflow
def test_several_steps_per_call_under_two_mirrored_replicas_are_refused_with_the_value():
    # Two logical CPUs must be set before TensorFlow starts: a process of its own.
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(
        [sys.executable, "-c", MIRRORED_SPE], cwd=root, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert "Received: steps_per_execution=4 with 2 replicas" in result.stdout
