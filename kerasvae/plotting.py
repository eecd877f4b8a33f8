"""PNG figures of a VAE: samples, reconstructions, the latent space, training.

Needs matplotlib (the `plot` extra). Figures are drawn on matplotlib's Agg
canvas directly, without `pyplot`, so importing this module neither switches
the session's backend nor closes or keeps any figure: it works the same on a
headless server and inside a notebook. Every file is written to a temporary
name in the target folder and then renamed into place
(`kerasvae.io_utils.atomic_open`), so a reader never sees half a PNG.

Two layers:

- array figures: `image_grid`, `reconstruction_pairs`, `latent_scatter`,
  `kl_bars`, `training_curves` draw arrays you already have;
- model figures: `plot_samples`, `plot_reconstructions`, `plot_latent`,
  `plot_manifold`, `plot_traversals`, `plot_interpolation`,
  `plot_kl_per_dimension` take a model and draw what it does. The model is a
  kerasvae Keras model or a SavedModel loaded with `tf.saved_model.load` (its
  `encode`, `decode` and `sample_seeded` signatures are called). A
  conditional model (`model.num_classes` set, or signatures with a `label`
  input) needs the class of each image as `labels`.

`write_figures` draws all of them into one folder, skipping (with the reason)
those that do not apply, e.g. the 2-D manifold of a 1-D latent space.

Images are arrays of shape `(n, height, width)` or `(n, height, width, 1)`
with values in [0, 1], as `load_fashion_mnist`, `VAE.sample` and
`VAE.reconstruct` give them. Decoded means outside [0, 1] (a Gaussian
likelihood) are clipped for display.
"""

import csv
import math
import os
import statistics

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from kerasvae.io_utils import atomic_open

DPI = 100
# Each image pixel is drawn as a SCALE x SCALE block: a 28x28 image is 84x84 px.
SCALE = 3
# Blank pixels between two images of a grid (before scaling).
PAD = 2
# Width of the band holding row labels, in inches.
LABEL_INCHES = 1.3
# Examples encoded per call when a figure reads many images.
BATCH_SIZE = 500


# === Checks ===
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


def _check_positive_int(value, name):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{name} must be a positive integer. Received: {name}={value!r}")
    return int(value)


def _check_ncols(ncols):
    return _check_positive_int(ncols, "ncols")


def _check_labels(labels, count, name="labels"):
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.dtype.kind not in "iu" or len(labels) != count:
        raise ValueError(
            f"{name} must be an integer array of shape ({count},), one label per example. "
            f"Received: {name}.shape={labels.shape}, {name}.dtype={labels.dtype}"
        )
    return labels.astype("int64")


def _check_class_names(class_names, classes):
    if class_names is None:
        return None
    class_names = list(class_names)
    missing = [int(c) for c in classes if not 0 <= c < len(class_names)]
    if missing:
        raise ValueError(
            f"class_names has {len(class_names)} names, none for label(s) {missing}. "
            f"Received: class_names={class_names!r}"
        )
    return class_names


# === Drawing ===
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


def _add_title(figure, title, title_inches):
    centre = 1.0 - 0.5 * title_inches / figure.get_figheight()
    figure.suptitle(str(title), y=centre, va="center")


def _rows_figure(images, ncols, row_labels, title=None):
    """Images in rows of `ncols`, each row named in a band on the left."""
    title_inches = 0.4 if title else 0.0
    figure = _image_figure(
        _mosaic(images, ncols), top_inches=title_inches, left_inches=LABEL_INCHES
    )
    nrows, height = len(row_labels), images.shape[1]
    image_h = (nrows * height + (nrows - 1) * PAD) * SCALE / DPI
    for row, text in enumerate(row_labels):
        # Vertical centre of the row, as a fraction of the figure height from the bottom.
        centre = (1.0 - (row * (height + PAD) + height / 2) / (nrows * height + (nrows - 1) * PAD))
        centre *= image_h / figure.get_figheight()
        left = 0.5 * LABEL_INCHES / figure.get_figwidth()
        figure.text(left, centre, text, ha="center", va="center", fontsize=9)
    if title:
        _add_title(figure, title, title_inches)
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
        _add_title(figure, title, title_inches)
    return _save(figure, path)


def reconstruction_pairs(originals, reconstructions, path, title=None):
    """Writes a PNG with the originals in the top row and their reconstructions below.

    Args:
        originals: array of shape `(n, height, width)` or `(n, height, width, 1)`,
            values in [0, 1].
        reconstructions: array of the same shape, e.g. `vae.reconstruct(originals)`.
        path: str. Where to write; must end in `.png`.
        title: str or None. Text above the pairs.

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
    figure = _rows_figure(
        np.concatenate([originals, reconstructions]),
        len(originals),
        ("original", "reconstruction"),
        title=title,
    )
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


def latent_scatter(z, labels, path, class_names=None, title=None, seed=0):
    """Writes a PNG scatter of latent codes, one colour per label.

    Two-dimensional codes are drawn as they are; longer codes are projected
    onto their first two principal components (PCA through NumPy's SVD), and
    the axis titles say how much of the variance each one holds. A
    one-dimensional code is drawn along the x axis against a random vertical
    jitter (uniform in [0, 1], no meaning), so overlapping classes stay
    visible.

    Args:
        z: array of shape `(n, latent_dim)`, e.g. the posterior means
            `vae.encode(x)[0]`.
        labels: integer array of shape `(n,)`, the class of each code.
        path: str. Where to write; must end in `.png`.
        class_names: sequence of str or None. `class_names[label]` is shown
            in the legend (e.g. `kerasvae.data.CLASS_NAMES`); by default the
            label itself.
        title: str or None. Text above the axes.
        seed: int. Seed of the jitter of a 1-D code.

    Returns:
        `path`.

    Raises:
        ValueError: `z` is not a finite 2-D array with at least one column and
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
    if z_array.dtype.kind not in "biuf" or z_array.ndim != 2 or z_array.shape[1] < 1:
        raise ValueError(
            "z must be a numeric array of shape (n, latent_dim) with latent_dim >= 1. "
            f"Received: z.shape={z_array.shape}, z.dtype={z_array.dtype}"
        )
    if len(z_array) < 2:
        raise ValueError(f"z must hold at least two codes. Received: z.shape={z_array.shape}")
    z_array = z_array.astype("float64")
    if not np.all(np.isfinite(z_array)):
        count = int(np.sum(~np.isfinite(z_array)))
        raise ValueError(f"z must be finite. Received {count} NaN or infinite values")
    labels = _check_labels(labels, len(z_array))
    classes = np.unique(labels)
    class_names = _check_class_names(class_names, classes)

    if z_array.shape[1] == 1:
        jitter = np.random.default_rng(seed).uniform(0.0, 1.0, len(z_array))
        points = np.stack([z_array[:, 0], jitter], axis=1)
        axis_titles = ("z[0]", "random jitter (1-D latent space, no meaning)")
    else:
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
    if z_array.shape[1] == 1:
        axes.set_yticks([])
    if title:
        axes.set_title(str(title))
    axes.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), markerscale=3, frameon=False)
    return _save(figure, path)


def kl_bars(kl, path, title=None):
    """Writes a PNG bar chart of the KL divergence of each latent dimension.

    Args:
        kl: array of shape `(latent_dim,)`, nats per dimension (finite, >= 0
            up to rounding), e.g. from `kl_per_dimension`.
        path: str. Where to write; must end in `.png`.
        title: str or None. By default the total.

    Returns:
        `path`.
    """
    path = _check_path(path)
    values = np.asarray(kl)
    if values.dtype.kind not in "biuf" or values.ndim != 1 or len(values) == 0:
        raise ValueError(
            "kl must be a non-empty numeric array of shape (latent_dim,). "
            f"Received: kl.shape={values.shape}, kl.dtype={values.dtype}"
        )
    values = values.astype("float64")
    if not np.all(np.isfinite(values)) or values.min() < -1e-6:
        raise ValueError(
            f"kl must be finite and non-negative. Received values in [{values.min():g}, "
            f"{values.max():g}]"
        )
    dims = np.arange(len(values))
    figure = Figure(figsize=(max(4.0, 0.35 * len(values) + 1.5), 3.5), dpi=DPI)
    axes = figure.add_axes([0.15, 0.18, 0.8, 0.68])
    axes.bar(dims, values, color=colormaps["tab10"](0))
    axes.set_xticks(dims)
    axes.set_xticklabels([str(d) for d in dims], fontsize=8 if len(values) > 20 else 10)
    axes.set_xlabel("latent dimension")
    axes.set_ylabel("KL (nats)")
    axes.set_title(str(title) if title else f"KL per dimension, total {values.sum():.2f} nats")
    return _save(figure, path)


def read_history(history):
    """A training history as `{metric: float64 array}`, one value per epoch.

    Accepts the `history` dict of `model.fit`'s return value (or the
    `keras.callbacks.History` itself) and the path of a CSV file written by
    `keras.callbacks.CSVLogger`. A CSV appended to by a resumed run may hold
    an epoch twice; the last row of each epoch wins.
    """
    if hasattr(history, "history") and isinstance(history.history, dict):
        history = history.history
    if isinstance(history, (str, os.PathLike)):
        path = os.fspath(history)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"No history CSV file at {path!r}.")
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        if not rows:
            raise ValueError(f"The history CSV file {path!r} has no rows.")
        by_epoch = {}
        for index, row in enumerate(rows):
            epoch = int(float(row["epoch"])) if row.get("epoch") not in (None, "") else index
            by_epoch[epoch] = row
        epochs = sorted(by_epoch)
        columns = [c for c in rows[0] if c != "epoch"]
        result = {}
        for column in columns:
            try:
                result[column] = np.array([float(by_epoch[e][column]) for e in epochs])
            except (TypeError, ValueError):
                continue  # a non-numeric column (none from CSVLogger) is not a curve
        result["epoch"] = np.array(epochs, "float64")
        return result
    if not isinstance(history, dict):
        raise ValueError(
            "history must be a dict of per-epoch values, a keras History, or the path of "
            f"a CSVLogger file. Received: {type(history).__name__}"
        )
    result = {}
    for key, values in history.items():
        array = np.asarray(values, dtype="float64")
        if array.ndim != 1:
            raise ValueError(
                f"history[{key!r}] must be a list of per-epoch numbers. "
                f"Received shape {array.shape}"
            )
        result[key] = array
    lengths = {len(v) for v in result.values()}
    if len(lengths) > 1:
        raise ValueError(
            "Every metric of history must have one value per epoch. Received lengths "
            f"{ {k: len(v) for k, v in result.items()} }"
        )
    return result


def training_curves(history, path, title=None):
    """Writes a PNG of the training curves: one panel per metric, training and validation.

    Args:
        history: the dict `model.fit(...).history`, a `keras.callbacks.History`
            or the path of a `keras.callbacks.CSVLogger` file.
        path: str. Where to write; must end in `.png`.
        title: str or None. Text above the panels.

    Returns:
        `path`.

    Raises:
        FileNotFoundError: the CSV file does not exist.
        ValueError: no metric has any value.

    Example:

    ```python
    history = vae.fit(x_train, epochs=10, validation_data=(x_test,))
    kerasvae.plotting.training_curves(history, "runs/example/training_curves.png")
    ```
    """
    path = _check_path(path)
    curves = read_history(history)
    epochs = curves.pop("epoch", None)
    names = [k for k in curves if not k.startswith("val_") and len(curves[k])]
    names += [k[4:] for k in curves if k.startswith("val_") and k[4:] not in curves]
    if not names:
        raise ValueError(
            f"history has no metric with a value. Received keys: {sorted(curves)}"
        )
    # The loss and its two terms first, then whatever else was logged (beta, ...).
    first = [n for n in ("loss", "reconstruction_loss", "kl_loss") if n in names]
    names = first + [n for n in names if n not in first]
    count = len(curves[names[0]] if names[0] in curves else curves["val_" + names[0]])
    epochs = np.arange(1, count + 1) if epochs is None else epochs + 1
    ncols = min(3, len(names))
    nrows = math.ceil(len(names) / ncols)
    figure = Figure(figsize=(4.0 * ncols, 3.2 * nrows), dpi=DPI)
    palette = colormaps["tab10"]
    for i, name in enumerate(names):
        axes = figure.add_subplot(nrows, ncols, i + 1)
        for key, colour, label in ((name, 0, "training"), ("val_" + name, 1, "validation")):
            if key in curves:
                axes.plot(epochs, curves[key], marker="." if count < 30 else None,
                          color=palette(colour), label=label)
        axes.set_title(name)
        axes.set_xlabel("epoch")
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.legend(frameon=False, fontsize=8)
    if title:
        figure.suptitle(str(title))
    figure.tight_layout()
    return _save(figure, path)


# === Models ===
class ModelView:
    """One interface to a kerasvae Keras model and to a loaded SavedModel.

    Figures call `encode`, `decode` and `sample` through this view, so they
    draw a model in memory and a served export alike. Every method takes and
    returns NumPy arrays.

    Args:
        model: a kerasvae Keras model, or the result of `tf.saved_model.load`
            on a kerasvae export (`encode`, `decode` and `sample_seeded`
            signatures are used).
        num_classes: int or None. The number of classes of a conditional
            SavedModel, which its signatures do not carry; Keras models
            report their own.
    """

    def __init__(self, model, num_classes=None):
        if isinstance(model, ModelView):  # a view again: keep what it was told
            num_classes = model.num_classes if num_classes is None else num_classes
            model = model.model
        self.model = model
        import keras

        signatures = getattr(model, "signatures", None)
        if isinstance(model, keras.Model) and all(
            hasattr(model, a) for a in ("encode", "decode", "sample", "latent_dim", "data_shape")
        ):
            self.kind = "keras"
            self.latent_dim = int(model.latent_dim)
            self.data_shape = tuple(model.data_shape)
            self.num_classes = getattr(model, "num_classes", None)
        elif signatures is not None and all(k in signatures for k in ("encode", "decode")):
            self.kind = "savedmodel"
            self._signatures = signatures
            encode_inputs = signatures["encode"].structured_input_signature[1]
            decode_inputs = signatures["decode"].structured_input_signature[1]
            self.latent_dim = int(decode_inputs["z"].shape[-1])
            self.data_shape = tuple(int(d) for d in encode_inputs["x"].shape[1:])
            self.conditional = "label" in encode_inputs
            self.num_classes = num_classes if self.conditional else None
            return
        else:
            raise ValueError(
                "model must be a kerasvae model (with encode, decode, sample, latent_dim and "
                "data_shape) or a kerasvae SavedModel loaded with tf.saved_model.load (with "
                f"encode and decode signatures). Received: {type(model).__name__}"
            )
        self.conditional = self.num_classes is not None

    # === Checks ===
    def check_x(self, x, name="x"):
        array = np.asarray(x)
        if array.dtype.kind not in "biuf":
            raise ValueError(f"{name} must be numeric. Received: {name}.dtype={array.dtype}")
        if array.ndim == len(self.data_shape):  # one example
            array = array[None]
        if tuple(array.shape[1:]) != self.data_shape or len(array) == 0:
            raise ValueError(
                f"{name} must have shape (n, {', '.join(map(str, self.data_shape))}) with "
                f"n >= 1 to match the model. Received: {name}.shape={np.shape(x)}"
            )
        return array.astype("float32")

    def check_condition(self, labels, count, name="labels"):
        """The class labels a conditional model needs; None for the others."""
        if not self.conditional:
            if labels is not None:
                raise ValueError(
                    f"{name} were given but the model is unconditional (num_classes=None); "
                    "it takes no class labels."
                )
            return None
        if labels is None:
            raise ValueError(
                f"The model is conditional (num_classes={self.num_classes}): pass {name}, "
                "the class of each example."
            )
        labels = np.asarray(labels)
        if labels.ndim == 0:
            labels = np.full((count,), labels)
        labels = _check_labels(labels, count, name)
        if self.num_classes is not None and (labels.min() < 0 or labels.max() >= self.num_classes):
            raise ValueError(
                f"{name} must lie in [0, {self.num_classes - 1}]. Received values in "
                f"[{labels.min()}, {labels.max()}]"
            )
        return labels

    # === Calls ===
    def _keras_kwargs(self, labels):
        return {} if labels is None else {"labels": labels}

    def encode(self, x, labels=None):
        """Posterior parameters `(mean, second)` in float64, batch by batch."""
        x = self.check_x(x)
        labels = self.check_condition(labels, len(x))
        means, seconds = [], []
        for start in range(0, len(x), BATCH_SIZE):
            batch = x[start : start + BATCH_SIZE]
            batch_labels = None if labels is None else labels[start : start + BATCH_SIZE]
            if self.kind == "keras":
                outputs = self.model.encode(batch, **self._keras_kwargs(batch_labels))
                mean, second = outputs[0], outputs[1]
            else:
                inputs = {"x": batch}
                if batch_labels is not None:
                    inputs["label"] = batch_labels.astype("int64")
                out = self._signatures["encode"](**inputs)
                mean = out["z_mean"]
                second = out["z_log_var"] if "z_log_var" in out else out["scale_tril"]
            means.append(_numpy(mean))
            seconds.append(_numpy(second))
        return np.concatenate(means).astype("float64"), np.concatenate(seconds).astype("float64")

    def decode(self, z, labels=None):
        """E[x | z], clipped to [0, 1] for display."""
        z = np.asarray(z, "float32")
        if z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(
                f"z must have shape (n, {self.latent_dim}). Received: z.shape={z.shape}"
            )
        labels = self.check_condition(labels, len(z))
        images = []
        for start in range(0, len(z), BATCH_SIZE):
            batch = z[start : start + BATCH_SIZE]
            batch_labels = None if labels is None else labels[start : start + BATCH_SIZE]
            if self.kind == "keras":
                decoded = self.model.decode(batch, **self._keras_kwargs(batch_labels))
            else:
                inputs = {"z": batch}
                if batch_labels is not None:
                    inputs["label"] = batch_labels.astype("int64")
                out = self._signatures["decode"](**inputs)
                key = "probabilities" if "probabilities" in out else "mean"
                decoded = out[key]
            images.append(_numpy(decoded))
        return np.clip(np.concatenate(images).astype("float32"), 0.0, 1.0)

    def sample(self, num_samples, seed=0, labels=None):
        """Decoded draws from the model's prior, clipped to [0, 1]."""
        num_samples = _check_positive_int(num_samples, "num_samples")
        labels = self.check_condition(labels, num_samples)
        if self.kind == "keras":
            out = self.model.sample(num_samples, seed=seed, **self._keras_kwargs(labels))
        else:
            if "sample_seeded" not in self._signatures:
                raise ValueError(
                    "The SavedModel has no sample_seeded signature. Found: "
                    f"{sorted(self._signatures)}"
                )
            # Signatures take NumPy values of their declared dtypes; a
            # conditional export draws one sample per label instead of
            # taking num_samples.
            inputs = {"seed": np.int64(0 if seed is None else seed)}
            if labels is not None:
                inputs["label"] = labels.astype("int64")
            else:
                inputs["num_samples"] = np.int32(num_samples)
            out = self._signatures["sample_seeded"](**inputs)["samples"]
        return np.clip(_numpy(out).astype("float32"), 0.0, 1.0)

    def reconstruct(self, x, labels=None):
        """Decodes the posterior mean of each example."""
        mean, _ = self.encode(x, labels)
        return self.decode(mean, self.check_condition(labels, len(mean)))


def _numpy(tensor):
    if hasattr(tensor, "numpy"):
        return np.asarray(tensor.numpy())
    from keras import ops

    return np.asarray(ops.convert_to_numpy(tensor))


def kl_per_dimension(mean, second):
    """Mean KL(q(z_d | x) || N(0, 1)) of each latent dimension, in nats.

    `second` is the log-variance `(n, d)` of a diagonal posterior or the
    Cholesky factor `(n, d, d)` of a full one. A full covariance does not
    split the KL by dimension; its marginals q(z_d | x) = N(mu_d, S_dd) do,
    so these marginal KLs are returned (they add up to at most the full KL,
    the difference being the correlation the marginals ignore).

    The reference is N(0, 1) whatever the model's prior: for a VampPrior or
    hierarchical model these numbers rank how much each dimension is used
    (figures sort by them) but are not the model's KL term.
    """
    mean = np.asarray(mean, "float64")
    second = np.asarray(second, "float64")
    if second.ndim == 3:
        variance = np.sum(second**2, axis=-1)  # diag(L L^T)
        log_var = np.log(variance)
        terms = mean**2 + variance - 1.0 - log_var
    else:
        terms = mean**2 + np.expm1(second) - second
    return 0.5 * terms.mean(axis=0)


def _conditional_labels(view, labels, count):
    """The labels to pass a model: the condition of a conditional one, else None
    (and labels given to an unconditional model are refused)."""
    return view.check_condition(labels, count)


def plot_samples(model, path, num_samples=32, ncols=8, seed=0, labels=None, class_names=None,
                 num_classes=None):
    """Writes a grid of decoded draws from the model's prior.

    A conditional model draws one row per class (`ncols` samples of each, the
    row named by `class_names`), or the classes in `labels` when given.

    Args:
        model: a kerasvae Keras model or a loaded kerasvae SavedModel.
        path: str. Where to write; must end in `.png`.
        num_samples: int. Number of samples of an unconditional model.
        ncols: int. Samples per row (per class for a conditional model).
        seed: int. Same seed, same picture.
        labels: sequence of int or None. Conditional models only: the
            classes to draw, one row each (default: every class).
        class_names: sequence of str or None. Row names of a conditional model.
        num_classes: int or None. Classes of a conditional SavedModel.

    Returns:
        `path`.
    """
    path = _check_path(path)
    view = ModelView(model, num_classes=num_classes)
    ncols = _check_ncols(ncols)
    if not view.conditional:
        if labels is not None:
            view.check_condition(labels, 1)  # raises: the model takes no labels
        images = view.sample(num_samples, seed=seed)
        return image_grid(images, path, ncols=ncols, title="Samples from the prior")
    if labels is None:
        if view.num_classes is None:
            raise ValueError(
                "This conditional SavedModel does not say how many classes it has: pass "
                "num_classes= or labels=."
            )
        labels = np.arange(view.num_classes)
    classes = np.atleast_1d(np.asarray(labels))
    classes = view.check_condition(classes, len(classes))
    class_names = _check_class_names(class_names, classes)
    condition = np.repeat(classes, ncols)
    images = view.sample(len(condition), seed=seed, labels=condition)
    row_labels = [class_names[c] if class_names else f"class {c}" for c in classes]
    figure = _rows_figure(images[..., 0] if images.ndim == 4 else images, ncols, row_labels,
                          title="Samples of each class")
    return _save(figure, path)


def plot_reconstructions(model, x, path, labels=None, num_classes=None):
    """Writes test images (top row) above the model's reconstructions of them."""
    path = _check_path(path)
    view = ModelView(model, num_classes=num_classes)
    x = view.check_x(x)
    condition = _conditional_labels(view, labels, len(x))
    return reconstruction_pairs(x, view.reconstruct(x, condition), path)


def plot_latent(model, x, labels, path, class_names=None, num_classes=None):
    """Writes a scatter of the posterior means of `x`, coloured by `labels`.

    A 2-D latent space is drawn as it is, a longer one projected onto its two
    principal components, a 1-D one against a random jitter (see
    `latent_scatter`). For a conditional model `labels` are also the condition.
    """
    path = _check_path(path)
    view = ModelView(model, num_classes=num_classes)
    x = view.check_x(x)
    labels = _check_labels(labels, len(x))
    mean, _ = view.encode(x, labels if view.conditional else None)
    return latent_scatter(mean, labels, path, class_names=class_names,
                          title=f"Posterior means of {len(x)} images")


def _ranked_dimensions(view, x, labels):
    mean, second = view.encode(x, _conditional_labels(view, labels, len(x)))
    kl = kl_per_dimension(mean, second)
    return np.argsort(-kl, kind="stable"), kl, mean


def plot_manifold(model, path, x=None, labels=None, grid_size=15, dims=None, label=None,
                  num_classes=None):
    """Writes the decoded 2-D latent manifold: a grid of decoded latent points.

    The grid takes Gaussian quantiles (probabilities 0.05 to 0.95) along two
    latent dimensions, as in Kingma and Welling (2014), figure 4. With
    `latent_dim == 2` these are the whole latent space. With more dimensions
    the two with the highest KL on `x` (the ones the model uses most) are
    varied and every other dimension is held at 0, the prior mean, so the
    picture is a slice, not the whole manifold; `dims=(i, j)` picks the two.
    A 1-D latent space has no 2-D manifold: that is refused (draw
    `plot_traversals` instead).

    Args:
        model: a kerasvae Keras model or a loaded kerasvae SavedModel.
        path: str. Where to write; must end in `.png`.
        x: images used to rank the dimensions by KL (needed when
            `latent_dim > 2` and `dims` is None).
        labels: the class of each image of `x` (conditional models).
        grid_size: int. Points per side.
        dims: pair of int or None. The two dimensions to vary.
        label: int or None. The class to decode (conditional models).
        num_classes: int or None. Classes of a conditional SavedModel.

    Returns:
        `path`.
    """
    path = _check_path(path)
    view = ModelView(model, num_classes=num_classes)
    grid_size = _check_positive_int(grid_size, "grid_size")
    if grid_size < 2:
        raise ValueError(f"grid_size must be at least 2. Received: grid_size={grid_size}")
    if view.latent_dim < 2:
        raise ValueError(
            "A 2-D latent manifold needs at least two latent dimensions; this model has "
            f"latent_dim={view.latent_dim}. Draw plot_traversals (one row per dimension) instead."
        )
    if dims is None:
        if view.latent_dim == 2:
            dims = (0, 1)
        else:
            if x is None:
                raise ValueError(
                    f"With latent_dim={view.latent_dim} > 2, pass x (images to rank the "
                    "dimensions by KL) or dims=(i, j), the two dimensions to vary."
                )
            order, _, _ = _ranked_dimensions(view, view.check_x(x), labels)
            dims = (int(order[0]), int(order[1]))
    dims = tuple(dims)
    if (len(dims) != 2 or dims[0] == dims[1]
            or not all(isinstance(d, (int, np.integer)) and 0 <= d < view.latent_dim for d in dims)):
        raise ValueError(
            f"dims must be two different dimensions in [0, {view.latent_dim - 1}]. "
            f"Received: dims={dims!r}"
        )
    normal = statistics.NormalDist()
    values = np.array([normal.inv_cdf(p) for p in np.linspace(0.05, 0.95, grid_size)])
    z = np.zeros((grid_size * grid_size, view.latent_dim), "float32")
    for row in range(grid_size):
        for col in range(grid_size):
            z[row * grid_size + col, dims[0]] = values[col]
            z[row * grid_size + col, dims[1]] = values[grid_size - 1 - row]  # up is positive
    condition = None
    if view.conditional:
        if label is None:
            raise ValueError(
                f"The model is conditional (num_classes={view.num_classes}): pass label=, "
                "the class to decode."
            )
        condition = np.full((len(z),), label)
    elif label is not None:
        view.check_condition([label], 1)
    images = view.decode(z, condition)
    others = "" if view.latent_dim == 2 else ", other dimensions at 0"
    title = (f"z[{dims[0]}] left to right, z[{dims[1]}] bottom to top "
             f"({values[0]:.2f} to {values[-1]:.2f}){others}")
    return image_grid(images, path, ncols=grid_size, title=title)


def plot_traversals(model, x, path, labels=None, values=None, max_dims=None, start="image",
                    num_classes=None):
    """Writes one row per latent dimension, that dimension swept, the others held.

    Rows are sorted by the KL of each dimension on `x` (highest first, see
    `kl_per_dimension`), and each row is named with its dimension and KL, so
    the dimensions the model uses come first and collapsed ones (KL near 0,
    unchanged images) last.

    Args:
        model: a kerasvae Keras model or a loaded kerasvae SavedModel.
        x: images; their KL ranks the dimensions and the first one is the start.
        path: str. Where to write; must end in `.png`.
        labels: the class of each image of `x` (conditional models).
        values: sequence of float or None. The values swept (default 9 values
            from -3 to 3, prior standard deviations).
        max_dims: int or None. Draw only the first `max_dims` rows.
        start: `"image"` (hold the other dimensions at the posterior mean of
            `x[0]`) or `"zero"` (at 0, the prior mean).
        num_classes: int or None. Classes of a conditional SavedModel.

    Returns:
        `path`.
    """
    path = _check_path(path)
    view = ModelView(model, num_classes=num_classes)
    x = view.check_x(x)
    if start not in ("image", "zero"):
        raise ValueError(f"start must be 'image' or 'zero'. Received: start={start!r}")
    values = np.linspace(-3.0, 3.0, 9) if values is None else np.asarray(values, "float64")
    if values.ndim != 1 or len(values) < 2 or not np.all(np.isfinite(values)):
        raise ValueError(
            f"values must be at least two finite numbers. Received: values={values!r}"
        )
    order, kl, mean = _ranked_dimensions(view, x, labels)
    if max_dims is not None:
        order = order[: _check_positive_int(max_dims, "max_dims")]
    base = mean[0] if start == "image" else np.zeros(view.latent_dim)
    z = np.repeat(base[None], len(order) * len(values), axis=0)
    for row, dim in enumerate(order):
        z[row * len(values) : (row + 1) * len(values), dim] = values
    condition = None
    if view.conditional:
        first = _conditional_labels(view, labels, len(x))[0]
        condition = np.full((len(z),), first)
    images = view.decode(z, condition)
    images = images[..., 0] if images.ndim == 4 else images
    row_labels = [f"z[{d}]  KL {kl[d]:.2f}" for d in order]
    held = "the first image's code" if start == "image" else "0"
    title = f"Each dimension from {values[0]:g} to {values[-1]:g}, others at {held}"
    if len(order) < view.latent_dim:
        title = (f"The {len(order)} of {view.latent_dim} dimensions with the highest KL, "
                 f"from {values[0]:g} to {values[-1]:g}, others at {held}")
    return _save(_rows_figure(images, len(values), row_labels, title=title), path)


def plot_interpolation(model, x_start, x_end, path, steps=8, labels=None, num_classes=None):
    """Writes rows that walk in a straight line between two images' latent codes.

    Each row shows the first image, `steps` decoded points from its posterior
    mean to the second image's (both ends included) and the second image.

    Args:
        model: a kerasvae Keras model or a loaded kerasvae SavedModel.
        x_start: one image or a batch of `n` images.
        x_end: as many images, the other ends.
        path: str. Where to write; must end in `.png`.
        steps: int >= 2. Decoded points per row.
        labels: the class of each pair (conditional models; both ends are
            decoded with it).
        num_classes: int or None. Classes of a conditional SavedModel.

    Returns:
        `path`.
    """
    path = _check_path(path)
    view = ModelView(model, num_classes=num_classes)
    x_start = view.check_x(x_start, "x_start")
    x_end = view.check_x(x_end, "x_end")
    if len(x_start) != len(x_end):
        raise ValueError(
            "x_start and x_end must hold as many images. Received: "
            f"x_start.shape={x_start.shape}, x_end.shape={x_end.shape}"
        )
    steps = _check_positive_int(steps, "steps")
    if steps < 2:
        raise ValueError(f"steps must be at least 2. Received: steps={steps}")
    condition = _conditional_labels(view, labels, len(x_start))
    z_start, _ = view.encode(x_start, condition)
    z_end, _ = view.encode(x_end, condition)
    t = np.linspace(0.0, 1.0, steps)[None, :, None]
    z = ((1.0 - t) * z_start[:, None] + t * z_end[:, None]).reshape(-1, view.latent_dim)
    decoded = view.decode(z, None if condition is None else np.repeat(condition, steps))
    decoded = decoded.reshape((len(x_start), steps) + view.data_shape)
    rows = np.concatenate([x_start[:, None], decoded, x_end[:, None]], axis=1)
    rows = rows.reshape((-1,) + view.data_shape)
    rows = _check_images(rows, "images")
    row_labels = [f"pair {i + 1}" for i in range(len(x_start))]
    title = "Image, straight line between the posterior means, image"
    return _save(_rows_figure(rows, steps + 2, row_labels, title=title), path)


def plot_kl_per_dimension(model, x, path, labels=None, num_classes=None):
    """Writes bars of the mean KL(q(z_d | x) || N(0, 1)) of each dimension on `x`."""
    path = _check_path(path)
    view = ModelView(model, num_classes=num_classes)
    x = view.check_x(x)
    _, kl, mean = _ranked_dimensions(view, x, labels)
    return kl_bars(kl, path, title=f"KL per dimension on {len(x)} images, "
                                   f"total {kl.sum():.2f} nats")


# === Everything ===
FIGURES = (
    "samples", "reconstructions", "latent", "manifold", "traversals", "interpolation",
    "kl_per_dimension", "training_curves",
)


def write_figures(model, folder, x, labels, history=None, class_names=None, seed=0,
                  num_classes=None, figures=FIGURES):
    """Writes every figure that applies into `folder`, one `<name>.png` each.

    Args:
        model: a kerasvae Keras model or a loaded kerasvae SavedModel.
        folder: str. Where the PNGs go (made when missing).
        x: test images (at least 2; the scatter uses up to 2,000 of them).
        labels: their classes (colours of the scatter; the condition of a
            conditional model).
        history: training history for the curves (dict, History, CSV path) or
            None to skip them.
        class_names: names of the classes, e.g. `kerasvae.data.CLASS_NAMES`.
        seed: int. Seed of the samples.
        num_classes: int or None. Classes of a conditional SavedModel.
        figures: the names to draw, from `FIGURES`.

    Returns:
        `(written, skipped)`: `{name: path}` of the PNGs written and
        `{name: reason}` of the figures that do not apply to this model.
    """
    unknown = [f for f in figures if f not in FIGURES]
    if unknown:
        raise ValueError(f"Unknown figure(s) {unknown}. Expected names from {list(FIGURES)}")
    view = ModelView(model, num_classes=num_classes)
    x = view.check_x(x)
    if len(x) < 2:
        raise ValueError(f"x must hold at least two images. Received: x.shape={x.shape}")
    labels = _check_labels(labels, len(x))
    condition = labels if view.conditional else None
    first = None if condition is None else condition[:1]

    def target(name):
        return os.path.join(os.fspath(folder), f"{name}.png")

    pairs = min(4, len(x) // 2)
    starts, ends = np.arange(pairs), np.arange(pairs, 2 * pairs)
    if condition is not None:
        # A conditional model decodes a whole row with one label: pair each
        # image with the next one of its class.
        ends = np.array([
            next((j for j in range(i + 1, len(x)) if condition[j] == condition[i]), i)
            for i in starts
        ])
    draw = {
        "samples": lambda: plot_samples(view, target("samples"), seed=seed,
                                        class_names=class_names),
        "reconstructions": lambda: plot_reconstructions(view, x[:10], target("reconstructions"),
                                                        labels=None if condition is None
                                                        else condition[:10]),
        "latent": lambda: plot_latent(view, x[:2000], labels[:2000], target("latent"),
                                      class_names=class_names),
        "manifold": lambda: plot_manifold(view, target("manifold"), x=x[:2000],
                                          labels=None if condition is None else condition[:2000],
                                          label=None if first is None else int(first[0])),
        "traversals": lambda: plot_traversals(view, x[:2000], target("traversals"),
                                              labels=None if condition is None
                                              else condition[:2000]),
        "interpolation": lambda: plot_interpolation(
            view, x[starts], x[ends], target("interpolation"),
            labels=None if condition is None else condition[starts]),
        "kl_per_dimension": lambda: plot_kl_per_dimension(
            view, x[:2000], target("kl_per_dimension"),
            labels=None if condition is None else condition[:2000]),
        "training_curves": lambda: training_curves(history, target("training_curves")),
    }
    written, skipped = {}, {}
    for name in figures:
        if name == "manifold" and view.latent_dim < 2:
            skipped[name] = (f"a 1-D latent space (latent_dim={view.latent_dim}) has no 2-D "
                             "manifold; traversals.png shows its one dimension")
            continue
        if name == "training_curves" and history is None:
            skipped[name] = "no training history given"
            continue
        written[name] = draw[name]()
    return written, skipped
