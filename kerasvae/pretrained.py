"""Pretrained models kept in the repository's `savedmodels/` folder.

Layout of one entry, `savedmodels/<name>/`:

- `<version>/`: the SavedModel TF Serving loads (see `kerasvae.export`);
- `model.keras`: the same weights as a Keras file, to fine-tune or evaluate;
- `metrics.json`: the training run's settings and its test-set figures;
- `README.md`: the model card, written from `metrics.json`.

TF Serving only looks at the numeric folders, so the base path can be served
as it is.
"""

import json
import os
import statistics
import zipfile

SAVEDMODELS_ENV = "KERASVAE_SAVEDMODELS"


def _register_classes():
    """Imports the modules whose classes a kerasvae `.keras` file names.

    Loading needs them registered with Keras; they are imported from their own
    modules, not from the package face (`kerasvae/__init__.py` imports this
    module, so imports here run downward only).
    """
    import kerasvae.layers  # noqa: F401
    import kerasvae.likelihoods  # noqa: F401
    import kerasvae.models  # noqa: F401


class UnsafeModelError(ValueError):
    """A `.keras` file carries code (a Lambda layer, a serialized lambda) and
    loading it was not allowed."""


def _walk(node, where):
    """Yields `(config dict, location)` for every dict in a Keras config tree."""
    if isinstance(node, dict):
        config = node.get("config")
        name = config.get("name") if isinstance(config, dict) else None
        here = f"{where}/{name}" if isinstance(name, str) else where
        yield node, here
        for value in node.values():
            yield from _walk(value, here)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value, where)


def unsafe_entries(path):
    """What in a `.keras` file would run code of the file's choosing when loaded.

    Keras stores a `Lambda` layer's function, and any Python `lambda` used as
    an activation or another argument, as marshalled bytecode
    (`"class_name": "__lambda__"`) that runs when the model is built or
    called. Every other object a kerasvae file refers to is a Keras built-in or
    a class registered by an imported package (e.g. `kerasvae>VAE`), found by
    name; Keras never imports a module a file names outside Keras itself.

    Returns:
        A list of readable descriptions, empty for a safe file.

    Raises:
        FileNotFoundError: no file at `path`.
        ValueError: the file is not a `.keras` archive.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No model file at {path!r}.")
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(
            f"{path!r} is not a Keras model file (a .keras zip archive holding config.json): {e}"
        ) from e
    found = []
    for node, where in _walk(config, ""):
        class_name = node.get("class_name")
        module = str(node.get("module") or "")
        if class_name == "Lambda" and (module == "keras" or module.startswith("keras.")):
            found.append(f"a Lambda layer {where!r} (its function is Python code)")
        elif class_name == "__lambda__":
            found.append(f"a serialized Python lambda (bytecode) in {where or '/'!r}")
    return sorted(set(found))


def load_keras_model(path, allow_unsafe=False, compile=True):
    """Loads a `.keras` file, refusing one that carries code unless allowed.

    The file is inspected before Keras reads it (`unsafe_entries`); a safe
    file is loaded with `safe_mode=True`. Every kerasvae model saves as a
    safe file.

    Args:
        path: str. The `.keras` file.
        allow_unsafe: bool. Load a file that carries a Lambda layer or other
            Python code (with `safe_mode=False`): only for files you trust,
            since that code runs in this process.
        compile: bool. Restore the training configuration (optimizer).

    Raises:
        FileNotFoundError: no file at `path`.
        UnsafeModelError: the file carries code and `allow_unsafe` is False.
        ValueError: the file is not a `.keras` archive.
    """
    import keras

    _register_classes()
    path = os.fspath(path)
    entries = unsafe_entries(path)
    if entries and not allow_unsafe:
        raise UnsafeModelError(
            f"Refusing to load {path!r}: it carries {'; '.join(entries)}, code that would run "
            "in this process when the model is loaded or called. kerasvae models never need "
            "it. Load it only if you trust where it came from: pass allow_unsafe=True "
            "(on the command line: --unsafe)."
        )
    return keras.saving.load_model(path, compile=compile, safe_mode=not entries)


def savedmodels_dir():
    """The folder of pretrained models: `$KERASVAE_SAVEDMODELS` or the repo's."""
    default = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "savedmodels")
    return os.environ.get(SAVEDMODELS_ENV, default)


def list_pretrained():
    """Names of the pretrained models present."""
    root = savedmodels_dir()
    if not os.path.isdir(root):
        return []
    return sorted(
        name for name in os.listdir(root) if os.path.isfile(os.path.join(root, name, "metrics.json"))
    )


def _entry(name):
    available = list_pretrained()
    if name not in available:
        raise ValueError(
            f"Unknown pretrained model. Available in {savedmodels_dir()!r}: {available}. "
            f"Received: name={name!r}"
        )
    return os.path.join(savedmodels_dir(), name)


def pretrained_path(name, version=None):
    """Path of a pretrained SavedModel version (the newest by default)."""
    from kerasvae.export import existing_versions

    entry = _entry(name)
    versions = existing_versions(entry)
    if not versions:
        raise FileNotFoundError(f"No SavedModel version folder in {entry!r}.")
    if version is None:
        version = versions[-1]
    if version not in versions:
        raise ValueError(f"Version {version!r} of {name!r} not found. Available: {versions}")
    return os.path.join(entry, str(version))


def load_pretrained(name, version=None):
    """Loads a pretrained SavedModel with `tf.saved_model.load`.

    The result has the export's signatures (`encode`, `decode`,
    `reconstruct`, `sample`, `sample_seeded`, `serving_default`).

    Example:

    ```python
    served = kerasvae.pretrained.load_pretrained("mlp_fashion_mnist_grey")
    out = served.signatures["sample_seeded"](num_samples=tf.constant(8), seed=tf.constant(0, tf.int64))
    images = out["samples"]  # (8, 28, 28, 1)
    ```
    """
    from kerasvae.export import verify_saved_model

    return verify_saved_model(pretrained_path(name, version))


def load_pretrained_keras(name, learning_rate=1e-4, allow_unsafe=False):
    """Loads the Keras model of a pretrained entry, compiled for fine-tuning.

    The file holds weights only (no optimizer state, a third of the size), so
    a fresh Adam with `learning_rate` is attached; `compile` again to change it.
    A file that carries code (a Lambda layer) is refused unless
    `allow_unsafe=True` (see `load_keras_model`).
    """
    import keras

    path = os.path.join(_entry(name), "model.keras")
    model = load_keras_model(path, allow_unsafe=allow_unsafe, compile=False)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate))
    return model


def pretrained_metrics(name):
    with open(os.path.join(_entry(name), "metrics.json")) as f:
        return json.load(f)


def model_card(name):
    """The model card text (Markdown) of a pretrained entry, from its metrics."""
    from kerasvae.zoo import get_preset

    record = pretrained_metrics(name)
    if "protocol" in record:
        return _binarized_model_card(name, record)
    config, test = record["run_config"], record["test"]
    preset = get_preset(config["preset"])
    rows = [
        ("negative ELBO (nats)", test["negative_elbo"]),
        ("reconstruction term (nats)", test["reconstruction_loss"]),
        ("KL term (nats)", test["kl_loss"]),
        (f"importance-sampled NLL, K={test['nll_num_samples']} (nats)", test["nll_importance_sampled"]),
        ("bits per dimension", test["bits_per_dim"]),
        ("active units", f"{test['active_units']} of {test['latent_dim']}"),
    ]
    table = "\n".join(f"| {k} | {v:.2f} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in rows)
    return f"""# {name}

{preset.description}

Trained by `python -m kerasvae train --preset {config['preset']}` on the 60,000
Fashion-MNIST training images (grey levels in [0, 1]) for {config['epochs']} epochs,
batch size {config['batch_size']}, Adam at {config['learning_rate']}, seed {config['seed']}.

## Test set ({test['examples']} images; NLL on {test['nll_examples']})

| figure | value |
|---|---|
{table}

The Bernoulli likelihood is applied to grey levels (not binarized images), so
these nats are cross-entropies against soft targets: they include the targets'
own entropy and are not comparable with results on binarized MNIST.

## Use

- TF Serving: serve this folder as the model's base path (`savedmodels/{name}`).
- Python: `kerasvae.pretrained.load_pretrained("{name}")` (SavedModel) or
  `kerasvae.pretrained.load_pretrained_keras("{name}")` (Keras, to fine-tune).
- Signatures: encode, decode, reconstruct, sample, sample_seeded, serving_default.
"""


# What a family's figures mean beside the table's, for the families it has no row for.
_NO_PUBLISHED_ROW = {
    "beta_vae": (
        "With beta > 1 the training objective weighs the KL term more than the ELBO does, "
        "trading likelihood for a more compressed posterior: its NLL is expected to be "
        "worse than the plain VAE's on the same data, by design."
    ),
    "conditional_vae": (
        "Its figures are conditional on the class: the NLL is -log p(x | y), which the "
        "label's information makes lower than an unconditional -log p(x). It is not "
        "comparable with the table's unconditional rows."
    ),
    "iwae": (
        "The NLL is estimated with the same K = 5000 importance sampling as every row; the "
        "negative ELBO and KL are the one-sample (K = 1) figures, which an IWAE gives up "
        "for a tighter K-sample bound."
    ),
}


# Where a preset's networks differ from those of the published row it sits beside.
_NETWORKS_UNLIKE_THE_PUBLISHED = {
    "hvae_conv": (
        "Its networks are lighter than the published convolutional HVAE's: plain stride-2 "
        "convolutions and transposed ones, 13 million multiply-adds an image at 28x28, where "
        "the published networks (`hvae_gated_conv`) are gated convolutions with a decoder of "
        "four 64-channel convolutions at full resolution, 221 million. Those take 15 times as "
        "long a training step on a 2-core CPU (16.4 minutes an epoch, "
        "`benchmarks/conv_hvae_step_time.py`, 2026-11-29)."
    ),
}


def _seconds_per_epoch(config):
    """The run's median epoch where recorded (its total wall time also
    counts pauses), else its mean."""
    return config.get("median_epoch_seconds") or config["train_seconds"] / config["epochs_run"]


def _what_would_close_the_gap(gap, stderr, config):
    """Why a model is behind its published row, and what more training costs
    here, from its own run's record."""
    from kerasvae import protocol

    epochs_run, best, limit = config["epochs_run"], config["epochs"], config["max_epochs"]
    patience = config["patience"]
    seconds_per_epoch = _seconds_per_epoch(config)
    noise = f"The gap is {gap / stderr:.1f} standard errors of the estimate."
    machine = f"{config['hardware']}, Keras on {config['backend']}"
    rule = (
        f"up to {protocol.PUBLISHED_MAX_EPOCHS} epochs, stopping after "
        f"{protocol.PUBLISHED_PATIENCE} without a better validation ELBO"
    )
    stopped = (
        f"{noise} Early stopping ended the run at epoch {epochs_run}, {patience} epochs after its "
        f"best ({best})"
    )
    if epochs_run < limit and patience != protocol.PUBLISHED_PATIENCE:
        return (
            f"{stopped}, where the published setup's rule is {rule}: the same run with "
            f"`--patience {protocol.PUBLISHED_PATIENCE}` would train on. An epoch took "
            f"{seconds_per_epoch:.0f} s here ({machine})."
        )
    if epochs_run < limit:
        # Stopped by the published rule itself: more epochs of this run would
        # end the same way (the early stopping resumes from the history).
        return (
            f"{stopped}, by the published setup's own rule ({rule}), so a larger "
            f"--max-epochs would stop it again after one epoch that does not improve on it. What "
            f"is left is the spread between training runs and the estimate's noise: another seed "
            f"is a new run of about {seconds_per_epoch * epochs_run / 3600:.1f} hours here ({machine})."
        )
    if best == epochs_run:
        why = (
            f"The run stopped at its epoch limit ({limit}) with the validation figure still "
            f"improving (the best epoch was the last)"
        )
    else:
        why = f"The run stopped at its epoch limit ({limit}); its best epoch was {best}"
    return (
        f"{noise} {why}, where the published setup's rule is {rule}. An epoch took "
        f"{seconds_per_epoch:.0f} s here ({machine}), so 100 more take "
        f"{100 * seconds_per_epoch / 3600:.1f} hours: `python -m kerasvae.protocol train <run> "
        f"--max-epochs {limit + 100}` continues this run from its last epoch."
    )


def _binarized_model_card(name, record):
    """The card of a model trained and evaluated under `kerasvae.protocol`."""
    from kerasvae import protocol
    from kerasvae.zoo import get_preset

    config, test, setup = record["run_config"], record["test"], record["protocol"]
    preset = get_preset(config["preset"])
    nll, stderr = test["nll_importance_sampled"], test["nll_standard_error"]
    rows = [
        ("negative ELBO (nats)", test["negative_elbo"]),
        ("reconstruction term (nats)", test["reconstruction_loss"]),
        ("KL term (nats)", test["kl_loss"]),
        (f"importance-sampled NLL, K={test['nll_num_samples']} (nats)", f"{nll:.2f} +- {stderr:.2f}"),
        ("bits per dimension", test["bits_per_dim"]),
        ("active units", f"{test['active_units']} of {test['latent_dim']}"),
    ]
    if preset.family == "iwae":
        k = preset.model_kwargs.get("num_samples")
        rows.insert(3, (f"negative {k}-sample bound, the IWAE's loss (nats)", test["loss"]))
    table = "\n".join(f"| {k} | {v:.2f} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in rows)
    row = protocol.PUBLISHED_ROW.get(config["preset"])
    if row is None:
        comparison = "The published table has no row for this family. " + _NO_PUBLISHED_ROW.get(
            preset.family, ""
        )
    else:
        published = protocol.PUBLISHED[row]
        gap = nll - published
        verdict = (
            f"{-gap:.2f} nats better than" if gap < 0 else f"{gap:.2f} nats behind"
        )
        comparison = (
            f"Published ({row}, Norouzi et al. 2020, K = 5000): {published:.2f} nats. "
            f"This model: {nll:.2f} +- {stderr:.2f}, {verdict} the published figure."
        )
        if gap > 0:
            comparison += " " + _what_would_close_the_gap(gap, stderr, config)
        else:
            comparison += f" The difference is {-gap / stderr:.1f} standard errors of the estimate."
        if config["preset"] in _NETWORKS_UNLIKE_THE_PUBLISHED:
            comparison += " " + _NETWORKS_UNLIKE_THE_PUBLISHED[config["preset"]]
    hours = config["train_seconds"] / 3600
    timing = f"{hours:.1f} hours on {config['hardware']}, Keras on {config['backend']}"
    if "median_epoch_seconds" in config:
        timing = (
            f"{hours:.1f} hours of wall time on {config['hardware']}, Keras on {config['backend']}, "
            f"including any time the run sat paused or shared the machine; the median epoch took "
            f"{config['median_epoch_seconds']:.0f} s"
        )
    beta = preset.model_kwargs.get("beta", 1.0)
    if preset.family == "iwae":
        selection = (
            f"negative {preset.model_kwargs.get('num_samples')}-sample importance weighted bound "
            "(the IWAE's loss, at the full KL weight)"
        )
    elif beta == 1.0:
        selection = "negative ELBO"
    else:
        selection = f"objective (reconstruction + {beta:g} x KL, the loss at the full KL weight)"
    num_classes = preset.model_kwargs.get("num_classes")
    inputs_note = (
        f", with the class of each image (an integer from 0 to {num_classes - 1}) as `label`"
        " (`labels` for `sample` and `sample_seeded`)"
        if num_classes
        else ""
    )
    return f"""# {name}

{preset.description}

Trained under the standard binarized Fashion-MNIST protocol (`kerasvae.protocol`):
dynamic binarization of the first {config['train_examples']:,} training images (a fresh
Bernoulli draw of every pixel each epoch), the last {setup['validation_examples']:,} held out
for early stopping (binarized once, seed {setup['validation_binarization_seed']}), Adam at
{config['learning_rate']}, batch size {config['batch_size']}, KL warm-up over
{config['warmup_epochs']} epochs, seed {config['seed']}. {config['epochs_run']} epochs were run
({timing}); the weights are those
of epoch {config['epochs']}, the best validation {selection}.

## Test set ({test['examples']:,} images binarized with seed {setup['test_binarization_seed']})

| figure | value |
|---|---|
{table}

{comparison}

## Use

- TF Serving: serve this folder as the model's base path (`savedmodels/{name}`).
- Python: `kerasvae.pretrained.load_pretrained("{name}")` (SavedModel) or
  `kerasvae.pretrained.load_pretrained_keras("{name}")` (Keras, to fine-tune).
- Signatures: encode, decode, reconstruct, sample, sample_seeded, elbo, prior_log_prob,
  serving_default. Inputs are binary images (0 or 1) of shape (28, 28, 1){inputs_note}.
"""


def write_model_card(name):
    from kerasvae.io_utils import atomic_write_text

    path = os.path.join(_entry(name), "README.md")
    atomic_write_text(path, model_card(name))
    return path


def publish(run_dir, name):
    """Copies a finished training run into `savedmodels/<name>/`.

    Writes the weights-only `model.keras`, `metrics.json` and the model card;
    the SavedModel version itself is written by the run's export.
    """
    from kerasvae.callbacks import atomic_save_model
    from kerasvae.io_utils import atomic_write_text

    entry = os.path.join(savedmodels_dir(), name)
    os.makedirs(entry, exist_ok=True)
    model = load_keras_model(os.path.join(run_dir, "model.keras"), compile=False)
    atomic_save_model(model, os.path.join(entry, "model.keras"))
    with open(os.path.join(run_dir, "metrics.json")) as f:
        atomic_write_text(os.path.join(entry, "metrics.json"), f.read())
    return write_model_card(name)


def publish_binarized(run_dir, name):
    """Puts a finished, evaluated protocol run into `savedmodels/<name>/`.

    Needs `best.keras` and `metrics.json` (from `python -m kerasvae.protocol
    evaluate`) in `run_dir`, and
    the TensorFlow backend for the SavedModel. Writes version 1 of the
    SavedModel, a weights-only `model.keras`, `metrics.json` in the layout of
    the other pretrained entries (`run_config`, `test`, plus `protocol` and
    `training`) and the model card.
    """
    from kerasvae import export
    from kerasvae.callbacks import atomic_save_model
    from kerasvae.io_utils import atomic_write_text

    with open(os.path.join(run_dir, "metrics.json")) as f:
        evaluated = json.load(f)
    training = evaluated.pop("training")
    protocol = evaluated.pop("protocol")
    model = load_keras_model(os.path.join(run_dir, "best.keras"), compile=False)
    entry = os.path.join(savedmodels_dir(), name)
    os.makedirs(entry, exist_ok=True)
    export.export_saved_model(model, entry, version=1, overwrite=True)
    atomic_save_model(model, os.path.join(entry, "model.keras"))
    record = {
        "run_config": {
            "preset": training["preset"],
            "epochs": training["best_epoch"],
            "epochs_run": training["epochs_run"],
            "max_epochs": training["max_epochs"],
            "patience": training["patience"],
            "warmup_epochs": training["warmup_epochs"],
            "batch_size": training["batch_size"],
            "learning_rate": training["learning_rate"],
            "train_examples": training["train_examples"],
            "seed": training["seed"],
            "backend": training["backend"],
            "train_seconds": training["train_seconds"],
            "hardware": training["hardware"],
            **(
                {"median_epoch_seconds": statistics.median(training["epoch_seconds"])}
                if training.get("epoch_seconds")
                else {}
            ),
        },
        "test": evaluated,
        "protocol": protocol,
    }
    atomic_write_text(os.path.join(entry, "metrics.json"), json.dumps(record, indent=2))
    return write_model_card(name)
