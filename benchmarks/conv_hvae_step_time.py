"""Training-step time of the published convolutional HVAE against the zoo's lighter one.

`hvae_gated_conv` builds Tomczak and Welling's networks (gated convolutions,
four 64-channel convolutions at full resolution in the decoder);
`hvae_conv` (the baseline) the lighter stacks the protocol run trains on
this CPU. Both on Keras/TensorFlow, the faster backend for convolutions
here, each in its own process, timed as in `backend_step_time.py` (batch
100 as published, Adam, after a warm-up). Prints ms per step side by side,
the ratio, and what an epoch of the protocol's 50,000 training images costs.

    .venv/bin/python benchmarks/conv_hvae_step_time.py [--steps 30] [--backend tensorflow]
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from backend_step_time import measure  # noqa: E402

TRAIN_IMAGES = 50_000  # the protocol's training split (60,000 less 10,000 for validation)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--backend", default="tensorflow")
    args = parser.parse_args()
    steps_per_epoch = TRAIN_IMAGES // args.batch_size
    print(f"Keras on {args.backend}, batch {args.batch_size}, {args.steps} timed steps each")
    print(f"{'preset':18s} {'ms per step':>12s} {'x baseline':>11s} {'epoch (min)':>12s}")
    baseline = None
    for preset in ("hvae_conv", "hvae_gated_conv"):
        ms = measure(args.backend, preset, args.steps, args.batch_size)
        baseline = baseline or ms
        print(f"{preset:18s} {ms:12.1f} {ms / baseline:10.2f}x {ms * steps_per_epoch / 60000:12.1f}")


if __name__ == "__main__":
    main()
