import keras
from keras import ops

from kerasvae import divergences
from kerasvae.layers.sampling import shapes_compatible
from kerasvae.models.vae import VAE, check_positive_int, static_shape, tile_samples, to_float32
from kerasvae.models.vampprior_vae import (
    check_diagonal,
    make_pseudo_inputs,
    mixture_log_prob,
    mixture_sample,
)

PRIORS = ("standard", "vampprior")


def _diagonal_kl_per_dimension(mean0, log_var0, mean1, log_var1):
    """KL(N(mean0, exp(log_var0)) || N(mean1, exp(log_var1))) per dimension."""
    log_ratio = log_var0 - log_var1
    return 0.5 * (
        ops.square(mean1 - mean0) * ops.exp(-log_var1) + ops.expm1(log_ratio) - log_ratio
    )


@keras.saving.register_keras_serializable(package="kerasvae")
class HierarchicalVAE(VAE):
    """Two-level hierarchical VAE (the HVAE of Tomczak and Welling).

    Two stochastic layers: z2 at the top with its prior (standard normal or
    a VampPrior), z1 below it. The generative model and the posterior are

    ```
    p(x, z1, z2) = p(x | z1, z2) p(z1 | z2) p(z2)
    q(z1, z2 | x) = q(z2 | x) q(z1 | x, z2)
    ```

    all diagonal Gaussians except p(x | z1, z2) (the likelihood) and a
    VampPrior p(z2) = 1/C sum_c q(z2 | u_c). The loss is the negative ELBO
    with a weight on its KL part, from one draw z2 ~ q(z2 | x),
    z1 ~ q(z1 | x, z2):

    ```
    ELBO = E_q[ log p(x | z1, z2) + log p(z1 | z2) + log p(z2)
                - log q(z1 | x, z2) - log q(z2 | x) ]
    reconstruction_loss = -log p(x | z1, z2)
    kl_loss = KL1 + KL2
    KL1 = KL(q(z1 | x, z2) || p(z1 | z2))   closed form at the drawn z2
    KL2 = KL(q(z2 | x) || N(0, I))          closed form        (prior="standard")
    KL2 = log q(z2 | x) - log p(z2)         at the drawn z2    (prior="vampprior")
    loss = mean_batch[reconstruction_loss] + beta * w(t) * R(kl_loss)
    ```

    The closed forms are the exact expectations over z1 (and z2) of the
    single-sample terms, so the estimate has the same mean as the
    all-sample ELBO above with less variance. With the standard prior the
    KL splits by dimension, `[KL1_1..KL1_d1, KL2_1..KL2_d2]`, and free bits
    apply per dimension; with the VampPrior the whole KL is one group.
    `elbo_terms` also returns `kl_z1` and `kl_z2` per example.

    Which latent each method uses: the model's `latent_dim` is
    `z1_dim + z2_dim` and its latent `z` is `concat([z1, z2])`, z1 first.
    `decode(z)`, `sample`, `sample_latent`, `prior_log_prob(z)` =
    `log p(z2) + log p(z1 | z2)` and `latent_from_noise` (ancestral sampling:
    `normal[:, :z1_dim]` draws z1 given z2, `normal[:, z1_dim:]` and, for
    the VampPrior, one uniform number draw z2) all take or give that
    concatenation. `encode(x)` returns `[z_mean, z_log_var]`, the
    concatenated parameters of q(z1 | x, z2 = E[z2 | x]) and q(z2 | x): the
    deterministic path that `reconstruct` decodes. `encode_outputs` names
    them `z_mean`, `z_log_var` and also gives the levels, `z1_mean`,
    `z1_log_var`, `z2_mean`, `z2_log_var`. `negative_elbo` and
    `log_importance_weights` (the importance-sampled likelihood) use the
    full hierarchical posterior with fresh draws of both levels.

    Args:
        encoder: keras.Model. q(z2 | x): `x -> [z2_mean, z2_log_var]`.
        decoder: keras.Model. p(x | z1, z2): `[z1, z2] -> likelihood params`.
        z1_encoder: keras.Model. q(z1 | x, z2): `[x, z2] -> [z1_mean, z1_log_var]`.
        z1_prior: keras.Model. p(z1 | z2): `z2 -> [z1_mean, z1_log_var]`.
        prior: str. Prior on z2: `"standard"` (N(0, I)) or `"vampprior"`.
        num_components: int. VampPrior pseudo-inputs (unused for "standard").
        pseudo_input_init, pseudo_input_mean, pseudo_input_stddev,
            pseudo_input_activation: the VampPrior pseudo-inputs; see
            `kerasvae.models.VampPriorVAE`.
        likelihood: str or likelihood object. See `kerasvae.models.VAE`.
        beta: float. Weight of the KL term.
        covariance: str. Must be `"diagonal"`.
        kl_schedule: `kerasvae.schedules` object or None.
        free_bits: float. Nats per latent dimension below which the KL is not
            penalized.
        seed: int or None. Seed of the posterior draws.
        **kwargs: Base model keyword arguments (`name`, ...).

    Example:

    ```python
    networks = kerasvae.networks.build_hierarchical_mlp((28, 28, 1), z1_dim=40, z2_dim=40)
    hvae = kerasvae.models.HierarchicalVAE(**networks, prior="vampprior")
    hvae.compile(optimizer=keras.optimizers.Adam(5e-4))
    hvae.fit(x_train, epochs=100, batch_size=100)
    samples = hvae.sample(16, seed=0)
    ```

    Reference:
        Tomczak and Welling, "VAE with a VampPrior", AISTATS 2018.
    """

    decoder_inputs = 2

    def __init__(
        self,
        encoder,
        decoder,
        z1_encoder,
        z1_prior,
        prior="standard",
        num_components=500,
        pseudo_input_init="normal",
        pseudo_input_mean=0.05,
        pseudo_input_stddev=0.01,
        pseudo_input_activation="sigmoid",
        likelihood="bernoulli",
        beta=1.0,
        covariance="diagonal",
        kl_schedule=None,
        free_bits=0.0,
        seed=None,
        **kwargs,
    ):
        if prior not in PRIORS:
            raise ValueError(f"prior must be one of {PRIORS}. Received: prior={prior!r}")
        check_diagonal(type(self).__name__, covariance)
        check_positive_int("num_components", num_components)
        # Set before the base constructor, which checks all four networks.
        self.z1_encoder = z1_encoder
        self.z1_prior = z1_prior
        super().__init__(
            encoder,
            decoder,
            likelihood=likelihood,
            beta=beta,
            covariance=covariance,
            kl_schedule=kl_schedule,
            free_bits=free_bits,
            seed=seed,
            **kwargs,
        )
        self.prior = prior
        self.num_components = int(num_components)
        self.pseudo_input_mean = float(pseudo_input_mean)
        self.pseudo_input_stddev = float(pseudo_input_stddev)
        self.pseudo_input_activation = pseudo_input_activation
        self.pseudo_inputs = None
        if prior == "vampprior":
            self.pseudo_inputs = make_pseudo_inputs(
                self,
                self.num_components,
                pseudo_input_init,
                self.pseudo_input_mean,
                self.pseudo_input_stddev,
                pseudo_input_activation,
            )

    # === Validation ===
    def _check_networks(self):
        networks = (
            ("encoder", self.encoder, 1),
            ("z1_encoder", self.z1_encoder, 2),
            ("z1_prior", self.z1_prior, 1),
            ("decoder", self.decoder, 2),
        )
        for role, net, count in networks:
            if not isinstance(net, keras.Model) or not getattr(net, "inputs", None):
                raise ValueError(
                    f"The {role} must be a built functional keras.Model (with `inputs`). "
                    f"Received: {role}={net!r}"
                )
            if len(net.inputs) != count:
                raise ValueError(
                    f"The {role} of HierarchicalVAE must have {count} input(s). Received "
                    f"{len(net.inputs)}: {[static_shape(t) for t in net.inputs]}"
                )
        z2_dim = self._gaussian_width("encoder", "q(z2 | x)", self.encoder)
        z1_dim = self._gaussian_width("z1_encoder", "q(z1 | x, z2)", self.z1_encoder)
        data_shape = static_shape(self.encoder.inputs[0])
        self._check_inputs("z1_encoder", self.z1_encoder, [data_shape, (None, z2_dim)], "[x, z2]")
        self._check_inputs("z1_prior", self.z1_prior, [(None, z2_dim)], "z2")
        prior_width = self._gaussian_width("z1_prior", "p(z1 | z2)", self.z1_prior)
        if prior_width != z1_dim:
            raise ValueError(
                f"The z1_prior must output p(z1 | z2) of width z1_dim={z1_dim} (from the "
                f"z1_encoder). Received: width {prior_width}"
            )
        self._check_inputs("decoder", self.decoder, [(None, z1_dim), (None, z2_dim)], "[z1, z2]")
        outputs = keras.tree.flatten(self.decoder.outputs)
        expected_count = getattr(self.likelihood, "num_decoder_outputs", 1)
        if len(outputs) != expected_count:
            raise ValueError(
                f"The likelihood {self.likelihood!r} needs a decoder with {expected_count} "
                f"output(s). Received {len(outputs)}."
            )
        for out in outputs:
            if not shapes_compatible(static_shape(out), data_shape):
                raise ValueError(
                    f"The decoder output shape must match the encoder input shape {data_shape}. "
                    f"Received: {static_shape(out)}"
                )

    @staticmethod
    def _gaussian_width(role, meaning, net):
        outputs = keras.tree.flatten(net.outputs)
        shapes = [static_shape(t) for t in outputs]
        if (
            len(outputs) not in (2, 3)
            or len(shapes[0]) != 2
            or shapes[0][-1] is None
            or shapes[0] != shapes[1]
        ):
            raise ValueError(
                f"The {role} must output the diagonal Gaussian {meaning} as [mean, log_var] "
                f"of equal shapes (batch, width). Received {len(outputs)} output(s) of "
                f"shapes {shapes}"
            )
        return int(shapes[0][-1])

    @staticmethod
    def _check_inputs(role, net, expected, names):
        received = [static_shape(t) for t in net.inputs]
        if not all(shapes_compatible(r, e) for r, e in zip(received, expected)):
            raise ValueError(
                f"The {role} must take {names} of shapes {expected} to fit the hierarchical "
                f"latent shapes (z1_dim from the z1_encoder, z2_dim from the encoder). "
                f"Received: {received}"
            )

    # === Latent layout ===
    @property
    def z1_dim(self):
        return int(self.z1_encoder.outputs[0].shape[-1])

    @property
    def z2_dim(self):
        return int(self.encoder.outputs[0].shape[-1])

    @property
    def latent_dim(self):
        """Width of `z = concat([z1, z2])`, what `decode` takes."""
        return self.z1_dim + self.z2_dim

    def split_latent(self, z):
        """`(z1, z2)` from `z = concat([z1, z2])` (latent axis last)."""
        return z[..., : self.z1_dim], z[..., self.z1_dim :]

    # === Networks ===
    def _z2_posterior(self, x, training=False):
        outputs = self.encoder(x, training=training)
        return to_float32([outputs[0], outputs[1]])

    def _z1_posterior(self, x, z2, training=False):
        # A functional model takes a list of tensors, never arrays mixed in.
        x, z2 = ops.convert_to_tensor(x), ops.convert_to_tensor(z2)
        outputs = self.z1_encoder([x, z2], training=training)
        return to_float32([outputs[0], outputs[1]])

    def _z1_given_z2(self, z2, training=False):
        outputs = self.z1_prior(z2, training=training)
        return to_float32([outputs[0], outputs[1]])

    def _decoder_output(self, z, labels=None, training=False):
        z1, z2 = self.split_latent(z)
        return to_float32(self.decoder([z1, z2], training=training))

    def _posterior(self, x, labels=None, training=False):
        z2_mean, z2_log_var = self._z2_posterior(x, training)
        z1_mean, z1_log_var = self._z1_posterior(x, z2_mean, training)
        return [
            ops.concatenate([z1_mean, z2_mean], axis=-1),
            ops.concatenate([z1_log_var, z2_log_var], axis=-1),
        ]

    def encode_outputs(self, x, labels=None):
        """The deterministic-path posterior, concatenated and by level."""
        self.check_input_shape(x)
        self.check_labels(labels)
        z2_mean, z2_log_var = self._z2_posterior(x)
        z1_mean, z1_log_var = self._z1_posterior(x, z2_mean)
        return {
            "z_mean": ops.concatenate([z1_mean, z2_mean], axis=-1),
            "z_log_var": ops.concatenate([z1_log_var, z2_log_var], axis=-1),
            "z1_mean": z1_mean,
            "z1_log_var": z1_log_var,
            "z2_mean": z2_mean,
            "z2_log_var": z2_log_var,
        }

    # === The prior ===
    def prior_components(self):
        """`[means, log_vars]` of q(z2 | u_c) at the pseudo-inputs (VampPrior only)."""
        if self.pseudo_inputs is None:
            raise ValueError(
                "prior_components needs prior='vampprior'. Received: prior='standard'"
            )
        outputs = self.encoder(self.pseudo_inputs(None), training=False)
        return to_float32([outputs[0], outputs[1]])

    def z2_prior_log_prob(self, z2):
        """log p(z2): standard normal or the VampPrior mixture."""
        z2 = ops.cast(z2, "float32")
        if self.prior == "standard":
            return divergences.standard_normal_log_prob(z2)
        return mixture_log_prob(z2, *self.prior_components())

    def prior_log_prob(self, z):
        """log p(z) = log p(z2) + log p(z1 | z2) for `z = concat([z1, z2])`, any leading axes."""
        z = ops.cast(z, "float32")
        leading = ops.shape(z)[:-1]
        flat = ops.reshape(z, (-1, self.latent_dim))
        z1, z2 = self.split_latent(flat)
        z1_mean, z1_log_var = self._z1_given_z2(z2)
        log_prob = self.z2_prior_log_prob(z2) + divergences.diagonal_normal_log_prob(
            z1, z1_mean, z1_log_var
        )
        return ops.reshape(log_prob, leading)

    @property
    def prior_noise_dims(self):
        return (self.latent_dim, 1 if self.prior == "vampprior" else 0)

    def latent_from_noise(self, normal, uniform=None):
        """Ancestral draw: z2 from its prior, then z1 ~ p(z1 | z2); returns concat([z1, z2])."""
        normal = ops.cast(normal, "float32")
        eps1, eps2 = self.split_latent(normal)
        if self.prior == "standard":
            z2 = eps2
        else:
            if uniform is None:
                raise ValueError(
                    "With prior='vampprior' z2 is drawn with a uniform number per sample that "
                    "picks the component. Received: uniform=None"
                )
            z2 = mixture_sample(eps2, uniform, *self.prior_components())
        z1_mean, z1_log_var = self._z1_given_z2(z2)
        z1 = z1_mean + ops.exp(0.5 * z1_log_var) * eps1
        return ops.concatenate([z1, z2], axis=-1)

    # === Posterior draws and the loss ===
    def _draw(self, x, num_samples, training=False, seed=None):
        """`num_samples` joint draws from q(z2 | x) q(z1 | x, z2) with everything the loss needs.

        One pass: q(z2 | x) once, then every network on all `num_samples *
        batch` draws (sample-major). Both levels' noise comes from one call,
        so a fixed `seed` gives the two levels independent noise.
        """
        z2_mean, z2_log_var = self._z2_posterior(x, training)
        noise = keras.random.normal(
            (num_samples, ops.shape(x)[0], self.latent_dim),
            seed=self.sampling.seed_generator if seed is None else seed,
        )
        eps1, eps2 = self.split_latent(noise)
        z2 = z2_mean + ops.exp(0.5 * z2_log_var) * eps2  # (K, batch, z2_dim)
        flat_z2 = ops.reshape(z2, (-1, self.z2_dim))
        flat_x = x if num_samples == 1 else tile_samples(x, num_samples)
        z1_mean, z1_log_var = self._z1_posterior(flat_x, flat_z2, training)
        z1 = z1_mean + ops.exp(0.5 * z1_log_var) * ops.reshape(eps1, (-1, self.z1_dim))
        p1_mean, p1_log_var = self._z1_given_z2(flat_z2, training)
        output = to_float32(self.decoder([z1, flat_z2], training=training))
        return {
            "log_px": self.likelihood.log_prob(flat_x, output),
            "z1": z1,
            "z1_mean": z1_mean,
            "z1_log_var": z1_log_var,
            "p1_mean": p1_mean,
            "p1_log_var": p1_log_var,
            "z2": z2,
            "z2_mean": z2_mean,
            "z2_log_var": z2_log_var,
        }

    def elbo_terms(self, x, labels=None, training=False, seed=None):
        """Per-example `reconstruction_loss`, `kl_loss` (= `kl_z1 + kl_z2`), `kl_dims`."""
        d = self._draw(x, 1, training=training, seed=seed)
        kl1_dims = _diagonal_kl_per_dimension(
            d["z1_mean"], d["z1_log_var"], d["p1_mean"], d["p1_log_var"]
        )
        kl_z1 = ops.sum(kl1_dims, axis=-1)
        if self.prior == "standard":
            kl2_dims = _diagonal_kl_per_dimension(
                d["z2_mean"], d["z2_log_var"], ops.zeros_like(d["z2_mean"]),
                ops.zeros_like(d["z2_log_var"]),
            )
            kl_z2 = ops.sum(kl2_dims, axis=-1)
            kl_dims = ops.concatenate([kl1_dims, kl2_dims], axis=-1)
        else:
            z2 = d["z2"][0]
            kl_z2 = divergences.diagonal_normal_log_prob(
                z2, d["z2_mean"], d["z2_log_var"]
            ) - self.z2_prior_log_prob(z2)
            kl_dims = None
        return {
            "reconstruction_loss": -d["log_px"],
            "kl_loss": kl_z1 + kl_z2,
            "kl_dims": kl_dims,
            "kl_z1": kl_z1,
            "kl_z2": kl_z2,
        }

    def log_importance_weights(self, x, labels=None, num_samples=1, training=False, seed=None):
        """`log w_k = log p(x, z1_k, z2_k) - log q(z1_k, z2_k | x)`, shape `(num_samples, batch)`."""
        check_positive_int("num_samples", num_samples)
        d = self._draw(x, num_samples, training=training, seed=seed)
        flat_z2 = ops.reshape(d["z2"], (-1, self.z2_dim))
        log_joint = (
            d["log_px"]
            + divergences.diagonal_normal_log_prob(d["z1"], d["p1_mean"], d["p1_log_var"])
            + self.z2_prior_log_prob(flat_z2)
            - divergences.diagonal_normal_log_prob(d["z1"], d["z1_mean"], d["z1_log_var"])
        )
        log_q_z2 = divergences.diagonal_normal_log_prob(d["z2"], d["z2_mean"], d["z2_log_var"])
        return ops.reshape(log_joint, (num_samples, -1)) - log_q_z2

    # The base's single-level posterior hooks have no meaning here: the
    # posterior of z1 depends on the drawn z2, which a parameter pair cannot
    # carry. The hierarchical terms live in elbo_terms and log_importance_weights.
    def posterior_log_prob(self, z, posterior):
        raise NotImplementedError(
            "HierarchicalVAE has no single-level posterior density: q(z1 | x, z2) depends on "
            "the drawn z2. Use elbo_terms or log_importance_weights."
        )

    def kl_divergence(self, posterior, z=None):
        raise NotImplementedError(
            "HierarchicalVAE's KL needs both levels' draws: use elbo_terms (kl_loss, kl_z1, "
            "kl_z2)."
        )

    def kl_per_dimension(self, posterior):
        """`None`: the per-dimension KL comes from `elbo_terms` (`kl_dims`)."""
        return None

    # === Serialization ===
    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "z1_encoder": keras.saving.serialize_keras_object(self.z1_encoder),
                "z1_prior": keras.saving.serialize_keras_object(self.z1_prior),
                "prior": self.prior,
                "num_components": self.num_components,
                "pseudo_input_init": "normal",
                "pseudo_input_mean": self.pseudo_input_mean,
                "pseudo_input_stddev": self.pseudo_input_stddev,
                "pseudo_input_activation": self.pseudo_input_activation,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("z1_encoder", "z1_prior"):
            if config.get(key) is not None:
                config[key] = keras.saving.deserialize_keras_object(config[key])
        return super().from_config(config)
