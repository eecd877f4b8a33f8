"""kerasvae.serving: models.config, command lines, and both clients end to end.

No TF Serving binary exists here, so the clients talk to the in-process
stand-ins of `tests/serving_fakes.py` on 127.0.0.1; every number they return
is compared with calling the SavedModel's signature directly.
"""

import os
import socket
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests
import tensorflow as tf
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

import kerasvae
import kerasvae.export
from kerasvae import serving
from kerasvae.serving import GRPCClient, RESTClient, ServingError
from tests import serving_fakes

pytestmark = pytest.mark.requires_tensorflow

MODEL = "vae"
LATENT_DIM = 4
DATA_SHAPE = (28, 28, 1)
RNG = np.random.default_rng(7)
IMAGES = RNG.random((5,) + DATA_SHAPE, dtype=np.float32)
CODES = RNG.normal(size=(5, LATENT_DIM)).astype(np.float32)
BATCHED = {
    "encode": {"x": IMAGES},
    "decode": {"z": CODES},
    "reconstruct": {"x": IMAGES},
    "serving_default": {"x": IMAGES},
}


# --------------------------------------------------------------------------
# Fixtures: one export, one repository, both servers, for the whole module.


@pytest.fixture(scope="module")
def export_path(tmp_path_factory):
    encoder = kerasvae.networks.build_mlp_encoder(DATA_SHAPE, LATENT_DIM, hidden_units=(32,))
    decoder = kerasvae.networks.build_mlp_decoder(LATENT_DIM, DATA_SHAPE, hidden_units=(32,))
    vae = kerasvae.VAE(encoder, decoder)
    return kerasvae.export.export_saved_model(vae, str(tmp_path_factory.mktemp("serving") / MODEL))


@pytest.fixture(scope="module")
def reference(export_path):
    return tf.saved_model.load(export_path)


def direct(reference, signature_name, inputs):
    """What the signature itself returns: the numbers every client must match."""
    fn = reference.signatures[signature_name]
    specs = fn.structured_input_signature[1]
    tensors = {name: tf.constant(value, dtype=specs[name].dtype) for name, value in inputs.items()}
    return {name: t.numpy() for name, t in fn(**tensors).items()}


def assert_outputs_equal(actual, expected):
    assert sorted(actual) == sorted(expected)
    for name in expected:
        assert actual[name].shape == expected[name].shape, name
        np.testing.assert_allclose(actual[name], expected[name], rtol=1e-5, atol=1e-6, err_msg=name)


@pytest.fixture(scope="module")
def repository(export_path):
    return serving_fakes.ModelRepository({MODEL: os.path.dirname(export_path)})


@pytest.fixture(scope="module")
def rest_server(repository):
    with serving_fakes.FakeRESTServer(repository) as server:
        yield server


@pytest.fixture(scope="module")
def grpc_server(repository):
    with serving_fakes.FakeGRPCServer(repository) as server:
        yield server


@pytest.fixture
def rest_client(rest_server):
    with RESTClient("127.0.0.1", rest_server.port, model_name=MODEL, timeout=30) as client:
        yield client


@pytest.fixture
def grpc_client(grpc_server):
    with GRPCClient(grpc_server.target, model_name=MODEL, timeout=30) as client:
        yield client


@pytest.fixture(params=["rest", "grpc"])
def client(request):
    return request.getfixturevalue(f"{request.param}_client")


def make_client(kind, server, **kwargs):
    if kind == "rest":
        return RESTClient("127.0.0.1", server.port, timeout=30, **kwargs)
    return GRPCClient(server.target, timeout=30, **kwargs)


def error_code(error):
    """The status a ServingError carries, whichever client raised it."""
    return error.status_code if error.status_code is not None else error.code


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------
# models.config


def parse_config(text):
    return text_format.Parse(text, model_server_config_pb2.ModelServerConfig())


def policy_choice(config):
    policy = config.model_version_policy
    return policy.WhichOneof(policy.DESCRIPTOR.oneofs[0].name)


def test_models_config_parses_into_model_server_config(tmp_path):
    text = serving.models_config({"mlp_vae": tmp_path / "a", "conv-vae.v2": str(tmp_path / "b")})
    configs = parse_config(text).model_config_list.config
    assert [c.name for c in configs] == ["mlp_vae", "conv-vae.v2"]
    assert [c.base_path for c in configs] == [str(tmp_path / "a"), str(tmp_path / "b")]
    assert all(c.model_platform == "tensorflow" for c in configs)
    assert not any(c.HasField("model_version_policy") for c in configs)
    assert text.startswith("model_config_list {") and text.endswith("}\n")


def test_models_config_relative_paths_become_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (config,) = parse_config(
        serving.models_config({"vae": "savedmodels/vae"})
    ).model_config_list.config
    assert config.base_path == str(tmp_path / "savedmodels" / "vae")


def test_models_config_container_prefix_and_uris(tmp_path):
    text = serving.models_config(
        {"vae": tmp_path / "vae", "other": tmp_path / "x"}, base_path_prefix="/models"
    )
    assert [c.base_path for c in parse_config(text).model_config_list.config] == [
        "/models/vae",
        "/models/other",
    ]
    (config,) = parse_config(
        serving.models_config({"vae": "gs://bucket/vae"})
    ).model_config_list.config
    assert config.base_path == "gs://bucket/vae"


def test_models_config_escapes_odd_paths(tmp_path):
    odd = str(tmp_path / 'a "quoted" dir\\with ü\tand\nnewline')
    (config,) = parse_config(serving.models_config({"vae": odd})).model_config_list.config
    assert config.base_path == odd


@pytest.mark.parametrize(
    "policy, choice, check",
    [
        ("all", "all", None),
        ("latest", "latest", lambda p: p.latest.num_versions == 1),
        (3, "latest", lambda p: p.latest.num_versions == 3),
        ([2, 5], "specific", lambda p: list(p.specific.versions) == [2, 5]),
    ],
)
def test_models_config_version_policy(tmp_path, policy, choice, check):
    text = serving.models_config({"vae": tmp_path}, model_version_policy=policy)
    (config,) = parse_config(text).model_config_list.config
    assert policy_choice(config) == choice
    assert check is None or check(config.model_version_policy)


def test_models_config_per_model_policy_and_labels(tmp_path):
    text = serving.models_config(
        {"a": tmp_path / "a", "b": tmp_path / "b"},
        model_version_policy={"a": [1, 2]},
        version_labels={"a": {"stable": 1, "canary": 2}},
    )
    a, b = parse_config(text).model_config_list.config
    assert list(a.model_version_policy.specific.versions) == [1, 2]
    assert dict(a.version_labels) == {"stable": 1, "canary": 2}
    assert not b.HasField("model_version_policy") and not b.version_labels


@pytest.mark.parametrize("name", ["", "has space", "a/b", "a:b", "..", "naïve", 'q"uote', 3, None])
def test_models_config_rejects_bad_names(tmp_path, name):
    with pytest.raises(ValueError, match="Invalid model name") as info:
        serving.models_config({name: tmp_path})
    assert repr(name) in str(info.value)


@pytest.mark.parametrize("policy", [0, -2, "newest", [], [0], [1, 1], True, 1.5])
def test_models_config_rejects_bad_policies(tmp_path, policy):
    with pytest.raises(ValueError) as info:
        serving.models_config({"vae": tmp_path}, model_version_policy=policy)
    assert repr(policy) in str(info.value) or str(policy) in str(info.value)


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        ({"models": {}}, "non-empty dict"),
        ({"models": {"vae": ""}}, "base_path of model 'vae'"),
        ({"base_path_prefix": "models"}, "'models'"),
        ({"model_version_policy": {"other": 2}}, "['other']"),
        ({"version_labels": {"vae": {"bad label": 1}}}, "'bad label'"),
        ({"version_labels": {"vae": {"stable": 0}}}, "0"),
    ],
)
def test_models_config_rejects_bad_arguments(tmp_path, kwargs, needle):
    kwargs = {"models": {"vae": tmp_path}, **kwargs}
    with pytest.raises(ValueError) as info:
        serving.models_config(**kwargs)
    assert needle in str(info.value)


def test_write_models_config_is_atomic(tmp_path):
    target = tmp_path / "conf" / "models.config"
    models = {"vae": tmp_path / "vae"}
    written = serving.write_models_config(target, models, base_path_prefix="/models")
    assert written == str(target)
    assert target.read_text() == serving.models_config(models, base_path_prefix="/models")
    assert os.listdir(target.parent) == ["models.config"]
    assert oct(target.stat().st_mode & 0o777) == oct(0o644)

    serving.write_models_config(target, {"other": tmp_path / "o"})
    assert [c.name for c in parse_config(target.read_text()).model_config_list.config] == ["other"]

    before = target.read_text()
    with pytest.raises(ValueError):
        serving.write_models_config(target, {"bad name": tmp_path})
    assert target.read_text() == before
    assert os.listdir(target.parent) == ["models.config"]


# --------------------------------------------------------------------------
# Command lines


def test_docker_command_mounts_every_config_path(tmp_path):
    models = {"vae": tmp_path / "vae", "conv_vae": tmp_path / "conv"}
    config = serving.write_models_config(
        tmp_path / "models.config", models, base_path_prefix="/models"
    )
    command = serving.docker_command(models, config)
    assert command == [
        "docker", "run", "-p", "8501:8501", "-p", "8500:8500",
        "-v", f"{tmp_path / 'vae'}:/models/vae:ro",
        "-v", f"{tmp_path / 'conv'}:/models/conv_vae:ro",
        "-v", f"{config}:/models/models.config:ro",
        "tensorflow/serving", "--model_config_file=/models/models.config",
    ]  # fmt: skip
    # Every base_path in the config is a mount target, so the container finds them all.
    targets = {arg.split(":")[1] for arg in command if arg.endswith(":ro")}
    for entry in parse_config(open(config).read()).model_config_list.config:
        assert entry.base_path in targets


def test_docker_command_options(tmp_path):
    command = serving.docker_command(
        {"vae": tmp_path}, tmp_path / "m.config", rest_port=9001, grpc_port=9000, poll_seconds=60,
        image="tensorflow/serving:2.19.0",
    )  # fmt: skip
    assert command[2:6] == ["-p", "9001:8501", "-p", "9000:8500"]
    assert "tensorflow/serving:2.19.0" in command
    assert command[-1] == "--model_config_file_poll_wait_seconds=60"
    with pytest.raises(ValueError, match="models.config"):
        serving.docker_command({"models.config": tmp_path}, tmp_path / "m.config")
    with pytest.raises(ValueError, match="rest_port=70000"):
        serving.docker_command({"vae": tmp_path}, tmp_path / "m.config", rest_port=70000)


def test_model_server_command(tmp_path):
    config = tmp_path / "models.config"
    assert serving.model_server_command(config) == [
        "tensorflow_model_server",
        "--port=8500",
        "--rest_api_port=8501",
        f"--model_config_file={config}",
    ]
    command = serving.model_server_command(config, grpc_port=9000, rest_port=9001, poll_seconds=30)
    assert command[1:3] == ["--port=9000", "--rest_api_port=9001"]
    assert command[-1] == "--model_config_file_poll_wait_seconds=30"
    with pytest.raises(ValueError, match="poll_seconds"):
        serving.model_server_command(config, poll_seconds=0)


def test_signature_table_matches_export():
    # The clients' wire-format table must cover exactly what export writes.
    assert set(serving._SIGNATURES) == set(kerasvae.export.SIGNATURE_NAMES)


# --------------------------------------------------------------------------
# Clients against the fake servers: same numbers as the SavedModel itself.


@pytest.mark.parametrize("format", ["inputs", "instances"])
@pytest.mark.parametrize("signature_name", sorted(BATCHED))
def test_rest_predict_matches_signature(rest_client, reference, signature_name, format):
    inputs = BATCHED[signature_name]
    actual = rest_client.predict(inputs, signature_name, format=format)
    assert all(a.dtype == np.float32 for a in actual.values())
    assert_outputs_equal(actual, direct(reference, signature_name, inputs))


@pytest.mark.parametrize("signature_name", sorted(BATCHED))
def test_grpc_predict_matches_signature(grpc_client, reference, signature_name):
    inputs = BATCHED[signature_name]
    assert_outputs_equal(
        grpc_client.predict(inputs, signature_name), direct(reference, signature_name, inputs)
    )


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


def test_rest_instances_format_refuses_scalar_signatures(rest_server, reference):
    with RESTClient("127.0.0.1", rest_server.port, model_name=MODEL, format="instances") as client:
        with pytest.raises(ValueError, match="format='inputs'"):
            client.predict({"num_samples": 3, "seed": 1}, "sample_seeded")
        # The convenience methods send scalars columnar whatever the default.
        expected = direct(reference, "sample_seeded", {"num_samples": 3, "seed": 1})
        assert_outputs_equal(client.sample_seeded(3, 1), expected)
        assert_outputs_equal(client.encode(IMAGES), direct(reference, "encode", {"x": IMAGES}))


def test_fake_rest_stacks_row_scalars_like_tf_serving(rest_server):
    # TF Serving adds a batch axis to every instance, so a scalar input arrives
    # with shape (1,) and the graph rejects it; the client refuses it up front.
    response = requests.post(
        f"{rest_server.url}/v1/models/{MODEL}:predict",
        json={"signature_name": "sample", "instances": [{"num_samples": 3}]},
        timeout=30,
    )
    assert response.status_code == 400
    assert "scalar" in response.json()["error"]


def test_rest_sends_nan(rest_client, reference):
    # TF Serving's JSON takes NaN and Infinity; strict JSON encoders refuse them.
    x = IMAGES.copy()
    x[0, 0, 0, 0] = np.nan
    x[1, 0, 0, 0] = np.inf
    assert_outputs_equal(rest_client.encode(x), direct(reference, "encode", {"x": x}))


def test_explicit_version(rest_server, grpc_server, reference):
    expected = direct(reference, "encode", {"x": IMAGES})
    for kind, server in [("rest", rest_server), ("grpc", grpc_server)]:
        with make_client(kind, server, model_name=MODEL, version=1) as client:
            assert_outputs_equal(client.encode(IMAGES), expected)


def test_metadata_and_status(rest_client, grpc_client):
    metadata = rest_client.metadata()
    assert metadata == grpc_client.get_model_metadata()
    assert metadata["model_spec"]["name"] == MODEL and metadata["model_spec"]["version"] == "1"
    signatures = metadata["metadata"]["signature_def"]["signature_def"]
    assert set(kerasvae.export.SIGNATURE_NAMES) <= set(signatures)
    assert set(signatures["encode"]["outputs"]) == {"z_mean", "z_log_var"}
    assert set(signatures["sample_seeded"]["inputs"]) == {"num_samples", "seed"}
    (status,) = rest_client.status()["model_version_status"]
    assert status["version"] == "1" and status["state"] == "AVAILABLE"


# --------------------------------------------------------------------------
# Errors carry the server's message and status.


@pytest.mark.parametrize("shape", [(2, 28, 28, 3), (2, 784)])
def test_wrong_shape_is_a_serving_error(client, shape):
    with pytest.raises(ServingError) as info:
        client.encode(np.zeros(shape, np.float32))
    assert error_code(info.value) in (400, "INVALID_ARGUMENT")
    received = ",".join(str(d) for d in shape)
    assert f"x must have shape (batch, 28, 28, 1). Received shape:] [{received}]" in info.value.message


@pytest.mark.parametrize("num_samples", [0, 10_001])
def test_num_samples_out_of_range_is_a_serving_error(client, num_samples):
    with pytest.raises(ServingError) as info:
        client.sample_seeded(num_samples, seed=0)
    assert error_code(info.value) in (400, "INVALID_ARGUMENT")
    assert "num_samples must be in [1, 10000]" in info.value.message
    assert str(num_samples) in info.value.message


def test_unknown_signature_is_a_serving_error(client):
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
def test_unknown_model_or_version_is_not_found(kind, spec, needle, rest_server, grpc_server):
    server = rest_server if kind == "rest" else grpc_server
    with make_client(kind, server, **spec) as client:
        with pytest.raises(ServingError) as info:
            client.encode(IMAGES)
    assert error_code(info.value) in (404, "NOT_FOUND")
    assert f"Servable not found for request: {needle}" in info.value.message
    assert needle in str(info.value)


def test_wrong_input_name_is_a_serving_error(client):
    with pytest.raises(ServingError) as info:
        client.predict({"y": IMAGES}, "encode")
    assert error_code(info.value) in (400, "INVALID_ARGUMENT")
    assert "x" in info.value.message


def test_client_side_type_errors_send_nothing(client):
    with pytest.raises(TypeError, match=r"num_samples=2\.5"):
        client.sample(2.5)
    with pytest.raises(ValueError, match="int32"):
        client.sample(2**40)
    with pytest.raises(TypeError, match="non-empty dict"):
        client.predict(IMAGES, "encode")


@pytest.mark.parametrize("kind", ["rest", "grpc"])
def test_unreachable_server_is_a_serving_error(kind):
    port = free_port()
    if kind == "rest":
        client = RESTClient("127.0.0.1", port, model_name=MODEL, timeout=5)
    else:
        client = GRPCClient(f"127.0.0.1:{port}", model_name=MODEL, timeout=5)
    with client, pytest.raises(ServingError) as info:
        client.encode(IMAGES)
    if kind == "grpc":
        assert info.value.code == "UNAVAILABLE"
    else:
        assert info.value.status_code is None and f"127.0.0.1:{port}" in info.value.message


def test_client_arguments_are_checked():
    with pytest.raises(ValueError, match="'bad/name'"):
        RESTClient(model_name="bad/name")
    with pytest.raises(ValueError, match="version=0"):
        GRPCClient(model_name=MODEL, version=0)
    with pytest.raises(ValueError, match="not both"):
        RESTClient(model_name=MODEL, version=1, version_label="stable")
    with pytest.raises(ValueError, match="format='rows'"):
        RESTClient(model_name=MODEL, format="rows")


# --------------------------------------------------------------------------
# Concurrency


def test_concurrent_sample_seeded_agrees(client, reference):
    expected = {
        seed: direct(reference, "sample_seeded", {"num_samples": 16, "seed": seed})
        for seed in (3, 4)
    }
    start = threading.Barrier(8)

    def call(i):
        start.wait(timeout=30)  # all eight in flight together
        seed = 3 + i % 2
        return seed, [client.sample_seeded(16, seed) for _ in range(3)]

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(call, range(8)))
    for seed, outputs in results:
        for output in outputs:
            assert_outputs_equal(output, expected[seed])


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
    with pytest.raises(ServingError), make_client("rest", rest, model_name=MODEL) as client:
        client.status()  # the port is closed
