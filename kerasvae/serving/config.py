"""TF Serving's `models.config` and the command lines that serve it.

- `models_config` / `write_models_config`: a `tensorflow.serving.ModelServerConfig`
  (the message `tensorflow_model_server --model_config_file=...` reads), built
  with the protobuf classes of `tensorflow-serving-api` and printed by
  `google.protobuf.text_format`, for one or several models.
- `docker_command` / `model_server_command`: the command lines that start a
  server on that config.

Only base paths and names are involved: nothing here loads a model.
"""

import os
import posixpath

from kerasvae.io_utils import atomic_write_text
from kerasvae.serving._checks import check_name, check_port, check_version

DEFAULT_GRPC_PORT = 8500
DEFAULT_REST_PORT = 8501
DEFAULT_IMAGE = "tensorflow/serving"
CONTAINER_MODEL_ROOT = "/models"
CONFIG_FILE_NAME = "models.config"
_MAX_UINT32 = 2**32 - 1


def _set_version_policy(policy_proto, policy, name):
    """Fills a `ServableVersionPolicy`; `None` leaves it unset (the server's default)."""
    if policy is None:
        return
    if isinstance(policy, str) and policy == "all":
        policy_proto.all.SetInParent()
    elif (isinstance(policy, str) and policy == "latest") or (
        isinstance(policy, int) and not isinstance(policy, bool)
    ):
        count = 1 if policy == "latest" else policy
        if not 1 <= count <= _MAX_UINT32:
            raise ValueError(
                f"model_version_policy for {name!r}: the number of latest versions must be "
                f">= 1. Received: {policy!r}"
            )
        policy_proto.latest.num_versions = count
    elif isinstance(policy, (list, tuple)) and policy:
        try:
            versions = [check_version(v) for v in policy]
        except ValueError:
            raise ValueError(
                f"model_version_policy for {name!r} lists a version that is not a positive "
                f"integer. Received: {policy!r}"
            ) from None
        if len(set(versions)) != len(versions):
            raise ValueError(
                f"model_version_policy for {name!r} repeats a version. Received: {policy!r}"
            )
        policy_proto.specific.versions.extend(versions)
    else:
        raise ValueError(
            f"Invalid model_version_policy for {name!r}. Expected None, 'all', 'latest', a "
            f"positive int (that many latest versions) or a non-empty list of versions. "
            f"Received: {policy!r}"
        )


def _set_version_labels(labels_proto, labels, name):
    if not labels:
        return
    if not isinstance(labels, dict):
        raise ValueError(
            f"version_labels for {name!r} must be a dict {{label: version}}. Received: {labels!r}"
        )
    for label, version in labels.items():
        check_name(label, f"version label of {name!r}")
        labels_proto[label] = check_version(version, f"version of label {label!r}")


def _per_model(option, names, what):
    """A per-model dict as it is, anything else applied to every model."""
    if isinstance(option, dict):
        unknown = sorted(set(option) - set(names))
        if unknown:
            raise ValueError(f"{what} names unknown model(s) {unknown}. Known: {sorted(names)}")
        return option
    return {name: option for name in names}


def _host_path(base_path, name):
    if not isinstance(base_path, (str, os.PathLike)) or not os.fspath(base_path):
        raise ValueError(
            f"base_path of model {name!r} must be a non-empty path. Received: {base_path!r}"
        )
    base_path = os.fspath(base_path)
    if "://" in base_path:  # gs://, s3://, hdfs://: the server resolves those
        return base_path
    return os.path.abspath(os.path.expanduser(base_path))


def _config_protos():
    try:
        from google.protobuf import text_format
        from tensorflow_serving.config import model_server_config_pb2
    except ImportError as e:
        raise ImportError(
            "Writing a models.config needs tensorflow-serving-api: pip install 'kerasvae[serving]'"
        ) from e
    return model_server_config_pb2, text_format


def _check_models(models):
    if not isinstance(models, dict) or not models:
        raise ValueError(
            f"models must be a non-empty dict {{model name: base_path}}. Received: {models!r}"
        )
    for name in models:
        check_name(name)
    return models


def models_config(
    models,
    base_path_prefix=None,
    model_platform="tensorflow",
    model_version_policy=None,
    version_labels=None,
):
    """Returns a TF Serving `models.config` (text `ModelServerConfig`).

    Args:
        models: dict `{model name: base_path}`, the folders that
            `export_saved_model` wrote versions into. Names may use letters,
            digits, `_`, `.` and `-`; they are the names clients ask for.
        base_path_prefix: str or None. `None` writes each `base_path` made
            absolute (for a server on this machine; `gs://`-style URIs are kept
            as they are). A prefix such as `"/models"` writes
            `<prefix>/<model name>` instead: the path inside a container
            where `docker_command` mounts each model.
        model_platform: str. Defaults to `"tensorflow"`.
        model_version_policy: which versions the server loads; `None` (the
            server default: the latest one), `"all"`, `"latest"`, an int `n`
            (the `n` latest), or a list of versions (exactly those). A dict
            `{model name: policy}` sets it per model.
        version_labels: dict `{model name: {label: version}}` or None. Labels
            clients can ask for instead of a number (`version_label=`). TF
            Serving only assigns a label to a version that is loaded.

    Returns:
        The config text, ending with a newline.

    Raises:
        ValueError: a model name, path, policy or label is invalid; the
            message names the value.

    Example:

    ```python
    text = kerasvae.serving.models_config(
        {"mlp_vae": "savedmodels/mlp_vae", "conv_vae": "savedmodels/conv_vae"},
        base_path_prefix="/models",
        model_version_policy=2,
    )
    ```
    """
    models = _check_models(models)
    if base_path_prefix is not None:
        prefix = os.fspath(base_path_prefix)
        if not prefix or not (prefix.startswith("/") or "://" in prefix):
            raise ValueError(
                "base_path_prefix must be an absolute POSIX path (the path inside the "
                f"server's file system) or a URI. Received: {base_path_prefix!r}"
            )
    if not isinstance(model_platform, str) or not model_platform:
        raise ValueError(f"model_platform must be a non-empty string. Received: {model_platform!r}")
    policies = _per_model(model_version_policy, models, "model_version_policy")
    if version_labels is not None and not isinstance(version_labels, dict):
        raise ValueError(
            "version_labels must be a dict {model name: {label: version}}. "
            f"Received: {version_labels!r}"
        )
    labels = _per_model(version_labels or {}, models, "version_labels")

    model_server_config_pb2, text_format = _config_protos()
    config = model_server_config_pb2.ModelServerConfig()
    for name, base_path in models.items():
        host = _host_path(base_path, name)
        entry = config.model_config_list.config.add()
        entry.name = name
        entry.base_path = host if base_path_prefix is None else posixpath.join(prefix, name)
        entry.model_platform = model_platform
        _set_version_policy(entry.model_version_policy, policies.get(name), name)
        _set_version_labels(entry.version_labels, labels.get(name), name)
    return text_format.MessageToString(config, as_utf8=True)


def write_models_config(path, models, **kwargs):
    """Writes `models_config(models, **kwargs)` to `path` atomically.

    The text goes to a temporary file beside `path` that is then renamed over
    it, so a server polling the file (`--model_config_file_poll_wait_seconds`)
    never reads half a config.

    Args:
        path: str. Where to write, e.g. `"savedmodels/models.config"`.
        models: dict `{model name: base_path}`.
        **kwargs: the other arguments of `models_config`.

    Returns:
        The absolute path written.

    Example:

    ```python
    kerasvae.serving.write_models_config(
        "savedmodels/models.config", {"mlp_vae": "savedmodels/mlp_vae"}
    )
    ```
    """
    text = models_config(models, **kwargs)  # invalid input fails before any file exists
    return atomic_write_text(path, text)


def _poll_flag(poll_seconds):
    if poll_seconds is None:
        return []
    if isinstance(poll_seconds, bool) or not isinstance(poll_seconds, int) or poll_seconds <= 0:
        raise ValueError(
            f"poll_seconds must be a positive integer or None. Received: {poll_seconds!r}"
        )
    return [f"--model_config_file_poll_wait_seconds={poll_seconds}"]


def docker_command(
    models,
    config_file,
    image=DEFAULT_IMAGE,
    rest_port=DEFAULT_REST_PORT,
    grpc_port=DEFAULT_GRPC_PORT,
    container_root=CONTAINER_MODEL_ROOT,
    poll_seconds=None,
    extra_args=(),
):
    """The `docker run` command serving `models` with the official image.

    Each model's folder is mounted read-only at `<container_root>/<name>` and
    the config at `<container_root>/models.config`, so the config must be
    written with `base_path_prefix=container_root`. The image's entrypoint
    already listens on 8500 (gRPC) and 8501 (REST) inside the container;
    `rest_port` and `grpc_port` are the ports on this machine.

    Args:
        models: dict `{model name: base_path}` on this machine.
        config_file: str. The config written by `write_models_config`.
        image: str. Defaults to `"tensorflow/serving"` (add a tag to pin it).
        rest_port: int. Host port for REST. Defaults to 8501.
        grpc_port: int. Host port for gRPC. Defaults to 8500.
        container_root: str. Defaults to `"/models"`.
        poll_seconds: int or None. Re-read the config every so many seconds.
        extra_args: more `tensorflow_model_server` flags.

    Returns:
        A list of arguments (`shlex.join` it for a shell, or pass it to
        `subprocess.run`).

    Example:

    ```python
    models = {"mlp_vae": "savedmodels/mlp_vae"}
    config = kerasvae.serving.write_models_config(
        "savedmodels/models.config", models, base_path_prefix="/models"
    )
    print(shlex.join(kerasvae.serving.docker_command(models, config)))
    # docker run -p 8501:8501 -p 8500:8500 -v /abs/savedmodels/mlp_vae:/models/mlp_vae:ro
    #   -v /abs/savedmodels/models.config:/models/models.config:ro tensorflow/serving
    #   --model_config_file=/models/models.config
    ```
    """
    models = _check_models(models)
    check_port(rest_port, "rest_port")
    check_port(grpc_port, "grpc_port")
    if not isinstance(container_root, str) or not container_root.startswith("/"):
        raise ValueError(
            f"container_root must be an absolute POSIX path. Received: {container_root!r}"
        )
    if CONFIG_FILE_NAME in models:
        raise ValueError(
            f"A model may not be named {CONFIG_FILE_NAME!r}: the config is mounted there."
        )
    container_config = posixpath.join(container_root, CONFIG_FILE_NAME)
    command = [
        "docker",
        "run",
        "-p",
        f"{rest_port}:{DEFAULT_REST_PORT}",
        "-p",
        f"{grpc_port}:{DEFAULT_GRPC_PORT}",
    ]
    for name, base_path in models.items():
        host = _host_path(base_path, name)
        if "://" in host:
            raise ValueError(
                f"Cannot mount the remote base_path of {name!r} into a container: {host!r}"
            )
        command += ["-v", f"{host}:{posixpath.join(container_root, name)}:ro"]
    command += ["-v", f"{os.path.abspath(os.fspath(config_file))}:{container_config}:ro", image]
    command += [f"--model_config_file={container_config}"] + _poll_flag(poll_seconds)
    return command + [str(a) for a in extra_args]


def model_server_command(
    config_file,
    grpc_port=DEFAULT_GRPC_PORT,
    rest_port=DEFAULT_REST_PORT,
    poll_seconds=None,
    binary="tensorflow_model_server",
    extra_args=(),
):
    """The `tensorflow_model_server` command serving a models.config.

    Write the config without `base_path_prefix`, so it holds this machine's
    absolute paths.

    Args:
        config_file: str. The config written by `write_models_config`.
        grpc_port: int. Defaults to 8500.
        rest_port: int. Defaults to 8501.
        poll_seconds: int or None. Re-read the config every so many seconds.
        binary: str. The server executable.
        extra_args: more server flags.

    Returns:
        A list of arguments.

    Example:

    ```python
    kerasvae.serving.model_server_command("savedmodels/models.config")
    # ['tensorflow_model_server', '--port=8500', '--rest_api_port=8501',
    #  '--model_config_file=/abs/savedmodels/models.config']
    ```
    """
    check_port(grpc_port, "grpc_port")
    check_port(rest_port, "rest_port")
    command = [
        binary,
        f"--port={grpc_port}",
        f"--rest_api_port={rest_port}",
        f"--model_config_file={os.path.abspath(os.fspath(config_file))}",
    ]
    return command + _poll_flag(poll_seconds) + [str(a) for a in extra_args]
