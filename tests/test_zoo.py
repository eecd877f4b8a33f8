"""The zoo is a table: every row builds, trains on both backends, round-trips and exports.

Each preset is exercised at a small image shape (8x8x1; every preset builds for
any shape whose sides divide by 4), so one row costs seconds.
"""

import os

import numpy as np
import pytest
import keras

from kerasvae import zoo
from tests.helpers import assert_signatures_match_the_keras_model, describe_signatures, preset_cases, save_and_load

SMALL_SHAPE = (8, 8, 1)
GOLDEN_DIR = os.path.join(os.path.dirname(__file__), "golden")
NAMES = zoo.list_presets()


def batch(model, n=8, seed=0):
    rng = np.random.default_rng(seed)
    x = (rng.random((n,) + tuple(model.data_shape)) < 0.5).astype("float32")
    labels = rng.integers(0, model.num_classes, n) if model.num_classes else None
    return x, labels


def test_the_zoo_covers_every_family_with_an_mlp_and_a_conv_preset():
    assert len(NAMES) >= 10
    for family in zoo.FAMILIES:
        networks = {zoo.get_preset(n).network for n in zoo.list_presets(family)}
        assert networks & {"mlp", "gated_mlp"} and "conv" in networks, (family, networks)
        assert zoo.REFERENCES[family]


# Network shapes are Keras's, the same on every backend: this runs once per suite
# (on JAX each build compiles, three minutes for nothing new).
@pytest.mark.requires_tensorflow
@pytest.mark.parametrize("shape", [(28, 28, 1), (32, 32, 3)])
def test_every_preset_builds_for_image_shapes_divisible_by_four(shape):
    for name in NAMES:
        model = zoo.build(name, data_shape=shape)
        assert model.data_shape == shape, name
        x, labels = batch(model, n=2)
        assert tuple(model.reconstruct(x, labels=labels).shape) == (2,) + shape, name
        keras.utils.clear_session(free_memory=False)


def test_bad_names_and_shapes_are_refused_with_the_value():
    with pytest.raises(ValueError, match="Unknown preset.*'nope'"):
        zoo.build("nope")
    with pytest.raises(ValueError, match=r"divisible by 4.*\(30, 30, 1\)"):
        zoo.build("mlp_fashion_mnist", data_shape=(30, 30, 1))
    with pytest.raises(ValueError, match="latent_dim=0"):
        zoo.build("mlp_fashion_mnist", latent_dim=0)
    with pytest.raises(ValueError, match="family='nope'"):
        zoo.list_presets("nope")


@pytest.mark.compiled_step
@pytest.mark.parametrize("name", preset_cases())
def test_every_preset_trains_round_trips_and_exports(name, tmp_path):
    model = zoo.build(name, data_shape=SMALL_SHAPE, seed=0)
    assert isinstance(model, zoo.FAMILIES[zoo.get_preset(name).family])
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    x, labels = batch(model, n=16)
    history = model.fit(x, labels, epochs=1, batch_size=8, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    reloaded = save_and_load(model, str(tmp_path / f"{name}.keras"))
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(model.reconstruct(x[:2], labels=None if labels is None else labels[:2])),
        keras.ops.convert_to_numpy(reloaded.reconstruct(x[:2], labels=None if labels is None else labels[:2])),
        atol=1e-5,
    )
    if keras.backend.backend() != "tensorflow":
        return  # SavedModel export is TensorFlow's; the JAX run stops here
    import tensorflow as tf

    from kerasvae import export

    path = export.export_saved_model(model, str(tmp_path / "export"))
    loaded = tf.saved_model.load(path)
    assert set(export.SIGNATURE_NAMES) <= set(loaded.signatures)
    text = describe_signatures(loaded)
    golden = os.path.join(GOLDEN_DIR, f"signatures_{name}.txt")
    if os.environ.get("KERASVAE_UPDATE_GOLDENS") == "1":
        os.makedirs(GOLDEN_DIR, exist_ok=True)
        with open(golden, "w") as f:
            f.write(text)
    assert os.path.isfile(golden), (
        f"No golden file {golden}. Create it with: KERASVAE_UPDATE_GOLDENS=1 pytest {__file__}"
    )
    with open(golden) as f:
        expected = f.read()
    assert text == expected, (
        f"The SavedModel signatures of preset {name!r} changed. Clients of TF Serving depend "
        "on them: if the change is intended, regenerate the golden files with\n"
        f"  KERASVAE_UPDATE_GOLDENS=1 .venv/bin/python -m pytest {__file__}\n"
        "and commit them.\n--- expected\n" + expected + "--- got\n" + text
    )
    # Every output of every signature agrees with the Keras model (the sums
    # over pixels of `elbo` need the looser relative tolerance).
    assert_signatures_match_the_keras_model(
        model, loaded, x[:3], None if labels is None else labels[:3], rtol=1e-4, atol=1e-5
    )
    # The SignatureDefs that TF Serving's session loader reads, parsed by
    # saved_model_cli's own code (in process: a subprocess per preset costs an
    # import of TensorFlow; tests/test_export.py runs the command itself).
    from tensorflow.python.tools import saved_model_cli

    signature_defs = saved_model_cli.get_signature_def_map(path, "serve")
    assert set(export.SIGNATURE_NAMES) <= set(signature_defs)
    for signature in export.SIGNATURE_NAMES:
        fn = loaded.signatures[signature]
        assert set(signature_defs[signature].inputs) == set(fn.structured_input_signature[1])
        assert set(signature_defs[signature].outputs) == set(fn.structured_outputs)
