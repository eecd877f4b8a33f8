"""PNG figures of images and latent codes: sample grids, reconstructions, scatters.

Needs matplotlib (the `plot` extra). Figures are drawn on matplotlib's Agg
canvas directly, without `pyplot`, so importing this module neither switches
the session's backend nor closes or keeps any figure: it works the same on a
headless server and inside a notebook. Every file is written to a temporary
name in the target folder and then renamed into place, so a reader never sees
half a PNG.

Images are arrays of shape `(n, height, width)` or `(n, height, width, 1)`
with values in [0, 1], as `load_fashion_mnist`, `VAE.sample` and
`VAE.reconstruct` give them.
"""

import math
import os

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from kerasvae.io_utils import atomic_open

DPI = 100
# Each image pixel is drawn as a SCALE x SCALE block: a 28x28 image is 84x84 px.
SCALE = 3
# Blank pixels between two images of a grid (before scaling).
PAD = 2


def _check_path(path):
    path = os.fspath(path)
    if not path.lower().endswith(".png"):
        raise ValueError(f"path must name a .png file. Received: path={path!r}")
    return path


def _check_images(images, name="images"):
    """`images` as float32 `(n, height, width)`, or a ValueError naming the value."""
    array = np.asarray(images)
    if array.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be numeric. Received: {name}.dtype={array.dtype}")
    if array.ndim == 4 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim != 3:
        raise ValueError(
            f"{name} must have shape (n, height, width) or (n, height, width, 1). "
            f"Received: {name}.shape={np.shape(images)}"
        )
    if 0 in array.shape:
        raise ValueError(
            f"{name} must hold at least one image. Received: {name}.shape={array.shape}"
        )
    array = array.astype("float32")
    if not np.all(np.isfinite(array)):
        count = int(np.sum(~np.isfinite(array)))
        raise ValueError(f"{name} must be finite. Received {count} NaN or infinite values")
    if array.min() < 0 or array.max() > 1:
        raise ValueError(
            f"{name} must have values in [0, 1]. Received values in "
            f"[{array.min():g}, {array.max():g}]"
        )
    return array


def _check_ncols(ncols):
    if isinstance(ncols, bool) or not isinstance(ncols, (int, np.integer)) or ncols <= 0:
        raise ValueError(f"ncols must be a positive integer. Received: ncols={ncols!r}")
    return int(ncols)


def _mosaic(images, ncols):
    """Tiles `(n, h, w)` images into one array, rows first, white gaps between."""
    n, height, width = images.shape
    ncols = min(ncols, n)
    nrows = math.ceil(n / ncols)
    mosaic = np.ones(
        (nrows * height + (nrows - 1) * PAD, ncols * width + (ncols - 1) * PAD), "float32"
    )
    for i, image in enumerate(images):
        row, col = divmod(i, ncols)
        top, left = row * (height + PAD), col * (width + PAD)
        mosaic[top : top + height, left : left + width] = image
    return mosaic


def _save(figure, path):
    """Renders `figure` with Agg into `path` through a temporary file and a rename."""
    FigureCanvasAgg(figure)
    with atomic_open(path, "wb") as f:
        figure.savefig(f, format="png", dpi=DPI)
    return path


def _image_figure(mosaic, top_inches=0.0, left_inches=0.0):
    """A figure showing `mosaic` at SCALE px per pixel, with optional margins."""
    image_w = mosaic.shape[1] * SCALE / DPI
    image_h = mosaic.shape[0] * SCALE / DPI
    width, height = image_w + left_inches, image_h + top_inches
    figure = Figure(figsize=(width, height), dpi=DPI)
    axes = figure.add_axes([left_inches / width, 0.0, image_w / width, image_h / height])
    axes.imshow(mosaic, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    axes.set_axis_off()
    return figure


def image_grid(images, path, ncols=8, title=None):
    """Writes a PNG of images tiled in a grid, row by row.

    Each image pixel becomes a 3x3 block, so a grid of 28x28 images is about
    84 px per image plus thin white gaps (and a band for the title).

    Args:
        images: array of shape `(n, height, width)` or `(n, height, width, 1)`,
            values in [0, 1] (0 is black).
        path: str. Where to write; must end in `.png`. Missing folders are made.
        ncols: int. Images per row (fewer when `n` is smaller).
        title: str or None. Text above the grid.

    Returns:
        `path`.

    Raises:
        ValueError: wrong rank, empty or non-numeric `images`, values outside
            [0, 1] or non-finite, a bad `ncols`, or a path not ending in `.png`.

    Example:

    ```python
    samples = vae.sample(32, seed=0)
    kerasvae.plotting.image_grid(samples, "runs/example/samples.png", title="Prior samples")
    ```
    """
    path = _check_path(path)
    images = _check_images(images)
    ncols = _check_ncols(ncols)
    title_inches = 0.4 if title else 0.0
    figure = _image_figure(_mosaic(images, ncols), top_inches=title_inches)
    if title:
        centre = 1.0 - 0.5 * title_inches / figure.get_figheight()
        figure.suptitle(str(title), y=centre, va="center")
    return _save(figure, path)


def reconstruction_pairs(originals, reconstructions, path):
    """Writes a PNG with the originals in the top row and their reconstructions below.

    Args:
        originals: array of shape `(n, height, width)` or `(n, height, width, 1)`,
            values in [0, 1].
        reconstructions: array of the same shape, e.g. `vae.reconstruct(originals)`.
        path: str. Where to write; must end in `.png`.

    Returns:
        `path`.

    Raises:
        ValueError: either array is invalid (see `image_grid`) or the two
            shapes differ.

    Example:

    ```python
    x = x_test[:10]
    kerasvae.plotting.reconstruction_pairs(x, vae.reconstruct(x), "runs/example/pairs.png")
    ```
    """
    path = _check_path(path)
    shapes = np.shape(originals), np.shape(reconstructions)
    originals = _check_images(originals, "originals")
    reconstructions = _check_images(reconstructions, "reconstructions")
    if originals.shape != reconstructions.shape:  # (n, h, w) against (n, h, w, 1) is fine
        raise ValueError(
            "originals and reconstructions must have the same shape. Received: "
            f"originals.shape={shapes[0]}, reconstructions.shape={shapes[1]}"
        )
    n = len(originals)
    label_inches = 1.3
    figure = _image_figure(
        _mosaic(np.concatenate([originals, reconstructions]), n), left_inches=label_inches
    )
    height = originals.shape[1]
    for row, text in enumerate(("original", "reconstruction")):
        # Vertical centre of the row, as a fraction of the figure height from the bottom.
        centre = 1.0 - (row * (height + PAD) + height / 2) / (2 * height + PAD)
        left = 0.5 * label_inches / figure.get_figwidth()
        figure.text(left, centre, text, ha="center", va="center")
    return _save(figure, path)


def _project_2d(z):
    """The first two dimensions of `z`, or its first two principal components."""
    if z.shape[1] == 2:
        return z, ("z[0]", "z[1]")
    centred = z - z.mean(axis=0)
    # Right singular vectors are the principal axes; no scikit-learn needed.
    _, singular_values, axes = np.linalg.svd(centred, full_matrices=False)
    explained = singular_values**2 / max(float(np.sum(singular_values**2)), 1e-30)
    return centred @ axes[:2].T, tuple(
        f"PC {i + 1} ({100 * explained[i]:.0f}% of variance)" for i in range(2)
    )


def _palette(count):
    name = "tab10" if count <= 10 else "tab20" if count <= 20 else "viridis"
    cmap = colormaps[name]
    if name == "viridis":
        return [cmap(i / max(count - 1, 1)) for i in range(count)]
    return [cmap(i) for i in range(count)]


def latent_scatter(z, labels, path, class_names=None):
    """Writes a PNG scatter of latent codes, one colour per label.

    Two-dimensional codes are drawn as they are; longer codes are projected
    onto their first two principal components (PCA through NumPy's SVD), and
    the axis titles say how much of the variance each one holds.

    Args:
        z: array of shape `(n, latent_dim)` with `latent_dim >= 2`, e.g. the
            posterior means `vae.encode(x)[0]`.
        labels: integer array of shape `(n,)`, the class of each code.
        path: str. Where to write; must end in `.png`.
        class_names: sequence of str or None. `class_names[label]` is shown
            in the legend (e.g. `kerasvae.data.CLASS_NAMES`); by default the
            label itself.

    Returns:
        `path`.

    Raises:
        ValueError: `z` is not a finite 2-D array with at least two columns and
            two rows, `labels` is not an integer array of matching length, or
            `class_names` has no name for a label.

    Example:

    ```python
    z_mean = vae.encode(x_test[:2000])[0]
    kerasvae.plotting.latent_scatter(
        z_mean, y_test[:2000], "runs/example/latent.png",
        class_names=kerasvae.data.CLASS_NAMES,
    )
    ```
    """
    path = _check_path(path)
    z_array = np.asarray(z)
    if z_array.dtype.kind not in "biuf" or z_array.ndim != 2 or z_array.shape[1] < 2:
        raise ValueError(
            "z must be a numeric array of shape (n, latent_dim) with latent_dim >= 2. "
            f"Received: z.shape={z_array.shape}, z.dtype={z_array.dtype}"
        )
    if len(z_array) < 2:
        raise ValueError(f"z must hold at least two codes. Received: z.shape={z_array.shape}")
    z_array = z_array.astype("float64")
    if not np.all(np.isfinite(z_array)):
        count = int(np.sum(~np.isfinite(z_array)))
        raise ValueError(f"z must be finite. Received {count} NaN or infinite values")
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.dtype.kind not in "iu" or len(labels) != len(z_array):
        raise ValueError(
            f"labels must be an integer array of shape ({len(z_array)},), one label per code. "
            f"Received: labels.shape={labels.shape}, labels.dtype={labels.dtype}"
        )
    classes = np.unique(labels)
    if class_names is not None:
        class_names = list(class_names)
        missing = [int(c) for c in classes if not 0 <= c < len(class_names)]
        if missing:
            raise ValueError(
                f"class_names has {len(class_names)} names, none for label(s) {missing}. "
                f"Received: class_names={class_names!r}"
            )

    points, axis_titles = _project_2d(z_array)
    figure = Figure(figsize=(8.0, 6.0), dpi=DPI)
    axes = figure.add_axes([0.1, 0.1, 0.6, 0.8])
    palette = _palette(len(classes))
    for colour, label in zip(palette, classes):
        mask = labels == label
        name = class_names[label] if class_names is not None else str(int(label))
        axes.scatter(points[mask, 0], points[mask, 1], s=4, alpha=0.6, color=colour, label=name)
    axes.set_xlabel(axis_titles[0])
    axes.set_ylabel(axis_titles[1])
    axes.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), markerscale=3, frameon=False)
    return _save(figure, path)
