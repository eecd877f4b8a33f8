"""KL weight schedules: a multiplier of beta as a function of the training step.

A schedule is evaluated inside the training step from the model's own step
counter (`model.kl_step`), in `keras.ops`, so it works the same on every
backend and never retraces. This is why schedules are constructor arguments of
the models and not callbacks: on the JAX backend `fit` carries the model's
state as arrays through an epoch and writes them back at its end, so a
callback that assigns `beta` between batches is ignored, then overwritten.

```
LinearWarmup:      w(t) = start + (1 - start) * min(1, t / warmup_steps)
CyclicalAnnealing: tau = (t mod cycle_steps) / cycle_steps
                   w(t) = min(1, tau / ratio)           for t < num_cycles * cycle_steps
                   w(t) = 1                             afterwards (num_cycles set)
```

The weight of the KL term at step t is `beta * w(t)`.

Reference:
    Bowman et al., "Generating Sentences from a Continuous Space", CoNLL 2016
    (linear warm-up); Fu et al., "Cyclical Annealing Schedule: A Simple
    Approach to Mitigating KL Vanishing", NAACL 2019.
"""

import keras
from keras import ops


def _check_positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive integer. Received: {name}={value!r}")


@keras.saving.register_keras_serializable(package="kerasvae")
class LinearWarmup:
    """KL weight rising linearly from `start` to 1 over `warmup_steps` steps.

    Args:
        warmup_steps: int. Steps to reach full weight.
        start: float. Weight at step 0, in [0, 1].

    Example:

    ```python
    vae = kerasvae.VAE(encoder, decoder, kl_schedule=kerasvae.schedules.LinearWarmup(10_000))
    ```
    """

    def __init__(self, warmup_steps, start=0.0):
        _check_positive_int("warmup_steps", warmup_steps)
        if not 0.0 <= start <= 1.0:
            raise ValueError(f"start must be in [0, 1]. Received: start={start!r}")
        self.warmup_steps = warmup_steps
        self.start = float(start)

    def __call__(self, step):
        progress = ops.minimum(ops.cast(step, "float32") / float(self.warmup_steps), 1.0)
        return self.start + (1.0 - self.start) * progress

    def get_config(self):
        return {"warmup_steps": self.warmup_steps, "start": self.start}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        return f"LinearWarmup(warmup_steps={self.warmup_steps}, start={self.start})"


@keras.saving.register_keras_serializable(package="kerasvae")
class CyclicalAnnealing:
    """KL weight that rises from 0 to 1 over the first `ratio` of each cycle.

    Args:
        cycle_steps: int. Length of one cycle in steps.
        ratio: float. Fraction of a cycle spent rising, in (0, 1].
        num_cycles: int or None. After this many cycles the weight stays at
            1. `None` cycles for ever.

    Example:

    ```python
    schedule = kerasvae.schedules.CyclicalAnnealing(cycle_steps=2000, ratio=0.5, num_cycles=4)
    ```
    """

    def __init__(self, cycle_steps, ratio=0.5, num_cycles=None):
        _check_positive_int("cycle_steps", cycle_steps)
        if not 0.0 < ratio <= 1.0:
            raise ValueError(f"ratio must be in (0, 1]. Received: ratio={ratio!r}")
        if num_cycles is not None:
            _check_positive_int("num_cycles", num_cycles)
        self.cycle_steps = cycle_steps
        self.ratio = float(ratio)
        self.num_cycles = num_cycles

    def __call__(self, step):
        step = ops.cast(step, "float32")
        cycle = float(self.cycle_steps)
        tau = (step - cycle * ops.floor(step / cycle)) / cycle
        weight = ops.minimum(tau / self.ratio, 1.0)
        if self.num_cycles is None:
            return weight
        return ops.where(step >= cycle * self.num_cycles, 1.0, weight)

    def get_config(self):
        return {"cycle_steps": self.cycle_steps, "ratio": self.ratio, "num_cycles": self.num_cycles}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        return (
            f"CyclicalAnnealing(cycle_steps={self.cycle_steps}, ratio={self.ratio}, "
            f"num_cycles={self.num_cycles})"
        )


_SCHEDULES = (LinearWarmup, CyclicalAnnealing)


def get(identifier):
    """Returns a schedule from `None`, a config dict or an instance."""
    if identifier is None or isinstance(identifier, _SCHEDULES):
        return identifier
    if isinstance(identifier, dict):
        return keras.saving.deserialize_keras_object(identifier)
    if callable(identifier) and hasattr(identifier, "get_config"):
        return identifier
    raise ValueError(
        "kl_schedule must be None, kerasvae.schedules.LinearWarmup(...), "
        "kerasvae.schedules.CyclicalAnnealing(...) or a serializable callable of the "
        f"step. Received: kl_schedule={identifier!r}"
    )
