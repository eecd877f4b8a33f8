import keras
from keras import ops


def he_normal():
    """He initialization as the VampPrior code uses it: N(0, 2 / fan_in), not truncated.

    Keras' `"he_normal"` truncates at two standard deviations, which shrinks
    the variance by about 12%; this one draws from the untruncated normal.
    """
    return keras.initializers.VarianceScaling(
        scale=2.0, mode="fan_in", distribution="untruncated_normal"
    )


@keras.saving.register_keras_serializable(package="kerasvae")
class GatedDense(keras.layers.Layer):
    """Dense layer with a multiplicative sigmoid gate (gated linear unit).

    Two affine maps of the same input; one is squashed by a sigmoid and gates
    the other:

    ```
    h = activation(W x + b) * sigmoid(V x + c)
    ```

    With `activation=None` this is the gated linear unit of Dauphin et al.,
    the hidden layer of Tomczak and Welling's VampPrior networks. Both maps
    share one kernel of width `2 * units`, so the layer costs one matrix
    product; the kernel is initialized with `N(0, 2 / fan_in)` (He), as in
    the published code.

    Args:
        units: int. Width of the output.
        activation: str, callable or None. Applied to the ungated branch;
            `None` (default) leaves it linear.
        kernel_initializer: Initializer of the kernel. Defaults to He
            (untruncated normal, variance 2 / fan_in).
        bias_initializer: Initializer of the bias. Defaults to zeros.
        **kwargs: Base layer keyword arguments.

    Call arguments:
        inputs: tensor of shape `(batch, ..., features)`.

    Returns:
        A tensor of shape `(batch, ..., units)`.

    Example:

    ```python
    inputs = keras.Input((784,))
    h = kerasvae.layers.GatedDense(300)(inputs)
    h = kerasvae.layers.GatedDense(300)(h)
    ```

    Reference:
        Dauphin et al., "Language Modeling with Gated Convolutional Networks",
        ICML 2017. Tomczak and Welling, "VAE with a VampPrior", AISTATS 2018.
    """

    def __init__(
        self, units, activation=None, kernel_initializer=None, bias_initializer="zeros", **kwargs
    ):
        super().__init__(**kwargs)
        if isinstance(units, bool) or not isinstance(units, int) or units <= 0:
            raise ValueError(f"units must be a positive integer. Received: units={units!r}")
        self.units = units
        self.activation = keras.activations.get(activation)
        self.kernel_initializer = keras.initializers.get(kernel_initializer or he_normal())
        self.bias_initializer = keras.initializers.get(bias_initializer)

    def build(self, input_shape):
        features = input_shape[-1]
        if features is None:
            raise ValueError(
                "GatedDense needs a known last input dimension. "
                f"Received: input_shape={tuple(input_shape)}"
            )
        self.kernel = self.add_weight(
            shape=(int(features), 2 * self.units), initializer=self.kernel_initializer, name="kernel"
        )
        self.bias = self.add_weight(
            shape=(2 * self.units,), initializer=self.bias_initializer, name="bias"
        )

    def call(self, inputs):
        both = ops.matmul(inputs, self.kernel) + self.bias
        linear, gate = both[..., : self.units], both[..., self.units :]
        return self.activation(linear) * ops.sigmoid(gate)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "units": self.units,
                "activation": keras.activations.serialize(self.activation),
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
            }
        )
        return config
