"""A client for TensorFlow Serving's REST API (default port 8501).

Routes, request formats and answers follow TF Serving's `http_rest_api`:
`POST /v1/models/<name>[/versions/<v>|/labels/<l>]:predict` with the row
(`"instances"` -> `"predictions"`) or columnar (`"inputs"` -> `"outputs"`)
format, `GET .../metadata` and the status endpoint `GET /v1/models/<name>...`.
Errors come back as `{"error": message}` and become a `ServingError`.
"""

import json
import threading
from urllib.parse import quote

import numpy as np

from kerasvae.serving._checks import check_model_spec, check_port, check_timeout
from kerasvae.serving._signatures import (
    SIGNATURES,
    SignatureMethods,
    has_scalar_inputs,
    prepare_inputs,
)
from kerasvae.serving.config import DEFAULT_REST_PORT
from kerasvae.serving.errors import ServingError

REST_FORMATS = ("inputs", "instances")


def _check_format(format):
    if format not in REST_FORMATS:
        raise ValueError(f"format must be one of {REST_FORMATS}. Received: format={format!r}")
    return format


def _payload(signature_name, arrays, format):
    """The JSON body of a predict request, in either format."""
    if format == "inputs":
        return {
            "signature_name": signature_name,
            "inputs": {k: v.tolist() for k, v in arrays.items()},
        }
    if has_scalar_inputs(signature_name, arrays):
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


def _outputs(signature_name, body, format, single_output_name):
    """A predict answer -> `{name: np.ndarray}` (both formats).

    `single_output_name()` names a lone output, which TF Serving leaves out.
    """
    key = "outputs" if format == "inputs" else "predictions"
    if not isinstance(body, dict) or key not in body:
        raise ServingError(
            f"Unexpected predict response: no {key!r} key. Received keys: "
            f"{sorted(body) if isinstance(body, dict) else type(body).__name__}"
        )
    value = body[key]
    known = SIGNATURES.get(signature_name)

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


def _error_message(response):
    """The server's message from a failed response."""
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


class RESTClient(SignatureMethods):
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
        version: int or None. Ask for this version; `None` is the latest
            one the server has loaded.
        version_label: str or None. Ask for a labelled version instead (a
            label set in the server's `models.config`).
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
        check_port(port, "port")
        self.version = check_model_spec(model_name, version, version_label)
        if scheme not in ("http", "https"):
            raise ValueError(f"scheme must be 'http' or 'https'. Received: {scheme!r}")
        self.host = host
        self.port = port
        self.model_name = model_name
        self.version_label = version_label
        self.timeout = check_timeout(timeout)
        self.format = _check_format(format)
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
        format = self.format if format is None else _check_format(format)
        arrays = prepare_inputs(signature_name, inputs)
        body = self._request(
            "POST", self.model_url + ":predict", _payload(signature_name, arrays, format)
        )
        return _outputs(
            signature_name, body, format, lambda: self._single_output_name(signature_name)
        )

    def _call(self, signature_name, inputs):
        format = "inputs" if has_scalar_inputs(signature_name, {}) else None
        return self.predict(inputs, signature_name, format=format)

    def _single_output_name(self, signature_name):
        known = SIGNATURES.get(signature_name)
        if known is not None and known.single_output:
            return known.single_output
        # Not a kerasvae signature: the name is only in the model's metadata.
        if signature_name not in self._output_names:
            metadata = self.metadata()
            try:
                signatures = metadata["metadata"]["signature_def"]["signature_def"]
            except (KeyError, TypeError):
                raise ServingError(
                    "Unexpected metadata response: no metadata.signature_def.signature_def. "
                    f"Received: {json.dumps(metadata)[:200]}"
                ) from None
            if signature_name not in signatures:
                raise ServingError(
                    f"Signature {signature_name!r} is not in the model's metadata. "
                    f"Available: {sorted(signatures)}"
                )
            outputs = list(signatures[signature_name].get("outputs", {}))
            if len(outputs) != 1:
                raise ServingError(
                    f"TF Serving answered signature {signature_name!r} with one unnamed "
                    f"output, but its metadata lists {len(outputs)}: {sorted(outputs)}"
                )
            self._output_names[signature_name] = outputs[0]
        return self._output_names[signature_name]

    def metadata(self):
        """`GET .../metadata`: the served version's signatures, as TF Serving's JSON.

        Returns:
            dict `{"model_spec": {"name", "signature_name", "version"},
            "metadata": {"signature_def": {"signature_def": {name:
            SignatureDef as JSON}}}}`, the shape TF Serving's REST API gives
            (the `SignatureDefMap` unpacked, not protobuf `Any` JSON).
        """
        return self._request("GET", self.model_url + "/metadata")

    def status(self):
        """`GET /v1/models/<name>[/versions/<v>]`: `{"model_version_status": [...]}`.

        Without a version, every version the server knows, newest first. TF
        Serving ignores a version label on this endpoint: a client made with
        `version_label` gets every version too.
        """
        return self._request("GET", self.model_url)

    def close(self):
        """Closes every connection pool this client opened."""
        with self._lock:
            sessions, self._sessions = self._sessions, []
        for session in sessions:
            session.close()
        self._local = threading.local()
