import keras
from keras import ops

COVARIANCES = ("diagonal", "full")
SEED_STATE_KEY = "seed_generator_state"


def posterior_parameter(mean_shape, covariance):
    """Name and expected shape of the posterior's second parameter.

    `z_log_var` shaped like `z_mean` for a diagonal covariance, `scale_tril`
    with one more axis of the latent size for a full one.
    """
    mean_shape = tuple(mean_shape)
    if covariance == "diagonal":
        return "z_log_var", mean_shape
    return "scale_tril", mean_shape + (mean_shape[-1],)


def shapes_compatible(received, expected):
    """Same rank and equal sizes wherever both are known (None matches any)."""
    received, expected = tuple(received), tuple(expected)
    return len(received) == len(expected) and all(
        a is None or b is None or a == b for a, b in zip(received, expected)
    )


@keras.saving.register_keras_serializable(package="kerasvae")
class Sampling(keras.layers.Layer):
    """Draws z from q(z | x) with the reparameterization trick.

    With `covariance="diagonal"` the inputs are `[z_mean, z_log_var]` and

    ```
    z = z_mean + exp(z_log_var / 2) * eps,   eps ~ N(0, I)
    ```

    With `covariance="full"` the inputs are `[z_mean, scale_tril]`, the lower
    triangular Cholesky factor L of the covariance, and `z = z_mean + L eps`.
    The noise is drawn in the layer's compute dtype, so the layer works under
    `mixed_float16` and `mixed_bfloat16` policies, and gradients flow to both
    inputs. Any number of leading (batch) axes is accepted; the latent axis is
    the last one.

    Args:
        covariance: str. `"diagonal"` or `"full"`.
        seed: int or None. Seed of the layer's own `keras.random.SeedGenerator`.
        **kwargs: Base layer keyword arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: list of two tensors, `[z_mean, z_log_var]` or
            `[z_mean, scale_tril]`.
        deterministic: bool. Return `z_mean` instead of a sample (for
            deterministic inference). Defaults to `False`.
        seed: int or None. Draw this call's noise from a fixed seed instead
            of the layer's generator (a repeatable draw, as the exported
            `elbo` signature needs). Defaults to `None`.

    Returns:
        A tensor shaped like `z_mean`.

    Example:

    ```python
    z_mean, z_log_var = kerasvae.layers.GaussianPosterior(latent_dim=2)(features)
    z = kerasvae.layers.Sampling(seed=1)([z_mean, z_log_var])
    ```

    Reference:
        Kingma and Welling, "Auto-Encoding Variational Bayes", ICLR 2014.
    """

    def __init__(self, covariance="diagonal", seed=None, **kwargs):
        super().__init__(**kwargs)
        if covariance not in COVARIANCES:
            raise ValueError(
                f"covariance must be one of {COVARIANCES}. Received: covariance={covariance!r}"
            )
        self.covariance = covariance
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.built = True

    def _check_inputs(self, inputs):
        if not isinstance(inputs, (list, tuple)) or len(inputs) != 2:
            raise ValueError(
                "Sampling expects a list of two tensors, [z_mean, z_log_var] or "
                f"[z_mean, scale_tril]. Received: {type(inputs).__name__} of "
                f"length {len(inputs) if isinstance(inputs, (list, tuple)) else 1}"
            )
        mean_shape, second_shape = tuple(inputs[0].shape), tuple(inputs[1].shape)
        second_name, expected = posterior_parameter(mean_shape, self.covariance)
        if not shapes_compatible(second_shape, expected):
            raise ValueError(
                f"Sampling(covariance={self.covariance!r}) expects {second_name} of shape "
                f"{expected} to match z_mean. Received: z_mean.shape={mean_shape}, "
                f"{second_name}.shape={second_shape}"
            )

    def call(self, inputs, deterministic=False, seed=None):
        self._check_inputs(inputs)
        mean, second = inputs
        if deterministic:
            return mean
        eps = keras.random.normal(
            ops.shape(mean), dtype=mean.dtype, seed=self.seed_generator if seed is None else seed
        )
        if self.covariance == "diagonal":
            return mean + ops.exp(0.5 * second) * eps
        return mean + ops.squeeze(ops.matmul(second, ops.expand_dims(eps, -1)), -1)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0])

    # The noise stream's position is state: saved with the weights, a resumed
    # run (keras.callbacks.BackupAndRestore, a .keras checkpoint) continues the
    # stream instead of drawing the first steps' noise again. Keras saves no
    # SeedGenerator state by itself. Files without the entry load as before.
    def save_own_variables(self, store):
        super().save_own_variables(store)
        store[SEED_STATE_KEY] = self.seed_generator.state

    def load_own_variables(self, store):
        keys = list(store.keys())
        if SEED_STATE_KEY in keys:
            self.seed_generator.state.assign(store[SEED_STATE_KEY])
        super().load_own_variables({key: store[key] for key in keys if key != SEED_STATE_KEY})

    def get_config(self):
        config = super().get_config()
        config.update({"covariance": self.covariance, "seed": self.seed})
        return config
