"""A training run that can be killed with SIGKILL at a chosen instant.

Run by tests/test_crash_safety.py as
`python -m tests.crash_runs WORK_DIR KILL [CALLBACK]` on the active Keras
backend (the test uses `weights_write` and resumes in its own process; the
other modes are for runs by hand, e.g. to watch Keras's own callback fail). It trains
the tiny VAE of tests/families.py for `EPOCHS` epochs with a backup callback
in `WORK_DIR/backup` and kills itself at `KILL`:

- `none`: no kill; at the end it also trains a fresh model for `EPOCHS`
  epochs without any callback and writes both final states to
  `WORK_DIR/final.json`.
- `mid_epoch:E:B`: after batch B of epoch E.
- `weights_write:E`: inside the weights write of the backup at the end of
  epoch E (the HDF5 file is open and partly written).
- `between_writes:E`: after the weights of that backup are in place, before
  its metadata is written.
- `metadata_write:E`: while the metadata of that backup is being written.

Each backup that completes is witnessed: `WORK_DIR/witness-<n>.json` holds
the state backed up after n epochs, and a run that restores writes the state
it restored to `WORK_DIR/restored-<pid>.json`. `CALLBACK` is `kerasvae`
(`kerasvae.callbacks_safety.BackupAndRestore`, the default) or `keras`
(`keras.callbacks.BackupAndRestore`, for comparison).
"""

import builtins
import json
import os
import signal
import sys

import h5py
import keras
import numpy as np

import kerasvae
from kerasvae import callbacks_safety
from tests import families

EPOCHS = 3
NUM_EXAMPLES = 16
BATCH_SIZE = 4

# Set from the command line in main(); importing this module changes nothing.
WORK_DIR = KIND = CALLBACK = None
WHERE = []
SAVING_EPOCH = [None]  # the epoch whose end-of-epoch backup is being written


def die():
    os.kill(os.getpid(), signal.SIGKILL)


def saving_target():
    return KIND not in ("none", "mid_epoch") and SAVING_EPOCH[0] == WHERE[0]


# === Kill points inside the writes (public functions, patched in this process only) ===
_close = h5py.File.close


def close(self):
    writing = self.id.valid and self.mode != "r" and str(self.filename).endswith(".weights.h5")
    if writing and saving_target() and KIND == "weights_write":
        die()  # before HDF5 flushes its buffers and closes the file
    _close(self)
    if writing and saving_target() and KIND == "between_writes" and CALLBACK == "keras":
        die()  # Keras writes the weights in place: they are now complete


_replace = os.replace


def replace(src, dst):
    if saving_target() and KIND == "metadata_write" and str(dst).endswith("training_metadata.json"):
        die()  # the temporary metadata file is written, not yet renamed
    _replace(src, dst)
    if saving_target() and KIND == "between_writes" and str(dst).endswith(".weights.h5"):
        die()


_open = builtins.open


def open_(file, mode="r", *args, **kwargs):
    f = _open(file, mode, *args, **kwargs)
    if saving_target() and KIND == "metadata_write" and "w" in mode and str(file).endswith(
        "training_metadata.json"
    ):
        # Keras writes its metadata in place: die halfway through the text.
        write = f.write

        def half_write(text):
            write(text[: len(text) // 2])
            f.flush()
            die()

        f.write = half_write
    return f




# === State dumps ===
def state(model):
    def arrays(variables):
        return [np.asarray(keras.ops.convert_to_numpy(v.value)).tolist() for v in variables]

    return {
        "weights": arrays(model.trainable_weights),
        "optimizer": arrays(model.optimizer.variables),
        "kl_step": int(keras.ops.convert_to_numpy(model.kl_step.value)),
        "seed_state": np.asarray(
            keras.ops.convert_to_numpy(model.sampling.seed_generator.state.value)
        ).tolist(),
    }


def write_json(path, data):
    with _open(path + ".tmp", "w") as f:
        json.dump(data, f)
    _replace(path + ".tmp", path)


class Phase(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        SAVING_EPOCH[0] = epoch

    def on_epoch_begin(self, epoch, logs=None):
        SAVING_EPOCH[0] = None


class Witness(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        restored = self.model._initial_epoch
        if restored:
            data = dict(state(self.model), epochs_done=int(restored))
            write_json(os.path.join(WORK_DIR, f"restored-{os.getpid()}.json"), data)

    def on_epoch_end(self, epoch, logs=None):
        write_json(os.path.join(WORK_DIR, f"witness-{epoch + 1}.json"), state(self.model))


class Killer(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if KIND == "mid_epoch" and [self.epoch, batch] == WHERE:
            die()


def build():
    keras.utils.set_random_seed(1)
    model = families.build("VAE", kl_schedule=kerasvae.schedules.LinearWarmup(10))
    # One step per call, so that the killer sees every batch end (with the
    # default steps_per_execution on TF it would see one per 32 steps).
    model.compile(optimizer=keras.optimizers.Adam(0.01), steps_per_execution=1)
    return model


def main():
    global WORK_DIR, KIND, CALLBACK, WHERE
    WORK_DIR, kill = sys.argv[1], sys.argv[2]
    CALLBACK = sys.argv[3] if len(sys.argv) > 3 else "kerasvae"
    KIND, *where = kill.split(":")
    WHERE = [int(w) for w in where]
    h5py.File.close = close
    os.replace = replace
    builtins.open = open_
    backup_dir = os.path.join(WORK_DIR, "backup")
    x = families.family_data(build(), NUM_EXAMPLES)[0]
    if CALLBACK == "keras":
        backup = keras.callbacks.BackupAndRestore(backup_dir, delete_checkpoint=False)
    else:
        backup = callbacks_safety.BackupAndRestore(backup_dir, delete_checkpoint=False)
    model = build()
    model.fit(
        x,
        epochs=EPOCHS,
        batch_size=BATCH_SIZE,
        shuffle=False,
        verbose=0,
        callbacks=[Phase(), backup, Witness(), Killer()],
    )
    reference = build()
    reference.fit(x, epochs=EPOCHS, batch_size=BATCH_SIZE, shuffle=False, verbose=0)
    write_json(
        os.path.join(WORK_DIR, "final.json"), {"resumed": state(model), "reference": state(reference)}
    )


if __name__ == "__main__":
    main()
