"""Trains families on one device and under a distribution, in a fresh process.

Run by tests/test_distributed.py as
`python -m tests.distributed_runs MODE OUT [WORKER_INDEX PORT0 PORT1]`; writes
a JSON file `OUT` with, per family, the final weights, the epoch logs and the
step counter of a single-device run and of a distributed run over the same
data (global batches of `GLOBAL_BATCH`, no shuffling).

Modes:
- `mirrored`: `tf.distribute.MirroredStrategy` over two logical CPU devices.
- `multi_worker`: `tf.distribute.MultiWorkerMirroredStrategy`, one of two
  worker processes on loopback ports (`TF_CONFIG`).
- `jax_data_parallel`: `keras.distribution.DataParallel` over two host
  devices (`XLA_FLAGS=--xla_force_host_platform_device_count=2`).

On TensorFlow each replica draws its noise for its own slice of the batch from
the same generator state, so its draws cannot equal those of one device for
the whole batch: the posterior noise is set to zero there (every draw is its
mean) so that the comparison is exact. On JAX the distributed step draws the
noise of the global batch, so the real noise is kept.
"""

import json
import os
import sys

NUM_EXAMPLES = 16
GLOBAL_BATCH = 8
EPOCHS = 2
LEARNING_RATE = 0.1
WARMUP_STEPS = 4


def _start_up(mode, argv):
    """Environment and strategy, before Keras is imported (this must come first)."""
    if mode == "multi_worker":
        index, ports = int(argv[3]), argv[4:6]
        os.environ["TF_CONFIG"] = json.dumps(
            {
                "cluster": {"worker": [f"localhost:{port}" for port in ports]},
                "task": {"type": "worker", "index": index},
            }
        )
    if mode == "jax_data_parallel":
        os.environ["KERAS_BACKEND"] = "jax"
        os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
        return None
    os.environ["KERAS_BACKEND"] = "tensorflow"
    import tensorflow as tf

    if mode == "mirrored":
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        return tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    # Collectives must be configured before any other TF op runs.
    return tf.distribute.MultiWorkerMirroredStrategy()


# Run as a script, the process is set up before Keras loads; imported (for
# the constants above), nothing happens.
MODE = OUT = STRATEGY = None
if __name__ == "__main__":
    MODE, OUT = sys.argv[1], sys.argv[2]
    STRATEGY = _start_up(MODE, sys.argv)

import keras  # noqa: E402
import numpy as np  # noqa: E402

import kerasvae  # noqa: E402
from tests import families  # noqa: E402

REAL_NORMAL = keras.random.normal


def zero_normal(shape, mean=0.0, stddev=1.0, dtype=None, seed=None):
    """Noise made negligible: every draw is its mean."""
    return keras.ops.zeros(shape, dtype=dtype or "float32")


def to_list(value):
    return np.asarray(keras.ops.convert_to_numpy(value)).tolist()


def build(name):
    keras.utils.set_random_seed(1)
    model = families.build(name, kl_schedule=kerasvae.schedules.LinearWarmup(WARMUP_STEPS))
    model.compile(optimizer=keras.optimizers.SGD(LEARNING_RATE))
    return model


def dataset(x, y):
    import tensorflow as tf

    data = x if y is None else (x, y)
    ds = tf.data.Dataset.from_tensor_slices(data).batch(GLOBAL_BATCH)
    # Each worker takes every other example of each global batch, so the
    # replicas' slices of a step together are that step's global batch.
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(options)


def train(model, x, y):
    if keras.backend.backend() == "tensorflow":
        history = model.fit(dataset(x, y), epochs=EPOCHS, verbose=0)
    else:
        history = model.fit(x, y, batch_size=GLOBAL_BATCH, epochs=EPOCHS, shuffle=False, verbose=0)
    return {
        "weights": [to_list(w.value) for w in model.trainable_weights],
        "history": {k: [float(np.asarray(v)) for v in vs] for k, vs in history.history.items()},
        "kl_step": int(to_list(model.kl_step.value)),
        "seed_state": to_list(model.sampling.seed_generator.state.value),
    }


def initial_weights(model):
    return [to_list(w.value) for w in model.trainable_weights]


def run_family(name):
    result = {}
    probe = build(name)
    x, y = families.family_data(probe, NUM_EXAMPLES)
    if MODE in ("mirrored", "multi_worker"):
        keras.random.normal = zero_normal
        single = build(name)
        result["initial_weights"] = initial_weights(single)
        result["single"] = train(single, x, y)
        with STRATEGY.scope():
            distributed = build(name)
        result["distributed"] = train(distributed, x, y)
        result["num_replicas"] = int(STRATEGY.num_replicas_in_sync)
        keras.random.normal = REAL_NORMAL
        if name == "VAE":
            # The real noise under the strategy: the stream advances once per
            # step, as on one device.
            with STRATEGY.scope():
                noisy = build(name)
            result["real_noise"] = train(noisy, x, y)
            result["real_noise_single"] = train(build(name), x, y)
    else:
        import jax

        keras.distribution.set_distribution(None)
        single = build(name)
        result["initial_weights"] = initial_weights(single)
        result["single"] = train(single, x, y)
        devices = keras.distribution.list_devices()
        keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
        distributed = build(name)
        result["distributed"] = train(distributed, x, y)
        result["num_replicas"] = len(jax.devices())
        result["kernel_sharding"] = str(distributed.trainable_weights[0].value.sharding)
        keras.distribution.set_distribution(None)
    return result


# Every family trains through the one `train_step` of its backend; what the
# families change (objective, prior, step-dependent weights) meets the
# replicas' reduction in the mirrored run, which covers them all. The other
# two modes change only how replicas talk (Keras's `keras.distribution` mesh
# on JAX; TF's cross-process collectives): two families with different
# objectives and priors cover that, at a third of the compilations.
JAX_FAMILIES = MULTI_WORKER_FAMILIES = ("VAE", "HierarchicalVAE")


def main():
    names = families.available_families()
    if MODE == "jax_data_parallel":
        names = [name for name in names if name in JAX_FAMILIES]
    elif MODE == "multi_worker":
        names = [name for name in names if name in MULTI_WORKER_FAMILIES]
    results = {name: run_family(name) for name in names}
    with open(OUT, "w") as f:
        json.dump(results, f)


if __name__ == "__main__":
    main()
