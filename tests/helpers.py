"""Shared test helpers: tiny models, gradients on any backend, round trips."""

import numpy as np
import keras
import pytest

import kerasvae

DATA_SHAPE = (28, 28, 1)


def tiny_vae(latent_dim=3, covariance="diagonal", likelihood="bernoulli", seed=0, **kwargs):
    """A VAE small enough for a test: 28x28x1 -> 32 -> latent_dim."""
    chosen = kerasvae.likelihoods.get(likelihood)
    two = getattr(chosen, "learn_variance", False) or isinstance(chosen, kerasvae.likelihoods.DiscretizedLogistic)
    num_outputs = 2 if two else 1
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
        conv_variant = preset.network in ("conv", "gated_conv") and preset.family != "vae"
        cases.append(conv_case(name) if conv_variant else name)
    return cases


def assert_signatures_match_the_keras_model(model, loaded, x, labels=None, rtol=1e-5, atol=1e-5, seed=11):
    """Every output of every served signature of `loaded` (an export of
    `model`) equals what the Keras model computes eagerly from the same input.

    `sample_seeded`'s draw is recomputed from its documented noise: a
    standard normal under the stateless key `[seed, 0]` and, for a mixture
    prior, a uniform under `[seed, 1]`, mapped by `latent_from_noise`.
    """
    import tensorflow as tf

    n = len(x)

    def close(served, expected, what):
        served, expected = np.asarray(served), to_numpy(expected).astype("float32")
        assert served.dtype == np.float32, (what, served.dtype)
        np.testing.assert_allclose(served, expected, rtol=rtol, atol=atol, err_msg=what)

    def check(signature, feeds, expected):
        served = loaded.signatures[signature](**feeds)
        assert set(served) == set(expected), (signature, sorted(served), sorted(expected))
        for key, value in expected.items():
            close(served[key], value, f"{signature}/{key}")

    labelled = {} if labels is None else {"label": tf.constant(labels, tf.int64)}
    with_label = {} if labels is None else {"labels": labels}
    feeds = {"x": tf.constant(x), **labelled}
    # The posterior through the public `encode`; a two-level model also
    # serves each level's parameters (`encode_outputs`).
    mean, second = model.encode(x, **with_label)
    second_name = "z_log_var" if model.covariance == "diagonal" else "scale_tril"
    expected = dict(model.encode_outputs(x, **with_label))
    for key, value in (("z_mean", mean), (second_name, second)):
        np.testing.assert_allclose(to_numpy(expected[key]), to_numpy(value), rtol=rtol, atol=atol)
    check("encode", feeds, expected)
    reconstruction = model.reconstruct(x, **with_label)
    check("reconstruct", feeds, {"reconstruction": reconstruction})
    check("serving_default", feeds, {"reconstruction": reconstruction})
    check("elbo", feeds, dict(model.negative_elbo(x, **with_label)))
    z = np.random.default_rng(seed).normal(size=(n, model.latent_dim)).astype("float32")
    check("decode", {"z": tf.constant(z), **labelled}, dict(model.decode_outputs(z, **with_label)))
    check("prior_log_prob", {"z": tf.constant(z)}, {"log_prob": model.prior_log_prob(z)})
    normal_dim, uniform_dim = model.prior_noise_dims
    normal = tf.random.stateless_normal((n, normal_dim), seed=[seed, 0])
    uniform = tf.random.stateless_uniform((n, uniform_dim), seed=[seed, 1]) if uniform_dim else None
    drawn = model.latent_from_noise(normal, uniform)
    count = {"label": labelled["label"]} if labels is not None else {"num_samples": tf.constant(n)}
    check(
        "sample_seeded",
        {**count, "seed": tf.constant(seed, tf.int64)},
        {"z": drawn, "samples": model.decode(drawn, **with_label)},
    )
