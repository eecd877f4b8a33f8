"""kerasvae.serving.RESTClient against the REST stand-in."""

import numpy as np
import pytest
import requests

from kerasvae.serving import RESTClient, ServingError
from tests.serving.common import (
    BATCHED,
    IMAGES,
    MODEL,
    TOY,
    assert_outputs_equal,
    direct,
    free_port,
    make_client,
)

pytestmark = pytest.mark.requires_tensorflow


@pytest.mark.parametrize("format", ["inputs", "instances"])
@pytest.mark.parametrize("signature_name", sorted(BATCHED))
def test_predict_matches_signature(rest_client, reference, signature_name, format):
    inputs = BATCHED[signature_name]
    actual = rest_client.predict(inputs, signature_name, format=format)
    assert all(a.dtype == np.float32 for a in actual.values())
    assert_outputs_equal(actual, direct(reference, signature_name, inputs))


def test_instances_format_refuses_scalar_signatures(rest_server, reference):
    with make_client("rest", rest_server, model_name=MODEL, format="instances") as client:
        with pytest.raises(ValueError, match="format='inputs'"):
            client.predict({"num_samples": 3, "seed": 1}, "sample_seeded")
        # The convenience methods send scalars columnar whatever the default.
        expected = direct(reference, "sample_seeded", {"num_samples": 3, "seed": 1})
        assert_outputs_equal(client.sample_seeded(3, 1), expected)
        assert_outputs_equal(client.encode(IMAGES), direct(reference, "encode", {"x": IMAGES}))


def test_sends_nan(rest_client, reference):
    # TF Serving's JSON takes NaN and Infinity; strict JSON encoders refuse them.
    x = IMAGES.copy()
    x[0, 0, 0, 0] = np.nan
    x[1, 0, 0, 0] = np.inf
    assert_outputs_equal(rest_client.encode(x), direct(reference, "encode", {"x": x}))


@pytest.mark.parametrize("format", ["inputs", "instances"])
def test_unnamed_single_output_is_named_from_metadata(rest_server, format):
    # TF Serving answers a one-output signature without the output's name; for
    # a signature outside kerasvae's table the client reads it from /metadata.
    v = np.array([1.5, -2.0, 0.25], np.float32)
    with make_client("rest", rest_server, model_name=TOY, format=format) as client:
        raw = requests.post(
            f"{client.model_url}:predict",
            json={"signature_name": "scale", format: v.tolist()},
            timeout=30,
        ).json()
        assert set(raw) == {"outputs" if format == "inputs" else "predictions"}
        assert isinstance(next(iter(raw.values())), list)  # no name in the answer
        out = client.predict({"v": v}, "scale")
        assert list(out) == ["scaled"]
        np.testing.assert_array_equal(out["scaled"], v * 3)  # latest version: 3
        two = client.predict({"v": v}, "scale_and_shift")
        np.testing.assert_array_equal(two["scaled"], v * 3)
        np.testing.assert_array_equal(two["shifted"], v + 3)


def test_metadata_and_status_urls(rest_server):
    with make_client("rest", rest_server, model_name=TOY) as client:
        assert client.metadata()["model_spec"]["version"] == "3"
        assert [s["version"] for s in client.status()["model_version_status"]] == ["3"]
    with make_client("rest", rest_server, model_name=MODEL, version=1) as client:
        assert client.model_url.endswith(f"/v1/models/{MODEL}/versions/1")
        assert client.metadata()["model_spec"] == {
            "name": MODEL,
            "signature_name": "",
            "version": "1",
        }
        (status,) = client.status()["model_version_status"]
        assert status["version"] == "1" and status["state"] == "AVAILABLE"


def test_non_json_error_bodies_keep_their_text(rest_server, monkeypatch):
    # A proxy in front of TF Serving may answer with HTML: its text is the message.
    client = RESTClient("127.0.0.1", rest_server.port, model_name=MODEL)

    class Answer:
        status_code, reason, text = 502, "Bad Gateway", "<html>upstream down</html>"

    monkeypatch.setattr(client._session(), "request", lambda *a, **k: Answer())
    with client, pytest.raises(ServingError) as info:
        client.encode(IMAGES)
    assert info.value.status_code == 502 and info.value.message == "<html>upstream down</html>"


def test_unreachable_server_is_a_serving_error():
    port = free_port()
    with RESTClient("127.0.0.1", port, model_name=MODEL, timeout=5) as client:
        with pytest.raises(ServingError) as info:
            client.encode(IMAGES)
    assert info.value.status_code is None and f"127.0.0.1:{port}" in info.value.message


def test_arguments_are_checked():
    with pytest.raises(ValueError, match="'bad/name'"):
        RESTClient(model_name="bad/name")
    with pytest.raises(ValueError, match="not both"):
        RESTClient(model_name=MODEL, version=1, version_label="stable")
    with pytest.raises(ValueError, match="format='rows'"):
        RESTClient(model_name=MODEL, format="rows")
    with pytest.raises(ValueError, match="port=0"):
        RESTClient(port=0, model_name=MODEL)
    with pytest.raises(ValueError, match="format='rows'"):
        RESTClient(model_name=MODEL).predict({"x": IMAGES}, "encode", format="rows")


def test_label_and_ipv6_urls():
    client = RESTClient("::1", 8501, model_name=MODEL, version_label="canary")
    assert client.model_url == f"http://[::1]:8501/v1/models/{MODEL}/labels/canary"
