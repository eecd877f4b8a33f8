"""Safe loading: kerasvae files load with safe_mode=True; a file carrying code is refused."""

import json
import os
import re
import shutil
import zipfile

import keras
import numpy as np
import pytest

from kerasvae import cli, pretrained, zoo
from tests.helpers import preset_cases, tiny_vae


def lambda_model_file(path):
    """A .keras file whose model runs a Python lambda in a Lambda layer."""
    inputs = keras.Input((3,))
    outputs = keras.layers.Lambda(lambda t: t * 2.0)(inputs)
    keras.Model(inputs, outputs).save(path)
    return str(path)


def injected_lambda_file(path):
    """A kerasvae file edited by hand: a decoder activation replaced by marshalled code."""
    tiny_vae(latent_dim=2).save(str(path) + ".orig.keras")
    with zipfile.ZipFile(str(path) + ".orig.keras") as source:
        members = {name: source.read(name) for name in source.namelist()}
    config = json.loads(members["config.json"])
    injected = {"class_name": "__lambda__", "config": {"value": ["4wEAAAAA", None, None]}}
    layers = config["config"]["decoder"]["config"]["layers"]
    dense = next(layer for layer in layers if layer["class_name"] == "Dense")
    dense["config"]["activation"] = injected
    members["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(path, "w") as target:
        for name, data in members.items():
            target.writestr(name, data)
    return str(path)


def test_a_lambda_layer_is_refused_unless_allowed(tmp_path):
    path = lambda_model_file(tmp_path / "crafted.keras")
    entries = pretrained.unsafe_entries(path)
    assert any(entry.startswith("a Lambda layer") for entry in entries), entries
    with pytest.raises(
        pretrained.UnsafeModelError, match=r"Refusing to load .*crafted\.keras.*allow_unsafe=True"
    ):
        pretrained.load_keras_model(path)
    model = pretrained.load_keras_model(path, allow_unsafe=True)
    # Allowed, the lambda really runs: the file did carry code.
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model(np.ones((1, 3)))), 2.0)


def test_code_injected_anywhere_in_a_config_is_found(tmp_path):
    path = injected_lambda_file(tmp_path / "edited.keras")
    entries = pretrained.unsafe_entries(path)
    assert len(entries) == 1 and "serialized Python lambda" in entries[0], entries
    assert "decoder" in entries[0]  # says where
    with pytest.raises(pretrained.UnsafeModelError, match="serialized Python lambda"):
        pretrained.load_keras_model(path)


def test_keras_itself_would_also_refuse_it_in_safe_mode(tmp_path):
    path = lambda_model_file(tmp_path / "crafted.keras")
    with pytest.raises(ValueError, match="lambda"):
        keras.saving.load_model(path, safe_mode=True)


def test_every_kerasvae_model_saves_a_safe_file(tmp_path):
    for covariance in ("diagonal", "full"):
        path = str(tmp_path / f"{covariance}.keras")
        tiny_vae(latent_dim=2, covariance=covariance).save(path)
        assert pretrained.unsafe_entries(path) == []
        keras.saving.load_model(path, safe_mode=True)  # Keras's own check agrees


@pytest.mark.parametrize("name", preset_cases())
def test_every_zoo_preset_saves_a_safe_file(name, tmp_path):
    path = str(tmp_path / f"{name}.keras")
    zoo.build(name, latent_dim=2, seed=0).save(path)
    assert pretrained.unsafe_entries(path) == []
    restored = pretrained.load_keras_model(path, compile=False)  # safe_mode=True inside
    assert type(restored).__name__ == zoo.FAMILIES[zoo.get_preset(name).family].__name__


@pytest.mark.parametrize("name", pretrained.list_pretrained())
def test_the_pretrained_files_are_safe(name):
    path = os.path.join(pretrained.savedmodels_dir(), name, "model.keras")
    assert pretrained.unsafe_entries(path) == []
    keras.saving.load_model(path, compile=False, safe_mode=True)


@pytest.fixture
def crafted_pretrained(tmp_path, monkeypatch):
    """A pretrained folder whose one entry, `crafted`, holds a Lambda layer."""
    root = tmp_path / "savedmodels"
    entry = root / "crafted"
    entry.mkdir(parents=True)
    lambda_model_file(entry / "model.keras")
    (entry / "metrics.json").write_text(json.dumps({"run_config": {}, "test": {}}))
    monkeypatch.setenv(pretrained.SAVEDMODELS_ENV, str(root))
    return entry


def test_load_pretrained_keras_refuses_a_crafted_entry(crafted_pretrained):
    with pytest.raises(pretrained.UnsafeModelError, match="a Lambda layer"):
        pretrained.load_pretrained_keras("crafted")
    pretrained.load_pretrained_keras("crafted", allow_unsafe=True)


def test_the_command_line_refuses_a_crafted_file_unless_unsafe(tmp_path, capsys):
    path = lambda_model_file(tmp_path / "crafted.keras")
    assert cli.main(["plot", "samples", path, "-o", str(tmp_path / "s.png")]) == 2
    error = capsys.readouterr().err
    assert "Refusing to load" in error and "--unsafe" in error and "a Lambda layer" in error
    assert not os.path.exists(tmp_path / "s.png")
    # With --unsafe the file loads; it is no VAE, and that is the next error.
    assert cli.main(["plot", "samples", path, "-o", str(tmp_path / "s.png"), "--unsafe"]) == 2
    assert "model must be a kerasvae model" in capsys.readouterr().err


def test_the_command_line_refuses_a_crafted_pretrained_name(crafted_pretrained, tmp_path, capsys):
    assert cli.main(["sample", "crafted", "-o", str(tmp_path / "s.png")]) == 2
    assert "Refusing to load" in capsys.readouterr().err


def test_a_file_that_is_not_a_keras_archive_is_named(tmp_path):
    bad = tmp_path / "model.keras"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match=re.escape(f"{str(bad)!r} is not a Keras model file")):
        pretrained.load_keras_model(str(bad))
    with zipfile.ZipFile(tmp_path / "empty.keras", "w") as archive:
        archive.writestr("metadata.json", "{}")
    with pytest.raises(ValueError, match="holding config.json"):
        pretrained.load_keras_model(str(tmp_path / "empty.keras"))
    with pytest.raises(FileNotFoundError, match="No model file at"):
        pretrained.load_keras_model(str(tmp_path / "missing.keras"))


def test_a_safe_file_loads_unchanged(tmp_path):
    model = tiny_vae(latent_dim=2)
    path = str(tmp_path / "vae.keras")
    model.save(path)
    shutil.copy(path, tmp_path / "copy.keras")
    restored = pretrained.load_keras_model(str(tmp_path / "copy.keras"))
    x = np.random.default_rng(0).random((2, 28, 28, 1), dtype=np.float32)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(restored.reconstruct(x)),
        keras.ops.convert_to_numpy(model.reconstruct(x)), atol=1e-6,
    )
