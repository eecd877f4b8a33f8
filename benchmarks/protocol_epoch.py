"""A protocol epoch with the safety callbacks' batch hooks run asynchronously, beside as shipped.

`kerasvae.protocol.train` passes `BackupAndRestore` and `StopOnNonFinite`,
both of which define `on_train_batch_end`. A callback with that hook makes
Keras convert every step's logs on the training thread, which waits for the
step before it fetches the next batch; and `StopOnNonFinite` reads
`self.model` there, which on JAX copies every weight back into the model.
A callback that declares `async_safe` has its hooks run on worker threads
instead (JAX, PyTorch; on TensorFlow Keras calls them synchronously whatever
they declare).

The baseline is the protocol as shipped. The other arm declares both
callbacks `async_safe` (the backup's hook does nothing when it backs up per
epoch) and has the non-finite check read the loss names once, at the start
of training. Each repeat trains a fresh run folder for `--epochs` epochs on
the first `--train-examples` training images, alternating the two arms; the
first epoch (compilation) is dropped, and the medians of the remaining
epochs' wall times are printed with their ratio, beside the runs' peak
resident memory (each child's own `ru_maxrss`).

    KERAS_BACKEND=jax .venv/bin/python benchmarks/protocol_epoch.py [--preset hvae_mlp]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

CHILD = """
import json, resource, sys
from kerasvae import callbacks_safety, protocol
preset, run_dir, epochs, train_examples, asynchronous = sys.argv[1:6]
if asynchronous == "1":
    callbacks_safety.BackupAndRestore.async_safe = True
    stop = callbacks_safety.StopOnNonFinite
    stop.async_safe = True
    begin = stop.on_train_begin
    def on_train_begin(self, logs=None):
        begin(self, logs)
        self.keys = self.model.loss_keys
    stop.on_train_begin = on_train_begin
    stop._names = lambda self, logs: [name for name in self.keys if name in logs]
protocol.train(preset, run_dir, max_epochs=int(epochs), train_examples=int(train_examples),
               validation_examples=2000, verbose=0)
with open(run_dir + "/train_state.json") as f:
    seconds = json.load(f)["epoch_seconds"]
print(json.dumps([seconds, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024]))
"""


def run(args, asynchronous):
    with tempfile.TemporaryDirectory() as run_dir:
        out = subprocess.run(
            [sys.executable, "-c", CHILD, args.preset, run_dir, str(args.epochs),
             str(args.train_examples), "1" if asynchronous else "0"],
            check=True, capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        )
    seconds, peak_mib = json.loads(out.stdout.strip().splitlines()[-1])
    return seconds[1:], peak_mib


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="hvae_mlp")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--train-examples", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    import keras

    print(f"backend {keras.backend.backend()}, preset {args.preset}, {args.train_examples} images, "
          f"batch 100, {args.epochs} epochs per run (first dropped), {args.repeats} repeats alternated")
    epochs = {False: [], True: []}
    peaks = {False: 0.0, True: 0.0}
    for _ in range(args.repeats):
        for asynchronous in (False, True):
            seconds, peak = run(args, asynchronous)
            epochs[asynchronous] += seconds
            peaks[asynchronous] = max(peaks[asynchronous], peak)
            print(f"  {'async_safe' if asynchronous else 'shipped   '} epochs: {seconds}")
    sync, asyn = statistics.median(epochs[False]), statistics.median(epochs[True])
    print(f"{'batch hooks':<28}{'median epoch s':>16}{'peak RSS MiB':>14}")
    print(f"{'shipped (synchronous)':<28}{sync:>16.2f}{peaks[False]:>14.0f}")
    print(f"{'async_safe':<28}{asyn:>16.2f}{peaks[True]:>14.0f}")
    print(f"async_safe against shipped: {sync / asyn:.2f}x the speed")


if __name__ == "__main__":
    main()
