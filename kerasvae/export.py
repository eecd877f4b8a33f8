"""SavedModel export for TensorFlow Serving (the TensorFlow-only corner).

`export_saved_model(model, base_path)` writes `<base_path>/<version>/`, the
layout TF Serving polls, with these signatures (every output a dict entry with
a stable name):

| signature       | inputs                                   | outputs                                  |
|-----------------|------------------------------------------|------------------------------------------|
| encode          | x: float32 (batch, *data_shape)          | z_mean, z_log_var (or scale_tril; the    |
|                 |                                          | hierarchical family names each level)    |
| decode          | z: float32 (batch, latent_dim)           | the likelihood's: probabilities, logits  |
|                 |                                          | (Bernoulli), mean, log_var (Gaussian) or |
|                 |                                          | mean, log_scale (discretized logistic)   |
| reconstruct     | x                                        | reconstruction                           |
| sample          | num_samples: int32 scalar                | samples, z (z from the model's prior)    |
| sample_seeded   | num_samples: int32 scalar, seed: int64   | samples, z (same seed, same samples)     |
| elbo            | x                                        | negative_elbo, reconstruction_loss,      |
|                 |                                          | kl_loss per example (an anomaly score;   |
|                 |                                          | one posterior draw with a fixed seed)    |
| prior_log_prob  | z                                        | log_prob: log p(z) per row               |
| serving_default | x                                        | reconstruction (same as reconstruct)     |

A conditional model (`num_classes` set) adds `label: int64 (batch,)` to
encode, decode, reconstruct, elbo and serving_default; its sample and
sample_seeded take `label` instead of `num_samples` and draw one sample per
label. Labels outside [0, num_classes) or of the wrong count are refused.

Inputs are checked in the graph, where TF Serving runs them: a wrong rank or
example shape is an `InvalidArgumentError` naming the shape received (a
Flatten layer would otherwise accept `(batch, 784)` for `(batch, 28, 28, 1)`).
`sample_seeded` uses stateless random ops, so concurrent requests never share
random state. `num_samples` must lie in [1, MAX_NUM_SAMPLES]; anything else is
an `InvalidArgumentError` that names the value received.

Writing a new version is atomic: the SavedModel is written to a hidden
temporary folder beside the target (TF Serving ignores names that are not
numbers), loaded back and checked, then renamed into place, so a polling TF
Serving never sees half a version. An existing version is never replaced
unless `overwrite=True`; that replacement takes two renames (the version is
missing for an instant) and a running TF Serving keeps serving the version it
already loaded, so publish changes as a new version instead.
"""

import json
import os
import shutil
import uuid

import keras
import tensorflow as tf


SIGNATURE_NAMES = (
    "encode",
    "decode",
    "reconstruct",
    "sample",
    "sample_seeded",
    "elbo",
    "prior_log_prob",
    "serving_default",
)
MAX_NUM_SAMPLES = 10_000
METADATA_FILE = os.path.join("assets.extra", "kerasvae.json")


def _float32(structure):
    return tf.nest.map_structure(lambda t: tf.cast(t, tf.float32), structure)


def _check_num_samples(num_samples):
    return tf.debugging.Assert(
        tf.logical_and(num_samples >= 1, num_samples <= MAX_NUM_SAMPLES),
        [f"num_samples must be in [1, {MAX_NUM_SAMPLES}]. Received: num_samples=", num_samples],
    )


def _checked(tensor, example_shape, name):
    """`tensor` after an in-graph check of its rank and example shape.

    A signature's TensorSpec is not enforced when a served model runs (TF
    Serving and the session loader feed whatever arrives), and a Flatten layer
    would silently accept (batch, 784) for (batch, 28, 28, 1). So the graph
    checks, and the error names the shape received. The received shape is
    compared as a string: graph optimizers fold rank and slices of shapes from
    the declared TensorSpec, so numeric comparisons would trust the very
    shape being checked.
    """
    received = tf.strings.reduce_join(tf.strings.as_string(tf.shape(tensor)), separator=",")
    pattern = r"\d+" + "".join(f",{d}" for d in example_shape)
    readable = ", ".join(str(d) for d in ("batch",) + tuple(example_shape))
    check = tf.debugging.Assert(
        tf.strings.regex_full_match(received, pattern),
        [f"{name} must have shape ({readable}). Received shape:", received],
    )
    with tf.control_dependencies([check]):
        return tf.identity(tensor)


def _check_labels(label, num_classes):
    """In-graph check that every label lies in [0, num_classes)."""
    return tf.debugging.Assert(
        tf.reduce_all(tf.logical_and(label >= 0, label < num_classes)),
        [f"label must lie in [0, {num_classes}). Received: label=", label],
        summarize=16,
    )


def _checked_labels(label, num_classes, batch_of=None):
    """`label` after in-graph checks of its range and, if given, its count."""
    checks = [_check_labels(label, num_classes)]
    if batch_of is not None:
        checks.append(
            tf.debugging.Assert(
                tf.equal(tf.shape(label)[0], tf.shape(batch_of)[0]),
                ["label must have one entry per example. Received labels:", tf.shape(label)[0],
                 "examples:", tf.shape(batch_of)[0]],
            )
        )
    with tf.control_dependencies(checks):
        return tf.identity(label)


def _prior_noise(model, num_samples, seed=None):
    """Standard normal and uniform noise for a prior draw, stateless when seeded."""
    normal_dim, uniform_dim = model.prior_noise_dims
    if seed is None:
        normal = tf.random.normal(tf.stack([num_samples, normal_dim]))
        uniform = tf.random.uniform(tf.stack([num_samples, uniform_dim])) if uniform_dim else None
        return normal, uniform
    normal = tf.random.stateless_normal(tf.stack([num_samples, normal_dim]), seed=tf.stack([seed, 0]))
    uniform = None
    if uniform_dim:
        uniform = tf.random.stateless_uniform(
            tf.stack([num_samples, uniform_dim]), seed=tf.stack([seed, 1])
        )
    return normal, uniform


def build_signatures(model):
    """Returns `{name: tf.function}` for every serving signature of `model`.

    Each function has a fixed `input_signature` with a dynamic batch axis. The
    export is family-agnostic: it uses only the methods every kerasvae model
    inherits from `kerasvae.models.VAE` (`encode_outputs`, `decode_outputs`,
    `reconstruct`, `negative_elbo`, `prior_log_prob`, `prior_noise_dims`,
    `latent_from_noise`). A conditional model (`num_classes` set) takes a
    `label` (int64, one per example) in every signature that decodes or
    encodes; its `sample` and `sample_seeded` draw one sample per label.
    """
    required = ("encode_outputs", "decode_outputs", "negative_elbo", "prior_log_prob", "latent_from_noise")
    if not all(hasattr(model, name) for name in required):
        raise TypeError(
            "export needs a kerasvae model (a subclass of kerasvae.models.VAE). "
            f"Received: {type(model).__name__}"
        )
    data_shape = tuple(model.data_shape)
    latent_dim = model.latent_dim
    num_classes = model.num_classes
    x_spec = tf.TensorSpec((None,) + data_shape, tf.float32, name="x")
    z_spec = tf.TensorSpec((None, latent_dim), tf.float32, name="z")
    n_spec = tf.TensorSpec((), tf.int32, name="num_samples")
    seed_spec = tf.TensorSpec((), tf.int64, name="seed")
    label_spec = tf.TensorSpec((None,), tf.int64, name="label")

    def decoded_mean(z, label=None):
        return tf.cast(model.decode(z, label), tf.float32)

    def prior_draw(num_samples, seed=None):
        normal, uniform = _prior_noise(model, num_samples, seed)
        return tf.cast(model.latent_from_noise(normal, uniform), tf.float32)

    if num_classes is None:

        @tf.function(input_signature=[x_spec])
        def encode(x):
            return _float32(model.encode_outputs(_checked(x, data_shape, "x")))

        @tf.function(input_signature=[z_spec])
        def decode(z):
            return _float32(model.decode_outputs(_checked(z, (latent_dim,), "z")))

        @tf.function(input_signature=[x_spec])
        def reconstruct(x):
            return {"reconstruction": tf.cast(model.reconstruct(_checked(x, data_shape, "x")), tf.float32)}

        @tf.function(input_signature=[x_spec])
        def elbo(x):
            return _float32(model.negative_elbo(_checked(x, data_shape, "x")))

        @tf.function(input_signature=[n_spec])
        def sample(num_samples):
            with tf.control_dependencies([_check_num_samples(num_samples)]):
                z = prior_draw(num_samples)
            return {"samples": decoded_mean(z), "z": z}

        @tf.function(input_signature=[n_spec, seed_spec])
        def sample_seeded(num_samples, seed):
            with tf.control_dependencies([_check_num_samples(num_samples)]):
                z = prior_draw(num_samples, seed)
            return {"samples": decoded_mean(z), "z": z}

    else:

        def labelled(x, label):
            x = _checked(x, data_shape, "x")
            return x, _checked_labels(label, num_classes, batch_of=x)

        @tf.function(input_signature=[x_spec, label_spec])
        def encode(x, label):
            return _float32(model.encode_outputs(*labelled(x, label)))

        @tf.function(input_signature=[z_spec, label_spec])
        def decode(z, label):
            z = _checked(z, (latent_dim,), "z")
            return _float32(model.decode_outputs(z, _checked_labels(label, num_classes, batch_of=z)))

        @tf.function(input_signature=[x_spec, label_spec])
        def reconstruct(x, label):
            return {"reconstruction": tf.cast(model.reconstruct(*labelled(x, label)), tf.float32)}

        @tf.function(input_signature=[x_spec, label_spec])
        def elbo(x, label):
            return _float32(model.negative_elbo(*labelled(x, label)))

        def labelled_count(label):
            label = _checked_labels(label, num_classes)
            count = tf.shape(label)[0]
            with tf.control_dependencies([_check_num_samples(count)]):
                return label, tf.identity(count)

        @tf.function(input_signature=[label_spec])
        def sample(label):
            label, count = labelled_count(label)
            z = prior_draw(count)
            return {"samples": decoded_mean(z, label), "z": z}

        @tf.function(input_signature=[label_spec, seed_spec])
        def sample_seeded(label, seed):
            label, count = labelled_count(label)
            z = prior_draw(count, seed)
            return {"samples": decoded_mean(z, label), "z": z}

    @tf.function(input_signature=list(reconstruct.input_signature))
    def serving_default(*inputs):
        return reconstruct(*inputs)

    @tf.function(input_signature=[z_spec])
    def prior_log_prob(z):
        return {"log_prob": tf.cast(model.prior_log_prob(_checked(z, (latent_dim,), "z")), tf.float32)}

    return {
        "encode": encode,
        "decode": decode,
        "reconstruct": reconstruct,
        "sample": sample,
        "sample_seeded": sample_seeded,
        "elbo": elbo,
        "prior_log_prob": prior_log_prob,
        "serving_default": serving_default,
    }


def model_metadata(model):
    """What a client needs to know about an export, stored beside it."""
    return {
        "format": "kerasvae-savedmodel-1",
        "model_class": type(model).__name__,
        "data_shape": list(model.data_shape),
        "latent_dim": model.latent_dim,
        "covariance": model.covariance,
        "num_classes": model.num_classes,
        "likelihood": keras.saving.serialize_keras_object(model.likelihood),
        "beta": model.beta,
        "signatures": list(SIGNATURE_NAMES),
        "max_num_samples": MAX_NUM_SAMPLES,
        "keras_version": keras.__version__,
        "tensorflow_version": tf.__version__,
    }


def existing_versions(base_path):
    """Sorted integer versions present under `base_path` (TF Serving's view)."""
    if not os.path.isdir(base_path):
        return []
    return sorted(
        int(name) for name in os.listdir(base_path) if name.isascii() and name.isdigit()
    )


def _check_version(version):
    if isinstance(version, bool) or not isinstance(version, int) or version <= 0:
        raise ValueError(
            f"version must be a positive integer (TF Serving's folder name). Received: version={version!r}"
        )


def verify_saved_model(path):
    """Loads an export and checks that every kerasvae signature is present.

    Raises:
        FileNotFoundError: `path` holds no `saved_model.pb`.
        ValueError: the SavedModel cannot be parsed or a signature is missing.
    """
    if not os.path.isfile(os.path.join(path, "saved_model.pb")):
        raise FileNotFoundError(
            f"No SavedModel at {path!r}: saved_model.pb is missing. Export one with "
            "kerasvae.export_saved_model(model, base_path)."
        )
    try:
        loaded = tf.saved_model.load(path)
    except Exception as e:  # TF raises several types for a damaged file
        raise ValueError(f"The SavedModel at {path!r} is corrupt or unreadable: {e}") from e
    missing = [name for name in SIGNATURE_NAMES if name not in loaded.signatures]
    if missing:
        raise ValueError(
            f"The SavedModel at {path!r} lacks the signature(s) {missing}. "
            f"Found: {sorted(loaded.signatures)}"
        )
    return loaded


def export_saved_model(model, base_path, version=None, overwrite=False):
    """Exports `model` to `<base_path>/<version>/` for TensorFlow Serving.

    Args:
        model: a kerasvae model (for example `kerasvae.VAE`).
        base_path: str. The model's base folder, the one TF Serving polls.
        version: int or None. Folder name; `None` takes one more than the
            highest version present (1 for an empty folder).
        overwrite: bool. Replace an existing version. Defaults to `False`.

    Returns:
        The path of the written version folder.

    Raises:
        FileExistsError: the version exists and `overwrite` is `False`.
        ValueError: `version` is not a positive integer, or a weight holds
            NaN or infinite values.

    Example:

    ```python
    path = kerasvae.export_saved_model(vae, "savedmodels/fashion_vae")
    # savedmodels/fashion_vae/1, ready for tensorflow_model_server
    ```
    """
    if keras.backend.backend() != "tensorflow":
        raise RuntimeError(
            "SavedModel export needs the TensorFlow backend. Received: "
            f"KERAS_BACKEND={keras.backend.backend()!r}. Save a .keras file and export "
            "it from a process with KERAS_BACKEND=tensorflow (it loads across backends)."
        )
    base_path = os.fspath(base_path)
    if version is None:
        version = (existing_versions(base_path) or [0])[-1] + 1
    _check_version(version)
    target = os.path.join(base_path, str(version))
    if os.path.exists(target) and not overwrite:
        raise FileExistsError(
            f"Version {version} already exists at {target!r}. Pass overwrite=True to "
            "replace it, or version=None for the next free version."
        )
    nonfinite = [
        v.path
        for v in model.weights
        if keras.backend.is_float_dtype(v.dtype) and not bool(tf.reduce_all(tf.math.is_finite(v.value)))
    ]
    if nonfinite:
        raise ValueError(
            f"Refusing to export non-finite weights: {len(nonfinite)} variable(s) hold NaN or "
            f"infinite values, e.g. {nonfinite[:3]}. Nothing was written; export a finite model."
        )
    signatures = build_signatures(model)  # fails early, before anything is written
    os.makedirs(base_path, exist_ok=True)
    tmp = os.path.join(base_path, f".tmp-{version}-{uuid.uuid4().hex}")
    try:
        archive = keras.export.ExportArchive()
        # No archive.track(model): the endpoints' captured variables are saved
        # anyway, and tracking the model as well stores every weight twice.
        for name in SIGNATURE_NAMES:
            archive.add_endpoint(name, signatures[name])
        archive.write_out(tmp, verbose=False)
        os.makedirs(os.path.join(tmp, "assets.extra"), exist_ok=True)
        with open(os.path.join(tmp, METADATA_FILE), "w") as f:
            json.dump(model_metadata(model), f, indent=2, sort_keys=True)
        verify_saved_model(tmp)
        if os.path.exists(target):
            # Two renames: the version is absent for an instant in between.
            old = os.path.join(base_path, f".old-{version}-{uuid.uuid4().hex}")
            os.rename(target, old)
            os.rename(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            try:
                os.rename(tmp, target)
            except OSError as e:  # another export took this version meanwhile
                raise FileExistsError(
                    f"Version {version} appeared at {target!r} during the export "
                    "(a concurrent export?). Nothing was overwritten; export again."
                ) from e
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def load_metadata(path):
    """Reads the metadata file an export carries (`assets.extra/kerasvae.json`)."""
    with open(os.path.join(path, METADATA_FILE)) as f:
        return json.load(f)
