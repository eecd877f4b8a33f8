"""The standard binarized Fashion-MNIST protocol, so that our nats compare with published ones.

The setup of the VampPrior code (Tomczak and Welling 2018), which the
Fashion-MNIST table of Norouzi et al. (2020) reuses:

- training images binarized dynamically: a fresh Bernoulli draw of every pixel
  each epoch; the last `VALIDATION_SIZE` training images are held out,
  binarized once (seed `VALIDATION_SEED`), for early stopping;
- the 10,000 test images binarized once with seed `TEST_SEED`;
- Adam, learning rate 5e-4, batch 100, KL warm-up linear over the first 100
  epochs, early stopping after 50 epochs without a better validation
  objective, the epochs of the warm-up not counted (as in the published code,
  which resets its count during the warm-up but keeps the best model of any
  epoch): the model's loss at its full KL weight, reconstruction + beta * KL
  (the negative ELBO when beta = 1; an IWAE's negative K-sample bound,
  computed on fixed draws). A beta-VAE is selected by its own
  objective: its negative ELBO is best early in the warm-up, while its KL
  weight is still below 1, which would select a model that is not yet a
  beta-VAE;
- test negative log-likelihood by importance sampling with K = 5000, in nats,
  with its standard error over the test images.

Training is resumable across sessions: `kerasvae.callbacks_safety.BackupAndRestore`
(Keras's callback, written atomically) keeps the model, optimizer and epoch in
the run folder, also after the run ends, so that a larger `max_epochs`
continues a finished run; the best model so far
(by the validation objective above) is written atomically to `best.keras`, and early
stopping reads its state back from `history.csv` so patience survives a
restart.
"""

import csv
import json
import math
import os
import platform
import time

import keras
import numpy as np

from kerasvae import callbacks_safety, data, evaluation, schedules, zoo
from kerasvae.callbacks import atomic_save_model
from kerasvae.io_utils import atomic_write_text

VALIDATION_SIZE = 10_000
VALIDATION_SEED = 1
TEST_SEED = 0
NLL_SAMPLES = 5000
# The published setup's training length and early stopping (Tomczak and Welling's code).
PUBLISHED_MAX_EPOCHS = 2000
PUBLISHED_PATIENCE = 50

# Binarized Fashion-MNIST, test NLL in nats, 5000-sample importance sampling
# (Norouzi et al. 2020, Table; the VampPrior rows reproduce Tomczak and Welling's setup).
# `PUBLISHED_ROW` names the row each zoo preset sets itself beside.
PUBLISHED_ROW = {
    "vae_gated_mlp": "VAE, standard prior (MLP)",
    "vampprior_mlp": "VAE, VampPrior (MLP)",
    "hvae_mlp": "two-level HVAE, VampPrior (MLP)",
    "hvae_conv": "two-level HVAE, VampPrior (conv)",
    "hvae_gated_conv": "two-level HVAE, VampPrior (conv)",
}
PUBLISHED = {
    "VAE, standard prior (MLP)": 228.70,
    "VAE, VampPrior (MLP)": 227.35,
    "two-level HVAE, VampPrior (MLP)": 226.72,
    "two-level HVAE, VampPrior (conv)": 224.67,
}


def binarized_splits(data_dir=None, validation_size=VALIDATION_SIZE):
    """`{"train": (x, y), "validation": (x, y), "test": (x, y)}` of the protocol.

    `train` holds grey levels (binarized afresh each epoch by the pipeline);
    `validation` and `test` are binarized once with the protocol's seeds.
    """
    (x_train, y_train), (x_test, y_test) = data.load_fashion_mnist(data_dir)
    if not 0 < validation_size < len(x_train):
        raise ValueError(
            f"validation_size must lie in (0, {len(x_train)}). Received: validation_size={validation_size}"
        )
    cut = len(x_train) - validation_size
    return {
        "train": (x_train[:cut], y_train[:cut]),
        "validation": (data.binarize(x_train[cut:], seed=VALIDATION_SEED), y_train[cut:]),
        "test": (data.binarize(x_test, seed=TEST_SEED), y_test),
    }


def _hardware():
    """The CPU's model name (Linux) or architecture, and the number of cores."""
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            name = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{name}, {os.cpu_count()} CPU cores"


def validation_objective(figures, beta):
    """The validation loss at the full KL weight of an epoch's figures (logs or
    a `history.csv` row), whatever the warm-up's weight was that epoch.

    `val_objective` where it was logged (a model whose loss is not
    reconstruction + beta * KL, such as an IWAE's K-sample bound, has it
    computed by `_ValidationObjective`); otherwise derived from the logged
    parts, reconstruction + `beta` * KL, so that rows written before this
    figure existed select the same way.
    """
    if figures.get("val_objective") not in (None, ""):
        return float(figures["val_objective"])
    return float(figures["val_reconstruction_loss"]) + beta * float(figures["val_kl_loss"])


def needs_computed_objective(model):
    """Whether the model's loss at full KL weight is not reconstruction + beta * KL:
    a model with a K-sample bound (`kerasvae.models.IWAE`)."""
    return hasattr(model, "importance_weighted_bound")


class _ValidationNegativeELBO(keras.callbacks.Callback):
    """Adds `val_negative_elbo` (reconstruction + KL, whatever the KL weight) to the logs.

    The objective that selects the model is not logged for the models whose
    objective follows from the logged parts: `history.csv` keeps its columns,
    so that runs begun before it existed resume into the same file.
    """

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None and "val_reconstruction_loss" in logs:
            logs["val_negative_elbo"] = logs["val_reconstruction_loss"] + logs["val_kl_loss"]


class _ValidationObjective(keras.callbacks.Callback):
    """Adds `val_objective` to the logs: an IWAE's negative K-sample bound at the
    full KL weight on the validation images, mean over images.

    Keras's `val_loss` is at the warm-up's weight, which flatters the early
    epochs (a KL weight below 1 raises every log weight), and the bound is a
    log-mean-exp that the logged means of its parts do not determine. The
    same draws every epoch (`seed`), so that epochs differ only by the model.
    """

    def __init__(self, x, labels, seed, batch_size=1000):
        super().__init__()
        self.x, self.labels, self.seed, self.batch_size = x, labels, seed, batch_size

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        total = 0.0
        for start in range(0, len(self.x), self.batch_size):
            stop = start + self.batch_size
            labels = None if self.labels is None else self.labels[start:stop]
            bound = self.model.importance_weighted_bound(self.x[start:stop], labels, seed=self.seed + start)
            total += float(keras.ops.convert_to_numpy(keras.ops.sum(bound)))
        logs["val_objective"] = -total / len(self.x)


def _history_rows(path):
    if not os.path.isfile(path):
        return []
    with open(path) as f:
        return [row for row in csv.DictReader(f) if row.get("val_negative_elbo")]


def _objectives(rows, beta):
    return [validation_objective(row, beta) for row in rows]


class _ResumableEarlyStopping(keras.callbacks.EarlyStopping):
    """Early stopping whose best value and wait count come back from `history.csv`.

    The first `warmup_epochs - 1` epochs of the KL warm-up never count
    towards the patience, though their best is kept: a model's validation
    objective at the full KL weight may get worse for dozens of epochs while
    its KL weight is small (the conv HVAE's did from epoch 16 on).
    """

    def __init__(self, history_path, beta, warmup_epochs=0, **kwargs):
        super().__init__(monitor="val_objective", mode="min", **kwargs)
        self.history_path = history_path
        self.beta = beta
        self.warmup_epochs = warmup_epochs

    def _in_warmup(self, epoch):
        # `epoch` counts from 0; the published code's from 1, resetting while below its warm-up.
        return epoch + 1 < self.warmup_epochs

    def on_epoch_end(self, epoch, logs=None):
        if not self._in_warmup(epoch):
            return super().on_epoch_end(epoch, logs)
        patience, self.patience = self.patience, math.inf  # keep the best, never stop
        try:
            super().on_epoch_end(epoch, logs)
        finally:
            self.patience = patience
        self.wait = 0

    def get_monitor_value(self, logs):
        if not logs or "val_reconstruction_loss" not in logs:
            return super().get_monitor_value(logs)  # Keras's warning, and None
        return validation_objective(logs, self.beta)

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        rows = _history_rows(self.history_path)
        if rows:
            values = _objectives(rows, self.beta)
            best = int(np.argmin(values))
            self.best = values[best]
            self.best_epoch = int(rows[best]["epoch"])
            self.wait = sum(not self._in_warmup(int(row["epoch"])) for row in rows[best + 1 :])


class _SaveBest(keras.callbacks.Callback):
    """Writes the model to `path` atomically whenever the validation objective improves."""

    def __init__(self, path, history_path, beta):
        super().__init__()
        self.path = path
        self.history_path = history_path
        self.beta = beta
        self.best = math.inf

    def on_train_begin(self, logs=None):
        rows = _history_rows(self.history_path)
        if rows and os.path.isfile(self.path):
            self.best = min(_objectives(rows, self.beta))

    def on_epoch_end(self, epoch, logs=None):
        if not logs or "val_reconstruction_loss" not in logs:
            return
        value = validation_objective(logs, self.beta)
        if np.isfinite(value) and value < self.best:
            self.best = float(value)
            atomic_save_model(self.model, self.path)


def train(
    preset,
    run_dir,
    max_epochs=PUBLISHED_MAX_EPOCHS,
    patience=PUBLISHED_PATIENCE,
    warmup_epochs=100,
    batch_size=100,
    learning_rate=5e-4,
    seed=0,
    data_dir=None,
    train_examples=None,
    validation_examples=None,
    verbose=2,
):
    """Trains a zoo preset under the protocol; resumes a run folder that has a backup.

    `train_examples` and `validation_examples` keep only the first images of
    each set (for quick checks; a protocol run uses all). Returns the path of
    `best.keras`.
    """
    splits = binarized_splits(data_dir)
    x_train, y_train = splits["train"]
    if train_examples:
        x_train, y_train = x_train[:train_examples], y_train[:train_examples]
    x_val, y_val = splits["validation"]
    if validation_examples:
        x_val, y_val = x_val[:validation_examples], y_val[:validation_examples]
    os.makedirs(run_dir, exist_ok=True)
    steps_per_epoch = math.ceil(len(x_train) / batch_size)
    keras.utils.set_random_seed(seed)
    model = zoo.build(
        preset,
        seed=seed,
        kl_schedule=schedules.LinearWarmup(max(1, warmup_epochs * steps_per_epoch)),
    )
    model.compile(optimizer=keras.optimizers.Adam(learning_rate))
    conditional = model.num_classes is not None
    train_ds = data.make_dataset(
        x_train,
        batch_size,
        shuffle=True,
        dynamic_binarization=True,
        seed=seed,
        labels=y_train if conditional else None,
    )
    validation = (x_val, y_val) if conditional else (x_val,)
    history_path = os.path.join(run_dir, "history.csv")
    best_path = os.path.join(run_dir, "best.keras")
    beta = model.beta  # the full KL weight: what the warm-up ramps up to
    callbacks = [_ValidationNegativeELBO()]
    if needs_computed_objective(model):
        callbacks.append(_ValidationObjective(x_val, y_val if conditional else None, seed=VALIDATION_SEED))
    callbacks += [
        # Kept when training ends, so that a larger --max-epochs continues the
        # run (Keras's default deletes it: the next call would start over).
        # kerasvae's subclass writes it atomically and refuses non-finite weights.
        callbacks_safety.BackupAndRestore(os.path.join(run_dir, "backup"), delete_checkpoint=False),
        _SaveBest(best_path, history_path, beta),
        keras.callbacks.CSVLogger(history_path, append=True),
        _ResumableEarlyStopping(history_path, beta, warmup_epochs=warmup_epochs, patience=patience),
        callbacks_safety.StopOnNonFinite(),
    ]
    state_path = os.path.join(run_dir, "train_state.json")
    previous = {}
    if os.path.isfile(state_path):
        with open(state_path) as f:
            previous = json.load(f)
    settings = {
        "preset": preset,
        "max_epochs": max_epochs,
        "patience": patience,
        "warmup_epochs": warmup_epochs,
        "batch_size": batch_size,
        "learning_rate": learning_rate,
        "seed": seed,
        "train_examples": len(x_train),
        "validation_examples": len(x_val),
    }
    start = time.time()
    # Each finished epoch's wall time, over every session of the run. The
    # total below also counts time the run sat paused or shared the machine;
    # the median epoch is what an epoch costs.
    epoch_seconds = list(previous.get("epoch_seconds", []))
    epoch_start = start

    def write_state():
        rows = _history_rows(history_path)
        values = _objectives(rows, beta)
        state = {
            **settings,
            "epochs_run": len(rows),
            "best_epoch": int(np.argmin(values)) + 1 if rows else None,
            # Summed over the sessions that trained this run, written every
            # epoch so that a killed session's time is kept.
            "train_seconds": round(previous.get("train_seconds", 0.0) + time.time() - start, 1),
            "epoch_seconds": epoch_seconds,
            "backend": keras.backend.backend(),
            "hardware": _hardware(),
        }
        atomic_write_text(state_path, json.dumps(state, indent=2))

    def epoch_begin(epoch, logs):
        nonlocal epoch_start
        epoch_start = time.time()

    def epoch_end(epoch, logs):
        epoch_seconds.append(round(time.time() - epoch_start, 1))
        write_state()

    # After the CSV logger, so that the state counts the epoch just logged.
    callbacks.append(keras.callbacks.LambdaCallback(on_epoch_begin=epoch_begin, on_epoch_end=epoch_end))
    model.fit(
        train_ds,
        epochs=max_epochs,
        validation_data=validation,
        validation_batch_size=1000,
        callbacks=callbacks,
        shuffle=False,  # the dataset reshuffles itself
        verbose=verbose,
    )
    write_state()
    return best_path


def evaluate(
    model, num_samples=NLL_SAMPLES, test_examples=None, data_dir=None, seed=0, verbose=1, progress_path=None
):
    """The protocol's test figures for a trained model, as a dict for `metrics.json`.

    With `progress_path` the K = 5000 estimate saves its progress after each
    batch of 100 images there and continues from it when run again; then
    `evaluation_resumed` is true and `evaluation_seconds` adds the earlier
    sittings' time (each up to its last saved batch) to the last one's.
    """
    x_test, y_test = binarized_splits(data_dir)["test"]
    if test_examples:
        x_test, y_test = x_test[:test_examples], y_test[:test_examples]
    labels = y_test if model.num_classes is not None else None
    resumed = progress_path is not None and os.path.exists(progress_path)
    earlier_seconds = evaluation.saved_progress_seconds(progress_path)
    start = time.time()
    figures = evaluation.evaluate_vae(
        model,
        x_test,
        labels,
        num_importance_samples=num_samples,
        nll_examples=len(x_test),
        batch_size=100,
        seed=seed,
        verbose=verbose,
        progress_path=progress_path,
    )
    figures["evaluation_seconds"] = round(earlier_seconds + time.time() - start, 1)
    if resumed:
        figures["evaluation_resumed"] = True
    figures["protocol"] = {
        "dataset": "Fashion-MNIST",
        "binarized": True,
        "training_binarization": "dynamic (a fresh Bernoulli draw each epoch)",
        "test_binarization_seed": TEST_SEED,
        "validation_binarization_seed": VALIDATION_SEED,
        "validation_examples": VALIDATION_SIZE,
        "nll_num_samples": num_samples,
        "test_examples": int(len(x_test)),
        "units": "nats",
    }
    return figures


def main(argv=None):
    """`python -m kerasvae.protocol train|evaluate ...`: the protocol's two steps.

    `train` resumes a run folder that has a backup, so the same command
    continues an interrupted run (or extends a finished one with a larger
    `--max-epochs`). `evaluate` writes `metrics.json` beside `best.keras`,
    and is resumable too: its K = 5000 estimate saves its progress in
    `nll_progress.npz` after each batch and the same command continues it;
    `kerasvae.pretrained.publish_binarized` then exports it into `savedmodels/`.
    """
    import argparse

    parser = argparse.ArgumentParser(prog="python -m kerasvae.protocol", description=main.__doc__)
    verbs = parser.add_subparsers(dest="verb", required=True)
    train_parser = verbs.add_parser("train", help="train a preset under the protocol (resumable)")
    train_parser.add_argument("preset", choices=zoo.list_presets())
    train_parser.add_argument("run_dir")
    train_parser.add_argument("--max-epochs", type=int, default=PUBLISHED_MAX_EPOCHS)
    train_parser.add_argument("--patience", type=int, default=PUBLISHED_PATIENCE)
    train_parser.add_argument("--warmup-epochs", type=int, default=100)
    train_parser.add_argument("--seed", type=int, default=0)
    train_parser.add_argument("--data-dir")
    eval_parser = verbs.add_parser("evaluate", help="the protocol's test figures -> metrics.json")
    eval_parser.add_argument("run_dir")
    eval_parser.add_argument("--num-samples", type=int, default=NLL_SAMPLES)
    eval_parser.add_argument("--test-examples", type=int)
    eval_parser.add_argument("--data-dir")
    args = parser.parse_args(argv)
    if args.verb == "train":
        path = train(
            args.preset,
            args.run_dir,
            max_epochs=args.max_epochs,
            patience=args.patience,
            warmup_epochs=args.warmup_epochs,
            seed=args.seed,
            data_dir=args.data_dir,
        )
        print(path)
        return
    model = keras.saving.load_model(os.path.join(args.run_dir, "best.keras"))
    figures = evaluate(
        model,
        num_samples=args.num_samples,
        test_examples=args.test_examples,
        data_dir=args.data_dir,
        progress_path=os.path.join(args.run_dir, "nll_progress.npz"),
    )
    state_path = os.path.join(args.run_dir, "train_state.json")
    if os.path.isfile(state_path):
        with open(state_path) as f:
            figures["training"] = json.load(f)
    out = os.path.join(args.run_dir, "metrics.json")
    atomic_write_text(out, json.dumps(figures, indent=2, default=float))
    print(out)


if __name__ == "__main__":
    main()
