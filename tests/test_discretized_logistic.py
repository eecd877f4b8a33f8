import numpy as np
import pytest
import keras

import kerasvae
from kerasvae import likelihoods
from tests.helpers import DATA_SHAPE, gradients, random_images, to_numpy

LEVELS = np.arange(256)


def reference_log_prob(level, loc, log_scale, min_log_scale=-7.0):
    """log P(level) by a direct difference of logistic CDFs, float64 NumPy.

    Differences are taken on the side of the location where the CDF values are
    small (the survival function above it), so no digits cancel.
    """
    level, loc = np.asarray(level, np.float64), np.asarray(loc, np.float64)
    s = np.exp(np.maximum(np.asarray(log_scale, np.float64), min_log_scale))
    x = 2.0 * level / 255.0 - 1.0
    a, b = (x + 1 / 255 - loc) / s, (x - 1 / 255 - loc) / s

    def cdf(t):
        with np.errstate(over="ignore"):  # 1 / (1 + inf) = 0 is the right limit
            return 1.0 / (1.0 + np.exp(-t))

    def sf(t):
        with np.errstate(over="ignore"):
            return 1.0 / (1.0 + np.exp(t))

    middle = np.where(x > loc, sf(b) - sf(a), cdf(a) - cdf(b))
    p = np.where(level == 0, cdf(a), np.where(level == 255, sf(b), middle))
    with np.errstate(divide="ignore"):
        direct = np.log(p)
    # Where the difference underflows (a bin thousands of scales from the
    # location), its leading-order form: log F(a) = a for a << 0 and
    # log(1 - F(b)) = -b for b >> 0, times the bin's share 1 - exp(-(a - b)).
    share = np.where((level == 0) | (level == 255), 1.0, -np.expm1(-(a - b)))
    far = np.where(x > loc, -b, a) + np.log(share)
    return np.where(np.isfinite(direct), direct, far)


def log_prob(levels, loc, log_scale, **kwargs):
    """The likelihood of one pixel per example: shape (n,) in, (n,) out."""
    x = (np.asarray(levels, np.float64) / 255.0)[:, None]
    output = [np.asarray(loc, np.float64)[:, None], np.asarray(log_scale, np.float64)[:, None]]
    return to_numpy(likelihoods.DiscretizedLogistic(**kwargs).log_prob(x, output))


def grid(levels, locs, log_scales):
    mesh = np.meshgrid(levels, locs, log_scales, indexing="ij")
    return [m.ravel() for m in mesh]


# === The math, in float64 ===
def test_matches_a_direct_cdf_difference_including_edge_bins(float64):
    levels, locs, scales = grid([0, 1, 2, 100, 127, 128, 200, 253, 254, 255], np.linspace(-1.2, 1.2, 9), [-7.0, -4.0, -2.0, 0.0, 1.5])
    expected = reference_log_prob(levels, locs, scales)
    # Some bins lie thousands of scales from the location: below exp(-745).
    assert 0 < np.sum(expected < -745) < len(expected) // 4
    np.testing.assert_allclose(log_prob(levels, locs, scales), expected, rtol=1e-9, atol=1e-12)


def test_extreme_log_scales_are_exact(float64):
    # Very wide: a bin holds about (2/255) / (4 s) of the mass; the direct
    # difference of two CDFs near 1/2 still has 7 good digits here.
    levels, locs, scales = grid([0, 60, 128, 255], [-0.5, 0.0, 0.7], [8.0, 12.0])
    np.testing.assert_allclose(log_prob(levels, locs, scales), reference_log_prob(levels, locs, scales), rtol=1e-6)
    # Very sharp (the clamp lowered to -30): the mass of a bin one level away
    # from the location is exp(-(1/255) / s) to leading order, far below what
    # a CDF difference can represent, yet finite and exact.
    loc = np.array([2 * 100 / 255 - 1, 2 * 100 / 255 - 1, -1.0, 1.0])
    levels = np.array([101, 100, 1, 254])
    scale = np.full(4, -30.0)
    ours = log_prob(levels, loc, scale, min_log_scale=-30.0)
    a_lower = (1 / 255) * np.exp(30.0)  # distance to the bin's near edge, in scales
    np.testing.assert_allclose(ours[[0, 2]], -a_lower, rtol=1e-12)  # one level above the location
    np.testing.assert_allclose(ours[1], 0.0, atol=1e-12)  # the location's own bin holds all the mass
    np.testing.assert_allclose(ours[3], -a_lower, rtol=1e-12)  # one below the top edge, from above


def test_the_256_levels_sum_to_one(float64):
    for loc, log_scale in ((-1.3, -3.0), (0.0, -7.0), (0.4, 0.0), (1.0, 2.5), (0.99, -5.5)):
        p = np.exp(log_prob(LEVELS, np.full(256, loc), np.full(256, log_scale)))
        np.testing.assert_allclose(p.sum(), 1.0, rtol=1e-12)


def test_log_scale_below_the_clamp_counts_as_the_clamp(float64):
    levels, locs = np.array([0, 90, 255]), np.array([-0.9, 0.1, 0.8])
    np.testing.assert_array_equal(log_prob(levels, locs, np.full(3, -50.0)), log_prob(levels, locs, np.full(3, -7.0)))


# === Float32: finite values and gradients everywhere ===
def test_float32_is_finite_and_close_to_float64_with_finite_gradients():
    levels, locs, scales = grid([0, 1, 128, 254, 255], [-5.0, -1.0, 0.0, 0.3, 1.0, 5.0], [-50.0, -7.0, -3.0, 0.0, 5.0, 30.0, 100.0])
    x = (levels / 255.0).astype("float32")[:, None]
    loc, scale = locs.astype("float32")[:, None], scales.astype("float32")[:, None]
    likelihood = likelihoods.DiscretizedLogistic()
    values = to_numpy(likelihood.log_prob(x, [loc, scale]))
    assert np.all(np.isfinite(values)) and np.all(values <= 0)
    moderate = scales <= 5.0  # where float32 keeps relative precision of a CDF difference
    # Float32 conditioning: a pixel value or location near 1 is known to
    # ulp(1) = 1.2e-7, which the smallest scale (e^-7) turns into 1.3e-4 in
    # the standardized distance, so log P is good to about that much.
    np.testing.assert_allclose(values[moderate], reference_log_prob(levels, locs, scales)[moderate], rtol=1e-5, atol=3e-4)
    grad_loc, grad_scale = gradients(lambda m, s: likelihood.log_prob(x, [m, s]), loc, scale)
    assert np.all(np.isfinite(grad_loc)) and np.all(np.isfinite(grad_scale))
    # Clamped log-scales get no gradient; the others do.
    assert np.all(grad_scale[scales < -7.0] == 0) and np.any(grad_scale[scales > -7.0] != 0)


def test_gradients_match_finite_differences(float64):
    levels, locs, scales = grid([0, 37, 255], [-0.6, 0.2], [-4.0, -1.0, 1.0])
    x = (levels / 255.0)[:, None]
    likelihood = likelihoods.DiscretizedLogistic()
    loc, scale = locs[:, None], scales[:, None]
    grad_loc, grad_scale = gradients(lambda m, s: likelihood.log_prob(x, [m, s]), loc, scale)
    eps = 1e-6
    fd_loc = (reference_log_prob(levels, locs + eps, scales) - reference_log_prob(levels, locs - eps, scales)) / (2 * eps)
    fd_scale = (reference_log_prob(levels, locs, scales + eps) - reference_log_prob(levels, locs, scales - eps)) / (2 * eps)
    np.testing.assert_allclose(grad_loc.ravel(), fd_loc, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(grad_scale.ravel(), fd_scale, rtol=1e-5, atol=1e-6)


# === The object ===
def test_mean_outputs_and_bad_input():
    likelihood = likelihoods.get("discretized_logistic")
    assert isinstance(likelihood, likelihoods.DiscretizedLogistic) and likelihood.num_decoder_outputs == 2
    loc, scale = np.array([[-1.5, -1.0, 0.0, 0.5, 2.0]], "float32"), np.full((1, 5), -9.0, "float32")
    np.testing.assert_allclose(to_numpy(likelihood.mean([loc, scale])), [[0.0, 0.0, 0.5, 0.75, 1.0]])
    outputs = likelihood.outputs([loc, scale])
    assert sorted(outputs) == ["log_scale", "mean"]
    np.testing.assert_array_equal(to_numpy(outputs["log_scale"]), np.full((1, 5), -7.0))
    with pytest.raises(ValueError, match="two outputs.*Received: ndarray"):
        likelihood.log_prob(np.zeros((1, 5)), loc)
    with pytest.raises(ValueError, match=r"\[0, 1\].*Received values in \[0, 255\]"):
        likelihood.check_data(np.array([0.0, 255.0]))
    with pytest.raises(ValueError, match="1 value\\(s\\) off that grid, e.g. 0.5"):
        likelihood.check_data(np.array([0.0, 0.5, 1.0]))
    with pytest.raises(ValueError, match="1 NaN or infinite"):
        likelihood.check_data(np.array([0.0, np.nan]))
    likelihood.check_data(np.arange(256) / 255.0)  # every level is accepted
    with pytest.raises(ValueError, match="min_log_scale=nan"):
        likelihoods.DiscretizedLogistic(min_log_scale=float("nan"))


def test_serializes():
    obj = likelihoods.DiscretizedLogistic(min_log_scale=-5.0)
    revived = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(obj))
    assert isinstance(revived, likelihoods.DiscretizedLogistic) and revived.min_log_scale == -5.0


def test_a_tiny_vae_trains_with_it_and_round_trips(tmp_path):
    keras.utils.set_random_seed(0)
    x = np.round(random_images(64) * 255.0) / 255.0
    encoder = kerasvae.networks.build_mlp_encoder(DATA_SHAPE, 2, hidden_units=(16,))
    decoder = kerasvae.networks.build_mlp_decoder(2, DATA_SHAPE, hidden_units=(16,), num_outputs=2)
    model = kerasvae.VAE(encoder, decoder, likelihood="discretized_logistic", seed=0)
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    before = model.evaluate(x, batch_size=64, verbose=0, return_dict=True)["loss"]
    history = model.fit(x, epochs=3, batch_size=8, verbose=0)
    after = model.evaluate(x, batch_size=64, verbose=0, return_dict=True)["loss"]
    assert np.all(np.isfinite(history.history["loss"]))
    # Uniform pixels: the best single logistic per pixel scores about
    # 784 log 256 = 4347 nats; at initialization (scale near 1 in [-1, 1]
    # units) about 784 * 6.3 = 4940. 24 steps close about half of that gap
    # (300 nats on TensorFlow, seed 0); a broken gradient would close none.
    assert after < before - 150.0, (before, after)
    with pytest.raises(ValueError, match="off that grid"):
        model.fit(random_images(8), verbose=0)
    reloaded = keras.saving.load_model(_save(model, tmp_path), safe_mode=True)
    assert isinstance(reloaded.likelihood, likelihoods.DiscretizedLogistic)
    np.testing.assert_allclose(reloaded.predict(x[:2], verbose=0), model.predict(x[:2], verbose=0), atol=1e-6)


def _save(model, tmp_path):
    path = str(tmp_path / "dlogistic.keras")
    model.save(path)
    return path
