"""Callbacks that keep a long run's work safe: crash-safe backups and a stop on non-finite losses.

`BackupAndRestore` is `keras.callbacks.BackupAndRestore` with writes that a
crash cannot leave half done. Keras 3.15's callback writes its weights file
in place and then its metadata in place, so a process killed

- during the weights write leaves a truncated `latest.weights.h5`, and the
  restart fails (with `double_checkpoint=True` it falls back to the copy, but
  only for an `OSError`);
- between the two writes leaves the new weights beside the old epoch count,
  and the restart trains that epoch a second time;
- during the metadata write leaves truncated JSON, and the restart fails.

Here the weights go to a new file that is renamed into place, the metadata
(which names that file) is replaced atomically afterwards, and older files are
removed last: at any instant the metadata names a complete weights file of the
epoch it records. Everything else (the file format of the weights, what is
restored, `save_freq`, `delete_checkpoint`) is Keras's.

`StopOnNonFinite` stops `fit` at the first step whose loss terms are not
finite, naming the step and the terms; weights are never written after it, by
this module's `BackupAndRestore` (which also refuses non-finite weights
itself) or by any epoch-end checkpoint.
"""

import glob
import json
import os
import uuid

import keras
import numpy as np

from kerasvae.io_utils import atomic_write_text

METADATA_FILE = "training_metadata.json"
WEIGHTS_PREFIX = "checkpoint-"
WEIGHTS_SUFFIX = ".weights.h5"


class NonFiniteLossError(RuntimeError):
    """Training produced a non-finite loss term; raised by `StopOnNonFinite`.

    Attributes:
        step: int. The training step (1-based, counting every step the
            optimizer has taken) whose loss was not finite.
        epoch: int. Epoch index of that step (0-based).
        batch: int. Batch index of that step within its epoch (0-based).
        terms: dict. Every logged loss term that was not finite, with its value.
    """

    def __init__(self, message, step, epoch, batch, terms):
        super().__init__(message)
        self.step = step
        self.epoch = epoch
        self.batch = batch
        self.terms = terms


class NonFiniteWeightsError(RuntimeError):
    """A model holds NaN or infinite weights where finite ones are required."""


def nonfinite_variables(variables):
    """Paths of the floating-point `variables` holding NaN or infinite values."""
    bad = []
    for variable in variables:
        value = np.asarray(keras.ops.convert_to_numpy(variable))
        if np.issubdtype(value.dtype, np.floating) and not np.all(np.isfinite(value)):
            bad.append(variable.path)
    return bad


def _scalar(value):
    return float(np.asarray(keras.ops.convert_to_numpy(value)).reshape(-1)[0])


class StopOnNonFinite(keras.callbacks.Callback):
    """Stops training at the first step with a non-finite loss term.

    Checks, after every batch, each term the model logs (`loss`,
    `reconstruction_loss`, `kl_loss` and any family-specific one) and raises
    `NonFiniteLossError` naming the step, and which terms went non-finite and
    which stayed finite, e.g. "kl_loss=inf". Raising (rather than setting
    `stop_training`, as `keras.callbacks.TerminateOnNaN` does by default)
    skips the end of the epoch, so no epoch-end checkpoint is written from the
    broken weights; the last good one stays for a resume.

    With `steps_per_execution=n` (kerasvae's default for dense models on
    TensorFlow, see `kerasvae.training.defaults`) Keras calls back once per
    n steps; the step named is then the last of the n steps in which the
    non-finite value appeared, and by then a non-finite update may have
    spread to every term. Compile with `steps_per_execution=1` to stop at
    the very step and name only the term that broke.

    Args:
        terms: tuple of str or None. The logged names to check; `None` checks
            every name in `model.loss_keys` (or every logged value).

    Example:

    ```python
    vae.fit(
        x_train,
        epochs=30,
        callbacks=[
            kerasvae.callbacks_safety.StopOnNonFinite(),
            kerasvae.callbacks_safety.BackupAndRestore("runs/mlp/backup"),
        ],
    )
    ```
    """

    def __init__(self, terms=None):
        super().__init__()
        if terms is not None and (
            not isinstance(terms, (list, tuple)) or not all(isinstance(t, str) for t in terms)
        ):
            raise ValueError(f"terms must be None or a tuple of names. Received: terms={terms!r}")
        self.terms = None if terms is None else tuple(terms)
        self._first_step = 0
        self._steps_before_epoch = 0
        self._last_batch = -1
        self._epoch = 0

    def on_train_begin(self, logs=None):
        self._steps_before_epoch = 0
        self._last_batch = -1
        optimizer = getattr(self.model, "optimizer", None)
        iterations = getattr(optimizer, "iterations", None)
        self._first_step = 0 if iterations is None else int(_scalar(iterations))

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._last_batch = -1

    def on_epoch_end(self, epoch, logs=None):
        self._steps_before_epoch += self._last_batch + 1

    def _names(self, logs):
        if self.terms is not None:
            return [name for name in self.terms if name in logs]
        keys = getattr(self.model, "loss_keys", None)
        return [name for name in (keys or logs) if name in logs]

    def on_train_batch_end(self, batch, logs=None):
        # `batch` is the index of the last step Keras ran (called once per n
        # steps with `steps_per_execution=n`). Keras does not clip it to the
        # epoch's length when the last call of an epoch runs fewer steps.
        steps = (self.params or {}).get("steps")
        if steps:
            batch = min(batch, steps - 1)
        self._last_batch = batch
        if not logs:
            return
        values = {name: _scalar(logs[name]) for name in self._names(logs)}
        bad = {name: value for name, value in values.items() if not np.isfinite(value)}
        if not bad:
            return
        step = self._first_step + self._steps_before_epoch + batch + 1
        good = {name: value for name, value in values.items() if name not in bad}
        went = ", ".join(f"{name}={value}" for name, value in bad.items())
        stayed = ", ".join(f"{name}={value:.6g}" for name, value in good.items())
        message = (
            f"Training stopped: non-finite loss at step {step} (epoch {self._epoch}, "
            f"batch {batch}): {went}"
            + (f"; finite: {stayed}" if stayed else "")
            + ". Nothing is saved from this step on; resume from the last checkpoint "
            "(a lower learning rate, a log-variance clamp or gradient clipping may help)."
        )
        raise NonFiniteLossError(message, step=step, epoch=self._epoch, batch=batch, terms=bad)


class BackupAndRestore(keras.callbacks.BackupAndRestore):
    """`keras.callbacks.BackupAndRestore` whose backups survive a crash at any instant.

    Backs up the model (weights, optimizer state, the KL step counter and the
    sampler's noise stream: everything `model.save_weights` writes) at the
    end of every epoch, or every `save_freq` batches, and restores the latest
    backup when `fit` starts again, continuing from the epoch after it. With
    the same data order per epoch (no shuffling, or a dataset whose order
    depends only on the epoch) a run killed at any moment and resumed ends
    where an uninterrupted run ends.

    Unlike Keras's callback (see this module's docstring) each backup is a new
    weights file renamed into place, then the metadata that names it is
    replaced atomically: a kill during or between the writes leaves the
    previous complete backup. A backup of non-finite weights is refused with
    `NonFiniteWeightsError`, so a diverged run never replaces a good backup.

    Args:
        backup_dir: str. Folder for the backup; use one per run.
        save_freq: `"epoch"` or int. Back up at the end of every epoch, or
            every `save_freq` batches. A mid-epoch backup restores its weights
            but, as in Keras, training resumes at the start of that epoch.
        delete_checkpoint: bool. Delete the backup when training finishes.

    Example:

    ```python
    backup = kerasvae.callbacks_safety.BackupAndRestore("runs/mlp/backup")
    vae.fit(x_train, epochs=30, shuffle=False, callbacks=[backup])
    # killed? run the same line again: it continues after the last epoch saved
    ```
    """

    def __init__(self, backup_dir, save_freq="epoch", delete_checkpoint=True):
        if not isinstance(backup_dir, (str, os.PathLike)) or not os.fspath(backup_dir):
            raise ValueError(
                f"backup_dir must be a non-empty path. Received: backup_dir={backup_dir!r}"
            )
        if save_freq != "epoch" and (
            isinstance(save_freq, bool) or not isinstance(save_freq, int) or save_freq <= 0
        ):
            raise ValueError(
                f"save_freq must be 'epoch' or a positive integer. Received: save_freq={save_freq!r}"
            )
        super().__init__(
            os.fspath(backup_dir),
            save_freq=save_freq,
            double_checkpoint=False,
            delete_checkpoint=delete_checkpoint,
        )
        self.metadata_path = os.path.join(self.backup_dir, METADATA_FILE)

    def _weights_files(self):
        return glob.glob(os.path.join(glob.escape(self.backup_dir), WEIGHTS_PREFIX + "*" + WEIGHTS_SUFFIX))

    def _save_model(self):
        optimizer = getattr(self.model, "optimizer", None)
        bad = nonfinite_variables(
            list(self.model.variables) + list(getattr(optimizer, "variables", []))
        )
        if bad:
            raise NonFiniteWeightsError(
                f"Refusing to back up non-finite weights (epoch {self._current_epoch}): "
                f"{len(bad)} variable(s) hold NaN or infinite values, e.g. {bad[:3]}. "
                f"The previous backup in {self.backup_dir!r} is kept."
            )
        os.makedirs(self.backup_dir, exist_ok=True)
        name = f"{WEIGHTS_PREFIX}{uuid.uuid4().hex}{WEIGHTS_SUFFIX}"
        tmp = os.path.join(self.backup_dir, f".tmp-{name}")
        try:
            self.model.save_weights(tmp, overwrite=True)
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
            os.replace(tmp, os.path.join(self.backup_dir, name))
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
        metadata = {"epoch": self._current_epoch, "batch": self._last_batch_seen, "weights": name}
        atomic_write_text(self.metadata_path, json.dumps(metadata))
        # Only now is the previous backup unreferenced.
        for path in self._weights_files() + glob.glob(
            os.path.join(glob.escape(self.backup_dir), ".tmp-*")
        ):
            if os.path.basename(path) != name:
                os.remove(path)

    def _read_metadata(self):
        """`(epochs done, weights file name)` of the backup, or None without one."""
        if not os.path.isfile(self.metadata_path):
            return None
        try:
            with open(self.metadata_path) as f:
                metadata = json.load(f)
            return int(metadata["epoch"]), str(metadata["weights"])
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(
                f"The backup metadata {self.metadata_path!r} is unreadable ({e}). It is "
                "written atomically by kerasvae, so another program changed it; delete "
                f"{self.backup_dir!r} to start over."
            ) from e

    def backed_up_epochs(self):
        """The number of epochs the backup holds (`fit` continues after them), or 0."""
        metadata = self._read_metadata()
        return 0 if metadata is None else metadata[0]

    def _load_model(self):
        if not self.model.built:
            raise ValueError(
                "BackupAndRestore needs a built model (kerasvae models are built when "
                f"made). Received an unbuilt model: {self.model.name!r}"
            )
        metadata = self._read_metadata()
        if metadata is None:
            return
        epoch, name = metadata
        weights = os.path.join(self.backup_dir, name)
        if os.path.basename(name) != name or not os.path.isfile(weights):
            raise ValueError(
                f"The backup metadata {self.metadata_path!r} names the weights file "
                f"{name!r}, which is not in {self.backup_dir!r}. Delete the folder to start over."
            )
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is not None and not optimizer.built:
            optimizer.build(self.model.trainable_variables)
        self.model.load_weights(weights)
        self._current_epoch = epoch
        # As keras.callbacks.BackupAndRestore does: `fit` starts from this epoch.
        self.model._initial_epoch = epoch
