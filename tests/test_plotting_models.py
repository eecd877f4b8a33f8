"""kerasvae.plotting model figures: each PNG is valid, draws what it says, refuses bad input."""

import os
import re
import statistics

import numpy as np
import pytest
from PIL import Image

from kerasvae import evaluation, plotting
from tests.helpers import random_images, tiny_vae

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
X = random_images(40, seed=1)
Y = np.arange(40) % 10


def check_png(path):
    """Opens `path` with PIL (which checks the chunks' CRCs) and returns its pixels."""
    with open(path, "rb") as f:
        assert f.read(8) == PNG_MAGIC
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        pixels = np.asarray(image.convert("RGB"), dtype="float32") / 255.0
    assert pixels.std() > 0.01, "the figure is blank"
    return pixels


def grid_pixels(count, size=28):
    return (count * size + (count - 1) * plotting.PAD) * plotting.SCALE


@pytest.fixture(scope="module", params=[1, 2, 16], ids=lambda d: f"latent{d}")
def model(request):
    return tiny_vae(latent_dim=request.param, seed=request.param)


class DecodeSpy:
    """Records the latent points a figure decodes, then decodes them."""

    def __init__(self, monkeypatch):
        self.calls = []
        original = plotting.ModelView.decode

        def spy(view, z, labels=None):
            self.calls.append(np.array(z))
            return original(view, z, labels)

        monkeypatch.setattr(plotting.ModelView, "decode", spy)


@pytest.mark.compiled_step
def test_write_figures_draws_every_figure_that_applies(model, tmp_path):
    history = {"loss": [3.0, 2.0], "val_loss": [3.5, 2.5]}
    written, skipped = plotting.write_figures(model, tmp_path, X, Y, history=history)
    expected = set(plotting.FIGURES) - ({"manifold"} if model.latent_dim == 1 else set())
    assert set(written) == expected
    for name, path in written.items():
        assert path == os.path.join(str(tmp_path), f"{name}.png")
        check_png(path)
    if model.latent_dim == 1:
        assert "1-D latent space" in skipped["manifold"]
    else:
        assert skipped == {}
    assert sorted(os.listdir(tmp_path)) == sorted(f"{n}.png" for n in expected)  # no temp files


def test_kl_per_dimension_matches_evaluation_for_a_diagonal_posterior(model):
    mean, log_var = plotting.ModelView(model).encode(X)
    np.testing.assert_allclose(
        plotting.kl_per_dimension(mean, log_var), evaluation.kl_per_dimension(model, X), rtol=1e-5
    )


def test_kl_per_dimension_of_a_full_posterior_is_the_marginal_kl():
    rng = np.random.default_rng(0)
    mean = rng.normal(size=(50, 3))
    scale_tril = np.tril(rng.normal(size=(50, 3, 3)) * 0.5)
    scale_tril[:, range(3), range(3)] = np.abs(scale_tril[:, range(3), range(3)]) + 0.2
    # Independent computation: the marginal of z_d is N(mean_d, S_dd), S = L L^T.
    covariance = np.einsum("nij,nkj->nik", scale_tril, scale_tril)
    variance = np.diagonal(covariance, axis1=1, axis2=2)
    expected = 0.5 * np.mean(mean**2 + variance - 1 - np.log(variance), axis=0)
    np.testing.assert_allclose(plotting.kl_per_dimension(mean, scale_tril), expected, rtol=1e-12)


def test_manifold_of_a_2d_latent_is_a_grid_of_normal_quantiles(tmp_path, monkeypatch):
    model = tiny_vae(latent_dim=2)
    spy = DecodeSpy(monkeypatch)
    pixels = check_png(plotting.plot_manifold(model, tmp_path / "m.png", grid_size=5))
    z = spy.calls[-1]
    quantiles = [statistics.NormalDist().inv_cdf(p) for p in (0.05, 0.275, 0.5, 0.725, 0.95)]
    assert quantiles[-1] == pytest.approx(1.6448536, abs=1e-6)  # Phi^-1(0.95), from tables
    np.testing.assert_allclose(z[:5, 0], quantiles, rtol=1e-6, atol=1e-7)  # left to right along z[0]
    np.testing.assert_allclose(z[::5, 1], quantiles[::-1], rtol=1e-6, atol=1e-7)  # top row is the highest z[1]
    assert abs(pixels.shape[0] - (grid_pixels(5) + 40)) <= 2  # 5 rows and a title band
    assert abs(pixels.shape[1] - grid_pixels(5)) <= 2


def test_manifold_of_a_16d_latent_varies_the_two_highest_kl_dimensions(tmp_path, monkeypatch):
    model = tiny_vae(latent_dim=16, seed=3)
    top_two = np.argsort(-evaluation.kl_per_dimension(model, X))[:2]
    spy = DecodeSpy(monkeypatch)
    plotting.plot_manifold(model, tmp_path / "m.png", x=X, grid_size=4)
    z = spy.calls[-1]
    varied = np.flatnonzero(np.any(z != 0, axis=0))
    assert list(varied) == sorted(top_two)
    assert len(np.unique(z[:, top_two[0]])) == 4 and len(np.unique(z[:, top_two[1]])) == 4

    spy.calls.clear()
    plotting.plot_manifold(model, tmp_path / "m.png", dims=(5, 9), grid_size=3)
    assert list(np.flatnonzero(np.any(spy.calls[-1] != 0, axis=0))) == [5, 9]


def test_traversals_sweep_one_dimension_per_row_sorted_by_kl(tmp_path, monkeypatch):
    model = tiny_vae(latent_dim=5, seed=2)
    kl = evaluation.kl_per_dimension(model, X)
    spy = DecodeSpy(monkeypatch)
    values = [-2.0, 0.0, 2.0]
    pixels = check_png(plotting.plot_traversals(model, X, tmp_path / "t.png", values=values))
    z = spy.calls[-1].reshape(5, 3, 5)  # rows, values, latent
    start = np.asarray(model.encode(X[:1])[0])[0]
    for row, dim in enumerate(np.argsort(-kl)):
        np.testing.assert_allclose(z[row, :, dim], values)
        others = np.delete(z[row], dim, axis=1)
        np.testing.assert_allclose(others, np.repeat(np.delete(start, dim)[None], 3, 0), atol=1e-5)
    assert abs(pixels.shape[0] - (grid_pixels(5) + 40)) <= 2
    spy.calls.clear()
    plotting.plot_traversals(model, X, tmp_path / "t.png", start="zero", max_dims=2)
    z = spy.calls[-1]
    assert z.shape == (2 * 9, 5) and np.count_nonzero(z) == 2 * 8  # 0 is one of the 9 values


def test_interpolation_runs_from_one_code_to_the_other(tmp_path, monkeypatch):
    model = tiny_vae(latent_dim=4)
    spy = DecodeSpy(monkeypatch)
    pixels = check_png(plotting.plot_interpolation(model, X[:2], X[2:4], tmp_path / "i.png", steps=5))
    z = spy.calls[-1].reshape(2, 5, 4)
    z_start, z_end = (np.asarray(model.encode(x)[0]) for x in (X[:2], X[2:4]))
    np.testing.assert_allclose(z[:, 0], z_start, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(z[:, -1], z_end, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(z[:, 2], (z_start + z_end) / 2, rtol=1e-5, atol=1e-6)
    # 2 rows of 7 images (the two ends and 5 steps) after a 1.3 inch label band.
    assert abs(pixels.shape[1] - (grid_pixels(7) + 130)) <= 2
    plotting.plot_interpolation(model, X[0], X[1], tmp_path / "one.png")  # single images work


def test_reconstructions_and_samples_show_the_models_output(tmp_path):
    model = tiny_vae(latent_dim=2)
    pixels = check_png(plotting.plot_reconstructions(model, X[:3], tmp_path / "r.png"))
    # The bottom-left image is the reconstruction of X[0], in grey levels.
    expected = np.asarray(model.reconstruct(X[:1]))[0, ..., 0]
    top = grid_pixels(1) + plotting.PAD * plotting.SCALE
    left = 130
    block = pixels[top : top + 84, left : left + 84, 0]
    shown = block[1::3, 1::3]  # the centre of each 3x3 block
    np.testing.assert_allclose(shown, expected, atol=2 / 255 + 1e-3)
    check_png(plotting.plot_samples(model, tmp_path / "s.png", num_samples=6, ncols=3))


def test_latent_scatter_of_a_1d_code_uses_a_jitter(tmp_path):
    z = np.linspace(-2, 2, 30)[:, None]
    check_png(plotting.latent_scatter(z, np.arange(30) % 3, tmp_path / "l.png"))


def test_training_curves_from_a_dict_a_history_and_a_csv(tmp_path):
    history = {"loss": [5.0, 4.0, 3.0], "val_loss": [5.5, 4.5, 3.5], "kl_loss": [1.0, 2.0, 2.5]}
    check_png(plotting.training_curves(history, tmp_path / "a.png"))

    class History:  # what model.fit returns
        pass

    fitted = History()
    fitted.history = history
    check_png(plotting.training_curves(fitted, tmp_path / "b.png"))

    csv_path = tmp_path / "history.csv"
    # A resumed run appends: epoch 1 appears twice and its last row wins.
    csv_path.write_text("epoch,loss,val_loss\n0,5.0,5.5\n1,9.0,9.5\n1,4.0,4.5\n2,3.0,3.5\n")
    curves = plotting.read_history(str(csv_path))
    np.testing.assert_array_equal(curves["loss"], [5.0, 4.0, 3.0])
    np.testing.assert_array_equal(curves["epoch"], [0, 1, 2])
    check_png(plotting.training_curves(str(csv_path), tmp_path / "c.png"))


def test_kl_bars(tmp_path):
    check_png(plotting.kl_bars([0.5, 2.0, 0.0], tmp_path / "k.png"))


@pytest.mark.requires_tensorflow
def test_a_loaded_savedmodel_draws_like_its_keras_model(tmp_path):
    import tensorflow as tf

    import kerasvae

    model = tiny_vae(latent_dim=3, covariance="full")
    served = tf.saved_model.load(kerasvae.export_saved_model(model, str(tmp_path / "export")))
    view, keras_view = plotting.ModelView(served), plotting.ModelView(model)
    assert (view.latent_dim, view.data_shape, view.conditional) == (3, (28, 28, 1), False)
    np.testing.assert_allclose(view.reconstruct(X), keras_view.reconstruct(X), atol=1e-5)
    for a, b in zip(view.encode(X), keras_view.encode(X)):
        np.testing.assert_allclose(a, b, atol=1e-5)
    np.testing.assert_array_equal(view.sample(4, seed=7), view.sample(4, seed=7))
    written, _ = plotting.write_figures(served, tmp_path / "figures", X, Y)
    assert len(written) == len(plotting.FIGURES) - 1  # no history
    for path in written.values():
        check_png(path)


# === Bad input ===
def test_a_1d_latent_has_no_manifold(tmp_path):
    with pytest.raises(ValueError, match=re.escape("latent_dim=1. Draw plot_traversals")):
        plotting.plot_manifold(tiny_vae(latent_dim=1), tmp_path / "m.png")
    assert not os.listdir(tmp_path)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({}, "With latent_dim=16 > 2, pass x"),
        ({"dims": (3, 3)}, "Received: dims=(3, 3)"),
        ({"dims": (0, 16)}, "Received: dims=(0, 16)"),
        ({"grid_size": 1}, "Received: grid_size=1"),
        ({"grid_size": 2.5}, "Received: grid_size=2.5"),
        ({"label": 3, "dims": (0, 1)}, "the model is unconditional"),
    ],
)
def test_manifold_rejects_bad_arguments(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        plotting.plot_manifold(tiny_vae(latent_dim=16), tmp_path / "m.png", **kwargs)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda m, p: plotting.plot_reconstructions(m, X[:, :14], p),
         "x must have shape (n, 28, 28, 1) with n >= 1 to match the model. Received: x.shape=(40, 14, 28, 1)"),
        (lambda m, p: plotting.plot_reconstructions(m, X[:0], p), "Received: x.shape=(0, 28, 28, 1)"),
        (lambda m, p: plotting.plot_reconstructions(m, X, p, labels=Y), "the model is unconditional"),
        (lambda m, p: plotting.plot_latent(m, X, Y[:5], p), "Received: labels.shape=(5,)"),
        (lambda m, p: plotting.plot_latent(m, X, Y.astype("float32"), p), "labels.dtype=float32"),
        (lambda m, p: plotting.plot_samples(m, p, num_samples=0), "Received: num_samples=0"),
        (lambda m, p: plotting.plot_samples(m, p, labels=[1]), "the model is unconditional"),
        (lambda m, p: plotting.plot_interpolation(m, X[:2], X[:3], p), "x_end.shape=(3, 28, 28, 1)"),
        (lambda m, p: plotting.plot_interpolation(m, X[:2], X[2:4], p, steps=1), "Received: steps=1"),
        (lambda m, p: plotting.plot_traversals(m, X, p, start="middle"), "Received: start='middle'"),
        (lambda m, p: plotting.plot_traversals(m, X, p, values=[1.0]), "at least two finite"),
        (lambda m, p: plotting.plot_traversals(m, X, p, max_dims=0), "Received: max_dims=0"),
        (lambda m, p: plotting.plot_kl_per_dimension(m, X, p[:-4] + ".jpg"), "must name a .png"),
        (lambda m, p: plotting.plot_samples("model.keras", p), "Received: str"),
        (lambda m, p: plotting.write_figures(m, os.path.dirname(p), X, Y, figures=["pie"]),
         "Unknown figure(s) ['pie']"),
    ],
)
def test_model_figures_reject_bad_input(tmp_path, call, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        call(tiny_vae(latent_dim=2), str(tmp_path / "figure.png"))
    assert not os.listdir(tmp_path)


@pytest.mark.parametrize(
    "history, error, message",
    [
        ({}, ValueError, "history has no metric"),
        ({"loss": [1.0, 2.0], "kl_loss": [1.0]}, ValueError, "one value per epoch"),
        ({"loss": [[1.0, 2.0]]}, ValueError, "history['loss'] must be a list"),
        ([1.0, 2.0], ValueError, "Received: list"),
        ("no/such/history.csv", FileNotFoundError, "No history CSV file at 'no/such/history.csv'"),
    ],
)
def test_training_curves_reject_bad_histories(tmp_path, history, error, message):
    with pytest.raises(error, match=re.escape(message)):
        plotting.training_curves(history, tmp_path / "curves.png")


@pytest.mark.parametrize(
    "kl, message",
    [([], "Received: kl.shape=(0,)"), ([1.0, np.nan], "finite and non-negative"),
     ([1.0, -0.5], "Received values in [-0.5, 1]"), ([[1.0]], "Received: kl.shape=(1, 1)")],
)
def test_kl_bars_reject_bad_values(tmp_path, kl, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        plotting.kl_bars(kl, tmp_path / "k.png")


# === Every family ===
FAMILY_PRESETS = ["mlp_fashion_mnist", "beta_vae_mlp", "cvae_mlp", "iwae_mlp", "vampprior_mlp",
                  "hvae_mlp"]


@pytest.mark.parametrize("name", FAMILY_PRESETS)
def test_every_family_draws_every_figure(name, tmp_path):
    from kerasvae import zoo

    model = zoo.build(name, latent_dim=3, seed=0)
    view = plotting.ModelView(model)
    assert view.conditional == (model.num_classes is not None)
    written, skipped = plotting.write_figures(
        model, tmp_path, X[:20], Y[:20], history={"loss": [2.0, 1.0]}
    )
    assert set(written) == set(plotting.FIGURES) and skipped == {}
    for path in written.values():
        check_png(path)


def test_a_conditional_model_draws_one_row_per_class_and_needs_labels(tmp_path, monkeypatch):
    from kerasvae import zoo

    model = zoo.build("cvae_mlp", latent_dim=2, seed=0)
    spy = DecodeSpy(monkeypatch)
    calls = []
    original = plotting.ModelView.sample

    def sample_spy(view, num_samples, seed=0, labels=None):
        calls.append(np.array(labels))
        return original(view, num_samples, seed, labels)

    monkeypatch.setattr(plotting.ModelView, "sample", sample_spy)
    pixels = check_png(plotting.plot_samples(model, tmp_path / "s.png", ncols=3,
                                             labels=[2, 7]))
    np.testing.assert_array_equal(calls[-1], [2, 2, 2, 7, 7, 7])
    assert abs(pixels.shape[0] - (grid_pixels(2) + 40)) <= 2  # two rows and a title
    with pytest.raises(ValueError, match=re.escape("The model is conditional (num_classes=10): pass labels")):
        plotting.plot_reconstructions(model, X[:3], tmp_path / "r.png")
    with pytest.raises(ValueError, match=re.escape("labels must lie in [0, 9]. Received values in [0, 12]")):
        plotting.plot_reconstructions(model, X[:3], tmp_path / "r.png", labels=[0, 12, 3])
    with pytest.raises(ValueError, match="pass label="):
        plotting.plot_manifold(model, tmp_path / "m.png")
    spy.calls.clear()
    plotting.plot_manifold(model, tmp_path / "m.png", label=4, grid_size=3)
    assert spy.calls[-1].shape == (9, 2)


@pytest.mark.requires_tensorflow
def test_a_conditional_savedmodel_draws_like_its_keras_model(tmp_path):
    import tensorflow as tf

    import kerasvae
    from kerasvae import export, zoo

    model = zoo.build("cvae_mlp", latent_dim=2, seed=0)
    path = kerasvae.export_saved_model(model, str(tmp_path / "export"))
    num_classes = export.load_metadata(path)["num_classes"]
    view = plotting.ModelView(tf.saved_model.load(path), num_classes=num_classes)
    assert view.conditional and view.num_classes == 10
    labels = Y[:8]
    np.testing.assert_allclose(
        view.reconstruct(X[:8], labels), plotting.ModelView(model).reconstruct(X[:8], labels),
        atol=1e-5,
    )
    assert view.sample(3, seed=1, labels=np.array([1, 2, 3])).shape == (3, 28, 28, 1)
    check_png(plotting.plot_samples(view, tmp_path / "s.png", ncols=2))
