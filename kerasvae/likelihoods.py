"""Reconstruction likelihoods p(x | z) for the decoder's output.

Each likelihood is a small serializable object with:

- `log_prob(x, decoder_output)`: log p(x | z), summed over every axis but the
  first (the event axes), one value per example;
- `mean(decoder_output)`: E[x | z], what a reconstruction shows;
- `outputs(decoder_output)`: the named tensors an export returns for `decode`;
- `check_data(x)`: a NumPy-side check of a whole dataset before training.

The reduction is written once here (sum over event axes); the model takes the
mean over the batch.
"""

import math

import keras
import numpy as np
from keras import ops

LOG_2PI = math.log(2.0 * math.pi)


def sum_event_axes(values):
    """Sums every axis but the first: one value per example."""
    rank = len(values.shape)
    if rank < 2:
        return values
    return ops.sum(values, axis=tuple(range(1, rank)))


def _check_number(name, value, positive=False):
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float, np.integer, np.floating))
        or not np.isfinite(value)
        or (positive and value <= 0)
    ):
        kind = "a finite positive number" if positive else "a finite number"
        raise ValueError(f"{name} must be {kind}. Received: {name}={value!r}")


def _check_finite(x, name):
    if not np.all(np.isfinite(x)):
        bad = np.size(x) - int(np.count_nonzero(np.isfinite(x)))
        raise ValueError(
            f"{name} must be finite. Received an array with {bad} NaN or infinite "
            f"value(s) out of {np.size(x)}."
        )


@keras.saving.register_keras_serializable(package="kerasvae")
class Bernoulli:
    """Bernoulli likelihood on logits, for data in [0, 1].

    The decoder outputs unnormalized logits `l`; log p(x | l) is computed as
    `x * l - softplus(l)`, which never forms `log(sigmoid(l))` and so stays
    finite for large |l|. Targets may be binary or grey levels in [0, 1]
    (the continuous relaxation used for Fashion-MNIST).

    Example:

    ```python
    likelihood = kerasvae.likelihoods.Bernoulli()
    log_p = likelihood.log_prob(x, decoder(z))  # shape (batch,)
    ```
    """

    name = "bernoulli"
    num_decoder_outputs = 1

    def log_prob(self, x, logits):
        x = ops.cast(x, logits.dtype)
        return sum_event_axes(x * logits - ops.softplus(logits))

    def mean(self, logits):
        return ops.sigmoid(logits)

    def outputs(self, logits):
        return {"probabilities": ops.sigmoid(logits), "logits": logits}

    def check_data(self, x):
        x = np.asarray(x)
        _check_finite(x, "Bernoulli targets")
        if x.size == 0:
            return
        low, high = float(np.min(x)), float(np.max(x))
        if low < 0.0 or high > 1.0:
            raise ValueError(
                "The Bernoulli likelihood needs targets in [0, 1] (scale pixels by "
                f"1/255). Received values in [{low:g}, {high:g}]."
            )

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        return "Bernoulli()"


@keras.saving.register_keras_serializable(package="kerasvae")
class Gaussian:
    """Gaussian likelihood with a fixed or a learned variance.

    With `learn_variance=False` the decoder outputs the mean and every pixel
    has standard deviation `scale`. With `learn_variance=True` the decoder has
    two outputs, `[mean, log_var]`, and the variance is predicted per pixel
    (clamped below by `min_log_var` so that the likelihood cannot blow up on
    constant pixels).

    ```
    log p(x | m, v) = -1/2 sum(log(2 pi) + log v + (x - m)^2 / v)
    ```

    Args:
        scale: float. Standard deviation when the variance is fixed.
        learn_variance: bool. Whether the decoder predicts the log-variance.
        min_log_var: float. Lower clamp of a learned log-variance.
    """

    name = "gaussian"

    def __init__(self, scale=1.0, learn_variance=False, min_log_var=-10.0):
        _check_number("scale", scale, positive=True)
        _check_number("min_log_var", min_log_var)
        self.scale = float(scale)
        self.learn_variance = bool(learn_variance)
        self.min_log_var = float(min_log_var)

    @property
    def num_decoder_outputs(self):
        return 2 if self.learn_variance else 1

    def _split(self, output):
        if self.learn_variance:
            if not isinstance(output, (list, tuple)) or len(output) != 2:
                raise ValueError(
                    "Gaussian(learn_variance=True) needs a decoder with two outputs, "
                    f"[mean, log_var]. Received: {type(output).__name__} output."
                )
            mean, log_var = output
            return mean, ops.maximum(log_var, self.min_log_var)
        log_var = 2.0 * math.log(self.scale)
        return output, ops.full_like(output, log_var)

    def log_prob(self, x, output):
        mean, log_var = self._split(output)
        x = ops.cast(x, mean.dtype)
        log_density = -0.5 * (LOG_2PI + log_var + ops.square(x - mean) * ops.exp(-log_var))
        return sum_event_axes(log_density)

    def mean(self, output):
        return self._split(output)[0]

    def outputs(self, output):
        mean, log_var = self._split(output)
        return {"mean": mean, "log_var": log_var}

    def check_data(self, x):
        _check_finite(np.asarray(x), "Gaussian targets")

    def get_config(self):
        return {
            "scale": self.scale,
            "learn_variance": self.learn_variance,
            "min_log_var": self.min_log_var,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        return (
            f"Gaussian(scale={self.scale}, learn_variance={self.learn_variance}, "
            f"min_log_var={self.min_log_var})"
        )


_BY_NAME = {"bernoulli": Bernoulli, "gaussian": Gaussian}


def get(identifier):
    """Returns a likelihood from a name, a config dict or an instance."""
    if isinstance(identifier, (Bernoulli, Gaussian)):
        return identifier
    if isinstance(identifier, str) and identifier.lower() in _BY_NAME:
        return _BY_NAME[identifier.lower()]()
    if isinstance(identifier, dict):
        return keras.saving.deserialize_keras_object(identifier)
    if hasattr(identifier, "log_prob") and hasattr(identifier, "mean"):
        return identifier
    raise ValueError(
        f"Unknown likelihood. Expected one of {sorted(_BY_NAME)} or an object with "
        f"log_prob() and mean(). Received: likelihood={identifier!r}"
    )
