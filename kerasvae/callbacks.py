"""Training callbacks."""

import json
import os
import zipfile

import keras
import numpy as np
from keras import ops

from kerasvae.io_utils import atomic_write_text

STATE_ENTRY = "kerasvae_state.json"


def atomic_save_model(model, path, extra_entries=None):
    """Saves a `.keras` file so that `path` always holds a complete model.

    `extra_entries` (name -> text) are added to the file's zip archive before
    it is renamed into place, so they are written in the same atomic step as
    the weights (Keras ignores entries it does not know when loading).
    """
    tmp = f"{path}.tmp-{os.getpid()}.keras"
    try:
        model.save(tmp)
        if extra_entries:
            with zipfile.ZipFile(tmp, "a") as archive:
                for name, text in extra_entries.items():
                    archive.writestr(name, text)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def read_model_entry(path, name):
    """The text of entry `name` of a `.keras` file, or None if it has none."""
    with zipfile.ZipFile(path) as archive:
        if name not in archive.namelist():
            return None
        return archive.read(name).decode("utf-8")


def _seed_generators(model):
    """{layer path: SeedGenerator} of every random layer, at any depth.

    Keras does not save seed states in `.keras` files; keyed by layer names,
    which a saved model keeps, unlike variable paths.
    """
    found = {}

    def walk(layer, prefix):
        for sub in getattr(layer, "layers", []):
            name = prefix + sub.name
            generator = getattr(sub, "seed_generator", None)
            if isinstance(generator, keras.random.SeedGenerator):
                found[name] = generator
            walk(sub, name + "/")

    walk(model, "")
    return found


class ResumableCheckpoint(keras.callbacks.Callback):
    """Saves the whole model (weights and optimizer state) after every epoch.

    Each save goes to a temporary file that is renamed over the checkpoint, so
    a run killed at any moment leaves the previous complete checkpoint. The
    training state (the number of finished epochs and the seed state of every
    random layer, which `.keras` files do not hold) is stored inside the
    checkpoint file, so the weights and the epoch count are replaced together:
    no kill can leave one ahead of the other. `state.json` beside it is a
    readable copy, written afterwards; `resume` reads the checkpoint's own.

    Args:
        directory: str. Folder for `checkpoint.keras` and `state.json`.

    Example:

    ```python
    ckpt = kerasvae.callbacks.ResumableCheckpoint("runs/mlp")
    model, initial_epoch = ckpt.resume(model)
    model.fit(x, epochs=30, initial_epoch=initial_epoch, callbacks=[ckpt])
    ```
    """

    def __init__(self, directory):
        super().__init__()
        self.directory = os.fspath(directory)
        self.checkpoint_path = os.path.join(self.directory, "checkpoint.keras")
        self.state_path = os.path.join(self.directory, "state.json")

    def on_epoch_end(self, epoch, logs=None):
        os.makedirs(self.directory, exist_ok=True)
        state = {
            "epochs_done": epoch + 1,
            "logs": {k: float(v) for k, v in (logs or {}).items()},
            "seed_states": {
                name: [int(v) for v in ops.convert_to_numpy(generator.state)]
                for name, generator in _seed_generators(self.model).items()
            },
        }
        text = json.dumps(state, indent=2)
        atomic_save_model(self.model, self.checkpoint_path, extra_entries={STATE_ENTRY: text})
        atomic_write_text(self.state_path, text)

    def read_state(self):
        """The state saved with the checkpoint, or None without a checkpoint.

        A checkpoint written before the state moved into it falls back on
        `state.json`.
        """
        if not os.path.isfile(self.checkpoint_path):
            return None
        text = read_model_entry(self.checkpoint_path, STATE_ENTRY)
        if text is None:
            if not os.path.isfile(self.state_path):
                return None
            with open(self.state_path) as f:
                text = f.read()
        return json.loads(text)

    def resume(self, model):
        """Returns `(model, initial_epoch)`: the checkpoint if there is one.

        The returned model has the checkpoint's weights, optimizer state and
        seed states, so training continues as if it had not stopped.
        """
        state = self.read_state()
        if state is None:
            return model, 0
        restored = keras.saving.load_model(self.checkpoint_path, safe_mode=True)
        generators = _seed_generators(restored)
        for name, value in state.get("seed_states", {}).items():
            if name in generators:
                variable = generators[name].state
                variable.assign(np.asarray(value, dtype=keras.backend.standardize_dtype(variable.dtype)))
        return restored, int(state["epochs_done"])


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
