"""Shared test helpers: tiny models, gradients on any backend, round trips."""

import numpy as np
import keras
import pytest

import kerasvae

DATA_SHAPE = (28, 28, 1)


def tiny_vae(latent_dim=3, covariance="diagonal", likelihood="bernoulli", seed=0, **kwargs):
    """A VAE small enough for a test: 28x28x1 -> 32 -> latent_dim."""
    num_outputs = 2 if getattr(kerasvae.likelihoods.get(likelihood), "learn_variance", False) else 1
    encoder = kerasvae.networks.build_mlp_encoder(
        DATA_SHAPE, latent_dim, hidden_units=(32,), covariance=covariance
    )
    decoder = kerasvae.networks.build_mlp_decoder(
        latent_dim, DATA_SHAPE, hidden_units=(32,), num_outputs=num_outputs
    )
    return kerasvae.VAE(
        encoder, decoder, likelihood=likelihood, covariance=covariance, seed=seed, **kwargs
    )


def random_images(n, seed=0):
    return np.random.default_rng(seed).random((n,) + DATA_SHAPE, dtype=np.float32)


def gradients(fn, *args):
    """d sum(fn(*args)) / d args, as NumPy arrays, on the active backend."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        tensors = [tf.constant(a) for a in args]
        with tf.GradientTape() as tape:
            tape.watch(tensors)
            total = tf.reduce_sum(fn(*tensors))
        return [g.numpy() for g in tape.gradient(total, tensors)]
    if backend == "jax":
        import jax
        import jax.numpy as jnp

        grads = jax.grad(lambda *a: jnp.sum(fn(*a)), argnums=tuple(range(len(args))))(
            *[jnp.asarray(a) for a in args]
        )
        return [np.asarray(g) for g in grads]
    raise NotImplementedError(backend)


def run_layer_serialization_test(layer):
    """Config round trip: a new layer from `get_config` has the same config."""
    config = layer.get_config()
    revived = layer.__class__.from_config(config)
    assert revived.get_config() == config
    serialized = keras.saving.serialize_keras_object(layer)
    assert serialized["registered_name"].startswith("kerasvae>")
    again = keras.saving.deserialize_keras_object(serialized)
    assert type(again) is type(layer)
    return revived


def save_and_load(model, path):
    model.save(path)
    return keras.saving.load_model(path, safe_mode=True)


def to_numpy(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


def float64_context():
    """Lets float64 NumPy inputs stay float64 (JAX turns them into float32 by default)."""
    if keras.backend.backend() == "jax":
        import jax

        return jax.enable_x64(True)
    import contextlib

    return contextlib.nullcontext()


def describe_signatures(loaded):
    """A stable text form of every signature: inputs and outputs with dtype and shape."""
    lines = []
    for name in sorted(loaded.signatures):
        fn = loaded.signatures[name]
        lines.append(f"signature {name}")
        for key, spec in sorted(fn.structured_input_signature[1].items()):
            lines.append(f"  input  {key}: {spec.dtype.name} {spec.shape.as_list()}")
        for key, spec in sorted(fn.structured_outputs.items()):
            lines.append(f"  output {key}: {spec.dtype.name} {spec.shape.as_list()}")
    return "\n".join(lines) + "\n"


def conv_case(value="conv"):
    """A `parametrize` value on convolutional networks, marked `conv_variant`:
    the TF half of the suite runs it, the JAX half (slow XLA CPU convolutions)
    keeps only the plain VAE's conv preset."""
    return pytest.param(value, marks=pytest.mark.conv_variant)


def preset_cases():
    """The zoo's preset names for `parametrize`; the conv presets of the
    families other than the plain VAE are `conv_case`s."""
    from kerasvae import zoo

    cases = []
    for name in zoo.list_presets():
        preset = zoo.get_preset(name)
        conv_variant = preset.network == "conv" and preset.family != "vae"
        cases.append(conv_case(name) if conv_variant else name)
    return cases
