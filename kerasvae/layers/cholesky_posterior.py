import keras
import numpy as np
from keras import ops


@keras.saving.register_keras_serializable(package="kerasvae")
class CholeskyPosterior(keras.layers.Layer):
    """Maps features to a full-covariance Gaussian `[z_mean, scale_tril]`.

    A dense head predicts the mean and another the k(k+1)/2 entries of a lower
    triangular matrix L. The diagonal goes through `softplus` plus
    `min_diagonal`, so L is a valid Cholesky factor of the covariance
    `S = L L^T` (positive diagonal, hence S positive definite); the entries
    below the diagonal are free. This is the general, correlated posterior;
    a diagonal L gives back independent latent features.

    Args:
        latent_dim: int. Size of the latent space.
        min_diagonal: float. Smallest value of the diagonal of L.
        kernel_initializer: Initializer of both heads' kernels.
        **kwargs: Base layer keyword arguments.

    Call arguments:
        features: tensor of shape `(batch, ..., features)`.

    Returns:
        A list `[z_mean, scale_tril]` of shapes `(batch, ..., latent_dim)` and
        `(batch, ..., latent_dim, latent_dim)`.

    Example:

    ```python
    z_mean, scale_tril = kerasvae.layers.CholeskyPosterior(latent_dim=8)(features)
    z = kerasvae.layers.Sampling(covariance="full")([z_mean, scale_tril])
    ```
    """

    def __init__(
        self, latent_dim, min_diagonal=1e-4, kernel_initializer="glorot_uniform", **kwargs
    ):
        super().__init__(**kwargs)
        if isinstance(latent_dim, bool) or not isinstance(latent_dim, (int, np.integer)) or latent_dim <= 0:
            raise ValueError(
                f"latent_dim must be a positive integer. Received: latent_dim={latent_dim!r}"
            )
        if not min_diagonal > 0:
            raise ValueError(
                f"min_diagonal must be positive. Received: min_diagonal={min_diagonal}"
            )
        self.latent_dim = int(latent_dim)
        self.min_diagonal = min_diagonal
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        k = latent_dim
        # Index of each (row, col) entry in [0, packed...]; 0 marks the zeros
        # above the diagonal, so one gather builds L.
        rows, cols = np.tril_indices(k)
        index = np.zeros((k, k), dtype="int32")
        index[rows, cols] = np.arange(1, rows.size + 1)
        self._tril_index = index
        self._diagonal_mask = np.eye(k, dtype="float32")
        # === Layers ===
        self.mean_dense = keras.layers.Dense(
            k, kernel_initializer=self._fresh_initializer(), dtype=self.dtype_policy, name="z_mean"
        )
        self.tril_dense = keras.layers.Dense(
            rows.size,
            kernel_initializer=self._fresh_initializer(),
            dtype=self.dtype_policy,
            name="scale_tril_entries",
        )

    def _fresh_initializer(self):
        # A Keras initializer without a seed fixes one at construction, so a
        # shared instance gives every head the same draw (z_mean == z_log_var
        # at init). Each head gets its own copy, as Keras' attention layers do.
        init = self.kernel_initializer
        return type(init).from_config(init.get_config())

    def build(self, input_shape):
        self.mean_dense.build(input_shape)
        self.tril_dense.build(input_shape)

    def call(self, features):
        z_mean = self.mean_dense(features)
        packed = self.tril_dense(features)
        padded = ops.concatenate([ops.zeros_like(packed[..., :1]), packed], axis=-1)
        raw = ops.take(padded, self._tril_index, axis=-1)
        mask = ops.cast(self._diagonal_mask, raw.dtype)
        diagonal = ops.softplus(raw) + self.min_diagonal
        scale_tril = raw * (1.0 - mask) + diagonal * mask
        return [z_mean, scale_tril]

    def compute_output_shape(self, input_shape):
        mean_shape = tuple(input_shape[:-1]) + (self.latent_dim,)
        return [mean_shape, mean_shape + (self.latent_dim,)]

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "latent_dim": self.latent_dim,
                "min_diagonal": self.min_diagonal,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            }
        )
        return config
