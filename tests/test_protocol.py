"""The binarized Fashion-MNIST protocol: its splits, a resumed run, its figures and publishing."""

import csv
import itertools
import json
import os
import time
import types

import keras
import numpy as np
import pytest

from kerasvae import data, protocol

# What users run, with the steps they get: traced, not eager (tests/conftest.py).
pytestmark = pytest.mark.compiled_step

PRESET = "vae_gated_mlp"  # the published standard-prior row
TINY = dict(patience=5, warmup_epochs=2, train_examples=300, validation_examples=500, verbose=0)


def state(run):
    with open(os.path.join(run, "train_state.json")) as f:
        return json.load(f)


class _Clock:
    """`protocol`'s `time` module, a second further on at each reading: every
    epoch lasts exactly one second by it (read at its start and its end)."""

    def __init__(self):
        self.now = 0.0

    def time(self):
        self.now += 1.0
        return self.now


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One epoch, then the same run extended to three: (folder, state after the first)."""
    folder = str(tmp_path_factory.mktemp("protocol") / "run")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(protocol, "time", _Clock())
        protocol.train(PRESET, folder, max_epochs=1, **TINY)
        first = state(folder)
        protocol.train(PRESET, folder, max_epochs=3, **TINY)
    return folder, first


def test_splits_follow_the_protocol():
    splits = protocol.binarized_splits()
    (x_train, y_train), (x_test, y_test) = data.load_fashion_mnist()
    train, validation, test = splits["train"], splits["validation"], splits["test"]
    assert len(train[0]) == 50_000 and len(validation[0]) == protocol.VALIDATION_SIZE
    # Training images stay grey (binarized afresh each epoch); the held-out ones
    # are the last 10,000 training images, binarized once.
    np.testing.assert_array_equal(train[0], x_train[:50_000])
    np.testing.assert_array_equal(train[1], y_train[:50_000])
    assert len(np.unique(train[0])) > 2
    np.testing.assert_array_equal(validation[1], y_train[50_000:])
    np.testing.assert_array_equal(test[1], y_test)
    for x, grey in ((validation[0], x_train[50_000:]), (test[0], x_test)):
        assert set(np.unique(x)) == {0.0, 1.0}
        # Pixel for pixel the binary image of its own grey image: black stays 0
        # and white 1 (about half of Fashion-MNIST's pixels are black, so an
        # image out of place or out of order fails here), and each pixel
        # is one with the probability of its grey level.
        assert np.all(x[grey == 0] == 0) and np.all(x[grey == 1] == 1)
        ones, expected = x.mean(), grey.mean()
        assert abs(ones - expected) < 5 * np.sqrt(expected * (1 - expected) / x.size)
    # Fixed seeds: the same images every time, and a different seed draws others.
    np.testing.assert_array_equal(test[0], data.binarize(x_test, seed=protocol.TEST_SEED))
    assert not np.array_equal(test[0], data.binarize(x_test, seed=protocol.TEST_SEED + 1))
    with pytest.raises(ValueError, match="validation_size=60000"):
        protocol.binarized_splits(validation_size=60_000)


def test_a_finished_run_continues_with_a_larger_max_epochs(run):
    folder, first = run
    assert first["epochs_run"] == 1 and first["best_epoch"] == 1
    last = state(folder)
    assert last["epochs_run"] == 3 and last["max_epochs"] == 3
    assert last["train_seconds"] > first["train_seconds"]
    # Each epoch's time (one second by the test's clock), carried over the
    # restart: the first session's, then two more.
    assert first["epoch_seconds"] == [1.0] and last["epoch_seconds"] == [1.0, 1.0, 1.0]
    assert last["train_examples"] == 300 and last["validation_examples"] == 500
    with open(os.path.join(folder, "history.csv")) as f:
        epochs = [int(line.split(",")[0]) for line in f.readlines()[1:]]
    assert epochs == [0, 1, 2]  # continued, not restarted
    model = keras.saving.load_model(os.path.join(folder, "best.keras"))
    # best.keras is the model of the best epoch, its KL step counter carried
    # over the restart: 3 batches of 100 per epoch.
    assert int(keras.ops.convert_to_numpy(model.kl_step)) == 3 * last["best_epoch"]


def test_evaluate_reports_the_protocol(run, monkeypatch):
    # The estimators are checked against exact answers in test_evaluation.py and
    # test_estimators_exact.py; here: that the protocol feeds them the
    # protocol's images and settings, and reports what they return.
    from kerasvae import evaluation

    calls = []

    def spy(model, x, labels=None, **kwargs):
        calls.append((x, labels, kwargs))
        figures = real(model, x, labels, **kwargs)
        calls[-1] += (dict(figures),)
        return figures

    real = evaluation.evaluate_vae
    monkeypatch.setattr(evaluation, "evaluate_vae", spy)
    model = keras.saving.load_model(os.path.join(run[0], "best.keras"))
    figures = protocol.evaluate(model, num_samples=4, test_examples=40, verbose=0)
    (x, labels, kwargs, returned), = calls
    np.testing.assert_array_equal(x, protocol.binarized_splits()["test"][0][:40])
    assert labels is None  # the standard-prior preset is not conditional
    assert kwargs["num_importance_samples"] == 4 and kwargs["nll_examples"] == 40 and kwargs["seed"] == 0
    assert {k: figures[k] for k in returned} == returned
    assert figures["protocol"]["nll_num_samples"] == figures["nll_num_samples"] == 4
    assert figures["protocol"]["test_examples"] == figures["examples"] == figures["nll_examples"] == 40


def test_an_interrupted_evaluation_continues_from_its_progress(run, tmp_path, monkeypatch):
    # `python -m kerasvae.protocol evaluate` killed after its second batch of
    # 100 images, then run again: the figures of an uninterrupted evaluation.
    import shutil

    from kerasvae import evaluation

    folder = str(tmp_path / "run")
    os.makedirs(folder)
    for name in ("best.keras", "train_state.json"):
        shutil.copy(os.path.join(run[0], name), folder)
    argv = ["evaluate", folder, "--num-samples", "3", "--test-examples", "300"]
    real_save = evaluation._save_progress

    def save_then_die_after_two(*args):
        real_save(*args)
        if len(args[-1]) == 200:
            raise KeyboardInterrupt

    monkeypatch.setattr(evaluation, "_save_progress", save_then_die_after_two)
    # The first sitting on a clock that runs 1000 s a reading, so that its
    # time stands out in the total.
    clock = itertools.count(0.0, 1000.0)
    with monkeypatch.context() as fake:
        fake.setattr(time, "time", lambda: next(clock))
        with pytest.raises(KeyboardInterrupt):
            protocol.main(argv)
    assert not os.path.exists(os.path.join(folder, "metrics.json"))
    progress = os.path.join(folder, "nll_progress.npz")
    first_sitting = evaluation.saved_progress_seconds(progress)
    assert first_sitting >= 1000.0
    monkeypatch.setattr(evaluation, "_save_progress", real_save)
    start = time.time()
    protocol.main(argv)
    second_sitting = time.time() - start
    with open(os.path.join(folder, "metrics.json")) as f:
        resumed = json.load(f)
    assert resumed["evaluation_resumed"] is True
    # Both sittings' time: the first's saved, the second's measured.
    assert first_sitting <= resumed["evaluation_seconds"] <= first_sitting + second_sitting + 0.1
    assert not os.path.exists(os.path.join(folder, "nll_progress.npz"))
    model = keras.saving.load_model(os.path.join(folder, "best.keras"))
    whole = protocol.evaluate(model, num_samples=3, test_examples=300, verbose=0)
    assert "evaluation_resumed" not in whole
    assert resumed["nll_importance_sampled"] == whole["nll_importance_sampled"]
    assert resumed["nll_standard_error"] == whole["nll_standard_error"]


def test_command_line_refuses_an_unknown_preset(capsys):
    with pytest.raises(SystemExit):
        protocol.main(["train", "nope", "somewhere"])
    assert "invalid choice: 'nope'" in capsys.readouterr().err


@pytest.mark.requires_tensorflow
def test_published_entry_has_every_signature_and_a_card_beside_the_published_row(run, tmp_path, monkeypatch):
    from kerasvae import export, pretrained

    folder = run[0]
    protocol.main(["evaluate", folder, "--num-samples", "3", "--test-examples", "30"])
    # Epoch times whose median (3.0) is none of them, nor their mean (4.0).
    with open(os.path.join(folder, "metrics.json")) as f:
        evaluated = json.load(f)
    evaluated["training"]["epoch_seconds"] = [9.0, 2.0, 1.0, 4.0]
    with open(os.path.join(folder, "metrics.json"), "w") as f:
        json.dump(evaluated, f)
    monkeypatch.setenv(pretrained.SAVEDMODELS_ENV, str(tmp_path / "savedmodels"))
    card = pretrained.publish_binarized(folder, "tiny_binarized")
    entry = os.path.dirname(card)
    assert export.existing_versions(entry) == [1]
    served = pretrained.load_pretrained("tiny_binarized")
    assert set(export.SIGNATURE_NAMES) <= set(served.signatures)
    record = pretrained.pretrained_metrics("tiny_binarized")
    assert record["protocol"]["binarized"] is True and record["run_config"]["epochs_run"] == 3
    assert record["run_config"]["median_epoch_seconds"] == 3.0
    with open(card) as f:
        text = f.read()
    assert text == pretrained.model_card("tiny_binarized")
    assert "Published (VAE, standard prior (MLP), Norouzi et al. 2020, K = 5000): 228.70 nats" in text
    behind = record["test"]["nll_importance_sampled"] - 228.70
    assert f"{behind:.2f} nats behind" in text
    assert "the median epoch took 3 s" in text and "An epoch took 3 s here" in text


def test_a_beta_vae_is_selected_by_its_objective_not_its_elbo(tmp_path, monkeypatch):
    """During the warm-up a beta-VAE's KL weight passes through 1, where its
    negative ELBO is best; model selection and early stopping must follow its
    own objective, reconstruction + beta * KL, also for rows read back from
    `history.csv` on a resume. Epoch 1 has the best -ELBO, epoch 2 the best
    objective at beta = 4."""
    history = tmp_path / "history.csv"
    history.write_text(
        "epoch,val_kl_loss,val_negative_elbo,val_reconstruction_loss\n"
        "0,30.0,250.0,220.0\n"  # objective 340
        "1,20.0,240.0,220.0\n"  # -ELBO 240 (best); objective 300
        "2,10.0,245.0,235.0\n"  # objective 275 (best)
        "3,12.0,244.0,232.0\n"  # objective 280
    )
    stopping = protocol._ResumableEarlyStopping(str(history), beta=4.0, patience=5)
    stopping.on_train_begin()
    assert (stopping.best, stopping.best_epoch, stopping.wait) == (275.0, 2, 1)
    logs = {"val_reconstruction_loss": 230.0, "val_kl_loss": 11.0, "val_negative_elbo": 241.0}
    assert stopping.get_monitor_value(logs) == 230.0 + 4.0 * 11.0
    # With beta = 1 the same rows select by the negative ELBO.
    plain = protocol._ResumableEarlyStopping(str(history), beta=1.0, patience=5)
    plain.on_train_begin()
    assert (plain.best, plain.best_epoch) == (240.0, 1)

    best = tmp_path / "best.keras"
    best.write_bytes(b"the model of epoch 2")
    saver = protocol._SaveBest(str(best), str(history), beta=4.0)
    saver.on_train_begin()
    assert saver.best == 275.0
    saved = []
    monkeypatch.setattr(protocol, "atomic_save_model", lambda model, path: saved.append(path))
    saver.on_epoch_end(4, {"val_reconstruction_loss": 236.0, "val_kl_loss": 10.0})  # 276: not better
    assert saved == []
    saver.on_epoch_end(5, {"val_reconstruction_loss": 234.0, "val_kl_loss": 10.0})  # 274: better
    assert saved == [str(best)] and saver.best == 274.0


def _epoch_logs(objective):
    return {"val_reconstruction_loss": objective, "val_kl_loss": 0.0, "val_negative_elbo": objective}


def test_early_stopping_does_not_count_the_warmup_epochs(tmp_path):
    """As in the published code: epochs 1 to warmup - 1 (0 to warmup - 2 here)
    reset the count, though an improvement among them is still the best; the
    count starts at the warm-up's last epoch. A resumed run counts the same."""
    history = tmp_path / "history.csv"
    stopping = protocol._ResumableEarlyStopping(str(history), beta=1.0, warmup_epochs=10, patience=3)
    stopping.set_model(types.SimpleNamespace(stop_training=False))
    stopping.on_train_begin()
    objectives = [300.0, 250.0] + [260.0 + e for e in range(2, 14)]  # best at epoch 1, then worse
    for epoch, objective in enumerate(objectives):
        stopping.on_epoch_end(epoch, _epoch_logs(objective))
        if stopping.model.stop_training:
            break
    # Epochs 9, 10 and 11 count: the third ends it (without the warm-up rule, epoch 4 would have).
    assert (epoch, stopping.stopped_epoch, stopping.best, stopping.best_epoch) == (11, 11, 250.0, 1)

    # Resumed after epoch 10: epochs 9 and 10 have counted, 2 to 8 have not.
    rows = "".join(f"{e},0.0,{v},{v}\n" for e, v in enumerate(objectives[:11]))
    history.write_text("epoch,val_kl_loss,val_negative_elbo,val_reconstruction_loss\n" + rows)
    resumed = protocol._ResumableEarlyStopping(str(history), beta=1.0, warmup_epochs=10, patience=3)
    resumed.set_model(types.SimpleNamespace(stop_training=False))
    resumed.on_train_begin()
    assert (resumed.best, resumed.best_epoch, resumed.wait) == (250.0, 1, 2)
    resumed.on_epoch_end(11, _epoch_logs(objectives[11]))
    assert resumed.model.stop_training and resumed.stopped_epoch == 11
    # Without a warm-up every epoch after the best counts, as before.
    plain = protocol._ResumableEarlyStopping(str(history), beta=1.0, patience=3)
    plain.on_train_begin()
    assert plain.wait == 9


def test_an_iwae_is_selected_by_its_bound_at_the_full_kl_weight(tmp_path):
    """An IWAE's loss is the K-sample bound, a log-mean-exp that the logged
    reconstruction and KL means do not determine, and Keras's `val_loss` is at
    the warm-up's KL weight. The protocol logs `val_objective`, the negative
    bound at KL weight 1 on fixed draws, and selects by it: the best epoch's
    figure is reproduced from `best.keras` with NumPy's log-mean-exp of the
    model's log weights (b = 1) at the same draws."""
    import kerasvae

    folder = str(tmp_path / "iwae")
    tiny = dict(TINY, warmup_epochs=4, validation_examples=200)
    best_path = protocol.train("iwae_mlp", folder, max_epochs=2, **tiny)
    with open(os.path.join(folder, "history.csv")) as f:
        rows = list(csv.DictReader(f))
    objectives = [float(row["val_objective"]) for row in rows]
    # The warm-up's KL weight (0.25, 0.5) raises every log weight: val_loss flatters.
    for row, objective in zip(rows, objectives):
        assert float(row["val_beta"]) < 1.0
        assert objective > float(row["val_loss"]) + 1.0, row
    assert state(folder)["best_epoch"] == int(np.argmin(objectives)) + 1
    model = keras.saving.load_model(best_path)
    assert isinstance(model, kerasvae.models.IWAE)
    x_val = protocol.binarized_splits()["validation"][0][:200]
    log_w = keras.ops.convert_to_numpy(
        model.log_importance_weights(x_val, seed=protocol.VALIDATION_SEED)
    ).astype(np.float64)  # (K, n), one batch: the callback's seed for its first 1,000 images
    top = log_w.max(axis=0)
    bound = top + np.log(np.mean(np.exp(log_w - top), axis=0))
    np.testing.assert_allclose(-bound.mean(), min(objectives), rtol=1e-5)
    # The derived figure would have selected by the K-draw mean negative ELBO instead.
    assert protocol.validation_objective(rows[0], 1.0) == objectives[0]
    del rows[0]["val_objective"]
    assert protocol.validation_objective(rows[0], 1.0) == pytest.approx(float(rows[0]["val_negative_elbo"]))
