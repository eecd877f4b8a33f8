"""The SavedModel contract, checked as TF Serving would load the export."""

import concurrent.futures
import os
import subprocess
import sys
import tempfile
import types

import numpy as np
import pytest
import keras
import tensorflow as tf

import kerasvae
from kerasvae import cli, export, zoo
from tests.helpers import DATA_SHAPE, assert_signatures_match_the_keras_model, random_images, tiny_vae

pytestmark = pytest.mark.requires_tensorflow

SAVED_MODEL_CLI = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
DETERMINISTIC = ("encode", "decode", "reconstruct", "serving_default")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    keras.utils.set_random_seed(1)
    model = tiny_vae(latent_dim=4)
    model.compile(optimizer="adam")
    model.fit(random_images(32), epochs=1, batch_size=16, verbose=0)
    path = export.export_saved_model(model, str(tmp_path_factory.mktemp("export") / "tiny"))
    return model, path, tf.saved_model.load(path)


# === Signatures (golden files per preset: tests/test_zoo.py) ===
def test_every_named_signature_is_there(exported):
    _, path, loaded = exported
    assert set(export.SIGNATURE_NAMES) <= set(loaded.signatures)
    assert export.load_metadata(path)["latent_dim"] == 4


def test_deterministic_signatures_match_the_keras_model(exported):
    model, _, loaded = exported
    x = random_images(5, seed=3)
    z = np.random.default_rng(0).normal(size=(5, 4)).astype("float32")
    encoded = loaded.signatures["encode"](x=tf.constant(x))
    z_mean, z_log_var = model.encode(x)
    np.testing.assert_allclose(encoded["z_mean"], z_mean, atol=1e-6)
    np.testing.assert_allclose(encoded["z_log_var"], z_log_var, atol=1e-6)
    decoded = loaded.signatures["decode"](z=tf.constant(z))
    np.testing.assert_allclose(decoded["probabilities"], model.decode(z), atol=1e-6)
    np.testing.assert_allclose(decoded["logits"], model.decoder(z), atol=1e-5)
    for name in ("reconstruct", "serving_default"):
        out = loaded.signatures[name](x=tf.constant(x))["reconstruction"]
        np.testing.assert_allclose(out, model.predict(x, verbose=0), atol=1e-6)


LEARNED_VARIANCE = kerasvae.Gaussian(learn_variance=True)


@pytest.mark.parametrize(
    "likelihood,covariance,policy,rtol",
    [
        # float32: the graph and eager Keras differ by rounding only.
        pytest.param("bernoulli", "full", "float32", 1e-5, id="bernoulli-full"),
        pytest.param("gaussian", "diagonal", "float32", 1e-5, id="gaussian"),
        pytest.param(LEARNED_VARIANCE, "full", "float32", 1e-5, id="gaussian_learned_variance-full"),
        pytest.param("discretized_logistic", "diagonal", "float32", 1e-5, id="discretized_logistic"),
        # Mixed precision: the layers compute in 16 bits. Here graph and eager
        # agree exactly (measured), but a fused kernel may round differently:
        # two ulps of float16 (2 x 2^-10) and of bfloat16 (2 x 2^-7); the
        # signatures still return float32.
        pytest.param("bernoulli", "diagonal", "mixed_float16", 2e-3, id="bernoulli-float16"),
        pytest.param(LEARNED_VARIANCE, "diagonal", "mixed_bfloat16", 1.6e-2, id="gaussian_learned_variance-bfloat16"),
        pytest.param("discretized_logistic", "full", "mixed_float16", 2e-3, id="discretized_logistic-full-float16"),
    ],
)
def test_every_output_matches_the_keras_model_for_each_likelihood_and_precision(
    likelihood, covariance, policy, rtol, tmp_path
):
    keras.config.set_dtype_policy(policy)  # restored by conftest
    keras.utils.set_random_seed(5)
    model = tiny_vae(latent_dim=3, covariance=covariance, likelihood=likelihood)
    assert model.encoder.layers[-1].compute_dtype == ("float32" if policy == "float32" else policy[6:])
    x = random_images(4, seed=6)
    if isinstance(model.likelihood, kerasvae.likelihoods.DiscretizedLogistic):
        x = np.round(x * 255) / 255  # 8-bit pixels, as the likelihood requires
    loaded = tf.saved_model.load(export.export_saved_model(model, str(tmp_path / "m")))
    assert_signatures_match_the_keras_model(model, loaded, x, rtol=rtol, atol=rtol)


def test_elbo_signature_is_the_per_example_negative_elbo(exported):
    model, _, loaded = exported
    x = random_images(5, seed=4)
    out = loaded.signatures["elbo"](x=tf.constant(x))
    expected = model.negative_elbo(x)
    for key in ("negative_elbo", "reconstruction_loss", "kl_loss"):
        assert out[key].shape == (5,)
        np.testing.assert_allclose(out[key], expected[key], rtol=1e-5, atol=1e-4)
    # Independently: the KL in closed form, the reconstruction from the fixed-seed draw.
    z_mean, z_log_var = [np.asarray(t, "float64") for t in model.encode(x)]
    kl = 0.5 * np.sum(z_mean**2 + np.exp(z_log_var) - 1 - z_log_var, axis=-1)
    np.testing.assert_allclose(out["kl_loss"], kl, rtol=1e-4)
    np.testing.assert_allclose(out["negative_elbo"], out["reconstruction_loss"] + kl, rtol=1e-5)
    # A fixed draw: the score is a function of the batch.
    again = loaded.signatures["elbo"](x=tf.constant(x))
    np.testing.assert_array_equal(out["negative_elbo"], again["negative_elbo"])
    # The reconstruction term is -log p(x | z) at z = mean + sigma * eps, eps the seed-0 draw.
    eps = np.asarray(keras.random.normal((5, 4), seed=0), "float64")
    z = z_mean + np.exp(0.5 * z_log_var) * eps
    logits = np.asarray(model.decoder(z.astype("float32")), "float64").reshape(5, -1)
    flat = x.reshape(5, -1).astype("float64")
    log_px = np.sum(flat * logits - np.logaddexp(0.0, logits), axis=-1)
    np.testing.assert_allclose(out["reconstruction_loss"], -log_px, rtol=1e-4)


def test_prior_log_prob_signature_is_the_standard_normal_density(exported):
    _, _, loaded = exported
    z = np.random.default_rng(2).normal(size=(6, 4)).astype("float32") * 2
    out = loaded.signatures["prior_log_prob"](z=tf.constant(z))["log_prob"]
    expected = -0.5 * np.sum(np.log(2 * np.pi) + z.astype("float64") ** 2, axis=-1)
    np.testing.assert_allclose(out, expected, rtol=1e-6)


def test_dynamic_batch(exported):
    _, _, loaded = exported
    for n in (1, 7):
        assert loaded.signatures["encode"](x=tf.zeros((n,) + DATA_SHAPE))["z_mean"].shape == (n, 4)


def test_sample_is_random_and_sample_seeded_is_repeatable(exported):
    _, _, loaded = exported
    n = tf.constant(6)
    a = loaded.signatures["sample"](num_samples=n)
    b = loaded.signatures["sample"](num_samples=n)
    assert a["samples"].shape == (6,) + DATA_SHAPE and a["z"].shape == (6, 4)
    assert not np.allclose(a["z"], b["z"])
    seeded = loaded.signatures["sample_seeded"]
    first = seeded(num_samples=n, seed=tf.constant(42, tf.int64))
    again = seeded(num_samples=n, seed=tf.constant(42, tf.int64))
    other = seeded(num_samples=n, seed=tf.constant(43, tf.int64))
    np.testing.assert_array_equal(first["samples"], again["samples"])
    assert not np.allclose(first["z"], other["z"])


def test_sample_seeded_is_safe_under_concurrent_requests(exported):
    _, _, loaded = exported
    seeded = loaded.signatures["sample_seeded"]

    def request(seed):
        return seed, seeded(num_samples=tf.constant(3), seed=tf.constant(seed, tf.int64))["z"].numpy()

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(request, [1, 2, 3, 4] * 8))
    by_seed = {}
    for seed, z in results:
        by_seed.setdefault(seed, []).append(z)
    for draws in by_seed.values():
        for z in draws[1:]:
            np.testing.assert_array_equal(z, draws[0])


def test_seeded_prior_noise_draws_its_two_streams_from_different_keys():
    # A mixture prior (VampPrior) takes a normal draw for the latent noise and
    # a uniform one for the component. Seeded, both are stateless Philox draws;
    # with one key for both, the uniform reuses the bits behind the normal's
    # Box-Muller radius, so |normal| and the uniform correlate (0.33
    # here) and `sample_seeded` is no longer a draw from the prior. A mutation
    # run found the keys could be made equal with no test failing.
    model = types.SimpleNamespace(prior_noise_dims=(4, 1))
    n = 4000
    normal, uniform = export._prior_noise(model, tf.constant(n), seed=tf.constant(5, tf.int64))
    assert normal.shape == (n, 4) and uniform.shape == (n, 1)
    # Stateless draws fill a tensor in counter order: pair the first n normal
    # values with the n uniforms drawn at the same counters.
    flat_normal = np.abs(normal.numpy().reshape(-1)[:n])
    correlation = np.corrcoef(flat_normal, uniform.numpy()[:, 0])[0, 1]
    # Independent draws: standard error 1/sqrt(n) = 0.016; 0.08 is 5 of them
    # and a quarter of the shared-key effect.
    assert abs(correlation) < 0.08, correlation
    # Nor may the normal stream repeat across seeds, or the uniform one.
    normal_6, uniform_6 = export._prior_noise(model, tf.constant(n), seed=tf.constant(6, tf.int64))
    assert not np.allclose(normal, normal_6) and not np.allclose(uniform, uniform_6)


# === Bad input to the signatures ===
def test_num_samples_at_the_edges_of_the_range_is_served(exported):
    # A mutation run found `num_samples >= 1` and `<= MAX_NUM_SAMPLES` each
    # tightenable by one with no test failing.
    _, _, loaded = exported
    for good in (1, export.MAX_NUM_SAMPLES):
        for name, extra in (("sample", {}), ("sample_seeded", {"seed": tf.constant(1, tf.int64)})):
            outputs = loaded.signatures[name](num_samples=tf.constant(good), **extra)
            assert all(v.shape[0] == good for v in outputs.values()), (name, good)


def test_num_samples_out_of_range_is_refused(exported):
    _, _, loaded = exported
    for bad in (0, -3, export.MAX_NUM_SAMPLES + 1, 2**31 - 1):
        with pytest.raises(tf.errors.InvalidArgumentError, match=rf"num_samples must be in \[1, {export.MAX_NUM_SAMPLES}\].*{bad}"):
            loaded.signatures["sample"](num_samples=tf.constant(bad))
        with pytest.raises(tf.errors.InvalidArgumentError, match="num_samples must be in"):
            loaded.signatures["sample_seeded"](num_samples=tf.constant(bad), seed=tf.constant(1, tf.int64))


@pytest.mark.parametrize("name", ["encode", "reconstruct", "serving_default"])
@pytest.mark.parametrize("shape", [(2, 784), (2, 28, 28), (2, 28, 28, 3), (2, 14, 14, 1)])
def test_wrong_rank_or_shape_is_refused_not_broadcast(exported, name, shape):
    _, _, loaded = exported
    # A Flatten layer alone would take (2, 784) or (2, 28, 28) without complaint.
    received = r"\] \[" + ",".join(str(d) for d in shape) + r"\]"
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"x must have shape \(batch, 28, 28, 1\)\. Received shape:" + received):
        loaded.signatures[name](x=tf.zeros(shape))


def test_wrong_latent_size_or_dtype_is_refused(exported):
    _, _, loaded = exported
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"z must have shape \(batch, 4\)\. Received shape:\] \[2,5\]"):
        loaded.signatures["decode"](z=tf.zeros((2, 5)))
    with pytest.raises(tf.errors.InvalidArgumentError, match="expected to be a float tensor but is a int32"):
        loaded.signatures["encode"](x=tf.zeros((2,) + DATA_SHAPE, tf.int32))


# === As TF Serving loads it: saved_model_cli (the session loader) ===
def _saved_model_cli(*args):
    result = subprocess.run(
        [SAVED_MODEL_CLI, *args], capture_output=True, text=True, timeout=300,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
    )
    return result


def _session_run(path, signature, feeds):
    """saved_model_cli's `run` in process: the TF1 session loader TF Serving uses.

    The command line itself is run once below; a subprocess per signature
    would cost an import of TensorFlow each.
    """
    from tensorflow.python.tools import saved_model_cli

    with tempfile.TemporaryDirectory() as outdir:
        saved_model_cli.run_saved_model_with_feed_dict(path, "serve", signature, feeds, outdir, True)
        return {n[: -len(".npy")]: np.load(os.path.join(outdir, n)) for n in os.listdir(outdir)}


def test_saved_model_cli_show_and_run_every_signature(exported, tmp_path):
    model, path, _ = exported
    show = _saved_model_cli("show", "--dir", path, "--all")
    assert show.returncode == 0, show.stderr
    for name in export.SIGNATURE_NAMES:
        assert f"signature_def['{name}']" in show.stdout
    # The command line's run, with the arguments a user types.
    ran = _saved_model_cli(
        "run", "--dir", path, "--tag_set", "serve", "--signature_def", "sample_seeded",
        "--input_exprs", "num_samples=4;seed=7", "--outdir", str(tmp_path / "cli"),
    )
    assert ran.returncode == 0, ran.stderr[-2000:]
    seeded = tf.saved_model.load(path).signatures["sample_seeded"](
        num_samples=tf.constant(4), seed=tf.constant(7, tf.int64)
    )
    np.testing.assert_allclose(np.load(tmp_path / "cli" / "z.npy"), seeded["z"], atol=1e-6)
    assert np.load(tmp_path / "cli" / "samples.npy").shape == (4,) + DATA_SHAPE

    x = random_images(3, seed=5)
    z = np.random.default_rng(1).normal(size=(3, 4)).astype("float32")
    np.testing.assert_allclose(_session_run(path, "encode", {"x": x})["z_mean"], model.encode(x)[0], atol=1e-6)
    np.testing.assert_allclose(_session_run(path, "decode", {"z": z})["probabilities"], model.decode(z), atol=1e-6)
    expected = model.predict(x, verbose=0)
    for name in ("reconstruct", "serving_default"):
        np.testing.assert_allclose(_session_run(path, name, {"x": x})["reconstruction"], expected, atol=1e-6)
    elbo = _session_run(path, "elbo", {"x": x})
    np.testing.assert_allclose(
        elbo["negative_elbo"], keras.ops.convert_to_numpy(model.negative_elbo(x)["negative_elbo"]), rtol=1e-5
    )
    drawn = _session_run(path, "sample", {"num_samples": np.int32(4)})
    assert drawn["samples"].shape == (4,) + DATA_SHAPE
    # Refused before the graph runs, naming both shapes.
    with pytest.raises(ValueError, match=r"Cannot feed value of shape \(3, 784\).*\(None, 28, 28, 1\)"):
        _session_run(path, "encode", {"x": x.reshape(3, 784)})
    # The in-graph check runs in the session too.
    with pytest.raises(tf.errors.InvalidArgumentError, match="num_samples must be in"):
        _session_run(path, "sample", {"num_samples": np.int32(0)})


def test_tfsm_layer_reuses_a_signature_in_a_new_model(exported):
    model, path, _ = exported
    encode = keras.layers.TFSMLayer(path, call_endpoint="encode")
    inputs = keras.Input(DATA_SHAPE)
    z_mean = encode(inputs)["z_mean"]
    classifier = keras.Model(inputs, keras.layers.Dense(10)(z_mean))
    x = random_images(4)
    assert classifier(x).shape == (4, 10)
    np.testing.assert_allclose(encode(x)["z_mean"], model.encode(x)[0], atol=1e-6)


# === Versioned, atomic writes ===
def test_versions_count_up_and_are_never_overwritten_unasked(tmp_path):
    model, base = tiny_vae(), str(tmp_path / "m")
    assert export.export_saved_model(model, base).endswith(os.sep + "1")
    assert export.export_saved_model(model, base).endswith(os.sep + "2")
    assert export.export_saved_model(model, base, version=7).endswith(os.sep + "7")
    assert export.export_saved_model(model, base).endswith(os.sep + "8")
    with pytest.raises(FileExistsError, match="Version 7 already exists"):
        export.export_saved_model(model, base, version=7)
    model.beta = 3.0
    export.export_saved_model(model, base, version=7, overwrite=True)
    assert export.load_metadata(os.path.join(base, "7"))["beta"] == 3.0
    assert sorted(os.listdir(base)) == ["1", "2", "7", "8"]  # no temporary folders left
    for bad in (0, -1, "3", 2.0):
        with pytest.raises(ValueError, match="version must be a positive integer"):
            export.export_saved_model(model, base, version=bad)


def test_a_failed_export_leaves_nothing_behind(tmp_path, monkeypatch):
    model, base = tiny_vae(), str(tmp_path / "m")
    export.export_saved_model(model, base, version=1)
    before = os.listdir(os.path.join(base, "1"))

    def broken(path):
        raise ValueError("simulated failure while verifying")

    with open(os.path.join(base, "1", "saved_model.pb"), "rb") as f:
        graph = f.read()
    metadata = export.load_metadata(os.path.join(base, "1"))
    monkeypatch.setattr(export, "verify_saved_model", broken)
    model.beta = 5.0  # a different model, so that a replaced version 1 would show
    with pytest.raises(ValueError, match="simulated"):
        export.export_saved_model(model, base)
    with pytest.raises(ValueError, match="simulated"):
        export.export_saved_model(model, base, version=1, overwrite=True)
    assert os.listdir(base) == ["1"] and os.listdir(os.path.join(base, "1")) == before
    # Version 1 is the first export, byte for byte, not the failed overwrite.
    assert export.load_metadata(os.path.join(base, "1")) == metadata and metadata["beta"] == 1.0
    with open(os.path.join(base, "1", "saved_model.pb"), "rb") as f:
        assert f.read() == graph


def test_loading_a_missing_or_corrupt_export_says_what_is_wrong(tmp_path, exported):
    with pytest.raises(FileNotFoundError, match="saved_model.pb is missing"):
        export.verify_saved_model(str(tmp_path / "nothing"))
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "saved_model.pb").write_bytes(b"not a protobuf")
    with pytest.raises(ValueError, match="corrupt or unreadable"):
        export.verify_saved_model(str(corrupt))
    with pytest.raises(TypeError, match="kerasvae model"):
        export.build_signatures(keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]))


def test_full_covariance_export_names_the_scale_tril(tmp_path):
    model = tiny_vae(covariance="full")
    loaded = tf.saved_model.load(export.export_saved_model(model, str(tmp_path / "full")))
    out = loaded.signatures["encode"](x=tf.constant(random_images(2)))
    assert set(out) == {"z_mean", "scale_tril"} and out["scale_tril"].shape == (2, 3, 3)


def test_cli_export_verb(tmp_path, capsys):
    model_path = str(tmp_path / "vae.keras")
    tiny_vae().save(model_path)
    assert cli.main(["export", model_path, str(tmp_path / "served"), "--version", "3"]) == 0
    assert capsys.readouterr().out.strip().endswith(os.path.join("served", "3"))
    assert cli.main(["export", model_path, str(tmp_path / "served"), "--version", "3"]) == 2
    assert "already exists" in capsys.readouterr().err


def test_weights_are_stored_once(exported):
    model, path, _ = exported
    data_files = [f for f in os.listdir(os.path.join(path, "variables")) if f.startswith("variables.data")]
    stored = sum(os.path.getsize(os.path.join(path, "variables", f)) for f in data_files)
    assert stored < 1.1 * 4 * model.count_params(), (stored, model.count_params())
