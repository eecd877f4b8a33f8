"""Serving kerasvae exports with TensorFlow Serving: config, commands, clients.

`kerasvae.export.export_saved_model` writes `<base_path>/<version>/`; this
package covers the other half, one module per role:

- `config`: `models_config` / `write_models_config`, the text
  `ModelServerConfig` that `tensorflow_model_server --model_config_file=...`
  reads, and `docker_command` / `model_server_command`, the command lines
  that start a server on it.
- `rest`: `RESTClient` (port 8501).
- `grpc`: `GRPCClient` (port 8500).

Both clients call the exported signatures (`encode`, `decode`,
`reconstruct`, `sample`, `sample_seeded`, `serving_default`) and return
`{output name: np.ndarray}`; every error the server reports becomes a
`ServingError` carrying the server's message. They know SavedModel signatures
and wire formats only, never a model class, so they talk to any server.

Writing configs and the gRPC client need `tensorflow-serving-api`, the REST
client `requests` (both in the `serving` extra); each is imported when first
needed. In-process stand-ins for TF Serving, used by the tests, live in
`tests/serving_fakes.py`, not here.
"""

from kerasvae.serving.config import (
    CONFIG_FILE_NAME,
    CONTAINER_MODEL_ROOT,
    DEFAULT_GRPC_PORT,
    DEFAULT_IMAGE,
    DEFAULT_REST_PORT,
    docker_command,
    model_server_command,
    models_config,
    write_models_config,
)
from kerasvae.serving.errors import ServingError
from kerasvae.serving.grpc import GRPCClient
from kerasvae.serving.rest import REST_FORMATS, RESTClient

__all__ = [
    "CONFIG_FILE_NAME",
    "CONTAINER_MODEL_ROOT",
    "DEFAULT_GRPC_PORT",
    "DEFAULT_IMAGE",
    "DEFAULT_REST_PORT",
    "GRPCClient",
    "REST_FORMATS",
    "RESTClient",
    "ServingError",
    "docker_command",
    "model_server_command",
    "models_config",
    "write_models_config",
]
