"""The keras-io "Variational AutoEncoder" example (fchollet, 2020), re-implemented as a baseline.

Written from the example's published description, not copied:

- encoder: 28x28x1 -> Conv2D(32, 3, stride 2, relu, same) -> Conv2D(64, 3, stride 2,
  relu, same) -> Flatten -> Dense(16, relu) -> two Dense(2) heads, z_mean and
  z_log_var -> a Sampling layer (z = mean + exp(log_var / 2) * eps); the encoder
  returns [z_mean, z_log_var, z];
- decoder: z (2) -> Dense(7*7*64, relu) -> Reshape(7, 7, 64) -> Conv2DTranspose(64,
  3, stride 2, relu, same) -> Conv2DTranspose(32, 3, stride 2, relu, same) ->
  Conv2DTranspose(1, 3, sigmoid, same), pixel probabilities;
- a `keras.Model` subclass whose `train_step` runs both networks under a
  `tf.GradientTape`: binary cross-entropy summed over the pixels, the Gaussian
  KL summed over the latent axis, both averaged over the batch; three `Mean`
  trackers; `Adam()` with its defaults; `fit(x, batch_size=128)`.

The example runs on Keras/TensorFlow only (its step is a GradientTape). The
same networks for `kerasvae.VAE` are built by `build_kerasvae_same_networks`:
the same layers and parameter count, except that the decoder's last layer
returns logits (kerasvae's Bernoulli likelihood reads logits) and the encoder
returns [z_mean, z_log_var] (kerasvae draws z itself).
"""

import keras

LATENT_DIM = 2
BATCH_SIZE = 128


class KerasIOSampling(keras.layers.Layer):
    """The example's reparameterization layer: z = mean + exp(log_var / 2) * eps."""

    def __init__(self, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs):
        z_mean, z_log_var = inputs
        eps = keras.random.normal(keras.ops.shape(z_mean), seed=self.seed_generator)
        return z_mean + keras.ops.exp(0.5 * z_log_var) * eps


def _encoder_trunk(latent_dim):
    inputs = keras.Input(shape=(28, 28, 1))
    h = keras.layers.Conv2D(32, 3, strides=2, padding="same", activation="relu")(inputs)
    h = keras.layers.Conv2D(64, 3, strides=2, padding="same", activation="relu")(h)
    h = keras.layers.Flatten()(h)
    h = keras.layers.Dense(16, activation="relu")(h)
    z_mean = keras.layers.Dense(latent_dim, name="z_mean")(h)
    z_log_var = keras.layers.Dense(latent_dim, name="z_log_var")(h)
    return inputs, z_mean, z_log_var


def _decoder(latent_dim, last_activation, name):
    z = keras.Input(shape=(latent_dim,))
    h = keras.layers.Dense(7 * 7 * 64, activation="relu")(z)
    h = keras.layers.Reshape((7, 7, 64))(h)
    h = keras.layers.Conv2DTranspose(64, 3, strides=2, padding="same", activation="relu")(h)
    h = keras.layers.Conv2DTranspose(32, 3, strides=2, padding="same", activation="relu")(h)
    out = keras.layers.Conv2DTranspose(1, 3, padding="same", activation=last_activation)(h)
    return keras.Model(z, out, name=name)


def build_keras_io_encoder(latent_dim=LATENT_DIM, seed=None):
    inputs, z_mean, z_log_var = _encoder_trunk(latent_dim)
    z = KerasIOSampling(seed=seed)([z_mean, z_log_var])
    return keras.Model(inputs, [z_mean, z_log_var, z], name="encoder")


def build_keras_io_decoder(latent_dim=LATENT_DIM):
    return _decoder(latent_dim, "sigmoid", name="decoder")


class KerasIOVAE(keras.Model):
    """The example's model: a custom GradientTape `train_step` (TensorFlow backend only)."""

    def __init__(self, encoder, decoder, **kwargs):
        super().__init__(**kwargs)
        self.encoder = encoder
        self.decoder = decoder
        self.total_loss_tracker = keras.metrics.Mean(name="total_loss")
        self.reconstruction_loss_tracker = keras.metrics.Mean(name="reconstruction_loss")
        self.kl_loss_tracker = keras.metrics.Mean(name="kl_loss")

    @property
    def metrics(self):
        return [self.total_loss_tracker, self.reconstruction_loss_tracker, self.kl_loss_tracker]

    def train_step(self, data):
        import tensorflow as tf

        ops = keras.ops
        with tf.GradientTape() as tape:
            z_mean, z_log_var, z = self.encoder(data)
            reconstruction = self.decoder(z)
            # binary_crossentropy averages over the last (channel) axis; the
            # example then sums over the two pixel axes.
            reconstruction_loss = ops.mean(
                ops.sum(keras.losses.binary_crossentropy(data, reconstruction), axis=(1, 2))
            )
            kl = -0.5 * (1 + z_log_var - ops.square(z_mean) - ops.exp(z_log_var))
            kl_loss = ops.mean(ops.sum(kl, axis=1))
            total_loss = reconstruction_loss + kl_loss
        grads = tape.gradient(total_loss, self.trainable_weights)
        self.optimizer.apply_gradients(zip(grads, self.trainable_weights))
        self.total_loss_tracker.update_state(total_loss)
        self.reconstruction_loss_tracker.update_state(reconstruction_loss)
        self.kl_loss_tracker.update_state(kl_loss)
        return {
            "loss": self.total_loss_tracker.result(),
            "reconstruction_loss": self.reconstruction_loss_tracker.result(),
            "kl_loss": self.kl_loss_tracker.result(),
        }

    def call(self, x):
        _, _, z = self.encoder(x)
        return self.decoder(z)


def build_keras_io_vae(seed=None):
    """The example's VAE, compiled as the example does (`Adam()` defaults)."""
    vae = KerasIOVAE(build_keras_io_encoder(seed=seed), build_keras_io_decoder())
    vae.compile(optimizer=keras.optimizers.Adam())
    return vae


def build_kerasvae_same_networks(seed=None):
    """`kerasvae.VAE` with the example's networks (decoder returns logits), uncompiled."""
    import kerasvae

    inputs, z_mean, z_log_var = _encoder_trunk(LATENT_DIM)
    encoder = keras.Model(inputs, [z_mean, z_log_var], name="encoder")
    decoder = _decoder(LATENT_DIM, None, name="decoder")
    return kerasvae.VAE(encoder, decoder, likelihood="bernoulli", seed=seed, name="kerasvae_keras_io_arch")
