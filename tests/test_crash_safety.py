"""Crash safety: SIGKILL at several instants, resume, end where an uninterrupted run ends.

The runs are real subprocesses (tests/crash_runs.py) on the active backend,
killed with SIGKILL mid-epoch, inside the weights write of a backup, between
its weights and its metadata, and inside its metadata write; each restart
resumes from the backup. The guarded effects: a restart that repeats an epoch,
loses the optimizer's moments, restarts the KL schedule or the sampler's
noise ends visibly elsewhere (Adam at 1e-2 moves weights by ~1e-2 per step),
so the resumed run must match the uninterrupted one to float32 rounding.
"""

import glob
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


def test_killed_runs_resume_and_end_where_an_uninterrupted_run_ends(tmp_path):
    kills = [
        # (kill point, epochs the backup holds after the kill)
        ("mid_epoch:1:2", 1),
        ("weights_write:2", 2),
        ("between_writes:3", 3),
        ("metadata_write:4", 4),
    ]
    restored_seen = set()
    for kill, epochs_done in kills:
        result = _run(tmp_path, kill)
        assert result.returncode == -signal.SIGKILL, (kill, result.returncode, result.stderr[-3000:])
        assert _metadata(tmp_path)["epoch"] == epochs_done, kill
        weights_files = glob.glob(str(tmp_path / "backup" / "checkpoint-*.weights.h5"))
        # The metadata names a complete file; a kill after the rename leaves
        # one more (unreferenced) file, removed by the next backup.
        assert os.path.basename(_metadata(tmp_path)["weights"]) in map(os.path.basename, weights_files)
        if kill.startswith("between_writes"):
            assert len(weights_files) == 2
        # Every restart so far restored exactly the state that was backed up.
        for path in glob.glob(str(tmp_path / "restored-*.json")):
            if path in restored_seen:
                continue
            restored_seen.add(path)
            restored = _load(path)
            witness = _load(tmp_path / f"witness-{restored['epochs_done']}.json")
            _assert_same_state(restored, witness, f"restore after {restored['epochs_done']} epochs")
    result = _run(tmp_path, "none")
    assert result.returncode == 0, result.stderr[-3000:]
    # One restart per kill, each from the epoch the backup held.
    restored = [_load(p) for p in glob.glob(str(tmp_path / "restored-*.json"))]
    assert sorted(r["epochs_done"] for r in restored) == [1, 2, 3, 4]
    final = _load(tmp_path / "final.json")
    _assert_same_state(final["resumed"], final["reference"], "end of the resumed run")
    steps = crash_runs.EPOCHS * crash_runs.NUM_EXAMPLES // crash_runs.BATCH_SIZE
    assert final["reference"]["kl_step"] == steps


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


def _model_with_clean_encoder():
    keras.utils.set_random_seed(0)
    x = keras.Input(families.DATA_SHAPE)
    h = keras.layers.Dense(8, activation="relu")(keras.layers.Flatten()(_ZeroNonFinite()(x)))
    encoder = keras.Model(x, kerasvae.GaussianPosterior(families.LATENT_DIM)(h))
    decoder = kerasvae.networks.build_mlp_decoder(families.LATENT_DIM, families.DATA_SHAPE, hidden_units=(8,))
    model = kerasvae.VAE(encoder, decoder, likelihood="gaussian", seed=0)
    model.compile(optimizer=keras.optimizers.SGD(1e-3))
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


def test_nan_data_stops_at_its_step_naming_the_term_and_keeps_the_backup(tmp_path):
    model = _model_with_clean_encoder()
    x = np.random.default_rng(0).random((16,) + families.DATA_SHAPE, dtype=np.float32)
    backup_dir = tmp_path / "backup"
    backup = callbacks_safety.BackupAndRestore(backup_dir, delete_checkpoint=False)
    model.fit(_dataset_with_nan(x, []), epochs=1, shuffle=False, verbose=0, callbacks=[backup])
    good = _metadata(tmp_path)
    weights_file = backup_dir / good["weights"]
    before = weights_file.read_bytes()
    # Example 9 is in batch 2 (0-based) of the next epoch: step 4 + 3 = 7.
    with pytest.raises(callbacks_safety.NonFiniteLossError) as info:
        model.fit(
            _dataset_with_nan(x, 9),
            epochs=2,
            shuffle=False,
            verbose=0,
            callbacks=[callbacks_safety.StopOnNonFinite(), backup],
        )
    error = info.value
    assert (error.step, error.epoch, error.batch) == (7, 1, 2)
    assert "reconstruction_loss" in error.terms and "kl_loss" not in error.terms
    assert "step 7" in str(error) and "reconstruction_loss=nan" in str(error)
    assert "kl_loss=" in str(error)  # named among the finite terms
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


@pytest.mark.requires_tensorflow
def test_export_refuses_non_finite_weights_and_keeps_the_served_version(tmp_path):
    from kerasvae import export

    model = _tiny()
    first = export.export_saved_model(model, tmp_path)
    kernel = model.trainable_weights[0]
    kernel.assign(np.full(kernel.shape, np.inf, dtype="float32"))
    with pytest.raises(ValueError, match="non-finite") as info:
        export.export_saved_model(model, tmp_path)
    assert kernel.path in str(info.value)
    with pytest.raises(ValueError, match="non-finite"):
        export.export_saved_model(model, tmp_path, version=1, overwrite=True)
    assert export.existing_versions(tmp_path) == [1]
    assert sorted(os.listdir(tmp_path)) == ["1"]
    export.verify_saved_model(first)


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
