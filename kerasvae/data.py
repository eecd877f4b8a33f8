"""Fashion-MNIST from local IDX files, binarization and tf.data pipelines.

Nothing is downloaded. The loader looks for the four gzip IDX files in, in
order: the `path` argument (alone, when given), `$KERASVAE_DATA_DIR`, the Debian package's folder
(`apt-get install dataset-fashion-mnist`) and Keras's cache folder
(`~/.keras/datasets/fashion-mnist`).
"""

import gzip
import os
import struct
import zlib

import numpy as np

DEBIAN_DIR = "/usr/share/datasets/fashion-mnist"
KERAS_CACHE_DIR = os.path.join(os.path.expanduser("~"), ".keras", "datasets", "fashion-mnist")
FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}
CLASS_NAMES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
_HOW_TO_GET = (
    "Install the Debian package (sudo apt-get install dataset-fashion-mnist, which "
    f"puts them in {DEBIAN_DIR}), or put the four files {sorted(FILES.values())} in a "
    "folder and pass path=<folder> or set KERASVAE_DATA_DIR."
)


def candidate_dirs(path=None):
    """The folders searched for the files, in order."""
    dirs = [path, os.environ.get("KERASVAE_DATA_DIR"), DEBIAN_DIR, KERAS_CACHE_DIR]
    return [os.fspath(d) for d in dirs if d]


def find_fashion_mnist(path=None):
    """Returns the first folder that holds all four files.

    A `path` given explicitly is the only folder looked at.
    """
    if path is not None and not os.path.isdir(path):
        raise FileNotFoundError(f"Fashion-MNIST folder does not exist. Received: path={path!r}")
    searched = [os.fspath(path)] if path is not None else candidate_dirs()
    for folder in searched:
        if all(os.path.isfile(os.path.join(folder, f)) for f in FILES.values()):
            return folder
    raise FileNotFoundError(
        f"Fashion-MNIST files not found. Searched: {searched}. {_HOW_TO_GET}"
    )


def read_idx(filename):
    """Reads one gzip IDX file into a NumPy array, checking its header."""
    if not os.path.isfile(filename):
        raise FileNotFoundError(f"IDX file not found: {filename!r}. {_HOW_TO_GET}")
    try:
        with gzip.open(filename, "rb") as f:
            data = f.read()
    except (OSError, EOFError, zlib.error) as e:
        raise ValueError(f"Corrupt IDX file {filename!r}: cannot gunzip ({e}). {_HOW_TO_GET}") from e
    if len(data) < 4:
        raise ValueError(f"Corrupt IDX file {filename!r}: {len(data)} bytes, no header.")
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08 or ndim not in (1, 3):
        raise ValueError(
            f"Not an unsigned-byte IDX file: {filename!r} (magic bytes {data[:4].hex()}, "
            "expected 00000801 or 00000803)."
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(
            f"Corrupt IDX file {filename!r}: {len(data)} bytes, too short for the "
            f"{header}-byte header of a {ndim}-dimensional array. {_HOW_TO_GET}"
        )
    shape = struct.unpack(f">{ndim}I", data[4:header])
    expected = header + int(np.prod(shape))
    if len(data) != expected:
        raise ValueError(
            f"Corrupt IDX file {filename!r}: header says shape {shape} "
            f"({expected} bytes) but the file has {len(data)} bytes. {_HOW_TO_GET}"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def load_fashion_mnist(path=None, flatten=False):
    """Loads Fashion-MNIST as float32 images in [0, 1] and int labels.

    Args:
        path: str or None. Folder holding the four gzip IDX files; when `None`
            the default folders are searched (see the module docstring).
        flatten: bool. Return images as `(n, 784)` instead of `(n, 28, 28, 1)`.

    Returns:
        `((x_train, y_train), (x_test, y_test))` with 60,000 and 10,000 examples.

    Raises:
        FileNotFoundError: the files are missing (the message says how to get them).
        ValueError: a file is corrupt or the images and labels disagree.
    """
    folder = find_fashion_mnist(path)
    arrays = {key: read_idx(os.path.join(folder, name)) for key, name in FILES.items()}
    splits = []
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
            raise ValueError(
                f"Fashion-MNIST {split} files disagree: images {images.shape}, "
                f"labels {labels.shape} (in {folder})."
            )
        x = images.astype("float32") / 255.0
        x = x.reshape(len(x), -1) if flatten else x[..., None]
        splits.append((x, labels.astype("int64")))
    return tuple(splits)


def binarize(x, seed=None):
    """Dynamic binarization: each pixel becomes 1 with probability its grey level.

    Args:
        x: array in [0, 1].
        seed: int, `np.random.Generator` or None.
    """
    x = np.asarray(x)
    if x.size and (x.min() < 0 or x.max() > 1):
        raise ValueError(
            f"binarize needs values in [0, 1]. Received values in [{x.min():g}, {x.max():g}]"
        )
    rng = np.random.default_rng(seed)
    return (rng.random(x.shape, dtype=np.float32) < x).astype("float32")


def make_dataset(x, batch_size=128, shuffle=True, dynamic_binarization=False, seed=None, labels=None):
    """A batched, prefetched `tf.data.Dataset` of `x` (or `(x, labels)`) for `fit`.

    With `dynamic_binarization=True` a fresh binary sample of each image is
    drawn every epoch (Salakhutdinov and Murray, 2008), the usual protocol for
    Bernoulli likelihoods on grey-level images. With `labels` (for the
    conditional family) each element is `(images, labels)`.
    """
    import tensorflow as tf

    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
        raise ValueError(f"batch_size must be a positive integer. Received: batch_size={batch_size!r}")
    x = np.asarray(x, dtype="float32")
    if labels is not None:
        labels = np.asarray(labels)
        if labels.shape[:1] != x.shape[:1]:
            raise ValueError(
                f"labels must have one entry per image. Received {len(x)} images and "
                f"labels of shape {labels.shape}"
            )
    # Images and labels travel together, so one shuffle keeps them paired.
    ds = tf.data.Dataset.from_tensor_slices(x if labels is None else (x, labels))
    if shuffle:
        ds = ds.shuffle(min(len(x), 60_000), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    if dynamic_binarization:
        # One stateless seed per batch from a stream that is redrawn every
        # epoch: a new binary sample each epoch, yet repeatable for a `seed`
        # and safe under parallel map (an op-level seed in a map function
        # would give the same draw every epoch).
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)

        def draw(images, s):
            uniform = tf.random.stateless_uniform(tf.shape(images), seed=tf.stack([s, tf.constant(0, tf.int64)]))
            return tf.cast(uniform < images, tf.float32)

        if labels is None:
            ds = tf.data.Dataset.zip((ds, seeds)).map(draw, num_parallel_calls=tf.data.AUTOTUNE)
        else:
            ds = tf.data.Dataset.zip((ds, seeds)).map(
                lambda batch, s: (draw(batch[0], s), batch[1]), num_parallel_calls=tf.data.AUTOTUNE
            )
    # tf.data's autotuning runs a model thread per iterator, and in TF 2.21
    # deleting the iterator (Keras makes a new one each epoch) waits until that
    # thread's timed sleep ends: a fully idle pause of up to several seconds
    # at the end of some epochs (benchmarks/RESULTS.md, "tf.data autotuning").
    # Without it the AUTOTUNE values above fall back to tf.data's static
    # defaults; the elements are the same.
    options = tf.data.Options()
    options.autotune.enabled = False
    return ds.prefetch(tf.data.AUTOTUNE).with_options(options)
