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
    served = kerasvae.pretrained.load_pretrained("mlp_fashion_mnist")
    out = served.signatures["sample_seeded"](num_samples=tf.constant(8), seed=tf.constant(0, tf.int64))
    images = out["samples"]  # (8, 28, 28, 1)
    ```
    """
    from kerasvae.export import verify_saved_model

    return verify_saved_model(pretrained_path(name, version))


def load_pretrained_keras(name, learning_rate=1e-4):
    """Loads the Keras model of a pretrained entry, compiled for fine-tuning.

    The file holds weights only (no optimizer state, a third of the size), so
    a fresh Adam with `learning_rate` is attached; `compile` again to change it.
    """
    import keras

    _register_classes()
    path = os.path.join(_entry(name), "model.keras")
    model = keras.saving.load_model(path, compile=False, safe_mode=True)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate))
    return model


def pretrained_metrics(name):
    with open(os.path.join(_entry(name), "metrics.json")) as f:
        return json.load(f)


def model_card(name):
    """The model card text (Markdown) of a pretrained entry, from its metrics."""
    from kerasvae.zoo import get_preset

    record = pretrained_metrics(name)
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
    import keras

    from kerasvae.callbacks import atomic_save_model
    from kerasvae.io_utils import atomic_write_text

    _register_classes()

    entry = os.path.join(savedmodels_dir(), name)
    os.makedirs(entry, exist_ok=True)
    model = keras.saving.load_model(os.path.join(run_dir, "model.keras"), compile=False, safe_mode=True)
    atomic_save_model(model, os.path.join(entry, "model.keras"))
    with open(os.path.join(run_dir, "metrics.json")) as f:
        atomic_write_text(os.path.join(entry, "metrics.json"), f.read())
    return write_model_card(name)
