"""Evaluation of a trained VAE: ELBO parts, importance-sampled NLL, latent usage.

All numbers are in nats per example unless a name says otherwise; bits per
dimension divide by `log(2) * prod(data_shape)`.
"""

import math

import keras
import numpy as np
from keras import ops

from kerasvae import divergences
from kerasvae.layers.sampling import Sampling


def _batches(x, batch_size):
    for start in range(0, len(x), batch_size):
        yield x[start : start + batch_size]


def _posterior_log_prob(model, z, posterior):
    mean, second = posterior
    if model.covariance == "diagonal":
        return divergences.diagonal_normal_log_prob(z, mean, second)
    return divergences.full_normal_log_prob(z, mean, second)


def importance_sampled_log_likelihood(model, x, num_samples=100, batch_size=100, seed=None):
    """Per-example estimate of log p(x) with `num_samples` importance samples.

    ```
    log p(x) >= log 1/K sum_k p(x | z_k) p(z_k) / q(z_k | x),  z_k ~ q(z | x)
    ```

    The bound tightens as K grows (Burda et al., 2016) and is never looser
    than the ELBO (K = 1).

    Returns:
        NumPy array of shape `(len(x),)`.
    """
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples <= 0:
        raise ValueError(f"num_samples must be a positive integer. Received: num_samples={num_samples!r}")
    sampling = Sampling(covariance=model.covariance, seed=seed)
    results = []
    for batch in _batches(np.asarray(x, dtype="float32"), batch_size):
        n = len(batch)
        mean, second = [ops.cast(t, "float32") for t in model.encode(batch)]
        k_mean = ops.broadcast_to(mean, (num_samples,) + tuple(mean.shape))
        k_second = ops.broadcast_to(second, (num_samples,) + tuple(second.shape))
        z = sampling([k_mean, k_second])  # (K, batch, latent_dim)
        flat_z = ops.reshape(z, (num_samples * n, model.latent_dim))
        output = keras.tree.map_structure(
            lambda t: ops.cast(t, "float32"), model.decoder(flat_z, training=False)
        )
        tiled_x = ops.reshape(
            ops.broadcast_to(batch, (num_samples,) + batch.shape), (num_samples * n,) + batch.shape[1:]
        )
        log_px_z = ops.reshape(model.likelihood.log_prob(tiled_x, output), (num_samples, n))
        log_pz = divergences.standard_normal_log_prob(z)
        log_qz = _posterior_log_prob(model, z, (k_mean, k_second))
        log_w = log_px_z + log_pz - log_qz
        results.append(ops.convert_to_numpy(ops.logsumexp(log_w, axis=0)) - math.log(num_samples))
    return np.concatenate(results)


def posterior_means(model, x, batch_size=500):
    return np.concatenate(
        [ops.convert_to_numpy(model.encode(b)[0]) for b in _batches(np.asarray(x, "float32"), batch_size)]
    )


def active_units(model, x, threshold=0.01, batch_size=500):
    """Latent dimensions whose posterior mean varies across the data.

    A unit is active when Cov_x(E_q[z_d]) > `threshold` (Burda et al., 2016);
    inactive units have collapsed to the prior.

    Returns:
        `(count, variances)`: the number of active units and each unit's variance.
    """
    variances = posterior_means(model, x, batch_size).var(axis=0)
    return int(np.sum(variances > threshold)), variances


def kl_per_dimension(model, x, batch_size=500):
    """Mean KL(q(z_d | x) || N(0, 1)) of each latent dimension (diagonal models)."""
    if model.covariance != "diagonal":
        raise ValueError(
            "kl_per_dimension needs a diagonal posterior (a full covariance does not "
            f"split by dimension). Received: covariance={model.covariance!r}"
        )
    totals = np.zeros(model.latent_dim)
    for batch in _batches(np.asarray(x, "float32"), batch_size):
        mean, log_var = [ops.convert_to_numpy(ops.cast(t, "float32")).astype("float64") for t in model.encode(batch)]
        totals += 0.5 * np.sum(mean**2 + np.expm1(log_var) - log_var, axis=0)
    return totals / len(x)


def evaluate_vae(model, x, num_importance_samples=100, nll_examples=1000, batch_size=500, seed=0):
    """A summary dict: ELBO parts on all of `x`, the importance-sampled NLL on
    the first `nll_examples` examples, bits per dimension and active units."""
    elbo_parts = model.evaluate(x, batch_size=batch_size, verbose=0, return_dict=True)
    subset = np.asarray(x[:nll_examples])
    log_px = importance_sampled_log_likelihood(
        model, subset, num_samples=num_importance_samples, batch_size=max(1, 5000 // num_importance_samples), seed=seed
    )
    dims = int(np.prod(model.data_shape))
    count, _ = active_units(model, x, batch_size=batch_size)
    nll = float(-log_px.mean())
    return {
        "examples": int(len(x)),
        "negative_elbo": float(elbo_parts["reconstruction_loss"] + elbo_parts["kl_loss"]),
        "loss": float(elbo_parts["loss"]),
        "reconstruction_loss": float(elbo_parts["reconstruction_loss"]),
        "kl_loss": float(elbo_parts["kl_loss"]),
        "nll_importance_sampled": nll,
        "nll_examples": int(len(subset)),
        "nll_num_samples": int(num_importance_samples),
        "bits_per_dim": nll / (math.log(2.0) * dims),
        "active_units": count,
        "latent_dim": model.latent_dim,
    }
