"""The signature methods both clients share, and the wire-format table."""

import numpy as np
import pytest

from kerasvae import export
from kerasvae.serving import _signatures
from tests.serving.common import (
    CODES,
    DATA_SHAPE,
    IMAGES,
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
