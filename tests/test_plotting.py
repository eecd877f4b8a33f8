"""kerasvae.plotting: each figure is a real PNG of the expected size, bad input fails clearly."""

import os
import re

import numpy as np
import pytest
from matplotlib.figure import Figure
from matplotlib.image import imread

from kerasvae import plotting

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
RNG = np.random.default_rng(0)
IMAGES = RNG.random((10, 28, 28, 1), dtype=np.float32)


def read_png(path):
    """The pixels of `path` (height, width, channels), after checking the PNG signature."""
    with open(path, "rb") as f:
        assert f.read(8) == PNG_MAGIC
    return imread(path)


def assert_size(pixels, height, width, tolerance=2):
    assert abs(pixels.shape[0] - height) <= tolerance, pixels.shape
    assert abs(pixels.shape[1] - width) <= tolerance, pixels.shape


def grid_pixels(count, size=28):
    """Expected pixels along one axis of a grid of `count` images."""
    return (count * size + (count - 1) * plotting.PAD) * plotting.SCALE


def test_image_grid_size_and_content(tmp_path):
    images = np.zeros((10, 28, 28, 1), "float32")
    images[1:] = 1.0  # the first image black, the others white
    path = plotting.image_grid(images, str(tmp_path / "grid.png"), ncols=4)
    pixels = read_png(path)
    assert_size(pixels, grid_pixels(3), grid_pixels(4))  # 10 images in rows of 4: 3 rows
    centre = 14 * plotting.SCALE
    np.testing.assert_allclose(pixels[centre, centre, :3], 0.0)
    np.testing.assert_allclose(pixels[centre, centre + grid_pixels(1) + 6, :3], 1.0)


def test_image_grid_title_and_rank_3(tmp_path):
    with_channel = read_png(plotting.image_grid(IMAGES, tmp_path / "a.png", title="Samples"))
    without = read_png(plotting.image_grid(IMAGES[..., 0], tmp_path / "b.png", title="Samples"))
    np.testing.assert_array_equal(with_channel, without)
    # ncols=8 and 10 images: 2 rows, plus a 40 px band for the title.
    assert_size(with_channel, grid_pixels(2) + 40, grid_pixels(8))


def test_image_grid_fewer_images_than_ncols(tmp_path):
    pixels = read_png(plotting.image_grid(IMAGES[:3], tmp_path / "grid.png", ncols=8))
    assert_size(pixels, grid_pixels(1), grid_pixels(3))


def test_reconstruction_pairs(tmp_path):
    pixels = read_png(plotting.reconstruction_pairs(IMAGES, 1.0 - IMAGES, tmp_path / "pairs.png"))
    assert_size(pixels, grid_pixels(2), grid_pixels(10) + 130)  # 1.3 inch label margin


@pytest.mark.parametrize("latent_dim", [2, 16])
def test_latent_scatter(tmp_path, latent_dim):
    z = RNG.normal(size=(200, latent_dim))
    labels = RNG.integers(0, 10, size=200)
    path = plotting.latent_scatter(
        z, labels, tmp_path / "latent.png", class_names=[f"class {i}" for i in range(10)]
    )
    pixels = read_png(path)
    assert_size(pixels, 600, 800)
    assert pixels[..., :3].std() > 0.05  # something was drawn


def test_pca_keeps_the_two_largest_variances():
    z = RNG.normal(size=(500, 5)) * np.array([5.0, 0.1, 3.0, 0.2, 1.0])
    points, titles = plotting._project_2d(z)
    top_two = np.sort(np.linalg.eigvalsh(np.cov(z, rowvar=False)))[::-1][:2]
    np.testing.assert_allclose(points.var(axis=0, ddof=1), top_two, rtol=1e-6)
    assert titles[0].startswith("PC 1")


def test_writes_atomically(tmp_path, monkeypatch):
    path = tmp_path / "grid.png"
    plotting.image_grid(IMAGES, path)
    before = path.read_bytes()
    plotting.image_grid(IMAGES[:2], path)  # replacing a file works
    assert path.read_bytes() != before
    assert os.listdir(tmp_path) == ["grid.png"]

    def broken_savefig(self, *args, **kwargs):
        raise OSError("disk full")

    kept = path.read_bytes()
    monkeypatch.setattr(Figure, "savefig", broken_savefig)
    with pytest.raises(OSError, match="disk full"):
        plotting.image_grid(IMAGES, path)
    assert path.read_bytes() == kept  # the old figure survives a failed write
    assert os.listdir(tmp_path) == ["grid.png"]  # and no temporary file is left


def test_makes_missing_folders(tmp_path):
    path = tmp_path / "a" / "b" / "grid.png"
    plotting.image_grid(IMAGES, path)
    assert path.is_file()


@pytest.mark.parametrize(
    "images, message",
    [
        (np.zeros((28, 28)), "Received: images.shape=(28, 28)"),
        (np.zeros((2, 28, 28, 3)), "Received: images.shape=(2, 28, 28, 3)"),
        (np.zeros((0, 28, 28)), "Received: images.shape=(0, 28, 28)"),
        (np.linspace(-0.5, 1.5, 2 * 28 * 28).reshape(2, 28, 28), "Received values in [-0.5, 1.5]"),
        (np.full((2, 28, 28), np.nan), "images must be finite"),
        (np.full((2, 28, 28), "a"), "Received: images.dtype=<U1"),
    ],
)
def test_image_grid_rejects_bad_images(tmp_path, images, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        plotting.image_grid(images, tmp_path / "grid.png")
    assert not os.listdir(tmp_path)


@pytest.mark.parametrize("ncols", [0, -1, 2.5, True])
def test_image_grid_rejects_bad_ncols(tmp_path, ncols):
    with pytest.raises(ValueError, match=re.escape(f"Received: ncols={ncols!r}")):
        plotting.image_grid(IMAGES, tmp_path / "grid.png", ncols=ncols)


def test_rejects_path_without_png_suffix(tmp_path):
    with pytest.raises(ValueError, match=r"Received: path=.*grid\.jpg"):
        plotting.image_grid(IMAGES, tmp_path / "grid.jpg")


def test_reconstruction_pairs_rejects_mismatched_shapes(tmp_path):
    with pytest.raises(ValueError, match=re.escape("reconstructions.shape=(9, 28, 28, 1)")):
        plotting.reconstruction_pairs(IMAGES, IMAGES[:9], tmp_path / "pairs.png")
    with pytest.raises(ValueError, match=re.escape("Received: reconstructions.shape=(10, 784)")):
        plotting.reconstruction_pairs(IMAGES, IMAGES.reshape(10, 784), tmp_path / "pairs.png")


@pytest.mark.parametrize(
    "z, labels, class_names, message",
    [
        (np.zeros(5), np.zeros(5, int), None, "Received: z.shape=(5,)"),
        (np.zeros((5, 0)), np.zeros(5, int), None, "Received: z.shape=(5, 0)"),
        (np.zeros((1, 3)), np.zeros(1, int), None, "Received: z.shape=(1, 3)"),
        (np.full((5, 2), np.inf), np.zeros(5, int), None, "z must be finite"),
        (np.zeros((5, 2)), np.zeros(4, int), None, "Received: labels.shape=(4,)"),
        (np.zeros((5, 2)), np.zeros(5), None, "labels.dtype=float64"),
        (np.zeros((5, 2)), np.arange(5), ["a", "b"], "none for label(s) [2, 3, 4]"),
    ],
)
def test_latent_scatter_rejects_bad_input(tmp_path, z, labels, class_names, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        plotting.latent_scatter(z, labels, tmp_path / "latent.png", class_names=class_names)
