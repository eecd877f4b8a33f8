"""In-process stand-ins for TensorFlow Serving, for tests only.

There is no `tensorflow_model_server` binary in the test environment, so these
servers play its part on 127.0.0.1 (ephemeral ports): they load exports with
`tf.saved_model.load` and run their signatures, and they answer the way TF
Serving does where the clients can tell:

- gRPC: the official `PredictionService` (`Predict`, `GetModelMetadata`;
  the rest answer UNIMPLEMENTED). An unknown model is NOT_FOUND
  ("Servable not found for request: Latest(name)"), an unknown signature
  FAILED_PRECONDITION ('Serving signature key "s" not found.'), bad inputs
  INVALID_ARGUMENT with TensorFlow's own message.
- REST: `/v1/models/<name>[/versions/<v>|/labels/<l>]` with `:predict`
  (both the row "instances" and the columnar "inputs" format, answering
  "predictions" or "outputs"), `/metadata` and the status endpoint. Errors are
  `{"error": message}` with TF Serving's HTTP status for the gRPC code
  (INVALID_ARGUMENT and FAILED_PRECONDITION 400, NOT_FOUND 404, ...); an
  unknown signature is 400 ('Serving signature name: "s" not found in
  signature def'). Metadata is the JSON TF Serving writes
  (http_rest_api_util.cc): `{"model_spec": ..., "metadata": {"signature_def":
  <the SignatureDefMap>}}`, the `Any` unpacked, proto field names, fields at
  their defaults printed. The status endpoint lists the loaded versions,
  newest first, and ignores a version label, as GetModelStatusImpl does.

Which versions are loaded follows the config, as in TF Serving: by default
only the latest numbered folder under a base path (the "latest" policy with
one version); a `ModelServerConfig` can ask for `all`, the `n` latest or
`specific` versions, and name version labels, which must point to a loaded
version. The config is read once; there is no polling.

Like TF Serving, neither validates shapes before running the graph, so a
wrong shape fails inside it (for example in the encoder's reshape) and a
scalar sent in the row format arrives with a batch axis.

Both servers bound their work: a fixed pool of gRPC workers, a cap on
concurrent model runs, a request-size limit and socket timeouts for REST,
and `stop()` waits for everything they started.
"""

import json
import os
import re
import threading
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

import grpc
import numpy as np
import tensorflow as tf
from google.protobuf import json_format, text_format
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    predict_pb2,
    prediction_service_pb2_grpc,
)
from tensorflow_serving.config import model_server_config_pb2

DEFAULT_SIGNATURE = "serving_default"
Code = grpc.StatusCode

# TF Serving's http_server.cc mapping from status code to HTTP status.
HTTP_STATUS = {
    Code.CANCELLED: 499,
    Code.UNKNOWN: 500,
    Code.INVALID_ARGUMENT: 400,
    Code.DEADLINE_EXCEEDED: 504,
    Code.NOT_FOUND: 404,
    Code.ALREADY_EXISTS: 409,
    Code.PERMISSION_DENIED: 403,
    Code.RESOURCE_EXHAUSTED: 429,
    Code.FAILED_PRECONDITION: 400,
    Code.ABORTED: 409,
    Code.OUT_OF_RANGE: 400,
    Code.UNIMPLEMENTED: 501,
    Code.INTERNAL: 500,
    Code.UNAVAILABLE: 503,
    Code.DATA_LOSS: 500,
    Code.UNAUTHENTICATED: 401,
}
_CODE_BY_NUMBER = {code.value[0]: code for code in Code}
# How TF Serving prints metadata and status as JSON (http_rest_api_util.cc).
_JSON_OPTIONS = {"always_print_fields_with_no_presence": True}

# TF Serving's REST routes (http_rest_api_util.cc), case-insensitive like its regex.
_REST_PATH = re.compile(
    r"/v1/models/(?P<name>[^/:]+)"
    r"(?:/versions/(?P<version>\d+)|/labels/(?P<label>[^/:]+))?"
    r"(?::(?P<method>classify|regress|predict))?"
    r"(?:/(?P<sub>metadata))?",
    re.IGNORECASE,
)


class Status(Exception):
    """A failed call, as a gRPC status code and message."""

    def __init__(self, code, message, http_status=None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.http_status = http_status or HTTP_STATUS.get(code, 500)


class Servable:
    """One loaded version of one model."""

    def __init__(self, name, version, path):
        self.name = name
        self.version = version
        self.path = path
        self.loaded = tf.saved_model.load(path)
        self.signatures = dict(self.loaded.signatures)
        # The SignatureDefs as TF Serving reports them in its metadata.
        saved_model = saved_model_pb2.SavedModel()
        with open(os.path.join(path, "saved_model.pb"), "rb") as f:
            saved_model.ParseFromString(f.read())
        self.signature_defs = saved_model.meta_graphs[0].signature_def

    def input_specs(self, signature_name):
        return self.signatures[signature_name].structured_input_signature[1]

    def run(self, signature_name, arrays):
        specs = self.input_specs(signature_name)
        if len(arrays) != len(specs):
            sent, wanted = set(arrays), set(specs)
            raise Status(
                Code.INVALID_ARGUMENT,
                f"input size does not match signature: {len(arrays)}!={len(specs)} "
                f"len({{{','.join(sorted(sent))}}}) != len({{{','.join(sorted(wanted))}}}). "
                f"Sent extra: {{{','.join(sorted(sent - wanted))}}}. "
                f"Missing but required: {{{','.join(sorted(wanted - sent))}}}.",
            )
        for name in arrays:
            if name not in specs:
                raise Status(
                    Code.INVALID_ARGUMENT,
                    f"input tensor alias not found in signature: {name}. Inputs expected to be "
                    f"in the set {{{','.join(sorted(specs))}}}.",
                )
        try:
            outputs = self.signatures[signature_name](
                **{k: tf.convert_to_tensor(v) for k, v in arrays.items()}
            )
        except tf.errors.OpError as e:
            raise Status(_CODE_BY_NUMBER.get(e.error_code, Code.UNKNOWN), e.message) from None
        except (TypeError, ValueError) as e:
            raise Status(Code.INVALID_ARGUMENT, str(e)) from None
        return {name: tensor.numpy() for name, tensor in outputs.items()}


def _versions_on_disk(base_path):
    """`{version: folder name}` for the children TF Serving reads as versions."""
    if not os.path.isdir(base_path):
        raise FileNotFoundError(f"No such base path: {base_path!r}")
    return {int(d): d for d in os.listdir(base_path) if d.isdigit()}


def _versions_to_load(policy, on_disk):
    """The versions a `ServableVersionPolicy` picks (file_system_storage_path_source.cc)."""
    choice = policy.WhichOneof("policy_choice")
    if choice == "all":
        return sorted(on_disk)
    if choice == "specific":
        return sorted(set(on_disk) & set(policy.specific.versions))
    # Unset or `latest`: the newest num_versions, at least one.
    return sorted(on_disk)[-max(policy.latest.num_versions, 1) :]


def _as_model_server_config(models):
    if isinstance(models, model_server_config_pb2.ModelServerConfig):
        return models
    if not isinstance(models, dict):
        raise TypeError(
            "models must be a dict {name: base_path} or a ModelServerConfig. "
            f"Received: {type(models).__name__}"
        )
    config = model_server_config_pb2.ModelServerConfig()
    for name, base_path in models.items():
        entry = config.model_config_list.config.add()
        entry.name, entry.base_path, entry.model_platform = name, str(base_path), "tensorflow"
    return config


class ModelRepository:
    """The models a fake server serves, loaded as TF Serving would load them.

    Args:
        models: dict `{model name: base_path}` (TF Serving's defaults: the
            latest version of each, no labels) or a `ModelServerConfig`
            message (see `from_config_file` for a models.config file).
        max_concurrent_runs: int. Model runs at once, across both servers.
        run_wait_seconds: float. How long a run waits for a free slot before
            it fails with RESOURCE_EXHAUSTED.

    Raises:
        FileNotFoundError: a base path holds no version to load.
        ValueError: a version label points to a version that is not loaded
            (TF Serving refuses such a config with FAILED_PRECONDITION).
    """

    def __init__(self, models, max_concurrent_runs=8, run_wait_seconds=30.0):
        config = _as_model_server_config(models)
        self.servables = {}
        self.labels = {}
        for entry in config.model_config_list.config:
            on_disk = _versions_on_disk(entry.base_path)
            versions = _versions_to_load(entry.model_version_policy, on_disk)
            if not versions:
                raise FileNotFoundError(
                    f"No version of {entry.name!r} to load under {entry.base_path!r}: "
                    f"on disk {sorted(on_disk)}, policy {entry.model_version_policy}"
                )
            self.servables[entry.name] = {
                v: Servable(entry.name, v, os.path.join(entry.base_path, on_disk[v]))
                for v in versions
            }
            for label, version in entry.version_labels.items():
                if version not in self.servables[entry.name]:
                    raise ValueError(
                        f"Request to assign label to version {version} of model {entry.name}, "
                        "which is not currently available for inference"
                    )
            self.labels[entry.name] = dict(entry.version_labels)
        self._slots = threading.BoundedSemaphore(max_concurrent_runs)
        self._run_wait_seconds = run_wait_seconds

    @classmethod
    def from_config_file(cls, path, **kwargs):
        """Reads a models.config (text `ModelServerConfig`), as `--model_config_file` does."""
        with open(path, encoding="utf-8") as f:
            config = text_format.Parse(f.read(), model_server_config_pb2.ModelServerConfig())
        return cls(config, **kwargs)

    def resolve(self, name, version=None, label=None):
        versions = self.servables.get(name, {})
        if label is not None:
            if label not in self.labels.get(name, {}):
                raise Status(Code.INVALID_ARGUMENT, f"Unrecognized servable version label: {label}")
            version = self.labels[name][label]
        if version is None:
            if versions:
                return versions[max(versions)]
            raise Status(Code.NOT_FOUND, f"Servable not found for request: Latest({name})")
        if version not in versions:
            raise Status(
                Code.NOT_FOUND, f"Servable not found for request: Specific({name}, {version})"
            )
        return versions[version]

    def resolve_spec(self, model_spec):
        which = model_spec.WhichOneof("version_choice")
        if which == "version":
            return self.resolve(model_spec.name, version=model_spec.version.value)
        if which == "version_label":
            return self.resolve(model_spec.name, label=model_spec.version_label)
        return self.resolve(model_spec.name)

    def run(self, servable, signature_name, arrays):
        if not self._slots.acquire(timeout=self._run_wait_seconds):
            raise Status(Code.RESOURCE_EXHAUSTED, "Too many concurrent requests")
        try:
            return servable.run(signature_name, arrays)
        finally:
            self._slots.release()

    def metadata(self, servable):
        """A `GetModelMetadataResponse` with the `signature_def` field."""
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = servable.name
        response.model_spec.version.value = servable.version
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        for key, signature_def in servable.signature_defs.items():
            signature_map.signature_def[key].CopyFrom(signature_def)
        response.metadata["signature_def"].Pack(signature_map)
        return response

    def metadata_json(self, servable):
        """The metadata as TF Serving's REST API prints it.

        Not `MessageToJson` of the response: that would print the `Any` with
        an "@type" key. TF Serving unpacks the `SignatureDefMap` and prints
        the model spec and the map separately, with proto field names.
        """
        response = self.metadata(servable)
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(signature_map)
        options = dict(_JSON_OPTIONS, preserving_proto_field_name=True)
        return {
            "model_spec": json_format.MessageToDict(response.model_spec, **options),
            "metadata": {"signature_def": json_format.MessageToDict(signature_map, **options)},
        }

    def status_json(self, name, version=None):
        """GetModelStatusResponse as JSON: the given version, or all loaded ones, newest first."""
        loaded = self.servables.get(name, {})
        if version is not None:
            if version not in loaded:
                raise Status(Code.NOT_FOUND, f"Could not find version {version} of model {name}")
            versions = [version]
        elif not loaded:
            raise Status(Code.NOT_FOUND, f"Could not find any versions of model {name}")
        else:
            versions = sorted(loaded, reverse=True)
        response = get_model_status_pb2.GetModelStatusResponse()
        for v in versions:
            status = response.model_version_status.add()
            status.version = v
            status.state = get_model_status_pb2.ModelVersionStatus.AVAILABLE
            status.status.SetInParent()  # error_code OK, as ToStatusProto writes it
        # The proto's json_name options keep the snake_case names.
        return json_format.MessageToDict(response, **_JSON_OPTIONS)


# --------------------------------------------------------------------------
# gRPC


class FakePredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    """`PredictionService.Predict` and `GetModelMetadata` over a repository."""

    def __init__(self, repository):
        self.repository = repository

    def _predict(self, request):
        servable = self.repository.resolve_spec(request.model_spec)
        signature_name = request.model_spec.signature_name or DEFAULT_SIGNATURE
        if signature_name not in servable.signatures:
            raise Status(
                Code.FAILED_PRECONDITION, f'Serving signature key "{signature_name}" not found.'
            )
        arrays = {}
        for name, proto in request.inputs.items():
            try:
                arrays[name] = tf.make_ndarray(proto)
            except Exception:  # any malformed TensorProto
                raise Status(Code.INVALID_ARGUMENT, f"tensor parsing error: {name}") from None
        outputs = self.repository.run(servable, signature_name, arrays)
        if request.output_filter:
            for name in request.output_filter:
                if name not in outputs:
                    raise Status(
                        Code.INVALID_ARGUMENT, f"output tensor alias not found in signature: {name}"
                    )
            outputs = {name: outputs[name] for name in request.output_filter}
        response = predict_pb2.PredictResponse()
        response.model_spec.name = servable.name
        response.model_spec.version.value = servable.version
        response.model_spec.signature_name = signature_name
        for name, array in outputs.items():
            response.outputs[name].CopyFrom(tf.make_tensor_proto(array))
        return response

    def Predict(self, request, context):
        try:
            return self._predict(request)
        except Status as s:
            error = s
        context.abort(error.code, error.message)  # raises; outside the except on purpose

    def GetModelMetadata(self, request, context):
        try:
            if not request.metadata_field:
                raise Status(
                    Code.INVALID_ARGUMENT,
                    "GetModelMetadataRequest must specify at least one metadata_field",
                )
            for field in request.metadata_field:
                if field != "signature_def":
                    raise Status(Code.INVALID_ARGUMENT, f"Metadata field {field} is not supported")
            return self.repository.metadata(self.repository.resolve_spec(request.model_spec))
        except Status as s:
            error = s
        context.abort(error.code, error.message)


class FakeGRPCServer:
    """TF Serving's gRPC API on 127.0.0.1:<ephemeral port>.

    Example:

    ```python
    with FakeGRPCServer(repository) as server:
        client = kerasvae.serving.GRPCClient(server.target, model_name="vae")
    ```
    """

    def __init__(self, repository, max_workers=8, max_message_bytes=64 * 1024 * 1024):
        self.repository = repository
        self.max_workers = max_workers
        self.max_message_bytes = max_message_bytes
        self.port = None
        self._server = None
        self._executor = None

    @property
    def target(self):
        return f"127.0.0.1:{self.port}"

    def start(self):
        self._executor = futures.ThreadPoolExecutor(
            self.max_workers, thread_name_prefix="fake-tfs-grpc"
        )
        options = [
            ("grpc.max_send_message_length", self.max_message_bytes),
            ("grpc.max_receive_message_length", self.max_message_bytes),
        ]
        # Past the workers, a few calls may queue; more are refused at once.
        self._server = grpc.server(
            self._executor, options=options, maximum_concurrent_rpcs=4 * self.max_workers
        )
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
            FakePredictionService(self.repository), self._server
        )
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        if not self.port:
            raise RuntimeError("Could not bind a gRPC port on 127.0.0.1")
        self._server.start()
        return self

    def stop(self, grace=1.0):
        if self._server is not None:
            self._server.stop(grace).wait(grace + 5.0)
            self._server = None
        if self._executor is not None:
            # grpc.server does not own the pool it is given.
            self._executor.shutdown(wait=True)
            self._executor = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


# --------------------------------------------------------------------------
# REST


def _json_to_array(value, dtype, name):
    """A JSON value -> an array of the signature's dtype, refusing lossy casts."""
    try:
        array = np.asarray(value)
    except ValueError as e:  # ragged nesting
        raise Status(Code.INVALID_ARGUMENT, f"Failed to process input {name}: {e}") from None
    target = np.dtype(dtype)
    if array.size and (
        array.dtype == object
        or array.dtype.kind not in "biuf"
        or (target.kind in "iu" and array.dtype.kind not in "iu")
    ):
        first = array.reshape(-1)[0]
        raise Status(
            Code.INVALID_ARGUMENT,
            f"JSON Value: {json.dumps(first.item() if hasattr(first, 'item') else first)} "
            f"not of expected type {target.name} for input {name}",
        )
    if target.kind in "iu" and array.size:
        info = np.iinfo(target)
        if array.min() < info.min or array.max() > info.max:
            raise Status(
                Code.INVALID_ARGUMENT, f"JSON Value out of range for {target.name} in input {name}"
            )
    return array.astype(target)


def _is_named(value):
    return isinstance(value, dict) and set(value) != {"b64"}


def _rows_to_arrays(instances, specs):
    """The row format: every instance gets stacked along a new batch axis."""
    if not isinstance(instances, list):
        raise Status(Code.INVALID_ARGUMENT, "Excepting 'instances' to be an list/array")
    if not instances:
        raise Status(Code.INVALID_ARGUMENT, "No values in 'instances' array")
    named = _is_named(instances[0])
    if not named and len(specs) > 1:
        raise Status(
            Code.INVALID_ARGUMENT,
            "instances is a plain list, but expecting list of objects as multiple input tensors "
            "required as per tensorinfo_map",
        )
    columns = {name: [] for name in specs}
    for i, item in enumerate(instances):
        if named != _is_named(item):
            kind = "object" if named else "value/list"
            raise Status(Code.INVALID_ARGUMENT, f"Expecting {kind} at item {i} of input list")
        if not named:
            columns[next(iter(specs))].append(item)
            continue
        if set(item) != set(specs):
            raise Status(
                Code.INVALID_ARGUMENT,
                f"Failed to process element: {i} of 'instances' list. JSON object: "
                f"{json.dumps(item)[:200]} keys must be equal to: {','.join(sorted(specs))}",
            )
        for name in specs:
            columns[name].append(item[name])
    return {
        name: _json_to_array(values, specs[name].dtype.as_numpy_dtype, name)
        for name, values in columns.items()
    }


def _columns_to_arrays(inputs, specs):
    if not _is_named(inputs):
        if len(specs) > 1:
            raise Status(
                Code.INVALID_ARGUMENT,
                "inputs is a plain value/list, but expecting an object as multiple input tensors "
                "required as per tensorinfo_map",
            )
        name = next(iter(specs))
        return {name: _json_to_array(inputs, specs[name].dtype.as_numpy_dtype, name)}
    arrays = {}
    for name, spec in specs.items():
        if name not in inputs:
            raise Status(Code.INVALID_ARGUMENT, f"Missing named input: {name} in 'inputs' object.")
        arrays[name] = _json_to_array(inputs[name], spec.dtype.as_numpy_dtype, name)
    return arrays


def _row_response(outputs):
    batch = None
    for name, array in sorted(outputs.items()):
        if array.ndim == 0:
            raise Status(Code.INVALID_ARGUMENT, f"Tensor name: {name} has no shape information ")
        if batch is not None and array.shape[0] != batch:
            raise Status(
                Code.INVALID_ARGUMENT,
                f"Tensor name: {name} has inconsistent batch size: {array.shape[0]} "
                f"expecting: {batch}",
            )
        batch = array.shape[0]
    lists = {name: array.tolist() for name, array in outputs.items()}
    if len(lists) == 1:
        return {"predictions": next(iter(lists.values()))}
    return {
        "predictions": [{name: values[i] for name, values in lists.items()} for i in range(batch)]
    }


def _columnar_response(outputs):
    if len(outputs) == 1:
        return {"outputs": next(iter(outputs.values())).tolist()}
    return {"outputs": {name: array.tolist() for name, array in outputs.items()}}


class _RESTHandler(BaseHTTPRequestHandler):
    # One request per connection (HTTP/1.0): nothing lingers at shutdown.
    protocol_version = "HTTP/1.0"
    # A stalled client cannot hold a handler thread for longer than this.
    timeout = 30
    fake = None  # the FakeRESTServer, set on a subclass per server

    def log_message(self, format, *args):
        pass

    def do_GET(self):
        self._dispatch("GET")

    def do_POST(self):
        self._dispatch("POST")

    def _dispatch(self, method):
        try:
            status, body = 200, self._handle(method)
        except Status as s:
            status, body = s.http_status, {"error": s.message}
        data = json.dumps(body).encode("utf-8")  # NaN/Infinity as TF Serving writes them
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _read_body(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length > self.fake.max_body_bytes:
            raise Status(
                Code.INVALID_ARGUMENT,
                f"Request body of {length} bytes exceeds the limit of {self.fake.max_body_bytes}",
                http_status=413,
            )
        return self.rfile.read(length) if length else b""

    def _handle(self, method):
        body = self._read_body() if method == "POST" else b""
        path = unquote(urlsplit(self.path).path)
        if not path.lower().startswith("/v1/"):
            raise Status(Code.NOT_FOUND, f"Not found: {path}")
        match = _REST_PATH.fullmatch(path)
        if match is None:
            raise Status(Code.INVALID_ARGUMENT, f"Malformed request: {method} {path}")
        route = match.groupdict()
        version = int(route["version"]) if route["version"] else None
        repository = self.fake.repository
        if method == "GET" and route["method"] is None:
            if route["sub"]:
                servable = repository.resolve(route["name"], version, route["label"])
                return repository.metadata_json(servable)
            return repository.status_json(route["name"], version)
        if method == "POST" and route["method"] and route["sub"] is None:
            if route["method"].lower() != "predict":
                raise Status(
                    Code.UNIMPLEMENTED,
                    f"The fake server only implements predict, not {route['method']}",
                )
            return self._predict(body, route["name"], version, route["label"])
        raise Status(Code.INVALID_ARGUMENT, f"Malformed request: {method} {path}")

    def _predict(self, body, name, version, label):
        repository = self.fake.repository
        if not body:
            raise Status(Code.INVALID_ARGUMENT, "JSON Parse error: The document is empty")
        try:
            request = json.loads(body)
        except ValueError as e:
            raise Status(Code.INVALID_ARGUMENT, f"JSON Parse error: {e}") from None
        if not isinstance(request, dict):
            raise Status(Code.INVALID_ARGUMENT, "JSON Value is not an object")
        signature_name = request.get("signature_name", DEFAULT_SIGNATURE)
        if not isinstance(signature_name, str):
            raise Status(Code.INVALID_ARGUMENT, "'signature_name' key must be a string value.")
        signature_name = signature_name or DEFAULT_SIGNATURE
        # TF Serving looks up the model and signature while parsing the body.
        servable = repository.resolve(name, version, label)
        if signature_name not in servable.signatures:
            raise Status(
                Code.INVALID_ARGUMENT,
                f'Serving signature name: "{signature_name}" not found in signature def',
            )
        specs = servable.input_specs(signature_name)
        if "instances" in request and "inputs" in request:
            raise Status(
                Code.INVALID_ARGUMENT,
                "Not formatted correctly expecting only one of 'inputs' or 'instances' keys "
                "to exist",
            )
        if "instances" in request:
            arrays, respond = _rows_to_arrays(request["instances"], specs), _row_response
        elif "inputs" in request:
            arrays, respond = _columns_to_arrays(request["inputs"], specs), _columnar_response
        else:
            raise Status(Code.INVALID_ARGUMENT, "Missing 'inputs' or 'instances' key")
        return respond(repository.run(servable, signature_name, arrays))


class _HTTPServer(ThreadingHTTPServer):
    # Handler threads are joined by server_close(), so stop() leaves none behind.
    daemon_threads = False
    block_on_close = True


class FakeRESTServer:
    """TF Serving's REST API on http://127.0.0.1:<ephemeral port>.

    Example:

    ```python
    with FakeRESTServer(repository) as server:
        client = kerasvae.serving.RESTClient("127.0.0.1", server.port, model_name="vae")
    ```
    """

    def __init__(self, repository, max_body_bytes=64 * 1024 * 1024):
        self.repository = repository
        self.max_body_bytes = max_body_bytes
        self.port = None
        self._httpd = None
        self._thread = None

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def start(self):
        handler = type("Handler", (_RESTHandler,), {"fake": self})
        self._httpd = _HTTPServer(("127.0.0.1", 0), handler)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="fake-tfs-rest",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self):
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._thread.join(timeout=10)
            self._httpd = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
