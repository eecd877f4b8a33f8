"""The signature methods both clients share, and the wire-format table."""

import numpy as np
import pytest

from kerasvae import export
from kerasvae.serving import _signatures
from tests.serving.common import (
    CODES,
    CONDITIONAL,
    DATA_SHAPE,
    IMAGES,
    LABELS,
    LATENT_DIM,
    MODEL,
    assert_outputs_equal,
    direct,
    make_client,
)

pytestmark = pytest.mark.requires_tensorflow


def test_signature_table_matches_export(reference):
    # The clients' table must cover exactly what export writes, with its dtypes.
    assert set(_signatures.SIGNATURES) == set(export.SIGNATURE_NAMES)
    for name, known in _signatures.SIGNATURES.items():
        specs = reference.signatures[name].structured_input_signature[1]
        assert {i.name: i.dtype for i in known.inputs} == {
            k: s.dtype.name for k, s in specs.items()
        }, name
        assert {i.name for i in known.inputs if i.scalar} == {
            k for k, s in specs.items() if s.shape.rank == 0
        }, name
        outputs = reference.signatures[name].structured_outputs
        if known.single_output:
            assert list(outputs) == [known.single_output], name
        else:
            assert len(outputs) > 1, name


def test_conditional_exports_add_label_as_the_table_says(conditional_reference):
    for name, known in _signatures.SIGNATURES.items():
        specs = conditional_reference.signatures[name].structured_input_signature[1]
        expected = {i.name: i.dtype for i in known.inputs}
        if name in ("sample", "sample_seeded"):
            del expected["num_samples"]
        if name != "prior_log_prob":
            expected[_signatures.LABEL.name] = _signatures.LABEL.dtype
        assert {k: s.dtype.name for k, s in specs.items()} == expected, name


def test_convenience_methods_match_signatures(client, reference):
    assert_outputs_equal(client.encode(IMAGES), direct(reference, "encode", {"x": IMAGES}))
    assert_outputs_equal(client.decode(CODES), direct(reference, "decode", {"z": CODES}))
    assert_outputs_equal(
        client.reconstruct(IMAGES), direct(reference, "reconstruct", {"x": IMAGES})
    )
    # Lists and float64 are converted to the float32 the export takes.
    assert_outputs_equal(
        client.decode(CODES.astype(np.float64).tolist()), direct(reference, "decode", {"z": CODES})
    )


def test_sample_seeded_is_repeatable_and_matches_signature(client, reference):
    first = client.sample_seeded(6, seed=42)
    assert_outputs_equal(first, direct(reference, "sample_seeded", {"num_samples": 6, "seed": 42}))
    assert first["samples"].shape == (6,) + DATA_SHAPE and first["z"].shape == (6, LATENT_DIM)
    again = client.sample_seeded(np.int64(6), seed=np.int32(42))
    for name in first:
        np.testing.assert_array_equal(again[name], first[name])
    other = client.sample_seeded(6, seed=43)
    assert not np.allclose(other["z"], first["z"])


def test_elbo_and_prior_log_prob_match_signatures(client, reference):
    scores = client.elbo(IMAGES)
    assert_outputs_equal(scores, direct(reference, "elbo", {"x": IMAGES}))
    assert scores["negative_elbo"].shape == (len(IMAGES),)
    np.testing.assert_allclose(
        scores["negative_elbo"], scores["reconstruction_loss"] + scores["kl_loss"], rtol=1e-5
    )
    # A fixed-seed draw: the same images get the same scores.
    np.testing.assert_array_equal(client.elbo(IMAGES)["negative_elbo"], scores["negative_elbo"])
    log_prob = client.prior_log_prob(CODES)
    assert_outputs_equal(log_prob, direct(reference, "prior_log_prob", {"z": CODES}))
    # The standard normal prior, in closed form.
    expected = -0.5 * (CODES**2).sum(-1) - 0.5 * LATENT_DIM * np.log(2 * np.pi)
    np.testing.assert_allclose(log_prob["log_prob"], expected, rtol=1e-5)


@pytest.mark.parametrize("kind", ["rest", "grpc"])
def test_conditional_model_takes_labels(kind, servers, conditional_reference):
    ref = conditional_reference
    with make_client(kind, servers[kind], model_name=CONDITIONAL) as client:
        for name, method, main in [
            ("encode", client.encode, {"x": IMAGES}),
            ("reconstruct", client.reconstruct, {"x": IMAGES}),
            ("elbo", client.elbo, {"x": IMAGES}),
            ("decode", client.decode, {"z": CODES}),
        ]:
            expected = direct(ref, name, {**main, "label": LABELS})
            assert_outputs_equal(method(*main.values(), label=LABELS.tolist()), expected)
        seeded = client.sample_seeded(labels=LABELS, seed=3)
        assert_outputs_equal(
            seeded, direct(ref, "sample_seeded", {"label": LABELS, "seed": 3})
        )
        assert seeded["samples"].shape == (len(LABELS),) + DATA_SHAPE
        drawn = client.sample(labels=LABELS)
        assert drawn["z"].shape == (len(LABELS), LATENT_DIM)
        # A float label would be truncated: refused before anything is sent.
        with pytest.raises(TypeError, match="label"):
            client.encode(IMAGES, label=LABELS + 0.5)


def test_sample_needs_num_samples_or_labels(client):
    with pytest.raises(TypeError, match="num_samples=None, labels=None"):
        client.sample()
    with pytest.raises(TypeError, match="not both"):
        client.sample_seeded(3, seed=1, labels=[0, 1, 2])


def test_sample_draws_fresh_prior_samples(client):
    first, second = client.sample(5), client.sample(5)
    assert first["samples"].shape == (5,) + DATA_SHAPE and first["z"].shape == (5, LATENT_DIM)
    assert not np.allclose(first["z"], second["z"])
    # samples are the decoded means of z: decoding z again gives them back.
    np.testing.assert_allclose(
        client.decode(first["z"])["probabilities"], first["samples"], rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize("kind", ["rest", "grpc"])
def test_explicit_version(kind, servers, reference):
    with make_client(kind, servers[kind], model_name=MODEL, version=1) as client:
        assert_outputs_equal(client.encode(IMAGES), direct(reference, "encode", {"x": IMAGES}))


def test_client_side_type_errors_send_nothing(client):
    with pytest.raises(TypeError, match=r"num_samples=2\.5"):
        client.sample(2.5)
    with pytest.raises(ValueError, match="int32"):
        client.sample(2**40)
    with pytest.raises(TypeError, match="non-empty dict"):
        client.predict(IMAGES, "encode")
