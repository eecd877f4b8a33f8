"""kerasvae.serving.config: models.config and the command lines that serve it.

Configs are parsed back with protobuf's own text parser into
`tensorflow.serving.ModelServerConfig`, the message TF Serving reads, and
served by the stand-in, which loads what the config selects.
"""

import os

import numpy as np
import pytest
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from kerasvae import serving
from kerasvae.serving import ServingError
from tests import serving_fakes
from tests.serving.common import TOY, error_code, make_client

pytestmark = pytest.mark.requires_tensorflow


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


def test_models_config_is_the_proto_printed_by_text_format(tmp_path):
    text = serving.models_config(
        {"a": tmp_path / 'odd "dir"\tü', "b": "gs://bucket/b"},
        model_version_policy={"a": "all", "b": [3, 1]},
        version_labels={"b": {"stable": 1, "canary": 3}},
    )
    config = parse_config(text)
    # Printing the parsed message again gives the same text: it is protobuf's
    # own text format, not a look-alike.
    assert text == text_format.MessageToString(config, as_utf8=True)
    a, b = config.model_config_list.config
    assert policy_choice(a) == "all" and list(b.model_version_policy.specific.versions) == [3, 1]


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


# --------------------------------------------------------------------------
# A server reading the config loads what it says


@pytest.mark.parametrize(
    "policy, loaded",
    [(None, [3]), ("latest", [3]), (2, [2, 3]), ("all", [1, 2, 3]), ([1, 3], [1, 3])],
)
def test_served_versions_follow_the_config(tmp_path, toy_base_path, policy, loaded):
    path = serving.write_models_config(
        tmp_path / "models.config", {TOY: toy_base_path}, model_version_policy=policy
    )
    repository = serving_fakes.ModelRepository.from_config_file(path)
    v = np.array([1.0, -2.5], np.float32)
    with (
        serving_fakes.FakeRESTServer(repository) as rest,
        serving_fakes.FakeGRPCServer(repository) as grpc_server,
    ):
        servers = {"rest": rest, "grpc": grpc_server}
        with make_client("rest", rest, model_name=TOY) as client:
            statuses = client.status()["model_version_status"]
        assert [int(s["version"]) for s in statuses] == sorted(loaded, reverse=True)
        for kind, server in servers.items():
            with make_client(kind, server, model_name=TOY) as latest:
                out = latest.predict({"v": v}, "scale")
                np.testing.assert_array_equal(out["scaled"], v * max(loaded))
            for version in (1, 2, 3):
                with make_client(kind, server, model_name=TOY, version=version) as client:
                    if version in loaded:
                        out = client.predict({"v": v}, "scale")
                        np.testing.assert_array_equal(out["scaled"], v * version)
                        continue
                    with pytest.raises(ServingError) as info:
                        client.predict({"v": v}, "scale")
                    assert error_code(info.value) in (404, "NOT_FOUND")
                    assert f"Specific({TOY}, {version})" in info.value.message


def test_version_labels_from_the_config_pick_versions(tmp_path, toy_base_path):
    path = serving.write_models_config(
        tmp_path / "models.config",
        {TOY: toy_base_path},
        model_version_policy=[1, 3],
        version_labels={TOY: {"stable": 1, "canary": 3}},
    )
    repository = serving_fakes.ModelRepository.from_config_file(path)
    v = np.array([0.5, 4.0], np.float32)
    with (
        serving_fakes.FakeRESTServer(repository) as rest,
        serving_fakes.FakeGRPCServer(repository) as grpc_server,
    ):
        for kind, server in {"rest": rest, "grpc": grpc_server}.items():
            for label, version in (("stable", 1), ("canary", 3)):
                with make_client(kind, server, model_name=TOY, version_label=label) as client:
                    out = client.predict({"v": v}, "scale_and_shift")
                    np.testing.assert_array_equal(out["scaled"], v * version)
                    np.testing.assert_array_equal(out["shifted"], v + version)
            with make_client(kind, server, model_name=TOY, version_label="nope") as client:
                with pytest.raises(ServingError) as info:
                    client.predict({"v": v}, "scale")
            assert error_code(info.value) in (400, "INVALID_ARGUMENT")
            assert "Unrecognized servable version label: nope" in info.value.message
