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


# 8-bit data: 256 levels, bins of width 2/255 once rescaled to [-1, 1].
PIXEL_LEVELS = 256
LOG_BIN_WIDTH = math.log(2.0 / (PIXEL_LEVELS - 1))
LOG_2 = math.log(2.0)


def log1mexp(d, log_d):
    """log(1 - exp(-d)) for d > 0, accurate over the whole range.

    `log_d` (log d, computed by the caller without forming d) serves where d
    is so small that 1 - exp(-d) = d to working precision, including d
    underflowing to 0. Every branch gets a safe argument, so the branches not
    taken pass no NaN gradient through `where`.
    """
    tiny = d < 1e-5
    large = d > LOG_2
    mid_d = ops.where(tiny | large, 1.0, d)
    large_d = ops.where(large, d, 1.0)
    value = ops.where(large, ops.log1p(-ops.exp(-large_d)), ops.log(-ops.expm1(-mid_d)))
    # 1 - exp(-d) = d (1 - d/2 + ...) for small d.
    return ops.where(tiny, log_d - 0.5 * ops.where(tiny, d, 0.0), value)


@keras.saving.register_keras_serializable(package="kerasvae")
class DiscretizedLogistic:
    """Discretized logistic likelihood for 8-bit pixels (one logistic per pixel).

    The data are 8-bit pixels scaled to [0, 1], i.e. the levels k / 255
    (`x / 255` of uint8 images; `check_data` refuses anything else). Inside,
    a pixel is rescaled to x' = 2 k / 255 - 1 in [-1, 1], where the levels
    are bins of width 2/255. The decoder outputs `[loc, log_scale]` per pixel
    (two outputs, in the [-1, 1] units); with s = exp(max(log_scale,
    min_log_scale)) and the logistic CDF F(t) = sigmoid((t - loc) / s):

    ```
    P(x' | loc, s) = F(x' + 1/255) - F(x' - 1/255)      for 0 < k < 255
    P(x' = -1)     = F(-1 + 1/255)                       (k = 0: the lower tail)
    P(x' = +1)     = 1 - F(1 - 1/255)                    (k = 255: the upper tail)
    ```

    so the 256 probabilities sum to 1. The log is taken in a stable form:
    with a = (x' + 1/255 - loc) / s, b = (x' - 1/255 - loc) / s,

    ```
    log P = -softplus(-a) - softplus(b) + log(1 - exp(-(a - b)))   (middle bins)
    log P = -softplus(-a)                                             (k = 0)
    log P = -softplus(b)                                              (k = 255)
    ```

    which never subtracts two CDF values and stays finite for any loc and
    log-scale. `mean` returns the location mapped back to [0, 1] and clipped,
    the median of the continuous logistic, which is what a reconstruction
    shows (the exact discretized mean would need all 256 bins per pixel).

    Args:
        min_log_scale: float. Lower clamp of the log-scale (-7 as in
            PixelCNN++), which keeps a pixel's density from collapsing onto
            one level.

    Example:

    ```python
    decoder = kerasvae.networks.build_conv_decoder(16, (32, 32, 3), num_outputs=2)
    vae = kerasvae.models.VAE(encoder, decoder, likelihood="discretized_logistic")
    vae.fit(x_uint8 / 255.0, epochs=10)
    ```

    Reference:
        Salimans et al., "PixelCNN++: Improving the PixelCNN with Discretized
        Logistic Mixture Likelihood and Other Modifications", ICLR 2017.
    """

    name = "discretized_logistic"
    num_decoder_outputs = 2

    def __init__(self, min_log_scale=-7.0):
        if isinstance(min_log_scale, bool) or not np.isfinite(min_log_scale):
            raise ValueError(
                f"min_log_scale must be a finite number. Received: min_log_scale={min_log_scale!r}"
            )
        self.min_log_scale = float(min_log_scale)

    def _split(self, output):
        if not isinstance(output, (list, tuple)) or len(output) != 2:
            raise ValueError(
                "DiscretizedLogistic needs a decoder with two outputs, [loc, log_scale]. "
                f"Received: {type(output).__name__} output"
                + (f" of length {len(output)}" if isinstance(output, (list, tuple)) else "")
            )
        loc, log_scale = output
        return loc, ops.maximum(log_scale, self.min_log_scale)

    def log_prob(self, x, output):
        loc, log_scale = self._split(output)
        level = ops.round(ops.cast(x, loc.dtype) * (PIXEL_LEVELS - 1))
        centered = 2.0 * level / (PIXEL_LEVELS - 1) - 1.0 - loc
        inv_scale = ops.exp(-log_scale)
        half_bin = 1.0 / (PIXEL_LEVELS - 1)
        upper = inv_scale * (centered + half_bin)
        lower = inv_scale * (centered - half_bin)
        lowest = level <= 0
        highest = level >= PIXEL_LEVELS - 1
        log_cdf_upper = -ops.softplus(-upper)  # log F(x' + 1/255)
        log_sf_lower = -ops.softplus(lower)  # log (1 - F(x' - 1/255))
        log_width = log1mexp(2.0 * half_bin * inv_scale, LOG_BIN_WIDTH - log_scale)
        log_p = (
            ops.where(highest, 0.0, log_cdf_upper)
            + ops.where(lowest, 0.0, log_sf_lower)
            + ops.where(lowest | highest, 0.0, log_width)
        )
        return sum_event_axes(log_p)

    def mean(self, output):
        loc, _ = self._split(output)
        return ops.clip(0.5 * (loc + 1.0), 0.0, 1.0)

    def outputs(self, output):
        """`mean` in [0, 1] and the clamped `log_scale` (in the [-1, 1] units)."""
        _, log_scale = self._split(output)
        return {"mean": self.mean(output), "log_scale": log_scale}

    def check_data(self, x):
        x = np.asarray(x)
        _check_finite(x, "Discretized logistic targets")
        low, high = float(np.min(x)), float(np.max(x))
        if low < 0.0 or high > 1.0:
            raise ValueError(
                "The discretized logistic likelihood needs 8-bit pixels scaled to [0, 1] "
                f"(x / 255). Received values in [{low:g}, {high:g}]."
            )
        levels = np.asarray(x, np.float64) * (PIXEL_LEVELS - 1)
        off_grid = np.abs(levels - np.round(levels)) > 1e-3
        if np.any(off_grid):
            raise ValueError(
                "The discretized logistic likelihood needs 8-bit pixels scaled to [0, 1]: "
                f"values k / 255. Received {int(off_grid.sum())} value(s) off that grid, "
                f"e.g. {float(np.asarray(x)[off_grid][0]):g}."
            )

    def get_config(self):
        return {"min_log_scale": self.min_log_scale}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        return f"DiscretizedLogistic(min_log_scale={self.min_log_scale})"


_BY_NAME = {
    "bernoulli": Bernoulli,
    "gaussian": Gaussian,
    "discretized_logistic": DiscretizedLogistic,
}


def get(identifier):
    """Returns a likelihood from a name, a config dict or an instance."""
    if isinstance(identifier, (Bernoulli, Gaussian, DiscretizedLogistic)):
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
