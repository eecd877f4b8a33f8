"""kerasvae.serving.GRPCClient against the gRPC stand-in."""

import pytest

from kerasvae.serving import GRPCClient, RESTClient, ServingError
from tests.serving.common import (
    BATCHED,
    IMAGES,
    MODEL,
    TOY,
    assert_outputs_equal,
    direct,
    free_port,
)

pytestmark = pytest.mark.requires_tensorflow


@pytest.mark.parametrize("signature_name", sorted(BATCHED))
def test_predict_matches_signature(grpc_client, reference, signature_name):
    inputs = BATCHED[signature_name]
    assert_outputs_equal(
        grpc_client.predict(inputs, signature_name), direct(reference, signature_name, inputs)
    )


@pytest.mark.parametrize("model_name", [MODEL, TOY])
def test_metadata_is_the_rest_json(grpc_server, rest_server, model_name):
    # GetModelMetadata packs the SignatureDefMap in an Any; the client unpacks
    # it, so both clients give TF Serving's REST JSON.
    with GRPCClient(grpc_server.target, model_name=model_name) as grpc_client:
        metadata = grpc_client.get_model_metadata()
    with RESTClient("127.0.0.1", rest_server.port, model_name=model_name) as rest_client:
        assert metadata == rest_client.metadata()
    assert "@type" not in metadata["metadata"]["signature_def"]


def test_unreachable_server_is_a_serving_error():
    with GRPCClient(f"127.0.0.1:{free_port()}", model_name=MODEL, timeout=5) as client:
        with pytest.raises(ServingError) as info:
            client.encode(IMAGES)
    assert info.value.code == "UNAVAILABLE" and info.value.status_code is None


def test_arguments_are_checked():
    with pytest.raises(ValueError, match="version=0"):
        GRPCClient(model_name=MODEL, version=0)
    with pytest.raises(ValueError, match="'a b'"):
        GRPCClient(model_name=MODEL, version_label="a b")
    with pytest.raises(ValueError, match="timeout"):
        GRPCClient(model_name=MODEL, timeout=0)
