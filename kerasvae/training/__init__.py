"""Per-backend `train_step`/`test_step`, shared by every model family.

A step only differentiates and applies what the model's `compute_vae_losses`
returns; the loss math itself is backend-neutral and lives with the model.
"""

import keras

SUPPORTED_BACKENDS = ("tensorflow", "jax")


def backend_trainer():
    """Returns the step mixin for the active Keras backend."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        from kerasvae.training.tensorflow import TensorFlowSteps

        return TensorFlowSteps
    if backend == "jax":
        from kerasvae.training.jax import JAXSteps

        return JAXSteps
    raise RuntimeError(
        f"kerasvae trains on the Keras backends {SUPPORTED_BACKENDS}. "
        f"Received: KERAS_BACKEND={backend!r}"
    )


def compiled(function, variables=()):
    """`function` compiled for repeated calls on the active backend.

    A `tf.function` on TensorFlow (retracing only for new shapes). A `jax.jit`
    on JAX: the current values of `variables` (the model's weights, a
    `SeedGenerator`'s state) go in as arguments through a
    `keras.StatelessScope`, and the values the function leaves in them come
    back and are assigned, so the compiled function may draw from a
    `SeedGenerator` and sees weights that change between calls. Variables
    it reads that are not listed are compiled in as constants.
    """
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.function(function, reduce_retracing=True)
    if keras.backend.backend() != "jax":
        return function
    import jax

    variables = list(variables)

    def stateless(values, *args):
        with keras.StatelessScope(state_mapping=list(zip(variables, values))) as scope:
            outputs = function(*args)
        return outputs, [scope.get_current_value(v) for v in variables]

    jitted = jax.jit(stateless)

    def call(*args):
        outputs, values = jitted([v.value for v in variables], *args)
        for variable, value in zip(variables, values):
            variable.assign(value)
        return outputs

    return call
