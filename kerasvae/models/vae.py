import keras
import numpy as np
from keras import ops

from kerasvae import divergences, likelihoods
from kerasvae.layers.sampling import COVARIANCES, Sampling, posterior_parameter, shapes_compatible
from kerasvae.training import backend_trainer

LOSS_KEYS = ("loss", "reconstruction_loss", "kl_loss")


def _to_float32(structure):
    return keras.tree.map_structure(lambda t: ops.cast(t, "float32"), structure)


def _static_shape(tensor):
    return tuple(None if d is None else int(d) for d in tensor.shape)


def _batch_mean(values, sample_weight):
    if sample_weight is None:
        return ops.mean(values)
    weight = ops.reshape(ops.cast(sample_weight, values.dtype), ops.shape(values))
    return ops.sum(values * weight) / ops.maximum(ops.sum(weight), 1e-12)


@keras.saving.register_keras_serializable(package="kerasvae")
class VAE(backend_trainer(), keras.Model):
    """Variational autoencoder with a KL-regularized custom training step.

    Wraps any built functional encoder and decoder. The encoder maps `x` to the
    parameters of q(z | x): `[z_mean, z_log_var]` (`covariance="diagonal"`) or
    `[z_mean, scale_tril]` (`covariance="full"`); a third encoder output (a
    sample, as in the keras-io example) is ignored. The decoder maps z to the
    parameters of p(x | z) that `likelihood` reads (logits for Bernoulli).
    Training minimizes the negative ELBO with a weight on the KL term:

    ```
    loss = mean_batch[ -log p(x | z) + beta * KL(q(z | x) || N(0, I)) ],
    z ~ q(z | x) (one reparameterized sample)
    ```

    Both terms are summed over their event axes. `fit`, `evaluate` and the
    callbacks report `loss`, `reconstruction_loss` and `kl_loss`. The model is
    built as soon as it is made, so it can be saved, exported or backed up
    before the first `fit`. Calling the model returns the reconstruction from
    the posterior mean (deterministic), which is also what `predict` returns.

    Args:
        encoder: keras.Model. Built functional encoder, `x -> posterior params`.
        decoder: keras.Model. Built functional decoder, `z -> likelihood params`.
        likelihood: str or likelihood object. `"bernoulli"` (default),
            `"gaussian"`, or a `kerasvae.likelihoods` instance.
        beta: float. Weight of the KL term (beta-VAE when not 1).
        covariance: str. `"diagonal"` or `"full"`, the posterior family.
        seed: int or None. Seed of the sampling layer.
        **kwargs: Base model keyword arguments (`name`, ...).

    Example:

    ```python
    encoder = kerasvae.networks.build_mlp_encoder((28, 28, 1), latent_dim=16)
    decoder = kerasvae.networks.build_mlp_decoder(16, (28, 28, 1))
    vae = kerasvae.models.VAE(encoder, decoder, beta=1.0)
    vae.compile(optimizer=keras.optimizers.Adam(1e-3))
    vae.fit(x_train, epochs=10, batch_size=128, validation_data=(x_test,))
    ```

    Reference:
        Kingma and Welling, "Auto-Encoding Variational Bayes", ICLR 2014.
        Higgins et al., "beta-VAE", ICLR 2017.
    """

    def __init__(
        self,
        encoder,
        decoder,
        likelihood="bernoulli",
        beta=1.0,
        covariance="diagonal",
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if covariance not in COVARIANCES:
            raise ValueError(
                f"covariance must be one of {COVARIANCES}. Received: covariance={covariance!r}"
            )
        # === Networks ===
        self.encoder = encoder
        self.decoder = decoder
        self.likelihood = likelihoods.get(likelihood)
        self.covariance = covariance
        self.seed = seed
        self.sampling = Sampling(covariance=covariance, seed=seed, name="sampling")
        self._check_networks()
        # === State ===
        # beta is a variable so that callbacks (KL warm-up) can change it
        # without retracing the step function.
        self.beta_variable = self.add_weight(
            shape=(), initializer="zeros", trainable=False, name="beta"
        )
        self.beta = beta
        self.trackers = [keras.metrics.Mean(name=key) for key in LOSS_KEYS]
        self.built = True

    # === Validation ===
    def _check_networks(self):
        for role, net in (("encoder", self.encoder), ("decoder", self.decoder)):
            if not isinstance(net, keras.Model) or not getattr(net, "inputs", None):
                raise ValueError(
                    f"The {role} must be a built functional keras.Model (with "
                    f"`inputs`). Received: {role}={net!r}"
                )
            if len(net.inputs) != 1:
                raise ValueError(
                    f"The {role} must have exactly one input. Received "
                    f"{len(net.inputs)} inputs: {[_static_shape(t) for t in net.inputs]}"
                )
        outputs = keras.tree.flatten(self.encoder.outputs)
        if len(outputs) not in (2, 3):
            raise ValueError(
                "The encoder must output [z_mean, z_log_var] (or [z_mean, scale_tril] "
                f"for covariance='full'). Received {len(outputs)} output(s) of shapes "
                f"{[_static_shape(t) for t in outputs]}"
            )
        mean_shape, second_shape = _static_shape(outputs[0]), _static_shape(outputs[1])
        second_name, expected = posterior_parameter(mean_shape, self.covariance)
        if len(mean_shape) != 2 or not shapes_compatible(second_shape, expected):
            raise ValueError(
                f"With covariance={self.covariance!r} the encoder must output z_mean of "
                f"shape (batch, latent_dim) and {second_name} of shape {expected}. "
                f"Received: {mean_shape} and {second_shape}"
            )
        latent_dim = mean_shape[-1]
        decoder_in = _static_shape(self.decoder.inputs[0])
        if decoder_in != (None, latent_dim):
            raise ValueError(
                f"The decoder input must have shape (None, {latent_dim}) to match the "
                f"encoder's latent_dim={latent_dim}. Received: {decoder_in}"
            )
        decoder_outputs = keras.tree.flatten(self.decoder.outputs)
        expected_count = getattr(self.likelihood, "num_decoder_outputs", 1)
        if len(decoder_outputs) != expected_count:
            raise ValueError(
                f"The likelihood {self.likelihood!r} needs a decoder with "
                f"{expected_count} output(s). Received {len(decoder_outputs)}."
            )
        data_shape = _static_shape(self.encoder.inputs[0])
        for out in decoder_outputs:
            if not shapes_compatible(_static_shape(out), data_shape):
                raise ValueError(
                    f"The decoder output shape must match the encoder input shape "
                    f"{data_shape}. Received: {_static_shape(out)}"
                )

    @property
    def latent_dim(self):
        return int(self.encoder.outputs[0].shape[-1])

    @property
    def data_shape(self):
        """Shape of one example, without the batch axis."""
        return _static_shape(self.encoder.inputs[0])[1:]

    @property
    def beta(self):
        return float(ops.convert_to_numpy(self.beta_variable))

    @beta.setter
    def beta(self, value):
        if not np.isfinite(value) or value < 0:
            raise ValueError(f"beta must be a finite number >= 0. Received: beta={value!r}")
        self.beta_variable.assign(float(value))

    def check_data(self, x, name="x"):
        """Checks a NumPy array of examples before training or evaluation.

        Raises `ValueError` naming the problem and the value received: a
        wrong shape or rank, a non-numeric dtype, non-finite values, or
        values the likelihood does not accept (pixels outside [0, 1] for
        Bernoulli).
        """
        x = np.asarray(x)
        expected = (None,) + self.data_shape
        if x.ndim != len(expected) or not shapes_compatible(x.shape, expected):
            raise ValueError(
                f"{name} must have shape {expected} (batch first) to match the "
                f"encoder input. Received: {name}.shape={x.shape}"
            )
        if not np.issubdtype(x.dtype, np.number) and x.dtype != np.bool_:
            raise ValueError(f"{name} must be numeric. Received: {name}.dtype={x.dtype}")
        self.likelihood.check_data(x)

    def _check_fit_input(self, x, name):
        if isinstance(x, np.ndarray):
            self.check_data(x, name)
            return
        spec = getattr(x, "element_spec", None)  # tf.data.Dataset
        if spec is not None:
            x_spec = spec[0] if isinstance(spec, tuple) else spec
            shape = tuple(x_spec.shape) if hasattr(x_spec, "shape") else None
            expected = (None,) + self.data_shape
            if shape is not None and not shapes_compatible(shape, expected):
                raise ValueError(
                    f"{name} yields batches of shape {shape}; the encoder expects "
                    f"{expected}. Batch the dataset and match the example shape."
                )

    def fit(self, x=None, y=None, *args, **kwargs):
        self._check_fit_input(x, "x")
        validation = kwargs.get("validation_data")
        if isinstance(validation, (tuple, list)) and validation:
            self._check_fit_input(validation[0], "validation_data[0]")
        elif validation is not None:
            self._check_fit_input(validation, "validation_data")
        return super().fit(x, y, *args, **kwargs)

    def evaluate(self, x=None, y=None, *args, **kwargs):
        self._check_fit_input(x, "x")
        return super().evaluate(x, y, *args, **kwargs)

    # === Loss ===
    def _posterior(self, x, training=False):
        outputs = self.encoder(x, training=training)
        return [outputs[0], outputs[1]]

    def kl_divergence(self, posterior):
        """KL(q(z | x) || N(0, I)) per example, from the posterior parameters."""
        mean, second = _to_float32(posterior)
        if self.covariance == "diagonal":
            return divergences.kl_diagonal_standard_normal(mean, second)
        return divergences.kl_full_standard_normal(mean, second)

    def compute_vae_losses(self, x, sample_weight=None, training=False):
        """The loss dict of one batch: `loss`, `reconstruction_loss`, `kl_loss`.

        Backend-neutral; each backend's step differentiates `loss`.
        """
        posterior = self._posterior(x, training=training)
        z = self.sampling(posterior)
        output = _to_float32(self.decoder(z, training=training))
        reconstruction = -self.likelihood.log_prob(x, output)
        kl = self.kl_divergence(posterior)
        reconstruction_loss = _batch_mean(reconstruction, sample_weight)
        kl_loss = _batch_mean(kl, sample_weight)
        loss = reconstruction_loss + ops.cast(self.beta_variable, "float32") * kl_loss
        return {"loss": loss, "reconstruction_loss": reconstruction_loss, "kl_loss": kl_loss}

    @property
    def metrics(self):
        return list(self.trackers)

    def update_trackers(self, losses):
        for tracker in self.trackers:
            tracker.update_state(losses[tracker.name])
        return {tracker.name: tracker.result() for tracker in self.trackers}

    # === Inference ===
    def call(self, inputs, training=False):
        return self.reconstruct(inputs, training=training)

    def encode(self, x, training=False):
        """Posterior parameters `[z_mean, z_log_var]` (or `[z_mean, scale_tril]`)."""
        return self._posterior(x, training=training)

    def decode(self, z, training=False):
        """E[x | z]: pixel probabilities (Bernoulli) or means (Gaussian)."""
        return self.likelihood.mean(self.decoder(z, training=training))

    def reconstruct(self, x, training=False):
        """Decodes the posterior mean of `x` (deterministic)."""
        return self.decode(self._posterior(x, training=training)[0], training=training)

    def sample(self, num_samples, seed=None):
        """Decodes `num_samples` draws from the prior N(0, I)."""
        if isinstance(num_samples, bool) or not isinstance(num_samples, (int, np.integer)):
            raise ValueError(
                f"num_samples must be an integer. Received: num_samples={num_samples!r}"
            )
        if num_samples <= 0:
            raise ValueError(f"num_samples must be positive. Received: num_samples={num_samples}")
        z = keras.random.normal((int(num_samples), self.latent_dim), seed=seed)
        return self.decode(z)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    # === Serialization ===
    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "encoder": keras.saving.serialize_keras_object(self.encoder),
                "decoder": keras.saving.serialize_keras_object(self.decoder),
                "likelihood": keras.saving.serialize_keras_object(self.likelihood),
                "beta": self.beta,
                "covariance": self.covariance,
                "seed": self.seed,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("encoder", "decoder", "likelihood"):
            config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)
