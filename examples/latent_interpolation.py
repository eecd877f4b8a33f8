"""
Title: Walk through the latent space between two images
Description: Encode two test images, decode points on the straight line and
on the great circle between their codes, and draw both walks.

A VAE's decoder is smooth in z, so the points between two codes decode to
images that morph from one to the other. Two paths are compared:

- linear, z(t) = (1 - t) z_a + t z_b, the shortest path;
- spherical (slerp), which keeps the norm of z near that of the endpoints.
  Under a standard normal prior in d dimensions almost all mass lies near the
  sphere of radius sqrt(d); the midpoint of a straight line between two
  typical codes is shorter than both, in a region the prior rarely draws.

The model is a pretrained SavedModel from `savedmodels/`, used through its
`encode` and `decode` signatures (no Keras model is rebuilt):

```
python examples/latent_interpolation.py                          # a sneaker into a boot
python examples/latent_interpolation.py --from-class 1 --to-class 3 --steps 12
python examples/latent_interpolation.py --quick
```

It prints the norm of z along each path and writes `interpolation.png`
(linear, then spherical, one row each per pair) into `--output`.
"""

# ## Setup

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from kerasvae import data, plotting, pretrained  # noqa: E402

parser = argparse.ArgumentParser(description="Latent interpolation with a pretrained VAE.")
parser.add_argument("--name", default="mlp_fashion_mnist_grey", help="a folder of savedmodels/")
parser.add_argument("--from-class", type=int, default=7, help="default 7, Sneaker")
parser.add_argument("--to-class", type=int, default=9, help="default 9, Ankle boot")
parser.add_argument("--pairs", type=int, default=3)
parser.add_argument("--steps", type=int, default=10)
parser.add_argument("--quick", action="store_true", help="one pair, 5 steps")
parser.add_argument("--output", default=os.path.join("runs", "interpolation"))
args = parser.parse_args()
if args.quick:
    args.pairs, args.steps = 1, 5
for name in ("from_class", "to_class"):
    if not 0 <= getattr(args, name) < len(data.CLASS_NAMES):
        parser.error(f"--{name.replace('_', '-')} must be a class in [0, 9]")
if args.pairs <= 0 or args.steps < 2:
    parser.error("--pairs must be positive and --steps at least 2")

# ## Images and codes
#
# The first test images of each class. The posterior mean is each image's
# code; `plotting.ModelView` calls the SavedModel's signatures with NumPy
# arrays and returns NumPy arrays.

(_, _), (x_test, y_test) = data.load_fashion_mnist()
start = x_test[y_test == args.from_class][: args.pairs]
end = x_test[y_test == args.to_class][: args.pairs]
served = tf.saved_model.load(pretrained.pretrained_path(args.name))
model = plotting.ModelView(served)
z_start, _ = model.encode(start)
z_end, _ = model.encode(end)
print(f"{data.CLASS_NAMES[args.from_class]} -> {data.CLASS_NAMES[args.to_class]}, "
      f"{args.pairs} pair(s), latent_dim={model.latent_dim}")

# ## Two paths


def linear(a, b, t):
    return (1.0 - t) * a + t * b


def slerp(a, b, t):
    """Spherical interpolation: along the great circle, norms interpolated linearly."""
    norm_a, norm_b = np.linalg.norm(a, axis=-1, keepdims=True), np.linalg.norm(b, axis=-1, keepdims=True)
    cos = np.sum(a * b, axis=-1, keepdims=True) / (norm_a * norm_b)
    omega = np.arccos(np.clip(cos, -1.0, 1.0))
    sin = np.maximum(np.sin(omega), 1e-8)
    direction = (np.sin((1 - t) * omega) * a / norm_a + np.sin(t * omega) * b / norm_b) / sin
    return direction * linear(norm_a, norm_b, t)


t = np.linspace(0.0, 1.0, args.steps)[None, :, None]
rows = []
for name, path in (("linear", linear), ("spherical", slerp)):
    z = path(z_start[:, None], z_end[:, None], t)  # (pairs, steps, latent_dim)
    norms = np.linalg.norm(z, axis=-1).mean(axis=0)
    print(f"{name:9s} |z| along the path: " + " ".join(f"{n:.2f}" for n in norms))
    decoded = model.decode(z.reshape(-1, model.latent_dim)).reshape((args.pairs, args.steps, 28, 28, 1))
    rows.append(np.concatenate([start[:, None], decoded, end[:, None]], axis=1))
print(f"a typical prior draw has |z| near sqrt({model.latent_dim}) = {np.sqrt(model.latent_dim):.2f}")

# ## Draw
#
# Each row: the first image, the decoded path (both ends included), the
# second image. Linear rows first, then spherical rows.

images = np.concatenate(rows).reshape(-1, 28, 28, 1)
picture = plotting.image_grid(
    images,
    os.path.join(args.output, "interpolation.png"),
    ncols=args.steps + 2,
    title=f"{args.pairs} linear row(s), then {args.pairs} spherical row(s)",
)
print(f"wrote {picture}")
