import math

import keras
import numpy as np
from keras import ops

from kerasvae.models.vae import VAE, batch_mean, tile_samples, to_float32

GRADIENT_ESTIMATORS = ("standard", "dreg")


@keras.saving.register_keras_serializable(package="kerasvae")
class IWAE(VAE):
    """Importance weighted autoencoder: the K-sample bound as the objective.

    Draws K latents per example from q(z | x) (one encoder pass; the decoder
    sees all K * batch draws at once) and maximizes the importance weighted
    bound, a log-mean-exp of the K log weights. With `beta * w(t) = 1` (the
    default without a schedule) this is the bound of Burda et al.; K = 1 is
    the single-sample ELBO, and the bound tightens as K grows.

    ```
    log w_k = log p(x | z_k) + b * (log p(z_k) - log q(z_k | x)),  z_k ~ q(z | x)
    L_K     = log (1/K) sum_k w_k            (logsumexp over k, minus log K)
    loss    = mean_batch[ -L_K ]
    b       = beta * w(t)                    (the KL weight and its schedule)
    ```

    The KL weight `b` multiplies the log-ratio inside every weight, so a KL
    warm-up anneals the IWAE bound as it anneals a VAE's ELBO, and with
    K = 1 the loss is the VAE loss with the single-sample (Monte Carlo) KL
    `log q(z | x) - log p(z)` in place of the closed form (equal in
    expectation). Free bits has no counterpart inside the log-sum-exp and is
    refused (`free_bits > 0` raises).

    For monitoring, `reconstruction_loss` and `kl_loss` are the parts of the
    ELBO averaged over the K draws, `mean_k[-log p(x | z_k)]` and
    `mean_k[log q(z_k | x) - log p(z_k)]`; their sum is the K-draw average
    negative ELBO, never below `loss` when `b = 1`. `beta` is `b`.

    Gradient estimators (`gradient_estimator`):

    ```
    "standard": d/d(theta, phi) of L_K (reparameterized), i.e. sum_k w~_k d log w_k,
                w~_k = w_k / sum_j w_j
    "dreg":     decoder: sum_k w~_k d log p(x, z_k) / d theta          (unchanged)
                encoder: sum_k c_k  d log w_k / d z_k * d z_k / d phi,  q's parameters
                         held fixed inside log q;  c_k = w~_k * (1 - b + b * w~_k)
    ```

    With `b = 1`, `c_k = w~_k^2`, the doubly reparameterized estimator of
    Tucker et al.; for other `b` (a warm-up) the same derivation (the
    reparameterization identity applied to the score term `-b w~_k d log q /
    d phi`) gives `c_k`, so the estimator stays unbiased for the annealed
    bound. With K = 1 it is the "sticking the landing" path gradient. DReG is
    returned as a surrogate (`objective`) that the training step
    differentiates; its value is not the bound, `loss` stays `-L_K`. The
    decoder and the encoder need different weights on the same draws, so
    DReG makes two decoder passes over the K * batch draws: one at
    stop-gradient draws carries the decoder's gradient (weights w~_k), one
    with frozen weights carries the path gradient to the encoder (weights
    c_k). That is one extra decoder forward pass; the backward passes do the
    work of one.

    Args:
        encoder: keras.Model. Built functional encoder, `x -> posterior params`.
        decoder: keras.Model. Built functional decoder, `z -> likelihood params`.
        num_samples: int. K, the number of importance samples per example
            (>= 1). Defaults to 5.
        gradient_estimator: str. `"standard"` (default) or `"dreg"`.
        **kwargs: `kerasvae.models.VAE` arguments (`likelihood`, `beta`,
            `covariance`, `kl_schedule`, `seed`, `name`, ...), except
            `free_bits`.

    Example:

    ```python
    encoder = kerasvae.networks.build_mlp_encoder((28, 28, 1), latent_dim=16)
    decoder = kerasvae.networks.build_mlp_decoder(16, (28, 28, 1))
    iwae = kerasvae.models.IWAE(encoder, decoder, num_samples=5, gradient_estimator="dreg")
    iwae.compile(optimizer=keras.optimizers.Adam(1e-3))
    iwae.fit(x_train, epochs=10, batch_size=128, validation_data=(x_test,))
    ```

    Reference:
        Burda, Grosse and Salakhutdinov, "Importance Weighted Autoencoders",
        ICLR 2016.
        Tucker, Lawson, Gu and Maddison, "Doubly Reparameterized Gradient
        Estimators for Monte Carlo Objectives", ICLR 2019.
    """

    def __init__(self, encoder, decoder, num_samples=5, gradient_estimator="standard", **kwargs):
        if (
            isinstance(num_samples, bool)
            or not isinstance(num_samples, (int, np.integer))
            or num_samples < 1
        ):
            raise ValueError(
                "num_samples (K, the number of importance samples) must be an integer "
                f">= 1. Received: num_samples={num_samples!r}"
            )
        if gradient_estimator not in GRADIENT_ESTIMATORS:
            raise ValueError(
                f"gradient_estimator must be one of {GRADIENT_ESTIMATORS}. "
                f"Received: gradient_estimator={gradient_estimator!r}"
            )
        free_bits = kwargs.get("free_bits", 0.0)
        if isinstance(free_bits, (int, float)) and free_bits > 0:
            raise ValueError(
                "IWAE does not support free bits: its KL term sits inside the "
                "importance weights, where a per-dimension floor has no meaning. Use "
                f"beta or a kl_schedule instead. Received: free_bits={free_bits!r}"
            )
        self.num_samples = int(num_samples)
        self.gradient_estimator = gradient_estimator
        super().__init__(encoder, decoder, **kwargs)

    # === Importance sampling ===
    def _draw(self, x, labels, num_samples, training, seed):
        """q's parameters broadcast to K leading copies, and K draws `(K, batch, latent_dim)`."""
        posterior = to_float32(self._posterior(x, labels, training=training))
        stacked = [ops.broadcast_to(t, (num_samples,) + tuple(ops.shape(t))) for t in posterior]
        # Under a mixed policy the layer samples in float16/bfloat16; the
        # densities are float32.
        return stacked, ops.cast(self.sampling(stacked, seed=seed), "float32")

    def _log_likelihood(self, x, labels, z, training):
        """log p(x | z) for `z` of shape `(K, batch, latent_dim)`, shape `(K, batch)`."""
        num_samples = z.shape[0]
        flat_labels = None if labels is None else tile_samples(labels, num_samples)
        output = self._decoder_output(
            ops.reshape(z, (-1, self.latent_dim)), flat_labels, training=training
        )
        log_px_z = self.likelihood.log_prob(tile_samples(x, num_samples), output)
        return ops.reshape(log_px_z, (num_samples, ops.shape(x)[0]))

    def _frozen_weights(self):
        """A scope in which every weight is read through a stop-gradient.

        What runs inside passes gradients to its inputs only, and its
        backward pass skips the weight gradients.
        """
        mapping = [(v, ops.stop_gradient(v.value)) for v in self.trainable_variables]
        mapping += [(v, v.value) for v in self.non_trainable_variables]
        return keras.StatelessScope(state_mapping=mapping)

    def importance_terms(self, x, labels=None, num_samples=None, training=False, seed=None):
        """The parts of the K log weights, from one vectorized pass.

        Returns a dict: `z` `(K, batch, latent_dim)`, the draws; `posterior`,
        q's parameters broadcast to K leading copies; `log_px_z`, `log_prior`
        and `log_posterior`, each `(K, batch)`. `num_samples` defaults to the
        model's K; `seed` fixes the draw.
        """
        num_samples = self.num_samples if num_samples is None else num_samples
        if isinstance(num_samples, bool) or not isinstance(num_samples, (int, np.integer)) or (
            num_samples < 1
        ):
            raise ValueError(
                f"num_samples must be an integer >= 1. Received: num_samples={num_samples!r}"
            )
        posterior, z = self._draw(x, labels, int(num_samples), training, seed)
        return {
            "z": z,
            "posterior": posterior,
            "log_px_z": self._log_likelihood(x, labels, z, training),
            "log_prior": self.prior_log_prob(z),
            "log_posterior": self.posterior_log_prob(z, posterior),
        }

    def log_importance_weights(self, x, labels=None, num_samples=None, training=False, seed=None):
        """`log w_k = log p(x, z_k) - log q(z_k | x)`, shape `(K, batch)` (K = `num_samples`)."""
        terms = self.importance_terms(x, labels, num_samples, training=training, seed=seed)
        return terms["log_px_z"] + terms["log_prior"] - terms["log_posterior"]

    def importance_weighted_bound(self, x, labels=None, kl_weight=None, seed=None):
        """Each example's K-sample bound `L_K` at KL weight `b` (default: `beta`,
        the weight the warm-up ends at), shape `(batch,)`: what `loss` is the
        batch mean of, minus, once the warm-up is over. `seed` fixes the draw."""
        terms = self.importance_terms(x, labels, seed=seed)
        weight = self.beta if kl_weight is None else kl_weight
        return self._bound(self._weighted_log_weights(terms, weight))

    @staticmethod
    def _weighted_log_weights(terms, weight):
        return terms["log_px_z"] + weight * (terms["log_prior"] - terms["log_posterior"])

    def _bound(self, log_w):
        return ops.logsumexp(log_w, axis=0) - math.log(self.num_samples)

    # === Loss ===
    def compute_vae_losses(self, x, y=None, sample_weight=None, training=False):
        inputs, labels = self.split_data(x, y)
        step = self.advance_step(training)
        weight = self.kl_weight(step)
        dreg = self.gradient_estimator == "dreg" and training
        if dreg:
            terms = self._dreg_terms(inputs, labels, training)
        else:
            terms = self.importance_terms(inputs, labels, training=training)
        log_ratio = terms["log_prior"] - terms["log_posterior"]
        log_w = self._weighted_log_weights(terms, weight)
        bound = self._bound(log_w)
        losses = {
            "loss": batch_mean(-bound, sample_weight),
            "reconstruction_loss": batch_mean(-ops.mean(terms["log_px_z"], axis=0), sample_weight),
            "kl_loss": batch_mean(-ops.mean(log_ratio, axis=0), sample_weight),
            "beta": weight,
        }
        if dreg:
            surrogate = self._dreg_surrogate(terms, log_w, weight)
            losses["objective"] = batch_mean(-surrogate, sample_weight)
        return losses

    def _dreg_terms(self, x, labels, training):
        """`importance_terms` split by where each gradient may go.

        `log_px_z` and `log_prior` are evaluated at stop-gradient draws (their
        gradients reach the decoder and prior weights only); `path_log_px_z`
        and `path_log_prior` with frozen weights at the draws (their
        gradients reach z only). Same values, two decoder passes.
        """
        posterior, z = self._draw(x, labels, self.num_samples, training, None)
        fixed_z = ops.stop_gradient(z)
        with self._frozen_weights():
            path_log_px_z = self._log_likelihood(x, labels, z, training)
            path_log_prior = self.prior_log_prob(z)
        return {
            "z": z,
            "posterior": posterior,
            "log_px_z": self._log_likelihood(x, labels, fixed_z, training),
            "log_prior": self.prior_log_prob(fixed_z),
            "log_posterior": self.posterior_log_prob(fixed_z, posterior),
            "path_log_px_z": path_log_px_z,
            "path_log_prior": path_log_prior,
        }

    def _dreg_surrogate(self, terms, log_w, weight):
        """Per example, a scalar whose gradient is the DReG estimate of dL_K.

        ```
        S = sum_k sg(w~_k) * [log p(x | sg(z_k)) + b log p(sg(z_k))]          (decoder, prior)
          + sum_k sg(c_k)  * [log p_sg(x | z_k) + b log p(z_k) - b log q_sg(z_k | x)]  (encoder)
        ```

        `p_sg` and `q_sg` read their parameters through a stop-gradient, so
        the second sum reaches the encoder only through the draws z_k.
        """
        normalized = ops.stop_gradient(ops.softmax(log_w, axis=0))
        encoder_weight = normalized * ((1.0 - weight) + weight * normalized)
        fixed_posterior = [ops.stop_gradient(t) for t in terms["posterior"]]
        path_log_w = terms["path_log_px_z"] + weight * (
            terms["path_log_prior"] - self.posterior_log_prob(terms["z"], fixed_posterior)
        )
        model_log_p = terms["log_px_z"] + weight * terms["log_prior"]
        return ops.sum(
            normalized * model_log_p + ops.stop_gradient(encoder_weight) * path_log_w, axis=0
        )

    # === Serialization ===
    def get_config(self):
        config = super().get_config()
        config.update(
            {"num_samples": self.num_samples, "gradient_estimator": self.gradient_estimator}
        )
        return config
