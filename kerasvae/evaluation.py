"""Evaluation of a trained VAE: ELBO parts, importance-sampled NLL, latent usage.

All numbers are in nats per example unless a name says otherwise; bits per
dimension divide by `log(2) * prod(data_shape)`.
"""

import hashlib
import math
import os
import time

import keras
import numpy as np
from keras import ops

from kerasvae.io_utils import atomic_open
from kerasvae.training import compiled


def _batches(x, batch_size):
    for start in range(0, len(x), batch_size):
        yield x[start : start + batch_size]


def _log_weights_function(model, num_samples, seed):
    """`x, labels -> log w` of shape (num_samples, batch), compiled on either
    backend, and the `SeedGenerator` it draws from.

    The draws come from a generator of their own, so an evaluation never
    advances the model's training noise stream.
    """
    generator = keras.random.SeedGenerator(seed)

    def log_weights(x, labels):
        return model.log_importance_weights(x, labels, num_samples=num_samples, seed=generator)

    return compiled(log_weights, variables=[*model.variables, generator.state]), generator


def _fingerprint(model, x, labels, settings):
    """What a saved estimate belongs to: the weights, the examples and the settings."""
    digest = hashlib.sha256(repr(sorted(settings.items())).encode())
    for array in (*(ops.convert_to_numpy(v) for v in model.weights), x, labels):
        if array is not None:
            array = np.ascontiguousarray(array)
            digest.update(f"{array.dtype}{array.shape}".encode())
            digest.update(array.tobytes())
    return digest.hexdigest()


def saved_progress_seconds(path):
    """Seconds the estimate saved in `path` has taken so far, over every call; 0 without one.

    Counts each earlier call up to its last saved batch (a batch cut short is
    lost, and so is its time).
    """
    if path is None or not os.path.exists(path):
        return 0.0
    with np.load(path) as saved:
        return _seconds(saved)


def _seconds(saved):
    # Files written before the time was kept have none to add.
    return float(saved["seconds"]) if "seconds" in saved.files else 0.0


def _load_progress(path, fingerprint, generators):
    """The estimates a previous call saved in `path` and the seconds they took,
    its generators' states restored."""
    if not os.path.exists(path):
        return [], 0.0
    with np.load(path) as saved:
        if str(saved["fingerprint"]) != fingerprint:
            raise ValueError(
                "The saved progress of an importance-sampled estimate belongs to other weights, "
                "examples or settings (num_samples, batch_size, chunk_size, seed) than this call's. "
                f"Delete it to start over, or pass another progress_path. Received: progress_path={path!r}"
            )
        for k, generator in generators.items():
            generator.state.assign(saved[f"state_{k}"])
        return list(saved["log_px"]), _seconds(saved)


def _save_progress(path, fingerprint, generators, seconds, log_px):
    with atomic_open(path, "wb") as f:
        np.savez(
            f,
            fingerprint=np.asarray(fingerprint),
            seconds=np.asarray(seconds, dtype="float64"),
            log_px=np.asarray(log_px, dtype="float64"),
            **{f"state_{k}": ops.convert_to_numpy(g.state) for k, g in generators.items()},
        )


def importance_sampled_log_likelihood(
    model,
    x,
    labels=None,
    num_samples=100,
    batch_size=100,
    chunk_size=None,
    seed=None,
    verbose=0,
    progress_path=None,
):
    """Per-example estimate of log p(x) with `num_samples` importance samples.

    ```
    log p(x) >= log 1/K sum_k p(x, z_k) / q(z_k | x),  z_k ~ q(z | x)
    ```

    The bound tightens as K grows (Burda et al., 2016) and is never looser
    than the ELBO (K = 1). The K draws go through the model in chunks of
    `chunk_size` and are combined with a running log-sum-exp, so memory is
    bounded by `batch_size * chunk_size` decoder outputs whatever K is. The
    weights come from the model's `log_importance_weights`, so every family
    (its own prior, its own levels) is evaluated by its own density.

    Args:
        model: a kerasvae model.
        x: NumPy array of examples.
        labels: NumPy array of labels for conditional models, else `None`.
        num_samples: int. K, the number of importance samples per example.
        batch_size: int. Examples per pass.
        chunk_size: int or None. Draws per pass; `None` picks one so that a
            pass decodes about 10,000 latents.
        seed: int or None. Seed of the draws.
        verbose: int. 1 shows a Keras progress bar over the examples.
        progress_path: str or None. A `.npz` file where the estimates so far
            and the draws' generator states are written (atomically) after
            each batch. A call that finds the file continues from it, with
            the same estimates an uninterrupted call gives, so an evaluation
            longer than a session can be finished by the next. The file is
            refused if it was written for other weights, examples or
            settings; it is removed once the estimate is complete. It also
            keeps the seconds spent so far (`saved_progress_seconds`).

    Returns:
        NumPy array of shape `(len(x),)`.
    """
    for name, value in (("num_samples", num_samples), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{name} must be a positive integer. Received: {name}={value!r}")
    x = np.asarray(x, dtype="float32")
    model.check_labels(labels, len(x))
    if chunk_size is None:
        chunk_size = max(1, min(num_samples, 10_000 // batch_size))
    chunks = [min(chunk_size, num_samples - start) for start in range(0, num_samples, chunk_size)]
    functions, generators = {}, {}
    for i, k in enumerate(sorted(set(chunks))):
        functions[k], generators[k] = _log_weights_function(model, k, None if seed is None else seed + i)
    results = []
    start_time, seconds_before = time.time(), 0.0
    if progress_path is not None:
        if seed is None:
            raise ValueError(
                "A resumable estimate needs a seed, so that its draws can be continued. "
                f"Received: seed=None with progress_path={progress_path!r}"
            )
        settings = dict(num_samples=num_samples, batch_size=batch_size, chunk_size=chunk_size, seed=seed)
        fingerprint = _fingerprint(model, x, None if labels is None else np.asarray(labels), settings)
        results, seconds_before = _load_progress(progress_path, fingerprint, generators)
    progress = keras.utils.Progbar(len(x), unit_name="example") if verbose else None
    if progress is not None and results:
        progress.add(len(results))
    for start in range(len(results), len(x), batch_size):
        batch = x[start : start + batch_size]
        batch_labels = None if labels is None else np.asarray(labels)[start : start + batch_size]
        total = None  # running logsumexp over the draws so far
        for k in chunks:
            chunk = ops.convert_to_numpy(functions[k](batch, batch_labels)).astype("float64")
            chunk = np.logaddexp.reduce(chunk, axis=0)
            total = chunk if total is None else np.logaddexp(total, chunk)
        results.extend(total - math.log(num_samples))
        if progress_path is not None:
            seconds = seconds_before + time.time() - start_time
            _save_progress(progress_path, fingerprint, generators, seconds, results)
        if progress is not None:
            progress.add(len(batch))
    if progress_path is not None and os.path.exists(progress_path):
        os.remove(progress_path)
    return np.asarray(results, dtype="float64")


def _labelled_batches(x, labels, batch_size):
    x = np.asarray(x, "float32")
    for start in range(0, len(x), batch_size):
        yield x[start : start + batch_size], (
            None if labels is None else np.asarray(labels)[start : start + batch_size]
        )


def posterior_means(model, x, labels=None, batch_size=500):
    return np.concatenate(
        [
            ops.convert_to_numpy(model.encode(b, labels=lab)[0])
            for b, lab in _labelled_batches(x, labels, batch_size)
        ]
    )


def active_units(model, x, labels=None, threshold=0.01, batch_size=500):
    """Latent dimensions whose posterior mean varies across the data.

    A unit is active when Cov_x(E_q[z_d]) > `threshold` (Burda et al., 2016);
    inactive units have collapsed to the prior. For the hierarchical family
    this is the latent that `encode` returns first.

    Returns:
        `(count, variances)`: the number of active units and each unit's variance.
    """
    variances = posterior_means(model, x, labels, batch_size).var(axis=0)
    return int(np.sum(variances > threshold)), variances


def kl_per_dimension(model, x, labels=None, batch_size=500):
    """Mean KL(q(z_d | x) || p(z_d)) of each latent dimension, where it splits.

    Uses the model's `kl_per_dimension` (closed form against N(0, I)); models
    whose KL does not split by dimension (full covariance, VampPrior) are
    refused with the reason.
    """
    totals = None
    for batch, lab in _labelled_batches(x, labels, batch_size):
        dims = model.kl_per_dimension(model.encode(batch, labels=lab))
        if dims is None:
            raise ValueError(
                f"kl_per_dimension needs a KL that splits by latent dimension; "
                f"{type(model).__name__} with covariance={model.covariance!r} has none."
            )
        part = np.sum(ops.convert_to_numpy(dims).astype("float64"), axis=0)
        totals = part if totals is None else totals + part
    return totals / len(x)


def evaluate_vae(
    model,
    x,
    labels=None,
    num_importance_samples=100,
    nll_examples=1000,
    batch_size=500,
    seed=0,
    verbose=0,
    progress_path=None,
):
    """A summary dict: ELBO parts on all of `x`, the importance-sampled NLL on
    the first `nll_examples` examples with its standard error, bits per
    dimension and active units. `progress_path` makes the NLL's estimate
    resumable (see `importance_sampled_log_likelihood`)."""
    model.check_labels(labels, len(x))
    elbo_parts = model.evaluate(x, labels, batch_size=batch_size, verbose=0, return_dict=True)
    subset = np.asarray(x[:nll_examples])
    subset_labels = None if labels is None else np.asarray(labels)[:nll_examples]
    log_px = importance_sampled_log_likelihood(
        model,
        subset,
        subset_labels,
        num_samples=num_importance_samples,
        batch_size=100,
        seed=seed,
        verbose=verbose,
        progress_path=progress_path,
    )
    dims = int(np.prod(model.data_shape))
    count, _ = active_units(model, x, labels, batch_size=batch_size)
    nll = float(-log_px.mean())
    return {
        "examples": int(len(x)),
        "negative_elbo": float(elbo_parts["reconstruction_loss"] + elbo_parts["kl_loss"]),
        "loss": float(elbo_parts["loss"]),
        "reconstruction_loss": float(elbo_parts["reconstruction_loss"]),
        "kl_loss": float(elbo_parts["kl_loss"]),
        "nll_importance_sampled": nll,
        "nll_standard_error": float(log_px.std(ddof=1) / math.sqrt(len(log_px))) if len(log_px) > 1 else None,
        "nll_examples": int(len(subset)),
        "nll_num_samples": int(num_importance_samples),
        "bits_per_dim": nll / (math.log(2.0) * dims),
        "active_units": count,
        "latent_dim": model.latent_dim,
    }
