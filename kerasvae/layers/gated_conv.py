import keras
from keras import ops


def torch_conv_uniform():
    """The default kernel initialization of a PyTorch convolution, U(-1/sqrt(fan_in), 1/sqrt(fan_in)).

    The VampPrior code He-initializes its dense layers only; its
    convolutions keep PyTorch's default (Kaiming uniform with a = sqrt(5),
    which works out to this bound). A uniform of bound b has variance b^2 / 3,
    so this is `VarianceScaling(scale=1/3, mode="fan_in")`.
    """
    return keras.initializers.VarianceScaling(scale=1.0 / 3.0, mode="fan_in", distribution="uniform")


@keras.saving.register_keras_serializable(package="kerasvae")
class GatedConv2D(keras.layers.Layer):
    """2D convolution with a multiplicative sigmoid gate.

    Two convolutions of the same input, with the same kernel size and
    strides; one is squashed by a sigmoid and gates the other, channel by
    channel:

    ```
    h = activation(conv_W(x)) * sigmoid(conv_V(x))
    ```

    The convolutional counterpart of `GatedDense`, and the layer of Tomczak
    and Welling's convolutional VampPrior networks. Both maps share one
    kernel of `2 * filters` output channels, so the layer costs one
    convolution.

    Args:
        filters: int. Output channels.
        kernel_size: int or tuple of 2 ints. Size of the convolution window.
        strides: int or tuple of 2 ints. Defaults to 1.
        padding: `"same"` (default) or `"valid"`.
        activation: str, callable or None. Applied to the ungated branch;
            `None` (default) leaves it linear, as published.
        kernel_initializer: Initializer of the kernel. Defaults to
            PyTorch's convolution default (`torch_conv_uniform()`), as in the
            published code.
        bias_initializer: Initializer of the bias. Defaults to zeros
            (PyTorch draws its biases from the same uniform).
        **kwargs: Base layer keyword arguments.

    Call arguments:
        inputs: tensor of shape `(batch, height, width, channels)`.

    Returns:
        A tensor of shape `(batch, new_height, new_width, filters)`.

    Example:

    ```python
    inputs = keras.Input((28, 28, 1))
    h = kerasvae.layers.GatedConv2D(32, 7)(inputs)
    h = kerasvae.layers.GatedConv2D(32, 3, strides=2)(h)  # (14, 14, 32)
    ```

    Reference:
        Dauphin et al., "Language Modeling with Gated Convolutional Networks",
        ICML 2017. Tomczak and Welling, "VAE with a VampPrior", AISTATS 2018.
    """

    def __init__(
        self,
        filters,
        kernel_size,
        strides=1,
        padding="same",
        activation=None,
        kernel_initializer=None,
        bias_initializer="zeros",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if isinstance(filters, bool) or not isinstance(filters, int) or filters <= 0:
            raise ValueError(f"filters must be a positive integer. Received: filters={filters!r}")
        if padding not in ("same", "valid"):
            raise ValueError(f"padding must be 'same' or 'valid'. Received: padding={padding!r}")
        self.filters = filters
        self.activation = keras.activations.get(activation)
        self.conv = keras.layers.Conv2D(
            2 * filters,
            kernel_size,
            strides=strides,
            padding=padding,
            kernel_initializer=kernel_initializer or torch_conv_uniform(),
            bias_initializer=bias_initializer,
            dtype=self.dtype_policy,
            name="conv",
        )

    def build(self, input_shape):
        self.conv.build(input_shape)

    def call(self, inputs):
        both = self.conv(inputs)
        linear, gate = both[..., : self.filters], both[..., self.filters :]
        return self.activation(linear) * ops.sigmoid(gate)

    def compute_output_shape(self, input_shape):
        return tuple(self.conv.compute_output_shape(input_shape)[:-1]) + (self.filters,)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "kernel_size": self.conv.kernel_size,
                "strides": self.conv.strides,
                "padding": self.conv.padding,
                "activation": keras.activations.serialize(self.activation),
                "kernel_initializer": keras.initializers.serialize(self.conv.kernel_initializer),
                "bias_initializer": keras.initializers.serialize(self.conv.bias_initializer),
            }
        )
        return config
