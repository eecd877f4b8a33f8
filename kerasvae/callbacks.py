"""Training callbacks."""

import json
import os

import keras

from kerasvae.io_utils import atomic_write_text


def atomic_save_model(model, path):
    """Saves a `.keras` file so that `path` always holds a complete model."""
    tmp = f"{path}.tmp-{os.getpid()}.keras"
    try:
        model.save(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


class ResumableCheckpoint(keras.callbacks.Callback):
    """Saves the whole model (weights and optimizer state) after every epoch.

    Each save goes to a temporary file that is renamed over the checkpoint, so
    a run killed at any moment leaves the previous complete checkpoint. A
    `state.json` beside it records the number of finished epochs; `resume`
    reads both back so training continues where it stopped.

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
        atomic_save_model(self.model, self.checkpoint_path)
        state = {"epochs_done": epoch + 1, "logs": {k: float(v) for k, v in (logs or {}).items()}}
        atomic_write_text(self.state_path, json.dumps(state, indent=2))

    def resume(self, model):
        """Returns `(model, initial_epoch)`: the checkpoint if there is one."""
        if not (os.path.isfile(self.checkpoint_path) and os.path.isfile(self.state_path)):
            return model, 0
        with open(self.state_path) as f:
            epochs_done = int(json.load(f)["epochs_done"])
        restored = keras.saving.load_model(self.checkpoint_path, safe_mode=True)
        return restored, epochs_done
