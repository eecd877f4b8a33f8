"""Constants and helpers shared by the serving tests (fixtures are in conftest.py)."""

import socket

import numpy as np

MODEL = "vae"
CONDITIONAL = "cvae"  # a ConditionalVAE: every signature but prior_log_prob takes `label`
NUM_CLASSES = 3
TOY = "toy"  # a SavedModel kerasvae never built: versions 1, 2, 3 scale by 1, 2, 3
TOY_VERSIONS = (1, 2, 3)
LATENT_DIM = 4
DATA_SHAPE = (28, 28, 1)
_RNG = np.random.default_rng(7)
IMAGES = _RNG.random((5,) + DATA_SHAPE, dtype=np.float32)
CODES = _RNG.normal(size=(5, LATENT_DIM)).astype(np.float32)
LABELS = np.array([0, 2, 1, 1, 0])
BATCHED = {
    "encode": {"x": IMAGES},
    "decode": {"z": CODES},
    "reconstruct": {"x": IMAGES},
    "serving_default": {"x": IMAGES},
}


def direct(reference, signature_name, inputs):
    """What the signature itself returns: the numbers every client must match."""
    import tensorflow as tf

    fn = reference.signatures[signature_name]
    specs = fn.structured_input_signature[1]
    tensors = {name: tf.constant(value, dtype=specs[name].dtype) for name, value in inputs.items()}
    return {name: t.numpy() for name, t in fn(**tensors).items()}


def assert_outputs_equal(actual, expected):
    assert sorted(actual) == sorted(expected)
    for name in expected:
        assert actual[name].shape == expected[name].shape, name
        np.testing.assert_allclose(actual[name], expected[name], rtol=1e-5, atol=1e-6, err_msg=name)


def make_client(kind, server, **kwargs):
    from kerasvae.serving import GRPCClient, RESTClient

    kwargs.setdefault("timeout", 30)
    if kind == "rest":
        return RESTClient("127.0.0.1", server.port, **kwargs)
    return GRPCClient(server.target, **kwargs)


def error_code(error):
    """The status a ServingError carries, whichever client raised it."""
    return error.status_code if error.status_code is not None else error.code


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
