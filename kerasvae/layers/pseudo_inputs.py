import math

import keras
import numpy as np
from keras import ops

ACTIVATIONS = ("sigmoid", "hardtanh", "linear")

# Images given as the initial pseudo-inputs are kept this far inside (0, 1)
# before the sigmoid is inverted, so that the raw values stay finite (|logit|
# below 6.9) and the sigmoid's gradient does not vanish on black pixels.
_SIGMOID_MARGIN = 1e-3


@keras.saving.register_keras_serializable(package="kerasvae")
class PseudoInputs(keras.layers.Layer):
    """The C learned pseudo-inputs u_1..u_C of a VampPrior.

    The VampPrior is the posterior averaged over C learned points in data
    space, `p(z) = 1/C sum_c q(z | u_c)`. This layer holds those points. The
    published code makes them with a bias-free linear layer applied to a fixed
    C x C identity matrix and squashes the result into the data range; the
    product of the identity and a weight matrix is the weight matrix itself,
    with the same gradient, so here the weight is a learned parameter of shape
    `(C, *data_shape)` passed through the activation directly: the same
    parameters, gradients and optimizer updates without the C x C x D matrix
    product on every step.

    ```
    u_c = activation(w_c),   w_c in R^{data_shape}, c = 1..C
    sigmoid:  u = 1 / (1 + exp(-w))     (in (0, 1); the published choice)
    hardtanh: u = min(max(w, 0), 1)     (in [0, 1]; pixels outside stop learning)
    linear:   u = w                     (unbounded data)
    ```

    Args:
        num_components: int. Number of pseudo-inputs C.
        data_shape: tuple of int. Shape of one example, without the batch axis.
        init: `"normal"` or an array of shape `(num_components, *data_shape)`.
            `"normal"` draws the raw weights from N(mean, stddev^2) (the
            published scheme). An array (e.g. randomly chosen training
            images) sets the pseudo-inputs themselves: the activation is
            inverted, so `u` starts equal to the array (within 1e-3 of 0 and
            1 for the sigmoid). An array is used only when the layer is made;
            the config records `"normal"`, and a saved model restores the
            learned values from its weights.
        mean: float. Mean of the `"normal"` initialization.
        stddev: float. Standard deviation of the `"normal"` initialization.
        activation: str. `"sigmoid"` (default), `"hardtanh"` or `"linear"`.
        **kwargs: Base layer keyword arguments.

    Call arguments:
        inputs: ignored (the pseudo-inputs depend on no input); call the layer
            as `layer(None)`.

    Returns:
        A tensor of shape `(num_components, *data_shape)`.

    Example:

    ```python
    pseudo_inputs = kerasvae.layers.PseudoInputs(500, (28, 28, 1))
    z_mean, z_log_var = encoder(pseudo_inputs(None))  # (500, latent_dim) each
    ```

    Reference:
        Tomczak and Welling, "VAE with a VampPrior", AISTATS 2018.
    """

    def __init__(
        self,
        num_components,
        data_shape,
        init="normal",
        mean=0.05,
        stddev=0.01,
        activation="sigmoid",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if isinstance(num_components, bool) or not isinstance(num_components, (int, np.integer)) or (
            num_components <= 0
        ):
            raise ValueError(
                "num_components must be a positive integer. "
                f"Received: num_components={num_components!r}"
            )
        data_shape = tuple(data_shape)
        if not data_shape or not all(
            isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d > 0 for d in data_shape
        ):
            raise ValueError(
                "data_shape must be a non-empty tuple of positive integers. "
                f"Received: data_shape={data_shape!r}"
            )
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"activation must be one of {ACTIVATIONS}. Received: activation={activation!r}"
            )
        if not (math.isfinite(mean) and math.isfinite(stddev) and stddev >= 0):
            raise ValueError(
                "mean must be finite and stddev finite and >= 0. "
                f"Received: mean={mean!r}, stddev={stddev!r}"
            )
        self.num_components = int(num_components)
        self.data_shape = tuple(int(d) for d in data_shape)
        self.mean = float(mean)
        self.stddev = float(stddev)
        self.activation = activation
        shape = (self.num_components,) + self.data_shape
        if isinstance(init, str):
            if init != "normal":
                raise ValueError(
                    f"init must be 'normal' or an array of shape {shape}. Received: init={init!r}"
                )
            initializer = keras.initializers.RandomNormal(mean=self.mean, stddev=self.stddev)
        else:
            initializer = keras.initializers.Constant(self._raw_from_values(init, shape))
        self.raw = self.add_weight(shape=shape, initializer=initializer, name="raw")
        self.built = True

    def _raw_from_values(self, values, shape):
        """The raw weights whose activation equals `values` (checked)."""
        values = np.asarray(values)
        if values.shape != shape:
            raise ValueError(
                f"The pseudo-input init must have shape (num_components, *data_shape) = {shape} "
                f"to match the data shape {self.data_shape}. Received: init.shape={values.shape}"
            )
        if not (np.issubdtype(values.dtype, np.number) or values.dtype == np.bool_):
            raise ValueError(f"init must be numeric. Received: init.dtype={values.dtype}")
        values = values.astype("float64")
        if not np.all(np.isfinite(values)):
            raise ValueError("init must be finite. Received an array with NaN or infinite values.")
        if self.activation == "linear":
            return values.astype("float32")
        low, high = float(values.min()), float(values.max())
        if low < 0.0 or high > 1.0:
            raise ValueError(
                f"With activation={self.activation!r} the pseudo-inputs lie in [0, 1], so init "
                f"must too. Received values in [{low:g}, {high:g}]."
            )
        if self.activation == "hardtanh":
            return values.astype("float32")
        clipped = np.clip(values, _SIGMOID_MARGIN, 1.0 - _SIGMOID_MARGIN)
        return (np.log(clipped) - np.log1p(-clipped)).astype("float32")

    def call(self, inputs=None):
        raw = ops.convert_to_tensor(self.raw)
        if self.activation == "sigmoid":
            return ops.sigmoid(raw)
        if self.activation == "hardtanh":
            return ops.clip(raw, 0.0, 1.0)
        return raw

    def compute_output_shape(self, input_shape=None):
        return (self.num_components,) + self.data_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_components": self.num_components,
                "data_shape": self.data_shape,
                "init": "normal",
                "mean": self.mean,
                "stddev": self.stddev,
                "activation": self.activation,
            }
        )
        return config
