import keras
import numpy as np
from keras import ops

from kerasvae.models.vae import VAE, _LatestValue, check_positive_int


@keras.saving.register_keras_serializable(package="kerasvae")
class BetaVAE(VAE):
    """beta-VAE, optionally with the capacity control of Burgess et al.

    Without `max_capacity` this is the beta-VAE of Higgins et al.: the KL term
    weighted by `beta` (4 by default, > 1 pushes towards a factorized code).
    With `max_capacity` the KL is pulled towards a target capacity C(t), in
    nats, that rises linearly from 0 to `max_capacity` over `capacity_steps`
    training steps and then stays there, with weight `gamma`:

    ```
    beta-VAE:  loss = mean_batch[ -log p(x | z) ] + beta * w(t) * R(KL)
    capacity:  loss = mean_batch[ -log p(x | z) ] + gamma * w(t) * | R(KL) - C(t) |
               C(t) = max_capacity * min(1, t / capacity_steps)
    R(KL) = mean_batch[KL]  (or its free-bits form, see `kerasvae.models.VAE`)
    ```

    `t` is the model's training-step counter (`kl_step`, saved with the model)
    and `w(t)` the optional `kl_schedule` (1 without one). The absolute value
    is taken of the batch-mean KL, as in the paper's objective on the
    expected KL. With capacity control `gamma` replaces `beta` as the weight
    (the paper's objective has no beta): `beta` is kept and saved but does not
    enter the loss. The logged `beta` is always the weight actually applied,
    `beta * w(t)` or `gamma * w(t)`; with capacity control `capacity` (C(t) at
    the last step) is logged too.

    Args:
        encoder: keras.Model. Built functional encoder, `x -> posterior params`.
        decoder: keras.Model. Built functional decoder, `z -> likelihood params`.
        beta: float. Weight of the KL term without capacity control.
        max_capacity: float or None. Target KL C_max in nats; `None` for the
            plain beta-VAE.
        capacity_steps: int. Training steps over which C rises from 0 to
            `max_capacity`.
        gamma: float. Weight of `|KL - C|` with capacity control.
        **kwargs: `kerasvae.models.VAE` arguments (`likelihood`,
            `covariance`, `kl_schedule`, `free_bits`, `seed`, `name`, ...).

    Example:

    ```python
    encoder = kerasvae.networks.build_conv_encoder((64, 64, 1), latent_dim=10)
    decoder = kerasvae.networks.build_conv_decoder(10, (64, 64, 1))
    vae = kerasvae.models.BetaVAE(
        encoder, decoder, max_capacity=25.0, capacity_steps=100_000, gamma=1000.0
    )
    vae.compile(optimizer=keras.optimizers.Adam(5e-4))
    vae.fit(x_train, epochs=30, batch_size=64)  # logs `capacity` and `kl_loss`
    ```

    Reference:
        Higgins et al., "beta-VAE: Learning Basic Visual Concepts with a
        Constrained Variational Framework", ICLR 2017.
        Burgess et al., "Understanding disentangling in beta-VAE", NeurIPS
        2017 workshop, arXiv:1804.03599 (2018).
    """

    def __init__(
        self,
        encoder,
        decoder,
        beta=4.0,
        max_capacity=None,
        capacity_steps=100_000,
        gamma=1000.0,
        **kwargs,
    ):
        if max_capacity is not None and (
            isinstance(max_capacity, bool) or not np.isfinite(max_capacity) or max_capacity < 0
        ):
            raise ValueError(
                "max_capacity must be None or a finite number of nats >= 0. "
                f"Received: max_capacity={max_capacity!r}"
            )
        check_positive_int("capacity_steps", capacity_steps)
        if isinstance(gamma, bool) or not np.isfinite(gamma) or gamma < 0:
            raise ValueError(f"gamma must be a finite number >= 0. Received: gamma={gamma!r}")
        # Set before the base constructor, which reads `loss_keys`.
        self.max_capacity = None if max_capacity is None else float(max_capacity)
        self.capacity_steps = int(capacity_steps)
        self.gamma = float(gamma)
        super().__init__(encoder, decoder, beta=beta, **kwargs)
        if self.max_capacity is not None:
            # C(t) is a value at a step, like beta: report the latest, not an
            # average over the epoch.
            self.trackers = [
                _LatestValue(name=t.name) if t.name == "capacity" else t for t in self.trackers
            ]

    @property
    def loss_keys(self):
        keys = super().loss_keys
        return keys + (("capacity",) if self.max_capacity is not None else ())

    def capacity(self, step):
        """C(t): the target KL in nats at training step `step`."""
        if self.max_capacity is None:
            return ops.zeros((), "float32")
        progress = ops.minimum(ops.cast(step, "float32") / float(self.capacity_steps), 1.0)
        return self.max_capacity * progress

    def kl_weight(self, step):
        if self.max_capacity is None:
            return super().kl_weight(step)
        weight = ops.convert_to_tensor(self.gamma, "float32")
        if self.kl_schedule is None:
            return weight
        return weight * ops.cast(self.kl_schedule(step), "float32")

    def kl_regularizer(self, kl, kl_dims, sample_weight, step):
        regularizer = super().kl_regularizer(kl, kl_dims, sample_weight, step)
        if self.max_capacity is None:
            return regularizer
        return ops.abs(regularizer - self.capacity(step))

    def compute_vae_losses(self, x, y=None, sample_weight=None, training=False):
        # The step the base passes to the regularizer: read it before the base
        # advances the counter.
        step = ops.copy(self.kl_step.value)
        losses = super().compute_vae_losses(x, y, sample_weight=sample_weight, training=training)
        if self.max_capacity is not None:
            losses["capacity"] = self.capacity(step)
        return losses

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "max_capacity": self.max_capacity,
                "capacity_steps": self.capacity_steps,
                "gamma": self.gamma,
            }
        )
        return config
