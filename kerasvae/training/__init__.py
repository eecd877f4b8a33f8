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


def compiled(function):
    """`function` compiled for repeated calls on the active backend.

    A `tf.function` on TensorFlow (retracing only for new shapes); on JAX the
    function runs as it is (its ops dispatch asynchronously).
    """
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.function(function, reduce_retracing=True)
    return function
