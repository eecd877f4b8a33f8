"""The stand-ins answer as TF Serving does where the clients depend on it.

Expected shapes come from TF Serving's sources: the REST metadata JSON of
http_rest_api_util.cc (checked there against
servables/tensorflow/testdata/*_metadata.json), the status JSON of
GetModelStatusImpl, and the default version policy of
file_system_storage_path_source.cc (the latest version only).
"""

import threading

import numpy as np
import pytest
import requests
from tensorflow_serving.config import model_server_config_pb2

from kerasvae.serving import ServingError
from tests import serving_fakes
from tests.serving.common import DATA_SHAPE, LATENT_DIM, MODEL, TOY, make_client

pytestmark = pytest.mark.requires_tensorflow


def get(server, path):
    response = requests.get(f"{server.url}/v1/models/{path}", timeout=30)
    return response.status_code, response.json()


def tensor_info(dtype, dims):
    """A TensorInfo as TF Serving's JSON prints it (the tensor's graph name aside)."""
    dim = [{"size": str(d), "name": ""} for d in dims]
    return {"dtype": dtype, "tensor_shape": {"dim": dim, "unknown_rank": False}}


def without_names(infos):
    for info in infos.values():
        assert isinstance(info.pop("name"), str) and info  # e.g. "serving_default_x:0"
    return infos


def test_rest_metadata_is_tf_serving_json(rest_server):
    status, body = get(rest_server, f"{TOY}/metadata")
    assert status == 200
    assert body["model_spec"] == {"name": TOY, "signature_name": "", "version": "3"}
    assert list(body["metadata"]) == ["signature_def"]
    # The SignatureDefMap itself, not protobuf's Any JSON with an "@type" key.
    assert list(body["metadata"]["signature_def"]) == ["signature_def"]
    signatures = body["metadata"]["signature_def"]["signature_def"]
    # TF2 SavedModels carry an init-op signature, and TF Serving lists it too.
    assert set(signatures) == {"scale", "scale_and_shift", "__saved_model_init_op"}
    init_op = signatures["__saved_model_init_op"]
    assert init_op["inputs"] == {} and init_op["method_name"] == ""
    assert init_op["outputs"] == {
        "__saved_model_init_op": {
            "dtype": "DT_INVALID",
            "tensor_shape": {"dim": [], "unknown_rank": True},
            "name": "NoOp",
        }
    }
    scale = signatures["scale"]
    assert set(scale) == {"inputs", "outputs", "method_name", "defaults"}
    assert scale["method_name"] == "tensorflow/serving/predict" and scale["defaults"] == {}
    assert without_names(scale["inputs"]) == {"v": tensor_info("DT_FLOAT", [-1])}
    assert without_names(scale["outputs"]) == {"scaled": tensor_info("DT_FLOAT", [-1])}


def test_rest_metadata_of_the_export(rest_server):
    status, body = get(rest_server, f"{MODEL}/versions/1/metadata")
    assert status == 200
    signatures = body["metadata"]["signature_def"]["signature_def"]
    assert without_names(signatures["sample_seeded"]["inputs"]) == {
        "num_samples": tensor_info("DT_INT32", []),
        "seed": tensor_info("DT_INT64", []),
    }
    assert without_names(signatures["sample_seeded"]["outputs"]) == {
        "samples": tensor_info("DT_FLOAT", [-1, *DATA_SHAPE]),
        "z": tensor_info("DT_FLOAT", [-1, LATENT_DIM]),
    }
    assert without_names(signatures["encode"]["inputs"]) == {
        "x": tensor_info("DT_FLOAT", [-1, *DATA_SHAPE])
    }


def test_rest_status_lists_the_loaded_versions(rest_server):
    available = {"state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
    # Three versions on disk, only the latest loaded: TF Serving's default policy.
    expected = {"model_version_status": [{"version": "3", **available}]}
    assert get(rest_server, TOY) == (200, expected)
    assert get(rest_server, f"{TOY}/versions/3") == (200, expected)
    # GetModelStatus ignores a label and reports every version.
    assert get(rest_server, f"{TOY}/labels/anything") == (200, expected)
    assert get(rest_server, f"{TOY}/versions/2") == (
        404,
        {"error": f"Could not find version 2 of model {TOY}"},
    )
    assert get(rest_server, "nope") == (404, {"error": "Could not find any versions of model nope"})


def test_only_the_latest_version_answers_by_default(rest_server, grpc_server):
    v = np.array([2.0], np.float32)
    for kind, server in (("rest", rest_server), ("grpc", grpc_server)):
        with make_client(kind, server, model_name=TOY, version=3) as client:
            np.testing.assert_array_equal(client.predict({"v": v}, "scale")["scaled"], v * 3)
        for version in (1, 2):
            with make_client(kind, server, model_name=TOY, version=version) as client:
                with pytest.raises(ServingError, match=rf"Specific\({TOY}, {version}\)"):
                    client.predict({"v": v}, "scale")


def test_a_label_must_point_to_a_loaded_version(toy_base_path):
    config = model_server_config_pb2.ModelServerConfig()
    entry = config.model_config_list.config.add()
    entry.name, entry.base_path, entry.model_platform = TOY, toy_base_path, "tensorflow"
    entry.version_labels["stable"] = 1  # on disk, but the default policy loads only 3
    with pytest.raises(ValueError, match=f"label to version 1 of model {TOY}, which is not"):
        serving_fakes.ModelRepository(config)
    entry.model_version_policy.all.SetInParent()
    assert serving_fakes.ModelRepository(config).labels == {TOY: {"stable": 1}}


def test_rest_stacks_row_scalars_like_tf_serving(rest_server):
    # TF Serving adds a batch axis to every instance, so a scalar input arrives
    # with shape (1,) and the graph rejects it; the client refuses it up front.
    response = requests.post(
        f"{rest_server.url}/v1/models/{MODEL}:predict",
        json={"signature_name": "sample", "instances": [{"num_samples": 3}]},
        timeout=30,
    )
    assert response.status_code == 400
    assert "scalar" in response.json()["error"]


def test_servers_stop_cleanly(repository):
    before = set(threading.enumerate())
    with (
        serving_fakes.FakeRESTServer(repository) as rest,
        serving_fakes.FakeGRPCServer(repository) as grpc_server,
    ):
        with make_client("rest", rest, model_name=MODEL) as a:
            with make_client("grpc", grpc_server, model_name=MODEL) as b:
                np.testing.assert_array_equal(
                    a.sample_seeded(2, 0)["z"], b.sample_seeded(2, 0)["z"]
                )
    leftover = [t for t in threading.enumerate() if t not in before and t.is_alive()]
    assert not leftover, leftover
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{rest.url}/v1/models/{MODEL}", timeout=5)  # the port is closed
