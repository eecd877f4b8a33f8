"""Epoch times with tf.data's autotuning on and off: the stalls at the ends of epochs.

In TF 2.21 deleting an autotuned tf.data iterator waits until the iterator's
autotuning thread finishes a timed sleep, with the Python GIL held: the CPU
sits idle for up to several seconds. Keras makes a new iterator every epoch, so
some epochs end with such a stall (`py-spy dump` during one: the main thread in
`~IteratorResource`, the `tf_data_model` thread in `Model::OptimizeLoop`).
`kerasvae.data.make_dataset` now turns autotuning off.

Arms, one process each (a Keras backend is fixed at import), the MLP
784-512-16 VAE of `compare_speed.py`, batch 128, Adam, on the first
`--train-size` Fashion-MNIST training images, `--epochs` epochs after a warm-up:

- `numpy`: `fit(x, batch_size=128)`, Keras's own input pipeline (autotuned
  tf.data on TensorFlow; plain NumPy slicing on JAX).
- `make_dataset, autotuned`: `fit(make_dataset(x))` with autotuning switched
  back on, the pipeline as it was before this change (the baseline).
- `make_dataset`: `fit(make_dataset(x))` as shipped.

The repeats alternate the arms. Stalls show up in the mean and the slowest
epoch, not in the median, so all three are printed, with the number of epochs
over 1.3 times the run's fastest.

    .venv/bin/python benchmarks/tfdata_autotune.py [--backends tensorflow jax] [--epochs 8] [--repeats 2]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

CHILD = """
import json, sys, time
import absl.logging, keras, tensorflow as tf
import kerasvae
from kerasvae import data
absl.logging.set_verbosity(absl.logging.ERROR)  # the option override below logs a warning
arm, epochs, train_size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
(x, _), _ = data.load_fashion_mnist()
x = x[:train_size]

def inputs():
    if arm == "numpy":
        return dict(x=x, batch_size=128)
    ds = data.make_dataset(x, batch_size=128, shuffle=True, seed=0)
    if arm == "autotuned":
        options = tf.data.Options()
        options.autotune.enabled = True
        ds = ds.with_options(options)
    return dict(x=ds)

keras.utils.set_random_seed(0)
encoder = kerasvae.networks.build_mlp_encoder((28, 28, 1), 16, hidden_units=(512,))
decoder = kerasvae.networks.build_mlp_decoder(16, (28, 28, 1), hidden_units=(512,))
model = kerasvae.VAE(encoder, decoder, likelihood="bernoulli", seed=0)
model.compile(optimizer=keras.optimizers.Adam())
times = []

class EpochTimer(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        times.append(time.perf_counter() - self.start)

model.fit(**inputs(), epochs=1, verbose=0)  # tracing and compilation
model.fit(**inputs(), epochs=epochs, verbose=0, callbacks=[EpochTimer()])
print(json.dumps(times))
"""

ARMS = {"numpy": "numpy (Keras's pipeline)", "autotuned": "make_dataset, autotuned", "shipped": "make_dataset"}


def run(backend, arm, epochs, train_size):
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=ROOT)
    out = subprocess.run([sys.executable, "-c", CHILD, arm, str(epochs), str(train_size)],
                         env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", nargs="+", default=["tensorflow", "jax"])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--train-size", type=int, default=60_000)
    args = parser.parse_args()
    print(f"MLP 784-512-16, batch 128, {args.train_size} images, {args.epochs} epochs per run, "
          f"{args.repeats} repeats alternated")
    for backend in args.backends:
        epochs = {arm: [] for arm in ARMS}
        for repeat in range(args.repeats):
            order = list(ARMS) if repeat % 2 == 0 else list(reversed(ARMS))
            for arm in order:
                seconds = run(backend, arm, args.epochs, args.train_size)
                epochs[arm] += seconds
                print(f"  {backend} {ARMS[arm]:<26} " + " ".join(f"{s:.2f}" for s in seconds), flush=True)
        print(f"\n| {backend} | mean epoch s | median | slowest | epochs > 1.3x fastest | samples/s (mean) | vs autotuned |")
        print("|---|---|---|---|---|---|---|")
        baseline = statistics.mean(epochs["autotuned"])
        for arm, label in ARMS.items():
            seconds = epochs[arm]
            mean = statistics.mean(seconds)
            slow = sum(s > 1.3 * min(seconds) for s in seconds)
            print(f"| {label} | {mean:.2f} | {statistics.median(seconds):.2f} | {max(seconds):.2f} | "
                  f"{slow} of {len(seconds)} | {args.train_size / mean:.0f} | {baseline / mean:.2f}x |")
        print()


if __name__ == "__main__":
    main()
