"""Training-step time of the zoo presets on Keras/TensorFlow vs Keras/JAX.

Each backend runs in its own process (a Keras backend is fixed at import).
The baseline is Keras on TensorFlow, the default. Prints ms per step (batch
128, Adam, after a warm-up epoch) side by side, and the ratio. Both backends
read the batches from `kerasvae.data.make_dataset` (since 2026-11-29; before,
NumPy arrays, whose autotuned pipeline on TensorFlow could add a stall of
seconds to the timed epoch).

    .venv/bin/python benchmarks/backend_step_time.py [--presets mlp_fashion_mnist ...] [--steps 100]
"""

import argparse
import json
import os
import subprocess
import sys

CHILD = r"""
import json, sys, time
import numpy as np, keras
from kerasvae import data, zoo
preset, steps, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
x = np.random.default_rng(0).random((steps * batch, 28, 28, 1), dtype=np.float32)
model = zoo.build(preset, seed=0)
# A conditional model trains on (x, labels).
y = np.arange(len(x)) % model.num_classes if model.num_classes else None
model.compile(optimizer=keras.optimizers.Adam(1e-3))
# Input through make_dataset on both backends: Keras's own pipeline for NumPy
# input on TensorFlow is autotuned tf.data, whose iterator can stall for
# seconds when deleted at the end of the epoch (benchmarks/tfdata_autotune.py).
def batches(n):
    return data.make_dataset(x[:n], batch, shuffle=False, labels=None if y is None else y[:n])
model.fit(batches(10 * batch), epochs=1, verbose=0)  # compile
train = batches(len(x))
start = time.perf_counter()
model.fit(train, epochs=1, verbose=0)
print(json.dumps({"ms_per_step": 1000 * (time.perf_counter() - start) / steps}))
"""


def measure(backend, preset, steps, batch):
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    out = subprocess.run(
        [sys.executable, "-c", CHILD, preset, str(steps), str(batch)],
        env=env, capture_output=True, text=True, check=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])["ms_per_step"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--presets", nargs="+", default=["mlp_fashion_mnist", "mlp_full_cov_fashion_mnist"])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()
    print(f"{'preset':30s} {'TF (baseline)':>14s} {'JAX':>10s} {'TF/JAX':>8s}   ms per step, batch {args.batch_size}")
    for preset in args.presets:
        tf_ms = measure("tensorflow", preset, args.steps, args.batch_size)
        jax_ms = measure("jax", preset, args.steps, args.batch_size)
        print(f"{preset:30s} {tf_ms:14.2f} {jax_ms:10.2f} {tf_ms / jax_ms:7.2f}x")


if __name__ == "__main__":
    main()
