"""Independent NumPy forward passes of the MLP networks, for loss tests.

They read the networks' weights and recompute in float64 what the model's
loss should be, without calling any kerasvae code.
"""

import numpy as np


def _dense(layer, h, relu=False):
    kernel, bias = (np.asarray(w, np.float64) for w in layer.get_weights())
    out = h @ kernel + bias
    return np.maximum(out, 0.0) if relu else out


def _hidden_layers(model):
    return [l for l in model.layers if l.name.startswith("dense_")]


def make_posterior_nearly_deterministic(encoder, log_var=-40.0, seed=0):
    """Posterior std of about exp(-20) so that z equals z_mean to float precision.

    The log-variance head keeps a small input-dependent part, so the KL still
    varies from example to example.
    """
    head = encoder.get_layer("posterior").log_var_dense
    kernel, bias = head.get_weights()
    rng = np.random.default_rng(seed)
    head.set_weights([0.01 * rng.standard_normal(kernel.shape).astype(kernel.dtype), np.full_like(bias, log_var)])


def encoder_forward(encoder, x, onehot=None):
    """(z_mean, z_log_var) of an MLP encoder (label concatenated after flatten)."""
    h = np.asarray(x, np.float64).reshape(len(x), -1)
    if onehot is not None:
        h = np.concatenate([h, np.asarray(onehot, np.float64)], axis=-1)
    for layer in _hidden_layers(encoder):
        h = _dense(layer, h, relu=True)
    posterior = encoder.get_layer("posterior")
    return _dense(posterior.mean_dense, h), _dense(posterior.log_var_dense, h)


def decoder_forward(decoder, z, onehot=None):
    """Logits of an MLP decoder (label concatenated to z), flattened."""
    h = np.asarray(z, np.float64)
    if onehot is not None:
        h = np.concatenate([h, np.asarray(onehot, np.float64)], axis=-1)
    for layer in _hidden_layers(decoder):
        h = _dense(layer, h, relu=True)
    return _dense(decoder.get_layer("logits_or_mean"), h)


def bernoulli_log_prob(x, logits):
    x = np.asarray(x, np.float64).reshape(len(x), -1)
    return np.sum(x * logits - np.logaddexp(0.0, logits), axis=-1)


def kl_per_dimension(mean, log_var):
    return 0.5 * (mean**2 + np.exp(log_var) - 1.0 - log_var)


def normal_log_prob(z, mean, log_var):
    """log N(z; mean, diag(exp(log_var))) summed over the last axis."""
    z = np.asarray(z, np.float64)
    return -0.5 * np.sum(np.log(2 * np.pi) + log_var + (z - mean) ** 2 / np.exp(log_var), axis=-1)
