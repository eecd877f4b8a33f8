"""Fixtures for the serving tests: exports, stand-in servers and clients.

No TF Serving binary exists here, so the clients talk to the in-process
stand-ins of `tests/serving_fakes.py` on 127.0.0.1; every number they return
is compared with calling the SavedModel's signature directly. The exports and
servers are made once for the whole folder.
"""

import os

import pytest

from tests.serving.common import (
    CONDITIONAL,
    DATA_SHAPE,
    LATENT_DIM,
    MODEL,
    NUM_CLASSES,
    TOY,
    TOY_VERSIONS,
    make_client,
)


@pytest.fixture(autouse=True)
def _fresh_keras_state():
    """Overrides tests/conftest.py's: these tests build no Keras state per test.

    `keras.utils.clear_session()` runs a full garbage collection (~1 s with
    the loaded SavedModels around), which would double this folder's time.
    """
    yield


@pytest.fixture(scope="package")
def export_path(tmp_path_factory):
    import kerasvae
    import kerasvae.export

    encoder = kerasvae.networks.build_mlp_encoder(DATA_SHAPE, LATENT_DIM, hidden_units=(32,))
    decoder = kerasvae.networks.build_mlp_decoder(LATENT_DIM, DATA_SHAPE, hidden_units=(32,))
    vae = kerasvae.VAE(encoder, decoder)
    return kerasvae.export.export_saved_model(vae, str(tmp_path_factory.mktemp("serving") / MODEL))


@pytest.fixture(scope="package")
def reference(export_path):
    import tensorflow as tf

    return tf.saved_model.load(export_path)


@pytest.fixture(scope="package")
def conditional_export_path(tmp_path_factory):
    import kerasvae
    import kerasvae.export

    kwargs = dict(hidden_units=(16,), num_classes=NUM_CLASSES)
    encoder = kerasvae.networks.build_mlp_encoder(DATA_SHAPE, LATENT_DIM, **kwargs)
    decoder = kerasvae.networks.build_mlp_decoder(LATENT_DIM, DATA_SHAPE, **kwargs)
    vae = kerasvae.ConditionalVAE(encoder, decoder, num_classes=NUM_CLASSES)
    path = tmp_path_factory.mktemp("serving") / CONDITIONAL
    return kerasvae.export.export_saved_model(vae, str(path))


@pytest.fixture(scope="package")
def conditional_reference(conditional_export_path):
    import tensorflow as tf

    return tf.saved_model.load(conditional_export_path)


@pytest.fixture(scope="package")
def toy_base_path(tmp_path_factory):
    """Versions 1, 2, 3 of a model with no kerasvae in it: `v` -> `v * version`.

    `scale` has one output (`scaled`), which REST answers leave unnamed;
    `scale_and_shift` has two (`scaled`, `shifted` = `v + version`).
    """
    import tensorflow as tf

    base = tmp_path_factory.mktemp("toy") / TOY
    spec = [tf.TensorSpec([None], tf.float32, name="v")]
    for version in TOY_VERSIONS:
        module = tf.Module()
        factor = float(version)
        module.scale = tf.function(lambda v: {"scaled": v * factor}, input_signature=spec)
        module.scale_and_shift = tf.function(
            lambda v: {"scaled": v * factor, "shifted": v + factor}, input_signature=spec
        )
        signatures = {
            "scale": module.scale.get_concrete_function(),
            "scale_and_shift": module.scale_and_shift.get_concrete_function(),
        }
        tf.saved_model.save(module, str(base / str(version)), signatures=signatures)
    return str(base)


@pytest.fixture(scope="package")
def repository(export_path, conditional_export_path, toy_base_path):
    from tests import serving_fakes

    return serving_fakes.ModelRepository(
        {
            MODEL: os.path.dirname(export_path),
            CONDITIONAL: os.path.dirname(conditional_export_path),
            TOY: toy_base_path,
        }
    )


@pytest.fixture(scope="package")
def rest_server(repository):
    from tests import serving_fakes

    with serving_fakes.FakeRESTServer(repository) as server:
        yield server


@pytest.fixture(scope="package")
def grpc_server(repository):
    from tests import serving_fakes

    with serving_fakes.FakeGRPCServer(repository) as server:
        yield server


@pytest.fixture
def rest_client(rest_server):
    with make_client("rest", rest_server, model_name=MODEL) as client:
        yield client


@pytest.fixture
def grpc_client(grpc_server):
    with make_client("grpc", grpc_server, model_name=MODEL) as client:
        yield client


@pytest.fixture(params=["rest", "grpc"])
def client(request):
    return request.getfixturevalue(f"{request.param}_client")


@pytest.fixture
def servers(rest_server, grpc_server):
    return {"rest": rest_server, "grpc": grpc_server}
