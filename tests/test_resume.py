"""ResumableCheckpoint restores the whole training state, and survives kills.

A resumed run must hold the checkpoint's weights, optimizer state (Adam's
moments and step count), epoch count and sampler seed state, so that stopping
and resuming gives the same model as not stopping. A kill can land between
any two file operations of a checkpoint: the weights and the epoch count are
then both the old ones or both the new ones.
"""

import json
import os

import keras
import numpy as np
import pytest
from keras import ops

from kerasvae import callbacks
from tests.helpers import random_images, tiny_vae

X = random_images(48, seed=3)
BATCH = 16  # 3 steps per epoch


class Interrupt(Exception):
    """Stands for a kill: raised from inside a checkpoint's file operations."""


def new_model(initial_weights=None):
    model = tiny_vae(seed=7)
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    if initial_weights is not None:
        model.set_weights(initial_weights)
    return model


def training_state(model):
    """Every number a continued run depends on."""
    return {
        "weights": [ops.convert_to_numpy(v) for v in model.weights],
        "optimizer": [ops.convert_to_numpy(v) for v in model.optimizer.variables],
        "seed": ops.convert_to_numpy(model.sampling.seed_generator.state),
    }


def assert_same_state(a, b):
    assert len(a["weights"]) == len(b["weights"]) and len(a["optimizer"]) == len(b["optimizer"])
    for x, y in zip(a["weights"], b["weights"]):
        np.testing.assert_array_equal(x, y)
    for x, y in zip(a["optimizer"], b["optimizer"]):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(a["seed"], b["seed"])


class Snapshots(keras.callbacks.Callback):
    """Records the training state at the end of every epoch."""

    def __init__(self):
        super().__init__()
        self.states = {}

    def on_epoch_end(self, epoch, logs=None):
        self.states[epoch + 1] = training_state(self.model)


class StopAfter(keras.callbacks.Callback):
    def __init__(self, epochs):
        super().__init__()
        self.epochs = epochs

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.epochs:
            raise Interrupt(f"stopped after epoch {self.epochs}")


def fit(model, epochs, callbacks_, initial_epoch=0):
    return model.fit(
        X, epochs=epochs, initial_epoch=initial_epoch, batch_size=BATCH, shuffle=False,
        callbacks=callbacks_, verbose=0,
    )


def test_resume_restores_weights_optimizer_and_seed_state(tmp_path):
    checkpoint = callbacks.ResumableCheckpoint(tmp_path / "ckpt")
    snapshots = Snapshots()
    model = new_model()
    fit(model, 2, [snapshots, checkpoint])
    assert int(model.optimizer.iterations) == 6

    restored, initial_epoch = checkpoint.resume(new_model())
    assert initial_epoch == 2
    assert restored is not model
    assert int(restored.optimizer.iterations) == 6
    # Adam's moments are not zero after 6 steps: this compares real state.
    assert any(np.abs(v).max() > 0 for v in training_state(restored)["optimizer"][1:])
    assert_same_state(training_state(restored), snapshots.states[2])
    assert int(snapshots.states[2]["seed"][1]) == 6  # one draw per step


def test_stopping_and_resuming_gives_the_model_of_an_uninterrupted_run(tmp_path):
    initial = new_model().get_weights()
    straight = new_model(initial)
    fit(straight, 2, [])

    checkpoint = callbacks.ResumableCheckpoint(tmp_path / "ckpt")
    with pytest.raises(Interrupt):
        fit(new_model(initial), 2, [checkpoint, StopAfter(1)])
    resumed, initial_epoch = checkpoint.resume(new_model(initial))
    assert initial_epoch == 1
    history = fit(resumed, 2, [], initial_epoch=initial_epoch)
    assert len(history.history["loss"]) == 1
    # Same data order, same noise (the seed state came back), same steps.
    for a, b in zip(training_state(straight)["weights"], training_state(resumed)["weights"]):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert int(resumed.optimizer.iterations) == 6


def kill_on_call(monkeypatch, module, name, call_number, path):
    """Makes the `call_number`-th call of `module.name` that writes `path` raise."""
    original = getattr(module, name)
    calls = []

    def wrapper(*args, **kwargs):
        if any(isinstance(a, (str, os.PathLike)) and os.fspath(a) == os.fspath(path) for a in args):
            calls.append(args)
            if len(calls) == call_number:
                raise Interrupt(f"killed in {name} writing {path}, call {call_number}")
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, wrapper)


@pytest.mark.parametrize(
    "where",
    [
        "after the checkpoint, before state.json",  # the second write of epoch 2
        "before the checkpoint's rename",  # epoch 2's checkpoint never lands
    ],
)
def test_a_kill_inside_a_checkpoint_leaves_a_consistent_one(tmp_path, monkeypatch, where):
    checkpoint = callbacks.ResumableCheckpoint(tmp_path / "ckpt")
    snapshots = Snapshots()
    if where.startswith("after"):
        kill_on_call(monkeypatch, callbacks, "atomic_write_text", 2, checkpoint.state_path)
        expected_epochs = 2
    else:
        kill_on_call(monkeypatch, callbacks.os, "replace", 2, checkpoint.checkpoint_path)
        expected_epochs = 1
    with pytest.raises(Interrupt):
        fit(new_model(), 3, [snapshots, checkpoint])
    monkeypatch.undo()

    restored, initial_epoch = checkpoint.resume(new_model())
    assert initial_epoch == expected_epochs
    assert_same_state(training_state(restored), snapshots.states[expected_epochs])
    assert int(restored.optimizer.iterations) == 3 * expected_epochs
    # No temporary file is left behind by an interrupted save.
    assert sorted(os.listdir(tmp_path / "ckpt")) == ["checkpoint.keras", "state.json"]


def test_leftovers_of_a_hard_kill_are_ignored(tmp_path):
    # SIGKILL skips the clean-up: a half-written temporary file stays behind.
    checkpoint = callbacks.ResumableCheckpoint(tmp_path / "ckpt")
    snapshots = Snapshots()
    fit(new_model(), 1, [snapshots, checkpoint])
    with open(f"{checkpoint.checkpoint_path}.tmp-12345.keras", "wb") as f:
        f.write(b"PK\x03\x04 truncated")
    with open(checkpoint.state_path, "w") as f:  # a stale or hand-edited copy
        json.dump({"epochs_done": 5}, f)
    restored, initial_epoch = checkpoint.resume(new_model())
    assert initial_epoch == 1
    assert_same_state(training_state(restored), snapshots.states[1])


def test_no_checkpoint_means_a_fresh_start(tmp_path):
    checkpoint = callbacks.ResumableCheckpoint(tmp_path / "nothing")
    model = new_model()
    assert checkpoint.resume(model) == (model, 0)
    os.makedirs(tmp_path / "nothing")
    with open(checkpoint.state_path, "w") as f:  # a state without weights is not a checkpoint
        json.dump({"epochs_done": 3}, f)
    assert checkpoint.resume(model) == (model, 0)
    assert checkpoint.read_state() is None
