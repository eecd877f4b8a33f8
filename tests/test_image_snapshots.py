"""kerasvae.callbacks.ImageSnapshots: PNGs every N epochs and TensorBoard image summaries."""

import glob
import os
import re

import keras
import numpy as np
import pytest
from PIL import Image

from kerasvae.callbacks import ImageSnapshots
from tests.helpers import random_images, tiny_vae


def image_summaries(log_dir):
    """`{tag: [(step, height, width)]}` read back from the event files under `log_dir`."""
    import tensorflow as tf

    found = {}
    for path in sorted(glob.glob(os.path.join(log_dir, "**", "events.out.tfevents.*"), recursive=True)):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                # tf.summary.image stores [width, height, PNG bytes...] in a string tensor.
                data = tf.make_ndarray(value.tensor)
                width, height = int(data[0]), int(data[1])
                decoded = tf.io.decode_png(data[2]).numpy()
                assert decoded.shape[:2] == (height, width)
                found.setdefault(value.tag, []).append((event.step, height, width))
    return found


def test_snapshots_every_n_epochs_and_at_the_end(tmp_path):
    model = tiny_vae(latent_dim=2)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    images = random_images(5)
    snapshots = ImageSnapshots(
        tmp_path / "snapshots", every=2, images=images, num_samples=4, log_dir=tmp_path / "logs"
    )
    model.fit(random_images(64), epochs=3, batch_size=32, verbose=0, callbacks=[snapshots])
    names = sorted(os.listdir(tmp_path / "snapshots"))
    assert names == [
        "reconstructions_epoch_0002.png", "reconstructions_epoch_0003.png",
        "samples_epoch_0002.png", "samples_epoch_0003.png",
    ]
    assert snapshots.written == [
        str(tmp_path / "snapshots" / n) for n in
        ("reconstructions_epoch_0002.png", "samples_epoch_0002.png",
         "reconstructions_epoch_0003.png", "samples_epoch_0003.png")
    ]
    summaries = image_summaries(str(tmp_path / "logs"))
    assert sorted(summaries) == ["reconstructions", "samples"]
    for tag in summaries:
        assert [step for step, _, _ in summaries[tag]] == [2, 3]
        # The summary is the PNG itself: same size.
        with Image.open(tmp_path / "snapshots" / f"{tag}_epoch_0003.png") as png:
            assert summaries[tag][-1][1:] == (png.height, png.width)


def test_the_pictures_change_as_the_model_learns(tmp_path):
    model = tiny_vae(latent_dim=2)
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    snapshots = ImageSnapshots(tmp_path, every=1, images=random_images(3), num_samples=4)
    model.fit(random_images(64), epochs=2, batch_size=16, verbose=0, callbacks=[snapshots])
    first, second = (
        np.asarray(Image.open(tmp_path / f"samples_epoch_000{e}.png")) for e in (1, 2)
    )
    assert first.shape == second.shape and not np.array_equal(first, second)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"every": 0}, "Received: every=0"),
        ({"num_samples": -1}, "Received: num_samples=-1"),
        ({"images": None}, "images must be given"),
    ],
)
def test_bad_arguments_are_refused(tmp_path, kwargs, message):
    arguments = {"images": random_images(2), **kwargs}
    with pytest.raises(ValueError, match=re.escape(message)):
        ImageSnapshots(tmp_path, **arguments)
