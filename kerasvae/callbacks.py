"""Training callbacks."""

import os

import keras
import numpy as np


def atomic_save_model(model, path):
    """Saves a `.keras` file so that `path` always holds a complete model."""
    tmp = f"{path}.tmp-{os.getpid()}.keras"
    try:
        model.save(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


class ImageSnapshots(keras.callbacks.Callback):
    """Draws reconstructions and prior samples every few epochs while a model trains.

    Every `every` epochs (and after the last one, when `fit` ends between two
    snapshots) it writes `reconstructions_epoch_<E>.png` and
    `samples_epoch_<E>.png` into `directory` with `kerasvae.plotting` (each
    PNG written atomically). With `log_dir` the same pictures also go to
    TensorBoard as image summaries (tags `reconstructions` and `samples`,
    step = epoch number), the PNG bytes themselves, in an event file written
    with TensorBoard's own writer (`tensorboard.summary.writer`), not with
    TensorFlow ops: it works the same on Keras/TensorFlow and Keras/JAX. The
    samples use the same seed each time, so successive snapshots show the
    same prior draws as the model learns.

    Args:
        directory: str. Folder for the PNGs (made when missing).
        every: int. Epochs between snapshots.
        images: array of shape `(n, *data_shape)`, values in [0, 1]: the images
            to reconstruct (a few, e.g. `x_test[:10]`).
        num_samples: int. Prior samples per snapshot; a conditional model
            draws one row per class instead, of `min(8, num_samples)` each.
        log_dir: str or None. TensorBoard log folder (e.g. the one given to
            `keras.callbacks.TensorBoard`); images go to `<log_dir>/images`.
        labels: array of shape `(n,)` or None. Classes of `images`, needed by a
            conditional model.
        seed: int. Seed of the samples.

    Example:

    ```python
    snapshots = kerasvae.callbacks.ImageSnapshots(
        "runs/example/snapshots", every=5, images=x_test[:10], log_dir="runs/example/logs"
    )
    vae.fit(x_train, epochs=30, callbacks=[snapshots])
    ```
    """

    def __init__(self, directory, every=1, images=None, num_samples=16, log_dir=None,
                 labels=None, seed=0):
        super().__init__()
        for name, value in (("every", every), ("num_samples", num_samples)):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive integer. Received: {name}={value!r}")
        if images is None:
            raise ValueError("images must be given: the images to reconstruct. Received: None")
        self.directory = os.fspath(directory)
        self.every = every
        self.images = np.asarray(images, "float32")
        self.num_samples = num_samples
        self.log_dir = None if log_dir is None else os.fspath(log_dir)
        self.labels = None if labels is None else np.asarray(labels)
        self.seed = seed
        self.written = []  # paths of every PNG written, in order
        self._writer = None
        self._last_epoch = None

    def on_epoch_end(self, epoch, logs=None):
        self._last_epoch = epoch
        if (epoch + 1) % self.every == 0:
            self.snapshot(epoch + 1)

    def on_train_end(self, logs=None):
        if self._last_epoch is not None and (self._last_epoch + 1) % self.every != 0:
            self.snapshot(self._last_epoch + 1)
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def snapshot(self, epoch):
        """Writes the pictures of `epoch`; returns their paths."""
        from kerasvae import plotting

        view = plotting.ModelView(self.model)
        condition = self.labels if view.conditional else None
        reconstructions = plotting.plot_reconstructions(
            view,
            self.images,
            os.path.join(self.directory, f"reconstructions_epoch_{epoch:04d}.png"),
            labels=condition,
        )
        samples = plotting.plot_samples(
            view,
            os.path.join(self.directory, f"samples_epoch_{epoch:04d}.png"),
            num_samples=self.num_samples,
            ncols=min(8, self.num_samples),
            seed=self.seed,
        )
        paths = [reconstructions, samples]
        self.written.extend(paths)
        if self.log_dir is not None:
            self._summarize(epoch, {"reconstructions": reconstructions, "samples": samples})
        return paths

    def _summarize(self, epoch, pictures):
        if self._writer is None:
            from tensorboard.summary.writer.event_file_writer import EventFileWriter

            self._writer = EventFileWriter(os.path.join(self.log_dir, "images"))
        for tag, path in pictures.items():
            with open(path, "rb") as f:
                self._writer.add_event(_image_event(tag, f.read(), epoch))
        self._writer.flush()


def _png_size(data):
    """`(width, height)` from a PNG's IHDR chunk."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("Not a PNG file: the signature bytes are missing.")
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def _image_event(tag, png, step):
    """A TensorBoard event holding one PNG as an image summary.

    Built from TensorBoard's own protocol buffers, in the layout its image
    plugin reads (a string tensor `[width, height, png]`), so neither
    TensorFlow ops nor the TensorFlow backend are involved.
    """
    import time

    from tensorboard.compat.proto import event_pb2, summary_pb2, tensor_pb2
    from tensorboard.compat.proto import tensor_shape_pb2, types_pb2
    from tensorboard.plugins.image import metadata

    width, height = _png_size(png)
    tensor = tensor_pb2.TensorProto(
        dtype=types_pb2.DT_STRING,
        string_val=[str(width).encode(), str(height).encode(), png],
        tensor_shape=tensor_shape_pb2.TensorShapeProto(
            dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=3)]
        ),
    )
    value = summary_pb2.Summary.Value(
        tag=tag, tensor=tensor, metadata=metadata.create_summary_metadata(tag, "")
    )
    return event_pb2.Event(
        wall_time=time.time(), step=int(step), summary=summary_pb2.Summary(value=[value])
    )
