import gzip
import os
import shutil
import struct

import numpy as np
import pytest

from kerasvae import data


def test_loads_the_real_files_as_float_images_in_unit_range():
    (x_train, y_train), (x_test, y_test) = data.load_fashion_mnist()
    assert x_train.shape == (60000, 28, 28, 1) and x_test.shape == (10000, 28, 28, 1)
    assert x_train.dtype == np.float32 and x_train.min() == 0.0 and x_train.max() == 1.0
    assert sorted(np.unique(y_train)) == list(range(10)) and len(y_test) == 10000
    (flat, _), _ = data.load_fashion_mnist(flatten=True)
    assert flat.shape == (60000, 784)


def copy_files(tmp_path):
    source = data.find_fashion_mnist()
    for name in data.FILES.values():
        shutil.copy(os.path.join(source, name), tmp_path / name)
    return tmp_path


def test_missing_files_say_how_to_get_them(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        data.load_fashion_mnist(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="does not exist. Received: path="):
        data.load_fashion_mnist(str(tmp_path / "nowhere"))
    monkeypatch.setattr(data, "DEBIAN_DIR", str(tmp_path / "a"))
    monkeypatch.setattr(data, "KERAS_CACHE_DIR", str(tmp_path / "b"))
    monkeypatch.delenv("KERASVAE_DATA_DIR", raising=False)
    with pytest.raises(FileNotFoundError, match="Searched:"):
        data.load_fashion_mnist()


def test_environment_variable_folder_is_used(tmp_path, monkeypatch):
    copy_files(tmp_path)
    monkeypatch.setattr(data, "DEBIAN_DIR", "/nonexistent")
    monkeypatch.setenv("KERASVAE_DATA_DIR", str(tmp_path))
    assert data.find_fashion_mnist() == str(tmp_path)


def test_corrupt_files_are_reported(tmp_path):
    folder = copy_files(tmp_path)
    labels = folder / data.FILES["test_labels"]
    labels.write_bytes(b"this is not gzip")
    with pytest.raises(ValueError, match="cannot gunzip"):
        data.load_fashion_mnist(str(folder))
    with gzip.open(labels, "wb") as f:
        f.write(struct.pack(">HBBI", 0, 8, 1, 10000) + bytes(9999))  # one byte short
    with pytest.raises(ValueError, match="header says shape \\(10000,\\)"):
        data.load_fashion_mnist(str(folder))
    with gzip.open(labels, "wb") as f:
        f.write(struct.pack(">HBBI", 0, 0x0D, 1, 1) + bytes(4))  # float IDX, not ubyte
    with pytest.raises(ValueError, match="Not an unsigned-byte IDX file"):
        data.load_fashion_mnist(str(folder))
    with gzip.open(labels, "wb") as f:
        f.write(struct.pack(">HBBI", 0, 8, 1, 5) + bytes(5))  # 5 labels for 10000 images
    with pytest.raises(ValueError, match="test files disagree"):
        data.load_fashion_mnist(str(folder))


def test_make_dataset_keeps_labels_paired_with_their_images_under_binarization():
    x = np.zeros((40, 2, 2, 1), "float32")
    x[:, 0, 0, 0] = np.arange(40) % 2  # pixel (0, 0) is 1 exactly for odd images (p = 0 or 1)
    labels = np.arange(40) % 2
    ds = data.make_dataset(x, 8, shuffle=True, dynamic_binarization=True, seed=3, labels=labels)
    seen = 0
    for images, batch_labels in ds:
        np.testing.assert_array_equal(np.asarray(images)[:, 0, 0, 0], np.asarray(batch_labels))
        seen += len(batch_labels)
    assert seen == 40
    with pytest.raises(ValueError, match=r"labels of shape \(3,\)"):
        data.make_dataset(x, 8, labels=np.zeros(3))


def test_make_dataset_turns_autotuning_off_and_yields_the_same_batches():
    # Deleting an autotuned iterator can stall for seconds in TF 2.21, at the
    # end of some epochs (benchmarks/tfdata_autotune.py); the option must not
    # change the data.
    import tensorflow as tf

    x = np.random.default_rng(0).random((50, 4, 4, 1), dtype=np.float32)
    ds = data.make_dataset(x, 8, shuffle=True, dynamic_binarization=True, seed=5)
    assert ds.options().autotune.enabled is False
    options = tf.data.Options()
    options.autotune.enabled = True
    autotuned = data.make_dataset(x, 8, shuffle=True, dynamic_binarization=True, seed=5).with_options(options)
    assert autotuned.options().autotune.enabled is True
    for _ in range(2):  # two epochs: a reshuffle and a fresh binarization each
        for ours, theirs in zip(ds, autotuned, strict=True):
            np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
