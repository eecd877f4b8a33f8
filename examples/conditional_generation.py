"""
Title: Generate a chosen class with a conditional VAE
Description: Train the zoo's conditional VAE on Fashion-MNIST images and
their labels, then draw samples of the class you ask for, from Keras and
from the exported SavedModel.

A conditional VAE (Sohn et al., 2015) gives the class label to both the
encoder and the decoder: q(z | x, y) and p(x | z, y). The latent code then
only has to hold what the label does not say (thickness, shade, shape
details), and decoding prior draws z ~ N(0, I) with a chosen y gives images
of that class.

```
python examples/conditional_generation.py                 # 5 epochs, then sandals (class 5)
python examples/conditional_generation.py --label 8       # bags
python examples/conditional_generation.py --quick         # 1 epoch on 3,000 images
```

It prints how often a simple nearest-class-mean classifier, fitted on the
training images, assigns the samples to the class asked for (next to its
accuracy on real test images, for scale), and writes `class_<label>.png`
(samples of the chosen class) and `all_classes.png` (one row per class)
into `--output`.
"""

# ## Setup

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ["KERAS_BACKEND"] = "tensorflow"  # for the SavedModel at the end

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import kerasvae  # noqa: E402
from kerasvae import data, plotting, zoo  # noqa: E402

parser = argparse.ArgumentParser(description="Samples of a chosen class from a conditional VAE.")
parser.add_argument("--label", type=int, default=5, help="the class to draw (default 5, Sandal)")
parser.add_argument("--epochs", type=int, default=5)
parser.add_argument("--quick", action="store_true", help="1 epoch on 3,000 images")
parser.add_argument("--num-samples", type=int, default=32)
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--output", default=os.path.join("runs", "conditional"))
args = parser.parse_args()
if not 0 <= args.label < len(data.CLASS_NAMES):
    parser.error("--label must be a class in [0, 9]")
if args.epochs <= 0 or args.num_samples <= 0:
    parser.error("--epochs and --num-samples must be positive")
keras.utils.set_random_seed(args.seed)

# ## Data and model
#
# `fit(x, y)`: the labels travel with the images. `cvae_mlp` is the dense
# conditional preset (the one-hot class concatenated to the encoder's and the
# decoder's inputs, a 16-d latent space).

(x_train, y_train), (x_test, y_test) = data.load_fashion_mnist()
if args.quick:
    args.epochs, x_train, y_train = 1, x_train[:3000], y_train[:3000]
cvae = zoo.build("cvae_mlp", seed=args.seed)
cvae.compile(optimizer=keras.optimizers.Adam(1e-3))
cvae.fit(x_train, y_train, epochs=args.epochs, batch_size=128, verbose=2)
print(f"{type(cvae).__name__} with num_classes={cvae.num_classes}, latent_dim={cvae.latent_dim}")

# ## Samples of one class
#
# `sample(n, seed, labels=k)` decodes n prior draws, all with class k.

name = data.CLASS_NAMES[args.label]
samples = keras.ops.convert_to_numpy(cvae.sample(args.num_samples, seed=args.seed, labels=args.label))
picture = plotting.image_grid(
    samples, os.path.join(args.output, f"class_{args.label}.png"), title=f"Samples of class {name}"
)
print(f"wrote {picture}")
every_class = plotting.plot_samples(
    cvae, os.path.join(args.output, "all_classes.png"), ncols=10, seed=args.seed,
    class_names=data.CLASS_NAMES,
)
print(f"wrote {every_class}")

# ## Do they look like the class?
#
# A deliberately simple judge: the nearest class mean (in pixel space) of the
# training images. It is right on about two thirds of real test images, so
# its verdict on samples is read against that figure, not against 100%.

centroids = np.stack([x_train[y_train == k].reshape(-1, 784).mean(axis=0) for k in range(10)])


def nearest_class(images):
    flat = images.reshape(len(images), -1)
    distances = (flat**2).sum(1)[:, None] - 2 * flat @ centroids.T + (centroids**2).sum(1)[None]
    return distances.argmin(axis=1)


real_accuracy = np.mean(nearest_class(x_test) == y_test)
asked = np.mean(nearest_class(samples) == args.label)
print(f"nearest-class-mean judge: {real_accuracy:.1%} right on real test images; "
      f"{asked:.1%} of the {args.num_samples} samples judged '{name}'")

# ## The same from the exported SavedModel
#
# A conditional export's `sample_seeded` takes one label per sample (int64)
# and a seed instead of `num_samples`.

export_path = kerasvae.export_saved_model(cvae, os.path.join(args.output, "savedmodel"))
served = tf.saved_model.load(export_path)
labels = np.full((args.num_samples,), args.label, "int64")
served_samples = served.signatures["sample_seeded"](label=labels, seed=np.int64(args.seed))["samples"]
served_samples = served_samples.numpy()
print(f"SavedModel {export_path}: samples {served_samples.shape}, "
      f"{np.mean(nearest_class(served_samples) == args.label):.1%} judged '{name}'")
