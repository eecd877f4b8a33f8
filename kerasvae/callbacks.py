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
