"""Per-backend `compile()` defaults, chosen by measurement (benchmarks/training_levers.py).

`VAE.compile` fills in these keyword arguments where the caller gave none, so
that a plain `compile()` and `fit(x)` get the fastest settings measured on CPU:

- TensorFlow: `steps_per_execution=32`. Keras then runs 32 train steps inside
  one `tf.function` call (a `tf.while_loop`), instead of returning to Python
  after every batch. The results are the same step for step; callbacks see a
  batch end every 32 batches (kerasvae's own callbacks act per epoch).
  `jit_compile` stays off on CPU (Keras's "auto"): XLA made the dense and the
  convolutional models slower on this CPU, not faster.
- JAX: nothing. Keras's JAX trainer already jit-compiles the step, and its
  `steps_per_execution` is a Python loop over single-step calls, which only
  slowed training down.

Only keys the caller did not pass are filled in; `run_eagerly=True` gets no
default at all (a debugging run keeps Keras's per-step behavior).
"""

import keras

TF_STEPS_PER_EXECUTION = 32


def compile_defaults(model=None, backend=None):
    """The `compile()` keyword arguments kerasvae uses unless told otherwise.

    Args:
        model: the model being compiled (unused for now; kept so that a
            default can depend on the model family).
        backend: str or None. A Keras backend name; the active one when `None`.

    Returns:
        A dict of `compile()` keyword arguments (possibly empty).
    """
    backend = backend or keras.backend.backend()
    if backend == "tensorflow":
        return {"steps_per_execution": TF_STEPS_PER_EXECUTION}
    return {}


def with_compile_defaults(model, kwargs):
    """`kwargs` of a `compile()` call with kerasvae's defaults filled in where absent."""
    kwargs = dict(kwargs)
    if kwargs.get("run_eagerly"):
        return kwargs
    for key, value in compile_defaults(model).items():
        kwargs.setdefault(key, value)
    return kwargs
