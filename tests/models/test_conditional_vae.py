import numpy as np
import pytest
import keras

import kerasvae
from kerasvae.models import ConditionalVAE
from tests.helpers import DATA_SHAPE, conv_case, random_images, save_and_load, to_numpy
from tests.models import numpy_reference as ref

NUM_CLASSES, LATENT = 3, 2
EYE = np.eye(NUM_CLASSES)


def tiny_cvae(network="mlp", nearly_deterministic=False, **kwargs):
    keras.utils.set_random_seed(0)  # the initial weights, so the effect sizes below are fixed
    if network == "mlp":
        enc_kw = dec_kw = {"hidden_units": (8,)}
    else:
        enc_kw, dec_kw = {"filters": (4, 8), "dense_units": 8}, {"filters": (8, 4), "dense_units": 8}
    encoder = getattr(kerasvae.networks, f"build_{network}_encoder")(
        DATA_SHAPE, LATENT, num_classes=NUM_CLASSES, **enc_kw
    )
    decoder = getattr(kerasvae.networks, f"build_{network}_decoder")(
        LATENT, DATA_SHAPE, num_classes=NUM_CLASSES, **dec_kw
    )
    if nearly_deterministic:
        ref.make_posterior_nearly_deterministic(encoder)
    kwargs.setdefault("seed", 0)
    return ConditionalVAE(encoder, decoder, num_classes=NUM_CLASSES, **kwargs)


def amplify_labels(model):
    """Larger decoder weights than at initialization, where logits near 0 score
    every image about 784 log 2 whatever the label: the labels then move the
    loss far beyond the tests' tolerances."""
    head = model.decoder.get_layer("logits_or_mean")
    head.set_weights([10.0 * w for w in head.get_weights()])
    hidden = model.decoder.get_layer("dense_0")
    kernel, bias = hidden.get_weights()
    kernel[LATENT:] *= 5.0  # the rows the one-hot label multiplies
    hidden.set_weights([kernel, bias])


def sigmoid(logits):
    return 1.0 / (1.0 + np.exp(-logits))


# === The loss against NumPy ===
def test_loss_matches_numpy_for_every_label_form():
    x = random_images(6)
    labels = np.array([0, 2, 1, 1, 0, 2])
    model = tiny_cvae(nearly_deterministic=True, beta=2.0)
    amplify_labels(model)
    mean, log_var = ref.encoder_forward(model.encoder, x, EYE[labels])
    logits = ref.decoder_forward(model.decoder, mean, EYE[labels])
    recon = -np.mean(ref.bernoulli_log_prob(x, logits))
    kl = ref.kl_per_dimension(mean, log_var).sum(-1).mean()
    # The label matters: the same networks with other labels give another loss.
    wrong = np.roll(labels, 1)
    wrong_mean, _ = ref.encoder_forward(model.encoder, x, EYE[wrong])
    wrong_recon = -np.mean(ref.bernoulli_log_prob(x, ref.decoder_forward(model.decoder, wrong_mean, EYE[wrong])))
    assert abs(wrong_recon - recon) > 100 * 1e-5 * abs(recon)  # 100 times the rtol below (1400 at seed 0)
    for form in (labels, labels.astype("int64")[:, None], EYE[labels].astype("float32"), EYE[labels].astype("int32")):
        losses = {k: float(to_numpy(v)) for k, v in model.compute_vae_losses(x, form).items()}
        np.testing.assert_allclose(losses["reconstruction_loss"], recon, rtol=1e-5)
        np.testing.assert_allclose(losses["kl_loss"], kl, rtol=1e-5)
        np.testing.assert_allclose(losses["loss"], recon + 2.0 * kl, rtol=1e-5)


def test_labels_change_the_decoder_output_as_numpy_computes():
    model = tiny_cvae()
    z = np.random.default_rng(1).standard_normal((4, LATENT)).astype("float32")
    outputs = {c: to_numpy(model.decode(z, c)) for c in range(NUM_CLASSES)}
    for c in range(NUM_CLASSES):
        expected = sigmoid(ref.decoder_forward(model.decoder, z, np.tile(EYE[c], (4, 1))))
        np.testing.assert_allclose(outputs[c].reshape(4, -1), expected, atol=1e-6)
    # The effect guarded is far larger than the tolerance above.
    assert np.abs(outputs[0] - outputs[1]).max() > 1e-3
    assert np.abs(outputs[1] - outputs[2]).max() > 1e-3


def test_sampling_a_chosen_class_decodes_prior_draws_with_its_one_hot():
    model = tiny_cvae()
    z = to_numpy(model.sample_latent(5, seed=3))
    for labels, classes in ((2, [2] * 5), (np.array([0, 1, 2, 0, 1]), [0, 1, 2, 0, 1])):
        images = to_numpy(model.sample(5, seed=3, labels=labels))
        expected = sigmoid(ref.decoder_forward(model.decoder, z, EYE[classes]))
        np.testing.assert_allclose(images.reshape(5, -1), expected, atol=1e-6)
    other = to_numpy(model.sample(5, seed=3, labels=0))
    assert np.abs(other - to_numpy(model.sample(5, seed=3, labels=2))).max() > 1e-3


# === The Keras workflow ===
@pytest.mark.compiled_step
@pytest.mark.parametrize("network", ["mlp", conv_case()])
def test_fit_evaluate_predict_with_labels_and_round_trip(network, tmp_path):
    x, y = random_images(32), np.arange(32) % NUM_CLASSES
    model = tiny_cvae(network)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    # Integer labels for training, one-hot ones for validation.
    validation = (x[:16], EYE[y[:16]].astype("float32"))
    history = model.fit(x, y, epochs=2, batch_size=16, validation_data=validation, verbose=0)
    keys = {"loss", "reconstruction_loss", "kl_loss", "beta"}
    assert set(history.history) == keys | {f"val_{k}" for k in keys}
    assert all(np.isfinite(v).all() for v in history.history.values())
    assert int(model.optimizer.iterations) == 4
    results = model.evaluate(x, y, batch_size=16, verbose=0, return_dict=True)
    assert set(results) == keys and np.isfinite(results["loss"])
    predicted = model.predict([x[:5], y[:5]], verbose=0)
    np.testing.assert_allclose(predicted, to_numpy(model.reconstruct(x[:5], y[:5])), atol=1e-6)
    reloaded = save_and_load(model, str(tmp_path / f"cvae_{network}.keras"))
    assert isinstance(reloaded, ConditionalVAE) and reloaded.num_classes == NUM_CLASSES
    np.testing.assert_allclose(reloaded.predict([x[:5], y[:5]], verbose=0), predicted, atol=1e-6)
    assert int(reloaded.optimizer.iterations) == 4


def test_importance_weights_tile_the_labels_with_the_samples():
    model = tiny_cvae()
    amplify_labels(model)
    x, y, k = random_images(4), np.array([0, 1, 2, 0]), 3
    log_w = to_numpy(model.log_importance_weights(x, y, num_samples=k, seed=5))
    # The same draw of z (same seed, same shapes), then everything else in NumPy.
    mean, log_var = (to_numpy(t) for t in model.encode(x, y))
    z = to_numpy(model.sampling([np.broadcast_to(t, (k,) + t.shape) for t in (mean, log_var)], seed=5))
    mean, log_var = ref.encoder_forward(model.encoder, x, EYE[y])
    expected = np.stack([
        ref.bernoulli_log_prob(x, ref.decoder_forward(model.decoder, z[i], EYE[y]))
        + ref.normal_log_prob(z[i], 0.0, 0.0)
        - ref.normal_log_prob(z[i], mean, log_var)
        for i in range(k)
    ])
    np.testing.assert_allclose(log_w, expected, rtol=1e-5)
    # Labels out of step with the examples would move log w far beyond the tolerance.
    right = ref.bernoulli_log_prob(x, ref.decoder_forward(model.decoder, z[0], EYE[y]))
    wrong = ref.bernoulli_log_prob(x, ref.decoder_forward(model.decoder, z[0], EYE[(y + 1) % NUM_CLASSES]))
    assert np.abs(wrong - right).min() > 100 * 1e-5 * np.abs(expected).max()


@pytest.mark.requires_tensorflow
def test_signature_functions_trace_with_int64_labels_and_a_dynamic_batch():
    import tensorflow as tf

    model = tiny_cvae()
    x_spec = tf.TensorSpec((None,) + DATA_SHAPE, tf.float32)
    label_spec = tf.TensorSpec((None,), tf.int64)
    noise_spec = tf.TensorSpec((None, LATENT), tf.float32)

    @tf.function(input_signature=[x_spec, label_spec, noise_spec])
    def signatures(x, label, noise):
        return {
            "encode": model.encode_outputs(x, label),
            "decode": model.decode_outputs(model.latent_from_noise(noise), label),
            "reconstruct": model.reconstruct(x, label),
            "elbo": model.negative_elbo(x, label),
        }

    x, y = random_images(3), np.array([2, 0, 1], "int64")
    noise = np.random.default_rng(0).standard_normal((3, LATENT)).astype("float32")
    traced = signatures(x, y, noise)
    np.testing.assert_allclose(traced["encode"]["z_mean"], to_numpy(model.encode(x, y)[0]), atol=1e-6)
    np.testing.assert_allclose(traced["decode"]["probabilities"], to_numpy(model.decode(noise, y)), atol=1e-6)
    np.testing.assert_allclose(traced["reconstruct"], to_numpy(model.reconstruct(x, y)), atol=1e-6)
    np.testing.assert_allclose(
        traced["elbo"]["negative_elbo"], to_numpy(model.negative_elbo(x, y)["negative_elbo"]), rtol=1e-5
    )
    with pytest.raises(ValueError, match=r"width num_classes=3.*\(None, 5\)"):
        tf.function(lambda x, l: model.reconstruct(x, l)).get_concrete_function(
            x_spec, tf.TensorSpec((None, 5), tf.float32)
        )


# === Bad input ===
def test_every_bad_label_is_refused_with_the_value_received():
    model = tiny_cvae()
    model.compile(optimizer="adam")
    x = random_images(4)
    cases = [
        (None, r"needs labels.*Received: labels=None"),
        (np.array([0, 1]), r"4 example\(s\). Received 2 labels"),
        (np.array([0, 1, 3, 1]), r"\[0, 3\).*1 label\(s\) outside, e.g. 3"),
        (np.array([0, -1, 2, 1]), r"outside, e.g. -1"),
        (np.array([0, 1.5, 2, 1]), r"must be integers.*e.g. 1.5"),
        (np.array([0, np.nan, 2, 1]), r"must be integers.*e.g. nan"),
        (np.array(["a", "b", "c", "d"]), r"must be integers \(or one-hot rows\).*dtype str"),
        (np.array([True, False, True, False]), r"dtype bool"),
        (np.eye(4)[[0, 1, 2, 3]], r"width num_classes=3. Received: labels of shape \(4, 4\)"),
        (np.array([[1, 1, 0], [0, 1, 0], [0, 0, 1], [1, 0, 0]]), r"single 1 per row.*row 0: \[1, 1, 0\]"),
        (np.zeros((4, 1, 1)), r"shape \(4, 1, 1\)"),
    ]
    for labels, message in cases:
        for method in (model.encode, model.reconstruct):
            with pytest.raises(ValueError, match=message):
                method(x, labels)
        with pytest.raises(ValueError, match=message):
            model.fit(x, labels, verbose=0)
    with pytest.raises(ValueError, match="Received 2 labels"):
        model.decode(np.zeros((4, LATENT), "float32"), [0, 1])
    with pytest.raises(ValueError, match="Received 2 labels"):
        model.sample(3, labels=[0, 1])
    with pytest.raises(ValueError, match="e.g. 7"):
        model.sample(3, labels=7)
    with pytest.raises(ValueError, match="labels=None"):
        model.sample(3)
    with pytest.raises(ValueError, match="Received 3 labels"):
        model.evaluate(x, np.array([0, 1, 2]), verbose=0)
    with pytest.raises(ValueError, match=r"validation_data must be \(x_val, y_val\)"):
        model.fit(x, np.zeros(4, "int32"), validation_data=(x,), verbose=0)
    with pytest.raises(ValueError, match=r"\[x, labels\]"):
        model.predict(x, verbose=0)


def test_bad_construction_names_the_value():
    encoder = kerasvae.networks.build_mlp_encoder(DATA_SHAPE, LATENT, hidden_units=(8,), num_classes=4)
    decoder = kerasvae.networks.build_mlp_decoder(LATENT, DATA_SHAPE, hidden_units=(8,), num_classes=4)
    with pytest.raises(ValueError, match=r"one-hot label of shape \(None, 3\).*Received: \(None, 4\)"):
        ConditionalVAE(encoder, decoder, num_classes=3)
    for bad in (1, 2.0, True, "3"):
        with pytest.raises(ValueError, match=f"num_classes={bad!r}"):
            ConditionalVAE(encoder, decoder, num_classes=bad)
    plain = kerasvae.networks.build_mlp_encoder(DATA_SHAPE, LATENT, hidden_units=(8,))
    with pytest.raises(ValueError, match=r"encoder of ConditionalVAE must have 2 input\(s\)"):
        ConditionalVAE(plain, decoder, num_classes=4)
