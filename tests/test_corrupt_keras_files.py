"""Truncated or corrupted `.keras` files give clear errors, never silently wrong weights.

Property: after any truncation or byte damage, either
`kerasvae.io_utils.check_keras_archive` refuses the file naming it, or the
file still loads to exactly the weights that were saved.
"""

import os
import shutil
import zipfile

import keras
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kerasvae import io_utils
from tests import families
from tests.helpers import to_numpy
from tests.properties import small


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A saved tiny VAE and its weights."""
    keras.utils.set_random_seed(0)
    model = families.build("VAE")
    path = tmp_path_factory.mktemp("keras") / "model.keras"
    model.save(path)
    return str(path), [to_numpy(w.value) for w in model.weights]


def _outcome(path, weights):
    """'refused' (with a clear error) or 'identical' (loads to the same weights); fails otherwise."""
    try:
        io_utils.check_keras_archive(path)
    except ValueError as e:
        assert path in str(e), str(e)
        # Keras on its own never loads different weights from it either: it
        # raises (without naming the file), or, where only metadata.json was
        # damaged (Keras does not check it), loads the saved weights.
        try:
            model = keras.saving.load_model(path, safe_mode=True)
        except Exception:
            return "refused"
        _assert_same_weights(model, weights)
        return "refused"
    _assert_same_weights(keras.saving.load_model(path, safe_mode=True), weights)
    return "identical"


def _assert_same_weights(model, weights):
    loaded = [to_numpy(w.value) for w in model.weights]
    assert len(loaded) == len(weights)
    for a, b in zip(loaded, weights):
        np.testing.assert_array_equal(a, b)


@small(12)
@given(fraction=st.floats(0.0, 0.999))
def test_truncated_keras_files_are_refused_naming_the_file(saved, tmp_path_factory, fraction):
    source, weights = saved
    data = open(source, "rb").read()
    path = str(tmp_path_factory.mktemp("cut") / "model.keras")
    with open(path, "wb") as f:
        f.write(data[: int(fraction * len(data))])
    assert _outcome(path, weights) == "refused"


@small(20)
@given(data_=st.data())
def test_damaged_bytes_are_refused_or_load_the_same_weights(saved, tmp_path_factory, data_):
    source, weights = saved
    data = bytearray(open(source, "rb").read())
    for _ in range(data_.draw(st.integers(1, 4))):
        position = data_.draw(st.integers(0, len(data) - 1))
        data[position] ^= data_.draw(st.integers(1, 255))
    path = str(tmp_path_factory.mktemp("flip") / "model.keras")
    with open(path, "wb") as f:
        f.write(bytes(data))
    _outcome(path, weights)


def test_a_flipped_weight_byte_is_caught(saved, tmp_path):
    """One bit of one stored weight changed: refused, naming the file and the member."""
    source, weights = saved
    data = bytearray(open(source, "rb").read())
    # The archive stores the weights uncompressed: find the decoder's last
    # kernel among the bytes and flip one bit of it.
    kernel = max(weights, key=lambda w: w.size)
    position = bytes(data).find(np.ascontiguousarray(kernel).tobytes())
    assert position > 0
    data[position + 5] ^= 0x40
    path = str(tmp_path / "model.keras")
    with open(path, "wb") as f:
        f.write(bytes(data))
    with pytest.raises(ValueError, match="CRC") as error:
        io_utils.check_keras_archive(path)
    assert path in str(error.value) and "model.weights.h5" in str(error.value)


def test_missing_members_and_missing_files_are_named(saved, tmp_path):
    source, _ = saved
    path = str(tmp_path / "model.keras")
    with zipfile.ZipFile(source) as archive, zipfile.ZipFile(path, "w") as out:
        for item in archive.infolist():
            if item.filename != "config.json":
                out.writestr(item, archive.read(item.filename))
    with pytest.raises(ValueError, match="config.json") as error:
        io_utils.check_keras_archive(path)
    assert path in str(error.value)
    with pytest.raises(FileNotFoundError) as error:
        io_utils.check_keras_archive(str(tmp_path / "nothing.keras"))
    assert "nothing.keras" in str(error.value)
    shutil.copy(source, tmp_path / "copy.keras")
    io_utils.check_keras_archive(str(tmp_path / "copy.keras"))
    assert os.path.getsize(tmp_path / "copy.keras") == os.path.getsize(source)
