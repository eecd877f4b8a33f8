"""A client for TensorFlow Serving's gRPC API (default port 8500).

Uses the official `tensorflow_serving.apis` stubs (`PredictionService`
`Predict` and `GetModelMetadata`); tensors travel as `TensorProto`s, so
dtypes are exact. Any gRPC failure becomes a `ServingError` carrying the
status code name and the server's details.
"""

from kerasvae.serving._checks import check_model_spec, check_timeout
from kerasvae.serving._signatures import SignatureMethods, prepare_inputs
from kerasvae.serving.config import DEFAULT_GRPC_PORT
from kerasvae.serving.errors import ServingError

# 4 MiB is gRPC's default receive limit: too small for a few hundred images.
_DEFAULT_MAX_MESSAGE_BYTES = 256 * 1024 * 1024
# TF Serving's REST API prints metadata with these JSON options
# (http_rest_api_util.cc): proto field names, fields at their defaults included.
_JSON_OPTIONS = {"preserving_proto_field_name": True, "always_print_fields_with_no_presence": True}


class GRPCClient(SignatureMethods):
    """Calls a model on TensorFlow Serving's gRPC API (default port 8500).

    Uses the official `tensorflow_serving.apis` stubs; tensors travel as
    `TensorProto`s made by `tf.make_tensor_proto`, so dtypes are exact (inputs
    are converted to what the export expects first). Any gRPC failure becomes
    a `ServingError` with the status code name and the server's details.
    Safe to share between threads.

    Args:
        target: str. `"host:port"`. Defaults to `"localhost:8500"`.
        model_name: str. The model's name in the server's config.
        version: int or None. Ask for this version; `None` is the latest
            one the server has loaded.
        version_label: str or None. Ask for a labelled version instead (a
            label set in the server's `models.config`).
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
            from google.protobuf import json_format
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
        self._json_format = json_format
        self._predict_pb2 = predict_pb2
        self._metadata_pb2 = get_model_metadata_pb2
        self.version = check_model_spec(model_name, version, version_label)
        self.target = target
        self.model_name = model_name
        self.version_label = version_label
        self.timeout = check_timeout(timeout)
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
        arrays = prepare_inputs(signature_name, inputs)
        request = self._predict_pb2.PredictRequest()
        self._fill_model_spec(request.model_spec, signature_name)
        for name, array in arrays.items():
            request.inputs[name].CopyFrom(self._tf.make_tensor_proto(array))
        response = self._rpc(self._stub.Predict, request)
        return {name: self._tf.make_ndarray(proto) for name, proto in response.outputs.items()}

    def _call(self, signature_name, inputs):
        return self.predict(inputs, signature_name)

    def get_model_metadata(self):
        """`PredictionService.GetModelMetadata`, as the JSON TF Serving's REST API gives.

        The response's `metadata["signature_def"]` is a protobuf `Any`; it is
        unpacked into the `SignatureDefMap` it holds, so the result equals
        `RESTClient.metadata()` for the same server.

        Returns:
            dict `{"model_spec": {"name", "signature_name", "version"},
            "metadata": {"signature_def": {"signature_def": {...}}}}`.
        """
        request = self._metadata_pb2.GetModelMetadataRequest()
        self._fill_model_spec(request.model_spec)
        request.metadata_field.append("signature_def")
        response = self._rpc(self._stub.GetModelMetadata, request)
        signature_map = self._metadata_pb2.SignatureDefMap()
        packed = response.metadata.get("signature_def")
        if packed is None or not packed.Unpack(signature_map):
            raise ServingError(
                "GetModelMetadata answered without a SignatureDefMap under 'signature_def'. "
                f"Received metadata keys: {sorted(response.metadata)}"
            )
        to_json = self._json_format.MessageToDict
        return {
            "model_spec": to_json(response.model_spec, **_JSON_OPTIONS),
            "metadata": {"signature_def": to_json(signature_map, **_JSON_OPTIONS)},
        }

    def close(self):
        """Closes the channel (unless it was passed in)."""
        if self._owns_channel:
            self._channel.close()
