import keras
import numpy as np
from keras import ops

from kerasvae.models.vae import ELBO_SEED, VAE, static_shape


def _concrete_values(labels):
    """The labels as a NumPy array, or `None` while they are symbolic.

    Inside a traced function (`tf.function`, `jax.jit`) only the static shape
    is known, so the value checks are left to the NumPy-side entry points.
    """
    if isinstance(labels, (np.ndarray, np.generic, int, float, bool, list, tuple)):
        return np.asarray(labels)
    try:
        return np.asarray(ops.convert_to_numpy(labels))
    except (TypeError, NotImplementedError, ValueError):
        # Symbolic TF tensors raise NotImplementedError, JAX tracers a TypeError.
        return None


def _dtype_name(labels):
    dtype = getattr(labels, "dtype", None)
    if dtype is None:
        return np.asarray(labels).dtype.name
    try:
        return keras.backend.standardize_dtype(dtype)
    except ValueError:
        return str(dtype)


def _batch_size(tensor):
    """The static batch size of `tensor`, or `None` where it is dynamic."""
    shape = getattr(tensor, "shape", None)
    if shape is None:
        shape = np.shape(tensor)
    size = shape[0] if len(shape) else None
    return None if size is None else int(size)


@keras.saving.register_keras_serializable(package="kerasvae")
class ConditionalVAE(VAE):
    """Conditional VAE: encoder and decoder both see the class label.

    The label y enters both networks as a one-hot row of width
    `num_classes`: the encoder takes `[x, y_onehot]` and the decoder
    `[z, y_onehot]` (build them with `num_classes=...`, e.g.
    `kerasvae.networks.build_mlp_encoder(..., num_classes=10)`). The prior
    is N(0, I) for every class, so `sample(n, labels=c)` draws images of class
    `c` by decoding prior draws with that label:

    ```
    loss = mean_batch[ -log p(x | z, y) ] + beta * w(t) * R(KL),
    z ~ q(z | x, y),  KL = KL(q(z | x, y) || N(0, I))
    ```

    with `w(t)` and `R` as in `kerasvae.models.VAE` (KL schedules, free
    bits). Labels are integers in `[0, num_classes)` of shape `(batch,)` or
    `(batch, 1)`, or one-hot rows of shape `(batch, num_classes)`; the model
    makes the one-hot itself with `keras.ops.one_hot`, so int64 label tensors
    work inside a `tf.function` (the exported signatures take `label`, int64
    of shape `(batch,)`). Train with `fit(x, y)` where `y` holds the labels,
    `evaluate(x, y)` likewise; calling the model or `predict` takes
    `[x, labels]` and returns the reconstruction from the posterior mean.
    `encode(x, labels)`, `decode(z, labels)`, `reconstruct(x, labels)` and
    `sample(n, seed, labels)` take a single class (a scalar) for a whole
    batch too. Bad labels (none, a wrong count, a class out of range, a
    non-integer, a one-hot of the wrong width) are refused with the value
    received.

    Args:
        encoder: keras.Model. Built functional encoder with two inputs,
            `[x, label_onehot] -> posterior params`.
        decoder: keras.Model. Built functional decoder with two inputs,
            `[z, label_onehot] -> likelihood params`.
        num_classes: int. Number of classes, at least 2.
        **kwargs: `kerasvae.models.VAE` arguments (`likelihood`, `beta`,
            `covariance`, `kl_schedule`, `free_bits`, `seed`, `name`, ...).

    Example:

    ```python
    encoder = kerasvae.networks.build_mlp_encoder((28, 28, 1), 16, num_classes=10)
    decoder = kerasvae.networks.build_mlp_decoder(16, (28, 28, 1), num_classes=10)
    cvae = kerasvae.models.ConditionalVAE(encoder, decoder, num_classes=10)
    cvae.compile(optimizer=keras.optimizers.Adam(1e-3))
    cvae.fit(x_train, y_train, epochs=10, batch_size=128)
    sandals = cvae.sample(16, seed=0, labels=5)  # class 5 of Fashion-MNIST
    ```

    Reference:
        Sohn, Lee and Yan, "Learning Structured Output Representation using
        Deep Conditional Generative Models", NeurIPS 2015.
    """

    encoder_inputs = 2
    decoder_inputs = 2

    def __init__(self, encoder, decoder, num_classes, **kwargs):
        if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or (
            num_classes < 2
        ):
            raise ValueError(
                f"num_classes must be an integer >= 2. Received: num_classes={num_classes!r}"
            )
        # Set before the base constructor, which checks the networks.
        self._num_classes = int(num_classes)
        super().__init__(encoder, decoder, **kwargs)

    @property
    def num_classes(self):
        return self._num_classes

    def _check_networks(self):
        super()._check_networks()
        expected = (None, self.num_classes)
        for role, net in (("encoder", self.encoder), ("decoder", self.decoder)):
            received = static_shape(net.inputs[1])
            if received != expected:
                raise ValueError(
                    f"The {role}'s second input must be the one-hot label of shape "
                    f"{expected} (num_classes={self.num_classes}). Received: {received}"
                )

    # === Labels ===
    def check_labels(self, labels, num_examples=None):
        """Checks labels; raises `ValueError` naming the problem and the value.

        Symbolic tensors (inside a traced function) get the shape checks
        only; NumPy arrays and eager tensors also get the value checks.
        """
        name, classes = type(self).__name__, self.num_classes
        if labels is None:
            raise ValueError(
                f"{name} needs labels: integers in [0, {classes}) of shape (batch,) or "
                f"(batch, 1), or one-hot rows of shape (batch, {classes}). Received: labels=None"
            )
        values = _concrete_values(labels)
        shape = tuple(values.shape) if values is not None else static_shape(labels)
        if len(shape) == 0:
            raise ValueError(
                f"labels must hold one label per example. Received a scalar: labels={values!r}"
            )
        if len(shape) > 2 or (len(shape) == 2 and shape[-1] not in (1, classes)):
            raise ValueError(
                f"labels must have shape (batch,), (batch, 1) or, one-hot, (batch, {classes}): "
                f"one-hot labels must have width num_classes={classes}. Received: labels of "
                f"shape {shape}"
            )
        if num_examples is not None and shape[0] is not None and shape[0] != num_examples:
            raise ValueError(
                f"labels must hold one label per example: {num_examples} example(s). "
                f"Received {shape[0]} labels (labels of shape {shape})"
            )
        dtype = _dtype_name(labels) if values is None else values.dtype.name
        if dtype == "bool" or not (dtype.startswith(("int", "uint", "float", "bfloat"))):
            raise ValueError(
                f"labels must be integers (or one-hot rows). Received: labels of dtype {dtype}"
            )
        if values is None:
            return
        if len(shape) == 2 and shape[-1] == classes:
            self._check_one_hot(values)
            return
        flat = values.reshape(-1)
        non_integer = ~np.isfinite(flat) | (flat != np.round(flat))
        if np.any(non_integer):
            raise ValueError(
                f"labels must be integers. Received {int(non_integer.sum())} non-integer "
                f"label(s), e.g. {flat[non_integer][0].item()!r}"
            )
        outside = (flat < 0) | (flat >= classes)
        if np.any(outside):
            raise ValueError(
                f"labels must be in [0, {classes}) (num_classes={classes}). Received "
                f"{int(outside.sum())} label(s) outside, e.g. {flat[outside][0].item()!r}"
            )

    def _check_one_hot(self, values):
        valid = np.isin(values, (0, 1)).all(axis=-1) & (values.sum(axis=-1) == 1)
        if not valid.all():
            row = int(np.argmin(valid))
            raise ValueError(
                f"one-hot labels must have a single 1 per row and zeros elsewhere. "
                f"Received row {row}: {values[row].tolist()}"
            )

    def _labels_for(self, labels, inputs):
        """Checks `labels` against the batch of `inputs`; a scalar means every example."""
        batch = _batch_size(inputs)
        values = None if labels is None else _concrete_values(labels)
        if values is not None and values.ndim == 0 and batch is not None:
            labels = np.full((batch,), values)
        self.check_labels(labels, batch)
        return labels

    def label_onehot(self, labels):
        """Labels as float32 one-hot rows `(batch, num_classes)`; graph-safe."""
        self.check_labels(labels)
        labels = ops.convert_to_tensor(labels)
        if len(labels.shape) == 2 and labels.shape[-1] == self.num_classes:
            return ops.cast(labels, "float32")
        labels = ops.reshape(labels, (-1,))
        return ops.one_hot(ops.cast(labels, "int32"), self.num_classes, dtype="float32")

    def split_data(self, x, y):
        """`(x, labels)`: the labels are what `fit(x, y)` passes as `y`."""
        self.check_labels(y)
        return x, y

    # === Building blocks ===
    def _posterior(self, x, labels=None, training=False):
        # Both inputs as tensors: Keras refuses a list mixing arrays and tensors.
        x = ops.convert_to_tensor(x)
        outputs = self.encoder([x, self.label_onehot(labels)], training=training)
        return [outputs[0], outputs[1]]

    def _decoder_output(self, z, labels=None, training=False):
        z = ops.convert_to_tensor(z)
        output = self.decoder([z, self.label_onehot(labels)], training=training)
        return keras.tree.map_structure(lambda t: ops.cast(t, "float32"), output)

    # === Keras workflow ===
    def _check_labelled_input(self, x, y, name):
        if isinstance(x, np.ndarray):
            self.check_labels(y, len(x))
            return
        spec = getattr(x, "element_spec", None)  # a tf.data.Dataset yields (x, y)
        if spec is not None and not (isinstance(spec, tuple) and len(spec) >= 2):
            raise ValueError(
                f"{type(self).__name__} needs labels: {name} must yield (x, labels) batches. "
                f"Received batches of {spec}"
            )

    def fit(self, x=None, y=None, *args, **kwargs):
        self._check_labelled_input(x, y, "x")
        validation = kwargs.get("validation_data")
        if isinstance(validation, (tuple, list)):
            if len(validation) < 2:
                raise ValueError(
                    f"{type(self).__name__} needs labels: validation_data must be "
                    f"(x_val, y_val). Received a tuple of length {len(validation)}"
                )
            self._check_labelled_input(validation[0], validation[1], "validation_data")
        elif validation is not None:
            self._check_labelled_input(validation, None, "validation_data")
        return super().fit(x, y, *args, **kwargs)

    def evaluate(self, x=None, y=None, *args, **kwargs):
        self._check_labelled_input(x, y, "x")
        return super().evaluate(x, y, *args, **kwargs)

    def call(self, inputs, training=False):
        if not isinstance(inputs, (list, tuple)) or len(inputs) != 2:
            raise ValueError(
                f"{type(self).__name__} is called (and predicts) on [x, labels]. "
                f"Received: {type(inputs).__name__} input"
                + (f" of length {len(inputs)}" if isinstance(inputs, (list, tuple)) else "")
            )
        return self.reconstruct(inputs[0], labels=inputs[1], training=training)

    # === Inference (a scalar label stands for the whole batch) ===
    def encode(self, x, labels=None, training=False):
        return super().encode(x, self._labels_for(labels, x), training=training)

    def decode(self, z, labels=None, training=False):
        return super().decode(z, self._labels_for(labels, z), training=training)

    def decode_outputs(self, z, labels=None):
        return super().decode_outputs(z, self._labels_for(labels, z))

    def reconstruct(self, x, labels=None, training=False):
        return super().reconstruct(x, self._labels_for(labels, x), training=training)

    def negative_elbo(self, x, labels=None, seed=ELBO_SEED):
        return super().negative_elbo(x, self._labels_for(labels, x), seed=seed)

    def log_importance_weights(self, x, labels=None, num_samples=1, training=False, seed=None):
        labels = self._labels_for(labels, x)
        return super().log_importance_weights(
            x, labels, num_samples=num_samples, training=training, seed=seed
        )

    def sample(self, num_samples, seed=None, labels=None):
        """Decodes `num_samples` prior draws with `labels` (one class or one per sample)."""
        if (
            labels is not None
            and isinstance(num_samples, (int, np.integer))
            and not isinstance(num_samples, bool)
            and num_samples > 0
        ):
            values = _concrete_values(labels)
            if values is not None and values.ndim == 0:
                labels = np.full((int(num_samples),), values)
        return super().sample(num_samples, seed=seed, labels=labels)

    def get_config(self):
        config = super().get_config()
        config["num_classes"] = self.num_classes
        return config
