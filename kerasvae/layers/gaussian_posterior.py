import keras
import numpy as np
from keras import ops


@keras.saving.register_keras_serializable(package="kerasvae")
class GaussianPosterior(keras.layers.Layer):
    """Maps features to a diagonal Gaussian posterior `[z_mean, z_log_var]`.

    Two dense heads read the same features. The log-variance can be clamped to
    `[log_var_min, log_var_max]`, which keeps `exp(log_var)` finite early in
    training or under low-precision dtypes; the clamp passes no gradient
    outside its range, so leave it off (`None`) unless it is needed.

    Args:
        latent_dim: int. Size of the latent space.
        log_var_min: float or None. Lower clamp of the log-variance.
        log_var_max: float or None. Upper clamp of the log-variance.
        kernel_initializer: Initializer of both heads' kernels.
        **kwargs: Base layer keyword arguments.

    Call arguments:
        features: tensor of shape `(batch, ..., features)`.

    Returns:
        A list `[z_mean, z_log_var]`, each of shape `(batch, ..., latent_dim)`.

    Example:

    ```python
    features = keras.layers.Dense(256, activation="relu")(inputs)
    z_mean, z_log_var = kerasvae.layers.GaussianPosterior(latent_dim=16)(features)
    ```
    """

    def __init__(
        self,
        latent_dim,
        log_var_min=None,
        log_var_max=None,
        kernel_initializer="glorot_uniform",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if isinstance(latent_dim, bool) or not isinstance(latent_dim, (int, np.integer)) or latent_dim <= 0:
            raise ValueError(
                f"latent_dim must be a positive integer. Received: latent_dim={latent_dim!r}"
            )
        if log_var_min is not None and log_var_max is not None and log_var_min >= log_var_max:
            raise ValueError(
                "log_var_min must be smaller than log_var_max. Received: "
                f"log_var_min={log_var_min}, log_var_max={log_var_max}"
            )
        self.latent_dim = int(latent_dim)
        self.log_var_min = log_var_min
        self.log_var_max = log_var_max
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        # === Layers ===
        self.mean_dense = keras.layers.Dense(
            latent_dim, kernel_initializer=self._fresh_initializer(), dtype=self.dtype_policy, name="z_mean"
        )
        self.log_var_dense = keras.layers.Dense(
            latent_dim, kernel_initializer=self._fresh_initializer(), dtype=self.dtype_policy, name="z_log_var"
        )

    def _fresh_initializer(self):
        # A Keras initializer without a seed fixes one at construction, so a
        # shared instance gives every head the same draw (z_mean == z_log_var
        # at init). Each head gets its own copy, as Keras' attention layers do.
        init = self.kernel_initializer
        return type(init).from_config(init.get_config())

    def build(self, input_shape):
        self.mean_dense.build(input_shape)
        self.log_var_dense.build(input_shape)

    def call(self, features):
        z_mean = self.mean_dense(features)
        z_log_var = self.log_var_dense(features)
        if self.log_var_min is not None or self.log_var_max is not None:
            z_log_var = ops.clip(
                z_log_var,
                -float("inf") if self.log_var_min is None else self.log_var_min,
                float("inf") if self.log_var_max is None else self.log_var_max,
            )
        return [z_mean, z_log_var]

    def compute_output_shape(self, input_shape):
        shape = tuple(input_shape[:-1]) + (self.latent_dim,)
        return [shape, shape]

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "latent_dim": self.latent_dim,
                "log_var_min": self.log_var_min,
                "log_var_max": self.log_var_max,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            }
        )
        return config
