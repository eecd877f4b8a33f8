"""Crash safety: SIGKILL, resume, end where an uninterrupted run ends.

The killed run is a real subprocess (tests/crash_runs.py) on TensorFlow,
killed with SIGKILL inside the weights write of a backup (the HDF5 file open
and partly written); the restart, in this process, resumes from the previous
backup. Each process costs seconds of imports, so there is one kill: the
backup's files are written by backend-neutral code, and a restart from a
backup (the state restored, on TF and on JAX) is also checked after a stop in
process. The guarded effects: a restart that repeats an epoch, loses the
optimizer's moments, restarts the KL schedule or the sampler's noise ends
visibly elsewhere (Adam at 1e-2 moves weights by ~1e-2 per step), so the
resumed run must match the uninterrupted one to float32 rounding.
"""

import json
import os
import signal
import subprocess
import sys

import h5py
import keras
import numpy as np
import pytest

import kerasvae
from kerasvae import callbacks_safety
from tests import crash_runs, families
from tests.helpers import to_numpy

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Same process type, same ops, same order: resumed and uninterrupted runs
# agree to rounding; a repeated epoch or fresh noise moves weights by ~1e-2.
ATOL = 1e-5


def _run(work_dir, kill, callback="kerasvae"):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run(
        [sys.executable, "-m", "tests.crash_runs", str(work_dir), kill, callback],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


def _metadata(work_dir):
    with open(os.path.join(work_dir, "backup", callbacks_safety.METADATA_FILE)) as f:
        return json.load(f)


def _load(path):
    with open(path) as f:
        return json.load(f)


def _assert_same_state(a, b, what):
    for key in ("weights", "optimizer"):
        assert len(a[key]) == len(b[key])
        for i, (u, v) in enumerate(zip(a[key], b[key])):
            np.testing.assert_allclose(u, v, atol=ATOL, rtol=0, err_msg=f"{what}: {key}[{i}]")
    assert a["kl_step"] == b["kl_step"], what
    assert a["seed_state"] == b["seed_state"], what


class _Snapshots(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.states = {}

    def on_train_begin(self, logs=None):
        self.states["start"] = crash_runs.state(self.model)

    def on_epoch_end(self, epoch, logs=None):
        self.states[epoch + 1] = crash_runs.state(self.model)


@pytest.fixture(scope="module")
def reference():
    """`(x, {epochs: state})` of one uninterrupted run of tests/crash_runs.py's model."""
    model = crash_runs.build()
    x = families.family_data(model, crash_runs.NUM_EXAMPLES)[0]
    snapshots = _Snapshots()
    model.fit(x, callbacks=[snapshots], **_FIT)
    return x, snapshots.states


_FIT = dict(epochs=crash_runs.EPOCHS, batch_size=crash_runs.BATCH_SIZE, shuffle=False, verbose=0)


def _resume(x, backup_dir):
    """A restart in this process: a fresh model, the same `fit` with the backup."""
    model = crash_runs.build()
    snapshots = _Snapshots()
    history = model.fit(
        x, callbacks=[callbacks_safety.BackupAndRestore(backup_dir), snapshots], **_FIT
    )
    return model, snapshots.states["start"], len(history.history["loss"])


@pytest.mark.requires_tensorflow
def test_a_run_killed_inside_a_backup_write_resumes_and_ends_where_an_uninterrupted_run_ends(
    tmp_path, reference
):
    x, states = reference
    result = _run(tmp_path, "weights_write:2")
    assert result.returncode == -signal.SIGKILL, (result.returncode, result.stderr[-3000:])
    # The backup at the end of epoch 3 was cut inside its HDF5 write: the
    # metadata still names the complete backup of epoch 2, and what the cut
    # write left beside it is a temporary file.
    metadata = _metadata(tmp_path)
    assert metadata["epoch"] == 2
    others = sorted(set(os.listdir(tmp_path / "backup")) - {metadata["weights"], callbacks_safety.METADATA_FILE})
    assert os.path.isfile(tmp_path / "backup" / metadata["weights"])
    assert others and all(f.startswith(".tmp-") for f in others), others
    _assert_same_state(_load(tmp_path / "witness-2.json"), states[2], "the killed run, epoch 2")
    resumed, restored, epochs_run = _resume(x, tmp_path / "backup")
    assert epochs_run == crash_runs.EPOCHS - 2
    _assert_same_state(restored, states[2], "the state restored")
    _assert_same_state(crash_runs.state(resumed), states[crash_runs.EPOCHS], "end of the resumed run")
    assert states[crash_runs.EPOCHS]["kl_step"] == crash_runs.EPOCHS * crash_runs.NUM_EXAMPLES // crash_runs.BATCH_SIZE


def test_a_stopped_run_resumes_where_an_uninterrupted_run_would_be(tmp_path, reference):
    """In process, on the active backend: the backup restores the whole training state."""
    x, states = reference

    class Stop(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 0:
                raise KeyboardInterrupt  # what Ctrl-C raises: the backup of epoch 1 is written

    backup = callbacks_safety.BackupAndRestore(tmp_path / "backup")
    with pytest.raises(KeyboardInterrupt):
        crash_runs.build().fit(x, callbacks=[backup, Stop()], **_FIT)
    assert _metadata(tmp_path)["epoch"] == 1
    resumed, restored, epochs_run = _resume(x, tmp_path / "backup")
    assert epochs_run == crash_runs.EPOCHS - 1  # the first epoch is not repeated
    _assert_same_state(restored, states[1], "the state restored")
    _assert_same_state(crash_runs.state(resumed), states[crash_runs.EPOCHS], "resumed in process")


# === Non-finite losses ===
def _tiny(**kwargs):
    keras.utils.set_random_seed(0)
    model = families.build("VAE", likelihood="gaussian", **kwargs)
    model.compile(optimizer=keras.optimizers.SGD(1e-3))
    return model


class _ZeroNonFinite(keras.layers.Layer):
    """Encoder input cleaning, so that NaN pixels reach only the likelihood."""

    def call(self, x):
        return keras.ops.where(keras.ops.isfinite(x), x, 0.0)


def _model_with_clean_encoder(steps_per_execution=1):
    keras.utils.set_random_seed(0)
    x = keras.Input(families.DATA_SHAPE)
    h = keras.layers.Dense(8, activation="relu")(keras.layers.Flatten()(_ZeroNonFinite()(x)))
    encoder = keras.Model(x, kerasvae.GaussianPosterior(families.LATENT_DIM)(h))
    decoder = kerasvae.networks.build_mlp_decoder(families.LATENT_DIM, families.DATA_SHAPE, hidden_units=(8,))
    model = kerasvae.VAE(encoder, decoder, likelihood="gaussian", seed=0)
    model.compile(optimizer=keras.optimizers.SGD(1e-3), steps_per_execution=steps_per_execution)
    return model


class _Batches(keras.utils.PyDataset):
    """Batches of 4 that `fit` takes as they are (a NumPy array with NaN is refused up front)."""

    def __init__(self, x):
        super().__init__()
        self.x = x

    def __len__(self):
        return len(self.x) // 4

    def __getitem__(self, index):
        return self.x[4 * index : 4 * index + 4]


def _dataset_with_nan(x, bad_index):
    x = x.copy()
    x[bad_index] = np.nan
    return _Batches(x)


# Example 9 is in batch 2 (0-based) of the second epoch of 4 batches: step
# 4 + 3 = 7. With 3 steps per call the loss is seen after batches 2 and 3 of
# that epoch (a partial last call), so at step 7; with 32, at the epoch's end.
@pytest.mark.parametrize("steps_per_execution, seen", [(1, (7, 1, 2)), (3, (7, 1, 2)), (32, (8, 1, 3))])
def test_nan_data_stops_at_its_step_naming_the_term_and_keeps_the_backup(tmp_path, steps_per_execution, seen):
    model = _model_with_clean_encoder(steps_per_execution)
    x = np.random.default_rng(0).random((16,) + families.DATA_SHAPE, dtype=np.float32)
    backup_dir = tmp_path / "backup"
    backup = callbacks_safety.BackupAndRestore(backup_dir, delete_checkpoint=False)
    model.fit(_dataset_with_nan(x, []), epochs=1, shuffle=False, verbose=0, callbacks=[backup])
    good = _metadata(tmp_path)
    weights_file = backup_dir / good["weights"]
    before = weights_file.read_bytes()
    with pytest.raises(callbacks_safety.NonFiniteLossError) as info:
        model.fit(
            _dataset_with_nan(x, 9),
            epochs=2,
            shuffle=False,
            verbose=0,
            callbacks=[callbacks_safety.StopOnNonFinite(), backup],
        )
    error = info.value
    assert (error.step, error.epoch, error.batch) == seen
    assert "reconstruction_loss" in error.terms
    assert f"step {seen[0]}" in str(error) and "reconstruction_loss=nan" in str(error)
    if error.step == 7:  # seen at the step that broke: only that term is named
        assert "kl_loss" not in error.terms
        assert "kl_loss=" in str(error)  # named among the finite terms
    else:  # the NaN update of step 7 reached every term by step 8
        assert "kl_loss" in error.terms
    assert _metadata(tmp_path) == good
    assert weights_file.read_bytes() == before


def test_stop_on_non_finite_names_the_kl_term():
    callback = callbacks_safety.StopOnNonFinite()
    callback.set_model(_tiny())
    callback.on_train_begin()
    callback.on_epoch_begin(0)
    callback.on_train_batch_end(0, {"loss": 3.0, "reconstruction_loss": 2.0, "kl_loss": 1.0})
    with pytest.raises(callbacks_safety.NonFiniteLossError, match=r"step 2 .*kl_loss=inf") as info:
        callback.on_train_batch_end(
            1, {"loss": np.inf, "reconstruction_loss": 2.5, "kl_loss": np.inf, "beta": 1.0}
        )
    assert info.value.terms == {"loss": np.inf, "kl_loss": np.inf}
    assert "reconstruction_loss=2.5" in str(info.value)


def test_backup_refuses_non_finite_weights_and_keeps_the_previous_one(tmp_path):
    model = _tiny()
    x = np.random.default_rng(0).random((8,) + families.DATA_SHAPE, dtype=np.float32)
    backup = callbacks_safety.BackupAndRestore(tmp_path / "backup", delete_checkpoint=False)
    model.fit(x, epochs=1, batch_size=4, verbose=0, callbacks=[backup])
    good = _metadata(tmp_path)
    kernel = model.trainable_weights[0]
    kernel.assign(np.full(kernel.shape, np.nan, dtype="float32"))
    with pytest.raises(callbacks_safety.NonFiniteWeightsError, match="non-finite weights"):
        backup._save_model()
    assert _metadata(tmp_path) == good
    assert sorted(os.listdir(tmp_path / "backup")) == sorted([callbacks_safety.METADATA_FILE, good["weights"]])


# === The sampler's noise stream is saved with the weights ===
def test_sampling_seed_state_round_trips_through_weights_files(tmp_path):
    model = _tiny()
    model.sampling.seed_generator.state.assign(np.array([7, 42], dtype="int64"))
    path = str(tmp_path / "m.weights.h5")
    model.save_weights(path)
    other = _tiny()
    other.load_weights(path)
    np.testing.assert_array_equal(to_numpy(other.sampling.seed_generator.state.value), [7, 42])
    # A file written before the state was saved (no entry) loads as before.
    with h5py.File(path, "r+") as f:
        names = []
        f.visit(names.append)
        entry = [n for n in names if n.endswith(kerasvae.layers.sampling.SEED_STATE_KEY)]
        assert len(entry) == 1
        del f[entry[0]]
    fresh = _tiny()
    fresh.load_weights(path)
    np.testing.assert_array_equal(to_numpy(fresh.sampling.seed_generator.state.value), [0, 0])
    for a, b in zip(fresh.trainable_weights, model.trainable_weights):
        np.testing.assert_array_equal(to_numpy(a.value), to_numpy(b.value))
