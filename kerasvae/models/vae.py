import math

import keras
import numpy as np
from keras import ops

from kerasvae import divergences, likelihoods, schedules
from kerasvae.layers.sampling import COVARIANCES, Sampling, posterior_parameter, shapes_compatible
from kerasvae.training import backend_trainer, defaults

# The seed of the exported `elbo` signature's posterior draw: a fixed draw
# makes the score a deterministic function of the batch.
ELBO_SEED = 0


def to_float32(structure):
    return keras.tree.map_structure(lambda t: ops.cast(t, "float32"), structure)


def static_shape(tensor):
    return tuple(None if d is None else int(d) for d in tensor.shape)


def batch_mean(values, sample_weight):
    """Mean over the batch axis, weighted by `sample_weight` when given."""
    if sample_weight is None:
        return ops.mean(values, axis=0)
    weight = ops.cast(ops.reshape(sample_weight, (-1,)), values.dtype)
    weight = ops.reshape(weight, (-1,) + (1,) * (len(values.shape) - 1))
    return ops.sum(values * weight, axis=0) / ops.maximum(ops.sum(weight), 1e-12)


def check_positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{name} must be a positive integer. Received: {name}={value!r}")


def tile_samples(tensor, num_samples):
    """`(batch, ...) -> (num_samples * batch, ...)`, sample-major."""
    shape = ops.shape(tensor)
    tiled = ops.broadcast_to(ops.expand_dims(tensor, 0), (num_samples,) + tuple(shape))
    return ops.reshape(tiled, (-1,) + tuple(shape[1:]))


@keras.saving.register_keras_serializable(package="kerasvae")
class _LatestValue(keras.metrics.Metric):
    """Reports the last value it was given (the current KL weight)."""

    def __init__(self, name, **kwargs):
        super().__init__(name=name, **kwargs)
        # Every replica holds the same value under tf.distribute: read one
        # (the default "sum" would report it times the number of replicas).
        self.value = self.add_variable(
            shape=(), initializer="zeros", aggregation="only_first_replica", name="value"
        )

    def update_state(self, value):
        self.value.assign(ops.cast(value, self.value.dtype))

    def result(self):
        # A copy: on TensorFlow `.value` is the live variable, and a log that
        # holds it would show whatever a later evaluation assigned (and a
        # distributed variable must not land in the logs).
        return ops.copy(self.value.value)


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
    loss = mean_batch[ -log p(x | z) ] + beta * w(t) * R(KL),
    z ~ q(z | x) (one reparameterized sample), KL = KL(q(z | x) || N(0, I))
    R(KL) = mean_batch[KL]                                  (free_bits = 0)
    R(KL) = sum_j max(free_bits, mean_batch[KL_j])          (free bits, per latent dim j)
    ```

    where `w(t)` is the KL schedule at training step t (1 without one). Both
    terms are summed over their event axes. `fit`, `evaluate` and the
    callbacks report `loss`, `reconstruction_loss`, `kl_loss` (the true mean
    KL) and `beta` (the current KL weight `beta * w(t)`); with free bits also
    `kl_term`, the regularizer R actually minimized. The model is built as soon
    as it is made, so it can be saved, exported or backed up before the first
    `fit`. Calling the model returns the reconstruction from the posterior mean
    (deterministic), which is also what `predict` returns.

    Every family in `kerasvae.models` subclasses this one and changes only
    what its paper changes: the prior (`prior_log_prob`, `latent_from_noise`),
    the divergence (`kl_divergence`), the regularizer (`kl_regularizer`) or
    the objective (`compute_vae_losses`). The per-backend training steps and
    the SavedModel export use only the methods defined here.

    Args:
        encoder: keras.Model. Built functional encoder, `x -> posterior params`.
        decoder: keras.Model. Built functional decoder, `z -> likelihood params`.
        likelihood: str or likelihood object. `"bernoulli"` (default),
            `"gaussian"`, `"discretized_logistic"`, or a
            `kerasvae.likelihoods` instance.
        beta: float. Weight of the KL term (beta-VAE when not 1).
        covariance: str. `"diagonal"` or `"full"`, the posterior family.
        kl_schedule: `kerasvae.schedules` object or None. Multiplier of beta
            as a function of the training step (KL warm-up, cyclical
            annealing).
        free_bits: float. Nats per latent dimension below which the KL is not
            penalized (Kingma et al. 2016); 0 disables it.
        seed: int or None. Seed of the sampling layer.
        **kwargs: Base model keyword arguments (`name`, ...).

    Example:

    ```python
    encoder = kerasvae.networks.build_mlp_encoder((28, 28, 1), latent_dim=16)
    decoder = kerasvae.networks.build_mlp_decoder(16, (28, 28, 1))
    vae = kerasvae.models.VAE(
        encoder, decoder, kl_schedule=kerasvae.schedules.LinearWarmup(5000)
    )
    vae.compile(optimizer=keras.optimizers.Adam(1e-3))
    vae.fit(x_train, epochs=10, batch_size=128, validation_data=(x_test,))
    ```

    Reference:
        Kingma and Welling, "Auto-Encoding Variational Bayes", ICLR 2014.
        Kingma et al., "Improved Variational Inference with Inverse
        Autoregressive Flow", NeurIPS 2016 (free bits).
    """

    # Number of inputs each network takes (the conditional family adds a label).
    encoder_inputs = 1
    decoder_inputs = 1

    def __init__(
        self,
        encoder,
        decoder,
        likelihood="bernoulli",
        beta=1.0,
        covariance="diagonal",
        kl_schedule=None,
        free_bits=0.0,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if covariance not in COVARIANCES:
            raise ValueError(
                f"covariance must be one of {COVARIANCES}. Received: covariance={covariance!r}"
            )
        if not np.isfinite(free_bits) or free_bits < 0:
            raise ValueError(
                f"free_bits must be a finite number >= 0. Received: free_bits={free_bits!r}"
            )
        # === Networks ===
        self.encoder = encoder
        self.decoder = decoder
        self.likelihood = likelihoods.get(likelihood)
        self.covariance = covariance
        self.kl_schedule = schedules.get(kl_schedule)
        self.free_bits = float(free_bits)
        self.seed = seed
        self.sampling = Sampling(covariance=covariance, seed=seed, name="sampling")
        self._check_networks()
        # === State ===
        # beta is a variable so that it can change between fits without
        # retracing; kl_step counts training steps for the KL schedule (and is
        # saved with the model, so a resumed run continues its schedule).
        self.beta_variable = self.add_weight(
            shape=(), initializer="zeros", trainable=False, name="beta"
        )
        self.kl_step = self.add_weight(
            shape=(),
            dtype="int32",
            initializer="zeros",
            trainable=False,
            aggregation="only_first_replica",
            name="kl_step",
        )
        self.beta = beta
        self.trackers = [
            _LatestValue(name=key) if key == "beta" else keras.metrics.Mean(name=key)
            for key in self.loss_keys
        ]
        self.built = True

    @property
    def loss_keys(self):
        """The names `train_step` and `test_step` report, in order."""
        keys = ("loss", "reconstruction_loss", "kl_loss", "beta")
        return keys + (("kl_term",) if self.free_bits > 0 else ())

    # === Validation ===
    def _check_networks(self):
        for role, net, count in (
            ("encoder", self.encoder, self.encoder_inputs),
            ("decoder", self.decoder, self.decoder_inputs),
        ):
            if not isinstance(net, keras.Model) or not getattr(net, "inputs", None):
                raise ValueError(
                    f"The {role} must be a built functional keras.Model (with "
                    f"`inputs`). Received: {role}={net!r}"
                )
            if len(net.inputs) != count:
                raise ValueError(
                    f"The {role} of {type(self).__name__} must have {count} input(s). "
                    f"Received {len(net.inputs)} inputs: {[static_shape(t) for t in net.inputs]}"
                )
        outputs = keras.tree.flatten(self.encoder.outputs)
        if len(outputs) not in (2, 3):
            raise ValueError(
                "The encoder must output [z_mean, z_log_var] (or [z_mean, scale_tril] "
                f"for covariance='full'). Received {len(outputs)} output(s) of shapes "
                f"{[static_shape(t) for t in outputs]}"
            )
        mean_shape, second_shape = static_shape(outputs[0]), static_shape(outputs[1])
        second_name, expected = posterior_parameter(mean_shape, self.covariance)
        if len(mean_shape) != 2 or not shapes_compatible(second_shape, expected):
            raise ValueError(
                f"With covariance={self.covariance!r} the encoder must output z_mean of "
                f"shape (batch, latent_dim) and {second_name} of shape {expected}. "
                f"Received: {mean_shape} and {second_shape}"
            )
        latent_dim = mean_shape[-1]
        decoder_in = static_shape(self.decoder.inputs[0])
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
        data_shape = static_shape(self.encoder.inputs[0])
        for out in decoder_outputs:
            if not shapes_compatible(static_shape(out), data_shape):
                raise ValueError(
                    f"The decoder output shape must match the encoder input shape "
                    f"{data_shape}. Received: {static_shape(out)}"
                )

    @property
    def latent_dim(self):
        """Width of the `z` that `decode` takes and the prior is defined on."""
        return int(self.encoder.outputs[0].shape[-1])

    @property
    def data_shape(self):
        """Shape of one example, without the batch axis."""
        return static_shape(self.encoder.inputs[0])[1:]

    @property
    def num_classes(self):
        """Number of label classes (conditional models), `None` otherwise."""
        return None

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
        wrong shape or rank, a non-numeric dtype, no examples, non-finite values, or
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
        if x.dtype != np.bool_ and not (
            np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)
        ):
            raise ValueError(
                f"{name} must be numeric (real numbers or booleans). Received: {name}.dtype={x.dtype}"
            )
        if x.shape[0] == 0:
            raise ValueError(f"{name} holds no examples. Received: {name}.shape={x.shape}")
        self.likelihood.check_data(x)

    def check_input_shape(self, x, name="x"):
        """Refuses `x` whose example shape is not `data_shape`, naming the shape received.

        Static shapes only, so it also runs on traced tensors; Keras's own
        message can show the input already reshaped (a trailing axis of 1
        dropped).
        """
        shape = static_shape(x) if hasattr(x, "shape") else tuple(np.shape(x))
        expected = (None,) + self.data_shape
        if not shapes_compatible(shape, expected):
            raise ValueError(
                f"{name} must have shape {expected} (batch first) to match the "
                f"encoder input. Received: {name}.shape={shape}"
            )

    def check_labels(self, labels, num_examples=None):
        """Checks labels given to this model; unconditional models take none."""
        if labels is not None:
            raise ValueError(
                f"{type(self).__name__} is not conditional (num_classes=None) and takes "
                f"no labels. Received labels of shape {tuple(np.shape(labels))}."
            )

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

    def compile(self, optimizer="rmsprop", **kwargs):
        """`keras.Model.compile`, with kerasvae's measured per-backend defaults
        (`kerasvae.training.defaults`) filled in where no value is given."""
        filled = defaults.with_compile_defaults(self, kwargs)
        defaults.check_steps_per_execution(filled.get("steps_per_execution", 1))
        super().compile(optimizer=optimizer, **filled)
        self._filled_compile_defaults = sorted(set(filled) - set(kwargs))

    def get_compile_config(self):
        # Without the defaults kerasvae filled in: a file saved on one backend
        # gets the defaults of the backend that loads it.
        config = super().get_compile_config()
        if config:
            for key in getattr(self, "_filled_compile_defaults", ()):
                config.pop(key, None)
        return config

    def compile_from_config(self, config):
        # Keras skips compiling on load when `compile` is overridden; this
        # is its own sequence, through the override above.
        self.compile(**keras.saving.deserialize_keras_object(config))
        if self.built:
            self.optimizer.build(self.trainable_variables)

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

    # === Building blocks (families override these) ===
    def _posterior(self, x, labels=None, training=False):
        outputs = self.encoder(x, training=training)
        return [outputs[0], outputs[1]]

    def _decoder_output(self, z, labels=None, training=False):
        return to_float32(self.decoder(z, training=training))

    def posterior_log_prob(self, z, posterior):
        """log q(z | x) summed over the latent axis; `posterior` broadcasts against z."""
        mean, second = to_float32(posterior)
        if self.covariance == "diagonal":
            return divergences.diagonal_normal_log_prob(z, mean, second)
        return divergences.full_normal_log_prob(z, mean, second)

    def prior_log_prob(self, z):
        """log p(z) summed over the latent axis. Here p(z) = N(0, I)."""
        return divergences.standard_normal_log_prob(ops.cast(z, "float32"))

    # Noise a prior draw needs: standard normal of width prior_noise_dims[0]
    # and uniform of width prior_noise_dims[1]. Drawing noise outside the
    # model lets the export make the same draw with stateless TF ops.
    @property
    def prior_noise_dims(self):
        return (self.latent_dim, 0)

    def latent_from_noise(self, normal, uniform=None):
        """Maps standard noise to a prior draw of `z`. Here p(z) = N(0, I)."""
        return normal

    def kl_divergence(self, posterior, z=None):
        """KL(q(z | x) || p(z)) per example; closed form for N(0, I).

        Families whose prior has no closed-form KL use the single-sample
        estimate `log q(z | x) - log p(z)` at the training draw `z`.
        """
        mean, second = to_float32(posterior)
        if self.covariance == "diagonal":
            return divergences.kl_diagonal_standard_normal(mean, second)
        return divergences.kl_full_standard_normal(mean, second)

    def kl_per_dimension(self, posterior):
        """Per-dimension KL `(batch, latent_dim)`, or `None` when it does not split."""
        if self.covariance != "diagonal":
            return None
        mean, log_var = to_float32(posterior)
        return 0.5 * (ops.square(mean) + ops.expm1(log_var) - log_var)

    def kl_weight(self, step):
        """The current weight of the KL term: beta times the schedule at `step`."""
        beta = ops.cast(self.beta_variable, "float32")
        if self.kl_schedule is None:
            return beta
        return beta * ops.cast(self.kl_schedule(step), "float32")

    def kl_regularizer(self, kl, kl_dims, sample_weight, step):
        """R(KL), what the weight multiplies: the mean KL, or free bits on it.

        With free bits each latent dimension's batch-mean KL is held at
        `free_bits` at least (no gradient below it); where the KL does not
        split by dimension (full covariance, Monte Carlo KL) the whole KL is
        one group held at `free_bits * latent_dim`.
        """
        if self.free_bits <= 0:
            return batch_mean(kl, sample_weight)
        if kl_dims is None:
            return ops.maximum(batch_mean(kl, sample_weight), self.free_bits * self.latent_dim)
        return ops.sum(ops.maximum(batch_mean(kl_dims, sample_weight), self.free_bits))

    def split_data(self, x, y):
        """`(inputs, labels)` from a batch; unconditional models ignore `y`."""
        return x, None

    # === Loss ===
    def elbo_terms(self, x, labels=None, training=False, seed=None):
        """Per-example `reconstruction_loss` (-log p(x | z)) and `kl_loss`, one draw of z.

        Also returns the posterior and the per-dimension KL for the loss. The
        negative ELBO of an example is `reconstruction_loss + kl_loss`.
        """
        posterior = self._posterior(x, labels, training=training)
        z = self.sampling(posterior, seed=seed)
        output = self._decoder_output(z, labels, training=training)
        return {
            "reconstruction_loss": -self.likelihood.log_prob(x, output),
            "kl_loss": self.kl_divergence(posterior, z),
            "kl_dims": self.kl_per_dimension(posterior),
        }

    def advance_step(self, training):
        """The step the schedule reads; counts up once per training step."""
        # A tensor read now: on TensorFlow `.value` is the variable itself,
        # which would be read after the assign below (the next step's value).
        step = ops.copy(self.kl_step.value)
        if training:
            self.kl_step.assign(step + 1)
        return step

    def compute_vae_losses(self, x, y=None, sample_weight=None, training=False):
        """The loss dict of one batch, keyed by `loss_keys`.

        Backend-neutral; each backend's step differentiates `loss`, or
        `objective` when a family returns one (a surrogate whose gradient is
        the estimator it wants, e.g. DReG).
        """
        inputs, labels = self.split_data(x, y)
        step = self.advance_step(training)
        terms = self.elbo_terms(inputs, labels, training=training)
        reconstruction_loss = batch_mean(terms["reconstruction_loss"], sample_weight)
        kl_loss = batch_mean(terms["kl_loss"], sample_weight)
        weight = self.kl_weight(step)
        regularizer = self.kl_regularizer(terms["kl_loss"], terms["kl_dims"], sample_weight, step)
        losses = {
            "loss": reconstruction_loss + weight * regularizer,
            "reconstruction_loss": reconstruction_loss,
            "kl_loss": kl_loss,
            "beta": weight,
        }
        if "kl_term" in self.loss_keys:
            losses["kl_term"] = regularizer
        return losses

    @property
    def metrics(self):
        return list(self.trackers)

    def update_trackers(self, losses):
        for tracker in self.trackers:
            tracker.update_state(losses[tracker.name])
        return {tracker.name: tracker.result() for tracker in self.trackers}

    # === Importance sampling ===
    def log_importance_weights(self, x, labels=None, num_samples=1, training=False, seed=None):
        """`log w_k = log p(x, z_k) - log q(z_k | x)`, shape `(num_samples, batch)`.

        One vectorized pass: the K draws share one encoder pass, and the
        decoder sees all K * batch latents at once.
        """
        check_positive_int("num_samples", num_samples)
        posterior = to_float32(self._posterior(x, labels, training=training))
        stacked = [ops.broadcast_to(t, (num_samples,) + tuple(ops.shape(t))) for t in posterior]
        z = self.sampling(stacked, seed=seed)  # (K, batch, latent_dim)
        batch = ops.shape(x)[0]
        flat_z = ops.reshape(z, (-1, self.latent_dim))
        flat_labels = None if labels is None else tile_samples(labels, num_samples)
        output = self._decoder_output(flat_z, flat_labels, training=training)
        log_px_z = self.likelihood.log_prob(tile_samples(x, num_samples), output)
        log_px_z = ops.reshape(log_px_z, (num_samples, batch))
        return log_px_z + self.prior_log_prob(z) - self.posterior_log_prob(z, stacked)

    # === Inference ===
    def call(self, inputs, training=False):
        if self.num_classes is not None and isinstance(inputs, (list, tuple)):
            return self.reconstruct(inputs[0], labels=inputs[1], training=training)
        return self.reconstruct(inputs, training=training)

    def encode(self, x, labels=None, training=False):
        """Posterior parameters `[z_mean, z_log_var]` (or `[z_mean, scale_tril]`)."""
        self.check_input_shape(x)
        self.check_labels(labels)
        return self._posterior(x, labels, training=training)

    def encode_outputs(self, x, labels=None):
        """The posterior parameters by name (what the `encode` signature returns)."""
        mean, second = to_float32(self.encode(x, labels))
        second_name, _ = posterior_parameter((None, self.latent_dim), self.covariance)
        return {"z_mean": mean, second_name: second}

    def decode(self, z, labels=None, training=False):
        """E[x | z]: pixel probabilities (Bernoulli) or means (Gaussian)."""
        self.check_labels(labels)
        return self.likelihood.mean(self._decoder_output(z, labels, training=training))

    def decode_outputs(self, z, labels=None):
        """The likelihood's parameters by name (what the `decode` signature returns)."""
        self.check_labels(labels)
        return self.likelihood.outputs(self._decoder_output(z, labels))

    def reconstruct(self, x, labels=None, training=False):
        """Decodes the posterior mean of `x` (deterministic)."""
        self.check_input_shape(x)
        self.check_labels(labels)
        mean = self._posterior(x, labels, training=training)[0]
        return self.likelihood.mean(self._decoder_output(mean, labels, training=training))

    def negative_elbo(self, x, labels=None, seed=ELBO_SEED):
        """Per-example negative ELBO and its parts, from one draw with `seed`.

        An anomaly score: large for examples the model explains badly. What
        the exported `elbo` signature returns.
        """
        self.check_input_shape(x)
        self.check_labels(labels)
        terms = self.elbo_terms(x, labels, seed=seed)
        return {
            "negative_elbo": terms["reconstruction_loss"] + terms["kl_loss"],
            "reconstruction_loss": terms["reconstruction_loss"],
            "kl_loss": terms["kl_loss"],
        }

    def sample_latent(self, num_samples, seed=None):
        """`num_samples` draws of z from the prior."""
        normal_dim, uniform_dim = self.prior_noise_dims
        generator = keras.random.SeedGenerator(seed) if isinstance(seed, int) else seed
        normal = keras.random.normal((num_samples, normal_dim), seed=generator)
        uniform = None
        if uniform_dim:
            uniform = keras.random.uniform((num_samples, uniform_dim), seed=generator)
        return self.latent_from_noise(normal, uniform)

    def sample(self, num_samples, seed=None, labels=None):
        """Decodes `num_samples` draws from the prior."""
        if isinstance(num_samples, bool) or not isinstance(num_samples, (int, np.integer)):
            raise ValueError(
                f"num_samples must be an integer. Received: num_samples={num_samples!r}"
            )
        if num_samples <= 0:
            raise ValueError(f"num_samples must be positive. Received: num_samples={num_samples}")
        self.check_labels(labels, num_samples)
        z = self.sample_latent(int(num_samples), seed=seed)
        return self.decode(z, labels)

    def compute_output_shape(self, input_shape):
        if self.num_classes is not None and isinstance(input_shape, (list, tuple)) and (
            isinstance(input_shape[0], (list, tuple))
        ):
            return tuple(input_shape[0])
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
                "kl_schedule": keras.saving.serialize_keras_object(self.kl_schedule),
                "free_bits": self.free_bits,
                "seed": self.seed,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("encoder", "decoder", "likelihood", "kl_schedule"):
            if config.get(key) is not None:
                config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)


def log_mean_exp(values, axis=0):
    """log(mean(exp(values))) along `axis`, computed stably."""
    return ops.logsumexp(values, axis=axis) - math.log(values.shape[axis])
