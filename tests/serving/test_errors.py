"""Every refusal reaches the caller as a ServingError with the server's message."""

import numpy as np
import pytest

from kerasvae.serving import ServingError
from tests.serving.common import IMAGES, MODEL, error_code, make_client

pytestmark = pytest.mark.requires_tensorflow


def test_serving_error_names_where_it_came_from():
    assert str(ServingError("boom")) == "boom"
    assert str(ServingError("boom", status_code=404)) == "boom (HTTP 404)"
    error = ServingError("boom", code="NOT_FOUND")
    assert str(error) == "boom (gRPC NOT_FOUND)" and error.message == "boom"


@pytest.mark.parametrize("shape", [(2, 28, 28, 3), (2, 784)])
def test_wrong_shape(client, shape):
    with pytest.raises(ServingError) as info:
        client.encode(np.zeros(shape, np.float32))
    assert error_code(info.value) in (400, "INVALID_ARGUMENT")
    received = ",".join(str(d) for d in shape)
    expected = f"x must have shape (batch, 28, 28, 1). Received shape:] [{received}]"
    assert expected in info.value.message


@pytest.mark.parametrize("num_samples", [0, 10_001])
def test_num_samples_out_of_range(client, num_samples):
    with pytest.raises(ServingError) as info:
        client.sample_seeded(num_samples, seed=0)
    assert error_code(info.value) in (400, "INVALID_ARGUMENT")
    assert "num_samples must be in [1, 10000]" in info.value.message
    assert str(num_samples) in info.value.message


def test_unknown_signature(client):
    with pytest.raises(ServingError) as info:
        client.predict({"x": IMAGES}, "nope")
    # REST refuses it while parsing (400); gRPC's Predict says FAILED_PRECONDITION.
    assert error_code(info.value) in (400, "FAILED_PRECONDITION")
    assert '"nope" not found' in info.value.message


@pytest.mark.parametrize("kind", ["rest", "grpc"])
@pytest.mark.parametrize(
    "spec, needle",
    [
        ({"model_name": "nope"}, "Latest(nope)"),
        ({"model_name": MODEL, "version": 99}, f"Specific({MODEL}, 99)"),
    ],
)
def test_unknown_model_or_version_is_not_found(kind, spec, needle, servers):
    with make_client(kind, servers[kind], **spec) as client:
        with pytest.raises(ServingError) as info:
            client.encode(IMAGES)
    assert error_code(info.value) in (404, "NOT_FOUND")
    assert f"Servable not found for request: {needle}" in info.value.message
    assert needle in str(info.value)


def test_wrong_input_name(client):
    with pytest.raises(ServingError) as info:
        client.predict({"y": IMAGES}, "encode")
    assert error_code(info.value) in (400, "INVALID_ARGUMENT")
    assert "x" in info.value.message
