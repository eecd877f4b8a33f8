"""Dynamic binarization against its definition.

Each pixel of a grey-level image x in [0, 1] becomes an independent
Bernoulli(x) draw, a new one every epoch, the same ones again for the same
seed. The images here have 16 grey levels from 0 to 1, so a comparison that is
inverted (frequency 1 - x), off by a constant or saturated shows at some level;
frequencies are checked to 5 binomial standard errors (a false alarm over all
pixels has a probability below 1e-4), agreement between two draws against
independence, p^2 + (1 - p)^2, the same way.
"""

import math

import numpy as np
import pytest

from kerasvae import data

LEVELS = np.linspace(0.0, 1.0, 16)
SHAPE = (4, 4, 1)


def grey_images(n):
    """`n` copies of a 4x4 image whose pixels take 16 grey levels, 0 and 1 included."""
    return np.broadcast_to(LEVELS.reshape(SHAPE), (n,) + SHAPE).astype("float32")


def assert_frequencies_match(draws, levels=LEVELS, z=5.0):
    """`draws`: (n, 16) binary; column j must be Bernoulli(levels[j])."""
    draws = np.asarray(draws).reshape(len(draws), -1)
    assert set(np.unique(draws)) <= {0.0, 1.0}
    n = len(draws)
    frequency = draws.mean(axis=0)
    stderr = np.sqrt(levels * (1.0 - levels) / n)
    # Levels 0 and 1 have no spread: never one, always one.
    np.testing.assert_array_less(np.abs(frequency - levels), z * stderr + 1e-12)


def assert_independent(a, b, levels=LEVELS, z=5.0):
    """Two draws of the same pixels agree as often as independent draws do."""
    a, b = np.asarray(a).reshape(len(a), -1), np.asarray(b).reshape(len(b), -1)
    inner = (levels > 0) & (levels < 1)
    agree = (a == b)[:, inner].mean()
    p = levels[inner]
    expected = np.mean(p**2 + (1 - p) ** 2)
    # Each (image, pixel) pair agrees with probability p^2 + (1 - p)^2.
    variance = np.mean((p**2 + (1 - p) ** 2) * (2 * p * (1 - p)))
    stderr = math.sqrt(variance / (len(a) * inner.sum()))
    assert abs(agree - expected) < z * stderr, (agree, expected, stderr)


def assert_pixels_independent(draws, levels=LEVELS, z=5.0):
    """Within each image, neighbouring grey levels are drawn independently.

    One uniform per image (or per row) instead of one per pixel keeps every
    pixel's frequency, but then pixels at levels 7/15 and 8/15 agree unless the
    shared draw falls between them: 14/15 of the time, against about one half
    for independent draws.
    """
    draws = np.asarray(draws).reshape(len(draws), -1)
    p, q = levels[:-1], levels[1:]
    # Per image: the fraction of neighbouring pairs that agree; i.i.d. over images.
    agree = (draws[:, :-1] == draws[:, 1:]).mean(axis=1)
    expected = np.mean(p * q + (1 - p) * (1 - q))
    stderr = agree.std(ddof=1) / math.sqrt(len(agree))
    assert abs(agree.mean() - expected) < z * stderr, (agree.mean(), expected, stderr)


# === binarize (NumPy) ===
def test_binarize_frequencies_match_the_grey_levels():
    draws = data.binarize(grey_images(4000), seed=0)
    assert draws.dtype == np.float32 and draws.shape == (4000,) + SHAPE
    assert_frequencies_match(draws)
    assert_pixels_independent(draws)


def test_binarize_repeats_for_a_seed_and_differs_between_seeds():
    x = grey_images(500)
    first = data.binarize(x, seed=1)
    np.testing.assert_array_equal(first, data.binarize(x, seed=1))
    assert_independent(first, data.binarize(x, seed=2))
    rng = np.random.default_rng(3)  # a Generator advances: two calls, two draws
    assert_independent(data.binarize(x, seed=rng), data.binarize(x, seed=rng))


def test_binarize_refuses_values_outside_the_unit_interval():
    with pytest.raises(ValueError, match=r"\[0, 1\].*\[-0.5, 1\]"):
        data.binarize(np.array([-0.5, 1.0]))


# === make_dataset(dynamic_binarization=True) (tf.data) ===
def epochs_of(dataset, count):
    return [np.concatenate([batch.numpy() for batch in dataset]) for _ in range(count)]


def test_dataset_frequencies_match_the_grey_levels():
    ds = data.make_dataset(grey_images(64), batch_size=16, shuffle=False, dynamic_binarization=True, seed=0)
    draws = np.concatenate(epochs_of(ds, 40))  # 2,560 draws of every pixel
    assert_frequencies_match(draws)
    assert_pixels_independent(draws)


def test_dataset_draws_anew_every_epoch_and_every_batch():
    ds = data.make_dataset(grey_images(256), batch_size=64, shuffle=False, dynamic_binarization=True, seed=0)
    first, second = epochs_of(ds, 2)
    assert_independent(first, second)  # not the same draw each epoch
    assert_independent(first[:64], first[64:128])  # nor the same seed for each batch


def test_dataset_repeats_for_a_seed():
    def make(seed):
        return data.make_dataset(grey_images(64), batch_size=16, shuffle=True, dynamic_binarization=True, seed=seed)

    first = epochs_of(make(5), 2)
    again = epochs_of(make(5), 2)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert_independent(first[0], epochs_of(make(6), 1)[0])


def test_dataset_batches_and_leaves_data_alone_without_binarization():
    x = grey_images(10)
    ds = data.make_dataset(x, batch_size=4, shuffle=False)
    batches = [b.numpy() for b in ds]
    assert [len(b) for b in batches] == [4, 4, 2]
    np.testing.assert_array_equal(np.concatenate(batches), x)
    with pytest.raises(ValueError, match="batch_size=0"):
        data.make_dataset(x, batch_size=0)
