"""Serving kerasvae exports with TensorFlow Serving: config, commands, clients.

`kerasvae.export.export_saved_model` writes `<base_path>/<version>/`; this
module covers the other half:

- `models_config` / `write_models_config`: the text-protobuf
  `ModelServerConfig` that `tensorflow_model_server --model_config_file=...`
  reads, for one or several models.
- `docker_command` / `model_server_command`: the command lines that start a
  server on that config.
- `RESTClient` (port 8501) and `GRPCClient` (port 8500): call the exported
  signatures (`encode`, `decode`, `reconstruct`, `sample`, `sample_seeded`,
  `serving_default`) and get `{output name: np.ndarray}` back. Every error the
  server reports becomes a `ServingError` carrying the server's message.

The wire-format knowledge (input dtypes, which inputs are scalars, the name of
a single unnamed REST output) lives in `_SIGNATURES` below and nowhere else.

The REST client needs `requests` and the gRPC client needs
`tensorflow-serving-api` (both in the `serving` extra); neither is imported
until a client is made, so writing configs needs neither.
"""

import dataclasses
import json
import os
import posixpath
import re
import threading
from urllib.parse import quote

import numpy as np

from kerasvae.io_utils import atomic_write_text

DEFAULT_GRPC_PORT = 8500
DEFAULT_REST_PORT = 8501
DEFAULT_IMAGE = "tensorflow/serving"
CONTAINER_MODEL_ROOT = "/models"
CONFIG_FILE_NAME = "models.config"
REST_FORMATS = ("inputs", "instances")
# TF Serving's REST path takes any name without "/" or ":"; the stricter set
# keeps names safe in URLs, file names and container paths alike.
_NAME_PATTERN = re.compile(r"[A-Za-z0-9_.-]+")
# 4 MiB is gRPC's default receive limit: too small for a few hundred images.
_DEFAULT_MAX_MESSAGE_BYTES = 256 * 1024 * 1024


class ServingError(RuntimeError):
    """An error reported by TensorFlow Serving (or the way to it).

    Attributes:
        message: str. The server's own message (REST `{"error": ...}` body or
            gRPC status details), or what went wrong reaching the server.
        status_code: int or None. The HTTP status (REST client only).
        code: str or None. The gRPC status code name, e.g.
            `"INVALID_ARGUMENT"` (gRPC client only).
    """

    def __init__(self, message, status_code=None, code=None):
        self.message = message
        self.status_code = status_code
        self.code = code
        where = []
        if status_code is not None:
            where.append(f"HTTP {status_code}")
        if code is not None:
            where.append(f"gRPC {code}")
        super().__init__(f"{message} ({', '.join(where)})" if where else message)


# --------------------------------------------------------------------------
# The signatures of kerasvae.export and how their tensors travel.


@dataclasses.dataclass(frozen=True)
class _Input:
    name: str
    dtype: str
    # Scalars have no batch axis, so the REST row format cannot carry them.
    scalar: bool = False


@dataclasses.dataclass(frozen=True)
class _Signature:
    inputs: tuple
    # TF Serving drops the name of a lone output in REST answers.
    single_output: str = None
    output_dtype: str = "float32"


_X = _Input("x", "float32")
_SIGNATURES = {
    "encode": _Signature((_X,)),
    "decode": _Signature((_Input("z", "float32"),)),
    "reconstruct": _Signature((_X,), single_output="reconstruction"),
    "sample": _Signature((_Input("num_samples", "int32", scalar=True),)),
    "sample_seeded": _Signature(
        (_Input("num_samples", "int32", scalar=True), _Input("seed", "int64", scalar=True))
    ),
    "serving_default": _Signature((_X,), single_output="reconstruction"),
}


def _as_integer(value, dtype, name):
    array = np.asarray(value)
    # A float would be truncated without a word: refuse it instead.
    if array.dtype.kind not in "iu":
        raise TypeError(f"{name} must be an integer ({dtype}). Received: {name}={value!r}")
    info = np.iinfo(dtype)
    if array.size and (array.min() < info.min or array.max() > info.max):
        raise ValueError(f"{name} does not fit in {dtype}. Received: {name}={value!r}")
    return array.astype(dtype)


def _as_array(value, dtype, name):
    if np.dtype(dtype).kind in "iu":
        return _as_integer(value, dtype, name)
    array = np.asarray(value)
    if array.dtype.kind not in "biuf":
        raise TypeError(
            f"{name} must be numeric ({dtype}). Received an array of dtype {array.dtype}"
        )
    return array.astype(dtype, copy=False)


def _prepare_inputs(signature_name, inputs):
    """`{name: value}` -> `{name: np.ndarray}` in the dtypes the export expects.

    Names and shapes are left to the server, which reports them with its own
    message; only dtypes are fixed here, because gRPC sends them as they are.
    """
    if not isinstance(inputs, dict) or not inputs:
        raise TypeError(
            "inputs must be a non-empty dict {input name: array}. "
            f"Received: {type(inputs).__name__}"
        )
    known = _SIGNATURES.get(signature_name)
    dtypes = {i.name: i.dtype for i in known.inputs} if known else {}
    arrays = {}
    for name, value in inputs.items():
        if name in dtypes:
            arrays[name] = _as_array(value, dtypes[name], name)
        else:
            arrays[name] = np.asarray(value)
    return arrays


def _has_scalar_inputs(signature_name, arrays):
    known = _SIGNATURES.get(signature_name)
    if known is not None and any(i.scalar for i in known.inputs):
        return True
    return any(a.ndim == 0 for a in arrays.values())


def _rest_payload(signature_name, arrays, format):
    if format == "inputs":
        return {
            "signature_name": signature_name,
            "inputs": {k: v.tolist() for k, v in arrays.items()},
        }
    if _has_scalar_inputs(signature_name, arrays):
        raise ValueError(
            f"Signature {signature_name!r} takes scalar inputs ({sorted(arrays)}), which the "
            "REST row format ('instances') cannot carry: TF Serving stacks instances along a "
            "new batch axis. Use format='inputs'."
        )
    sizes = {name: len(a) for name, a in arrays.items()}
    if len(set(sizes.values())) > 1:
        raise ValueError(
            "The row format ('instances') needs every input to have the same batch size. "
            f"Received: {sizes}. Use format='inputs'."
        )
    if len(arrays) == 1:
        (array,) = arrays.values()
        instances = array.tolist()
    else:
        lists = {k: v.tolist() for k, v in arrays.items()}
        instances = [{k: v[i] for k, v in lists.items()} for i in range(next(iter(sizes.values())))]
    return {"signature_name": signature_name, "instances": instances}


def _rest_outputs(signature_name, body, format, single_output_name):
    """A REST predict answer -> `{name: np.ndarray}` (both formats)."""
    key = "outputs" if format == "inputs" else "predictions"
    if not isinstance(body, dict) or key not in body:
        raise ServingError(
            f"Unexpected predict response: no {key!r} key. Received keys: "
            f"{sorted(body) if isinstance(body, dict) else type(body).__name__}"
        )
    value = body[key]
    known = _SIGNATURES.get(signature_name)

    def array(v):
        return np.asarray(v, dtype=known.output_dtype) if known else np.asarray(v)

    if format == "inputs":
        if isinstance(value, dict):
            return {name: array(v) for name, v in value.items()}
        return {single_output_name(): array(value)}
    # Row format: a list of values (one output) or of {name: value} objects.
    if not value:  # an empty batch: no row to read the output names from
        return {known.single_output: array(value)} if known and known.single_output else {}
    if isinstance(value[0], dict):
        return {name: array([row[name] for row in value]) for name in value[0]}
    return {single_output_name(): array(value)}


class _SignatureMethods:
    """One method per kerasvae signature, shared by both clients.

    Each returns the signature's full output dict, as `predict` does.
    """

    def encode(self, x):
        """`x` (batch, *data_shape) -> `{"z_mean", "z_log_var" or "scale_tril"}`."""
        return self._call("encode", {"x": x})

    def decode(self, z):
        """`z` (batch, latent_dim) -> the likelihood's outputs (`probabilities`, `logits`)."""
        return self._call("decode", {"z": z})

    def reconstruct(self, x):
        """`x` -> `{"reconstruction"}`, decoded from the posterior mean."""
        return self._call("reconstruct", {"x": x})

    def sample(self, num_samples):
        """`num_samples` draws from the prior -> `{"samples", "z"}` (different each call)."""
        return self._call("sample", {"num_samples": num_samples})

    def sample_seeded(self, num_samples, seed):
        """Like `sample`, but the same `seed` gives the same samples."""
        return self._call("sample_seeded", {"num_samples": num_samples, "seed": seed})


# --------------------------------------------------------------------------
# Validation shared by the config writers and the clients.


def _check_name(name, what="model name"):
    if not isinstance(name, str) or not _NAME_PATTERN.fullmatch(name) or name in (".", ".."):
        raise ValueError(
            f"Invalid {what}: it must be a non-empty string of letters, digits, '_', '.' "
            f"or '-' (and not '.' or '..'). Received: {name!r}"
        )
    return name


def _check_version(version, what="version"):
    if isinstance(version, bool) or not isinstance(version, (int, np.integer)) or version <= 0:
        raise ValueError(f"{what} must be a positive integer. Received: {what}={version!r}")
    return int(version)


def _check_port(port, what):
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise ValueError(f"{what} must be an integer in [1, 65535]. Received: {what}={port!r}")
    return port


def _check_model_spec(model_name, version, version_label):
    _check_name(model_name)
    if version is not None and version_label is not None:
        raise ValueError(
            "Pass version or version_label, not both. Received: "
            f"version={version!r}, version_label={version_label!r}"
        )
    if version is not None:
        version = _check_version(version)
    if version_label is not None:
        _check_name(version_label, "version label")
    return version


def _check_timeout(timeout):
    if timeout is not None and (not isinstance(timeout, (int, float)) or not timeout > 0):
        raise ValueError(
            f"timeout must be a positive number of seconds or None. Received: {timeout!r}"
        )
    return timeout


# --------------------------------------------------------------------------
# models.config and command lines.


def _text_proto_string(text):
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\{ord(ch):03o}")
        else:
            out.append(ch)  # UTF-8 is fine inside text-format strings
    return '"' + "".join(out) + '"'


def _policy_lines(policy, name):
    """`model_version_policy` lines for one model (empty for the server default)."""
    if policy is None:
        return []
    if policy == "all":
        body = ["all {", "}"]
    elif policy == "latest" or (isinstance(policy, int) and not isinstance(policy, bool)):
        count = 1 if policy == "latest" else policy
        if count < 1:
            raise ValueError(
                f"model_version_policy for {name!r}: the number of latest versions must be "
                f">= 1. Received: {policy!r}"
            )
        body = ["latest {", f"  num_versions: {count}", "}"]
    elif isinstance(policy, (list, tuple)) and policy:
        try:
            versions = [_check_version(v) for v in policy]
        except ValueError:
            raise ValueError(
                f"model_version_policy for {name!r} lists a version that is not a positive "
                f"integer. Received: {policy!r}"
            ) from None
        if len(set(versions)) != len(versions):
            raise ValueError(
                f"model_version_policy for {name!r} repeats a version. Received: {policy!r}"
            )
        body = ["specific {"] + [f"  versions: {v}" for v in versions] + ["}"]
    else:
        raise ValueError(
            f"Invalid model_version_policy for {name!r}. Expected None, 'all', 'latest', a "
            f"positive int (that many latest versions) or a non-empty list of versions. "
            f"Received: {policy!r}"
        )
    return ["model_version_policy {"] + ["  " + line for line in body] + ["}"]


def _label_lines(labels, name):
    if not labels:
        return []
    if not isinstance(labels, dict):
        raise ValueError(
            f"version_labels for {name!r} must be a dict {{label: version}}. Received: {labels!r}"
        )
    lines = []
    for label, version in labels.items():
        _check_name(label, f"version label of {name!r}")
        version = _check_version(version, f"version of label {label!r}")
        lines += [
            "version_labels {",
            f"  key: {_text_proto_string(label)}",
            f"  value: {version}",
            "}",
        ]
    return lines


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


def _check_models(models):
    if not isinstance(models, dict) or not models:
        raise ValueError(
            f"models must be a non-empty dict {{model name: base_path}}. Received: {models!r}"
        )
    for name in models:
        _check_name(name)
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

    lines = ["model_config_list {"]
    for name, base_path in models.items():
        host = _host_path(base_path, name)
        path = host if base_path_prefix is None else posixpath.join(prefix, name)
        config = [
            f"name: {_text_proto_string(name)}",
            f"base_path: {_text_proto_string(path)}",
            f"model_platform: {_text_proto_string(model_platform)}",
        ]
        config += _policy_lines(policies.get(name), name)
        config += _label_lines(labels.get(name), name)
        lines += ["  config {"] + ["    " + line for line in config] + ["  }"]
    lines.append("}")
    return "\n".join(lines) + "\n"


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
    _check_port(rest_port, "rest_port")
    _check_port(grpc_port, "grpc_port")
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
    _check_port(grpc_port, "grpc_port")
    _check_port(rest_port, "rest_port")
    command = [
        binary,
        f"--port={grpc_port}",
        f"--rest_api_port={rest_port}",
        f"--model_config_file={os.path.abspath(os.fspath(config_file))}",
    ]
    return command + _poll_flag(poll_seconds) + [str(a) for a in extra_args]


# --------------------------------------------------------------------------
# REST client.


def _error_message(response):
    """The server's message from a failed REST response."""
    text = response.text
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return body["error"]
    # Not TF Serving's JSON (a proxy, a load balancer): keep the start of it.
    text = text.strip()
    return text[:500] if text else f"HTTP {response.status_code} {response.reason or ''}".strip()


class RESTClient(_SignatureMethods):
    """Calls a model on TensorFlow Serving's REST API (default port 8501).

    Implements `POST /v1/models/<name>[/versions/<v>|/labels/<l>]:predict` in
    both request formats, plus the status and metadata endpoints. Inputs are
    converted to the dtypes the export expects (`num_samples` int32, `seed`
    int64, tensors float32) and answers come back as `{name: np.ndarray}`,
    float32 for the kerasvae signatures. Safe to share between threads (each
    thread keeps its own connection pool).

    Args:
        host: str. Server host. Defaults to `"localhost"`.
        port: int. REST port. Defaults to 8501.
        model_name: str. The model's name in the server's config.
        version: int or None. Ask for this version; `None` is the latest.
        version_label: str or None. Ask for a labelled version instead.
        timeout: float or None. Seconds per request. Defaults to 30.
        format: `"inputs"` (columnar, the default) or `"instances"` (row).
            The default for `predict` and the convenience methods; `sample`
            and `sample_seeded` always use `"inputs"`, since their scalar
            inputs have no batch axis for the row format.
        scheme: `"http"` or `"https"`.

    Example:

    ```python
    client = kerasvae.serving.RESTClient("localhost", 8501, model_name="mlp_vae")
    images = client.sample_seeded(16, seed=0)["samples"]  # (16, 28, 28, 1)
    codes = client.encode(x_test[:8])["z_mean"]
    ```
    """

    def __init__(
        self,
        host="localhost",
        port=DEFAULT_REST_PORT,
        *,
        model_name,
        version=None,
        version_label=None,
        timeout=30.0,
        format="inputs",
        scheme="http",
    ):
        try:
            import requests
        except ImportError as e:  # pragma: no cover - requests ships with the serving extra
            raise ImportError("RESTClient needs requests: pip install 'kerasvae[serving]'") from e
        self._requests = requests
        _check_port(port, "port")
        self.version = _check_model_spec(model_name, version, version_label)
        if format not in REST_FORMATS:
            raise ValueError(f"format must be one of {REST_FORMATS}. Received: format={format!r}")
        if scheme not in ("http", "https"):
            raise ValueError(f"scheme must be 'http' or 'https'. Received: {scheme!r}")
        self.host = host
        self.port = port
        self.model_name = model_name
        self.version_label = version_label
        self.timeout = _check_timeout(timeout)
        self.format = format
        netloc = f"[{host}]" if ":" in host and not host.startswith("[") else host
        self.model_url = f"{scheme}://{netloc}:{port}/v1/models/{quote(model_name)}"
        if self.version is not None:
            self.model_url += f"/versions/{self.version}"
        elif version_label is not None:
            self.model_url += f"/labels/{quote(version_label)}"
        self._local = threading.local()
        self._sessions = []
        self._lock = threading.Lock()
        self._output_names = {}

    def __repr__(self):
        return f"RESTClient({self.model_url!r})"

    def _session(self):
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._requests.Session()
            self._local.session = session
            with self._lock:
                self._sessions.append(session)
        return session

    def _request(self, method, url, payload=None):
        data = None
        headers = {}
        if payload is not None:
            # json.dumps writes NaN/Infinity, which TF Serving accepts; requests'
            # own json= refuses them.
            data = json.dumps(payload).encode("utf-8")
            headers["Content-Type"] = "application/json"
        try:
            response = self._session().request(
                method, url, data=data, headers=headers, timeout=self.timeout
            )
        except self._requests.RequestException as e:
            raise ServingError(f"Could not reach TensorFlow Serving at {url}: {e}") from e
        if response.status_code != 200:
            raise ServingError(_error_message(response), status_code=response.status_code)
        try:
            return json.loads(response.content)
        except ValueError as e:
            raise ServingError(
                f"TensorFlow Serving at {url} answered with invalid JSON: {response.text[:200]!r}",
                status_code=response.status_code,
            ) from e

    def predict(self, inputs, signature_name="serving_default", format=None):
        """Runs a signature: `POST .../v1/models/<name>:predict`.

        Args:
            inputs: dict `{input name: array}`, e.g. `{"x": images}`.
            signature_name: str. Defaults to `"serving_default"`.
            format: `"inputs"`, `"instances"` or None (the client's default).

        Returns:
            dict `{output name: np.ndarray}`.

        Raises:
            ServingError: the server refused the request (its message and the
                HTTP status are on the error) or could not be reached.
            ValueError: the row format cannot carry these inputs.
        """
        format = self.format if format is None else format
        if format not in REST_FORMATS:
            raise ValueError(f"format must be one of {REST_FORMATS}. Received: format={format!r}")
        arrays = _prepare_inputs(signature_name, inputs)
        payload = _rest_payload(signature_name, arrays, format)
        body = self._request("POST", self.model_url + ":predict", payload)
        return _rest_outputs(
            signature_name, body, format, lambda: self._single_output_name(signature_name)
        )

    def _call(self, signature_name, inputs):
        format = "inputs" if _has_scalar_inputs(signature_name, {}) else None
        return self.predict(inputs, signature_name, format=format)

    def _single_output_name(self, signature_name):
        known = _SIGNATURES.get(signature_name)
        if known is not None and known.single_output:
            return known.single_output
        # Not a kerasvae signature: the name is only in the model's metadata.
        if signature_name not in self._output_names:
            signatures = (
                self.metadata()
                .get("metadata", {})
                .get("signature_def", {})
                .get("signature_def", {})
            )
            outputs = list(signatures.get(signature_name, {}).get("outputs", {}))
            self._output_names[signature_name] = outputs[0] if len(outputs) == 1 else "output"
        return self._output_names[signature_name]

    def metadata(self):
        """`GET .../metadata`: the model's signatures, as TF Serving's JSON."""
        return self._request("GET", self.model_url + "/metadata")

    def status(self):
        """`GET /v1/models/<name>`: `{"model_version_status": [...]}`."""
        return self._request("GET", self.model_url)

    def close(self):
        """Closes every connection pool this client opened."""
        with self._lock:
            sessions, self._sessions = self._sessions, []
        for session in sessions:
            session.close()
        self._local = threading.local()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# --------------------------------------------------------------------------
# gRPC client.


class GRPCClient(_SignatureMethods):
    """Calls a model on TensorFlow Serving's gRPC API (default port 8500).

    Uses the official `tensorflow_serving.apis` stubs; tensors travel as
    `TensorProto`s made by `tf.make_tensor_proto`, so dtypes are exact (inputs
    are converted to what the export expects first). Any gRPC failure becomes
    a `ServingError` with the status code name and the server's details.
    Safe to share between threads.

    Args:
        target: str. `"host:port"`. Defaults to `"localhost:8500"`.
        model_name: str. The model's name in the server's config.
        version: int or None. Ask for this version; `None` is the latest.
        version_label: str or None. Ask for a labelled version instead.
        timeout: float or None. Seconds per call. Defaults to 30.
        max_message_bytes: int. Largest message sent or received (gRPC's
            default of 4 MiB holds only ~1300 images). Defaults to 256 MiB.
        channel: a `grpc.Channel` to use instead of an insecure one to
            `target` (for TLS or interceptors); the client does not close it.

    Example:

    ```python
    with kerasvae.serving.GRPCClient("localhost:8500", model_name="mlp_vae") as client:
        out = client.sample_seeded(16, seed=0)
        print(out["samples"].shape, out["z"].shape)
    ```
    """

    def __init__(
        self,
        target=f"localhost:{DEFAULT_GRPC_PORT}",
        *,
        model_name,
        version=None,
        version_label=None,
        timeout=30.0,
        max_message_bytes=_DEFAULT_MAX_MESSAGE_BYTES,
        channel=None,
    ):
        try:
            import grpc
            import tensorflow as tf
            from tensorflow_serving.apis import (
                get_model_metadata_pb2,
                predict_pb2,
                prediction_service_pb2_grpc,
            )
        except ImportError as e:
            raise ImportError(
                "GRPCClient needs grpcio and tensorflow-serving-api: "
                "pip install 'kerasvae[serving]'"
            ) from e
        self._grpc = grpc
        self._tf = tf
        self._predict_pb2 = predict_pb2
        self._metadata_pb2 = get_model_metadata_pb2
        self.version = _check_model_spec(model_name, version, version_label)
        self.target = target
        self.model_name = model_name
        self.version_label = version_label
        self.timeout = _check_timeout(timeout)
        self._owns_channel = channel is None
        if channel is None:
            options = [
                ("grpc.max_send_message_length", max_message_bytes),
                ("grpc.max_receive_message_length", max_message_bytes),
            ]
            channel = grpc.insecure_channel(target, options=options)
        self._channel = channel
        self._stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)

    def __repr__(self):
        return f"GRPCClient({self.target!r}, model_name={self.model_name!r})"

    def _fill_model_spec(self, spec, signature_name=None):
        spec.name = self.model_name
        if self.version is not None:
            spec.version.value = self.version
        elif self.version_label is not None:
            spec.version_label = self.version_label
        if signature_name is not None:
            spec.signature_name = signature_name

    def _rpc(self, method, request):
        try:
            return method(request, timeout=self.timeout)
        except self._grpc.RpcError as e:
            code = e.code() if callable(getattr(e, "code", None)) else None
            details = e.details() if callable(getattr(e, "details", None)) else None
            raise ServingError(
                details or str(e), code=code.name if code is not None else None
            ) from e

    def predict(self, inputs, signature_name="serving_default"):
        """Runs a signature with `PredictionService.Predict`.

        Args:
            inputs: dict `{input name: array}`, e.g. `{"x": images}`.
            signature_name: str. Defaults to `"serving_default"`.

        Returns:
            dict `{output name: np.ndarray}`.

        Raises:
            ServingError: the call failed; `code` is the gRPC status name.
        """
        arrays = _prepare_inputs(signature_name, inputs)
        request = self._predict_pb2.PredictRequest()
        self._fill_model_spec(request.model_spec, signature_name)
        for name, array in arrays.items():
            request.inputs[name].CopyFrom(self._tf.make_tensor_proto(array))
        response = self._rpc(self._stub.Predict, request)
        return {name: self._tf.make_ndarray(proto) for name, proto in response.outputs.items()}

    def _call(self, signature_name, inputs):
        return self.predict(inputs, signature_name)

    def get_model_metadata(self):
        """`PredictionService.GetModelMetadata`, as the same JSON the REST API gives.

        Returns:
            dict `{"model_spec": ..., "metadata": {"signature_def": ...}}`.
        """
        from google.protobuf import json_format

        request = self._metadata_pb2.GetModelMetadataRequest()
        self._fill_model_spec(request.model_spec)
        request.metadata_field.append("signature_def")
        response = self._rpc(self._stub.GetModelMetadata, request)
        return json_format.MessageToDict(response, preserving_proto_field_name=True)

    def close(self):
        """Closes the channel (unless it was passed in)."""
        if self._owns_channel:
            self._channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
