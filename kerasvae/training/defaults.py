"""Per-backend `compile()` defaults, chosen by measurement (benchmarks/training_levers.py).

`VAE.compile` fills in these keyword arguments where the caller gave none, so
that a plain `compile()` and `fit(x)` get the fastest settings measured on CPU
(figures in `benchmarks/RESULTS.md`):

- TensorFlow, dense models: `steps_per_execution=32`. Keras then runs 32
  train steps inside one `tf.function` call (a `tf.while_loop`) instead of
  returning to Python after every batch; for a small dense step that Python
  round trip is a sizeable part of the step. The results are the same step
  for step; callbacks see a batch end every 32 batches (kerasvae's own
  callbacks act per epoch, and `StopOnNonFinite` names the step by the batch
  index Keras passes).
- TensorFlow, models with convolutions: nothing. Their steps are long enough
  that the round trip does not show: 32 steps per call gave nothing
  measurable on the keras-io conv model (its one run came out below the
  default), so they keep Keras's one step per call.
- TensorFlow, under a `tf.distribute` strategy: nothing. Keras 3.15's
  multi-step loop fails under `MirroredStrategy` ("You must feed a value for
  placeholder tensor 'while/cond/Placeholder'", in its `has_next` check).
- `jit_compile` stays off on CPU (Keras's "auto"): XLA made the dense and the
  convolutional models slower on this CPU, not faster.
- JAX: nothing. Keras's JAX trainer already jit-compiles the step, and its
  `steps_per_execution` is a Python loop over single-step calls, which only
  slowed training down.

Only keys the caller did not pass are filled in; `run_eagerly=True` gets no
default at all (a debugging run keeps Keras's per-step behavior).
"""

import keras

TF_STEPS_PER_EXECUTION = 32

_CONVOLUTIONS = (
    keras.layers.Conv1D,
    keras.layers.Conv2D,
    keras.layers.Conv3D,
    keras.layers.Conv1DTranspose,
    keras.layers.Conv2DTranspose,
    keras.layers.Conv3DTranspose,
    keras.layers.DepthwiseConv1D,
    keras.layers.DepthwiseConv2D,
    keras.layers.SeparableConv1D,
    keras.layers.SeparableConv2D,
)


def has_convolutions(model):
    """Whether `model` or any layer nested in it is a convolution."""
    pending, seen = [model], set()
    while pending:
        layer = pending.pop()
        if id(layer) in seen:
            continue
        seen.add(id(layer))
        if isinstance(layer, _CONVOLUTIONS):
            return True
        pending.extend(getattr(layer, "layers", None) or [])
    return False


def compile_defaults(model=None, backend=None):
    """The `compile()` keyword arguments kerasvae uses unless told otherwise.

    Args:
        model: the model being compiled, or `None` for a dense model. On
            TensorFlow a model with convolutions, or one compiled inside a
            `tf.distribute` strategy's scope, gets no default.
        backend: str or None. A Keras backend name; the active one when `None`.

    Returns:
        A dict of `compile()` keyword arguments (possibly empty).
    """
    backend = backend or keras.backend.backend()
    if backend != "tensorflow" or (model is not None and has_convolutions(model)):
        return {}
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        if tf.distribute.has_strategy():
            return {}
    return {"steps_per_execution": TF_STEPS_PER_EXECUTION}


def check_steps_per_execution(value):
    """Refuses several steps per call under a multi-replica `MirroredStrategy`.

    Keras 3.15's multi-step loop fails there at the first `fit` step with
    "You must feed a value for placeholder tensor 'while/cond/Placeholder'"
    (one replica, `OneDeviceStrategy` and no strategy all run it); the
    refusal comes at `compile`, with the value, before any training.
    """
    if keras.backend.backend() != "tensorflow" or isinstance(value, bool) or not isinstance(value, int):
        return
    if value <= 1:
        return
    import tensorflow as tf

    strategy = tf.distribute.get_strategy()
    if isinstance(strategy, tf.distribute.MirroredStrategy) and strategy.num_replicas_in_sync > 1:
        raise ValueError(
            "steps_per_execution must be 1 under a MirroredStrategy with several replicas: "
            "Keras's multi-step loop fails there on TensorFlow. "
            f"Received: steps_per_execution={value} with {strategy.num_replicas_in_sync} replicas"
        )


def with_compile_defaults(model, kwargs):
    """`kwargs` of a `compile()` call with kerasvae's defaults filled in where absent."""
    kwargs = dict(kwargs)
    if kwargs.get("run_eagerly"):
        return kwargs
    for key, value in compile_defaults(model).items():
        kwargs.setdefault(key, value)
    return kwargs
