"""
Title: Draw samples from a pretrained SavedModel
Description: Load one of the exports in `savedmodels/` with plain
`tf.saved_model.load`, call its `sample_seeded` signature, draw the grid.

No Keras model is rebuilt: the SavedModel carries its own graphs, the same
ones TensorFlow Serving runs. Run it from the repository root:

```
python examples/pretrained_samples.py                      # mlp_fashion_mnist_grey, 32 samples
python examples/pretrained_samples.py --name conv_fashion_mnist_grey --num-samples 64
python examples/pretrained_samples.py --quick               # 8 samples
```

It prints the signatures the export offers, the shapes `sample_seeded`
returns and whether the same seed gives the same samples, and writes
`<name>_samples.png` into `--output` (default runs/pretrained).
"""

# ## Setup

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from kerasvae import plotting, pretrained  # noqa: E402

parser = argparse.ArgumentParser(description="Samples from a pretrained kerasvae SavedModel.")
parser.add_argument("--name", default="mlp_fashion_mnist_grey", help="a folder of savedmodels/")
parser.add_argument("--num-samples", type=int, default=32)
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--quick", action="store_true", help="8 samples")
parser.add_argument("--output", default=os.path.join("runs", "pretrained"))
args = parser.parse_args()
if args.quick:
    args.num_samples = 8
if args.num_samples <= 0:
    parser.error("--num-samples must be positive")

# ## Load
#
# `pretrained_path` finds the newest version folder, `savedmodels/<name>/<n>`
# (an unknown name is refused with the list of the names present). Loading
# it needs TensorFlow only.

path = pretrained.pretrained_path(args.name)
served = tf.saved_model.load(path)
print(f"loaded {path}")
print(f"signatures: {sorted(served.signatures)}")

# ## Sample
#
# `sample_seeded(num_samples, seed)` draws z from the prior with stateless
# random ops and decodes it: the same seed gives the same images, in this
# process or on a server. Inputs are scalars of the declared dtypes.

sample_seeded = served.signatures["sample_seeded"]
outputs = sample_seeded(num_samples=np.int32(args.num_samples), seed=np.int64(args.seed))
samples, z = outputs["samples"].numpy(), outputs["z"].numpy()
print(f"samples {samples.shape}, z {z.shape}, pixel values in "
      f"[{samples.min():.3f}, {samples.max():.3f}]")
again = sample_seeded(num_samples=np.int32(args.num_samples), seed=np.int64(args.seed))
print(f"same seed, same samples: {np.array_equal(samples, again['samples'].numpy())}")

# ## Draw
#
# The decoded means are pixel probabilities in [0, 1], drawn as grey levels.

picture = plotting.image_grid(
    samples,
    os.path.join(args.output, f"{args.name}_samples.png"),
    title=f"{args.name}: sample_seeded(seed={args.seed})",
)
print(f"wrote {picture}")
