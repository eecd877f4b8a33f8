"""
Title: Anomaly detection with the exported `elbo` signature
Description: Train a VAE on nine Fashion-MNIST classes, export it, score
every test image with the SavedModel's `elbo` signature and measure how well
the score finds the held-out tenth class (ROC AUC, computed with NumPy).

A VAE trained on some data gives high -ELBO (an upper bound on -log p(x)) to
inputs unlike it. Hold one class out of training and that class becomes the
"anomaly": a good score ranks its test images above the others. The ROC AUC
is the probability that a random anomalous image scores higher than a random
normal one (0.5 is chance, 1 is perfect).

The score is a likelihood, and likelihoods reward simple images: a class
with fewer bright pixels can get a *lower* -ELBO than the training classes
although the model never saw it (Nalisnick et al., "Do Deep Generative
Models Know What They Don't Know?", ICLR 2019). Try `--anomaly-class 1`
(trousers) against the default, 8 (bags).

```
python examples/anomaly_detection.py                       # bags held out, 5 epochs
python examples/anomaly_detection.py --anomaly-class 1 --epochs 10
python examples/anomaly_detection.py --quick               # 1 epoch on 3,000 images
```

It prints the ROC AUC of -ELBO and of its two terms, the mean score of each
test class, and writes `scores.png` (a histogram per group) into `--output`.
"""

# ## Setup
#
# The `elbo` signature comes from a SavedModel, so the TensorFlow backend is
# pinned before Keras loads.

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ["KERAS_BACKEND"] = "tensorflow"

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

import kerasvae  # noqa: E402
from kerasvae import data, zoo  # noqa: E402
from kerasvae.io_utils import atomic_open  # noqa: E402

parser = argparse.ArgumentParser(description="Held-out-class anomaly detection with a VAE.")
parser.add_argument("--anomaly-class", type=int, default=8, help="the class held out (default 8, Bag)")
parser.add_argument("--epochs", type=int, default=5)
parser.add_argument("--quick", action="store_true", help="1 epoch on 3,000 images, 2,000 test images")
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--output", default=os.path.join("runs", "anomaly"))
args = parser.parse_args()
if not 0 <= args.anomaly_class < len(data.CLASS_NAMES):
    parser.error("--anomaly-class must be a class in [0, 9]")
if args.epochs <= 0:
    parser.error("--epochs must be positive")
keras.utils.set_random_seed(args.seed)

# ## Data
#
# Training keeps the nine other classes; the test set keeps all ten, and the
# held-out class is the positive ("anomalous") label.

(x_train, y_train), (x_test, y_test) = data.load_fashion_mnist()
x_normal = x_train[y_train != args.anomaly_class]
if args.quick:
    args.epochs = 1
    x_normal, x_test, y_test = x_normal[:3000], x_test[:2000], y_test[:2000]
is_anomaly = y_test == args.anomaly_class
name = data.CLASS_NAMES[args.anomaly_class]
print(f"training on {len(x_normal)} images without class {args.anomaly_class} ({name}); "
      f"test: {is_anomaly.sum()} anomalous of {len(x_test)}")

# ## Train and export
#
# The zoo's MLP preset (16-d diagonal Gaussian posterior, Bernoulli pixels).
# The export is what a TF Serving deployment would score with.

vae = zoo.build("mlp_fashion_mnist", seed=args.seed)
vae.compile(optimizer=keras.optimizers.Adam(1e-3))
vae.fit(x_normal, epochs=args.epochs, batch_size=128, verbose=2)
export_path = kerasvae.export_saved_model(vae, os.path.join(args.output, "savedmodel"))
print(f"exported {export_path}")

# ## Score with the `elbo` signature
#
# `elbo(x)` returns, per image, `negative_elbo`, `reconstruction_loss` and
# `kl_loss` (nats; one posterior draw with a fixed seed, so the same image
# always gets the same score).

elbo = tf.saved_model.load(export_path).signatures["elbo"]
scores = {"negative_elbo": [], "reconstruction_loss": [], "kl_loss": []}
for start in range(0, len(x_test), 500):
    outputs = elbo(x=x_test[start : start + 500])
    for key in scores:
        scores[key].append(outputs[key].numpy())
scores = {key: np.concatenate(values) for key, values in scores.items()}

# ## ROC AUC with NumPy
#
# The AUC equals the Mann-Whitney statistic: rank all scores together (ties
# share their average rank), add up the ranks of the positives, subtract the
# smallest possible sum and divide by the number of (positive, negative)
# pairs.


def average_ranks(values):
    """1-based ranks of `values`, ties given the mean of the ranks they span."""
    order = np.argsort(values, kind="mergesort")
    _, first, counts = np.unique(values[order], return_index=True, return_counts=True)
    ranks = np.empty(len(values))
    ranks[order] = np.repeat(first + (counts + 1) / 2.0, counts)
    return ranks


def roc_auc(score, positive):
    positive = np.asarray(positive, bool)
    n_pos, n_neg = positive.sum(), (~positive).sum()
    rank_sum = average_ranks(np.asarray(score, "float64"))[positive].sum()
    return (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


# The same number from its definition, on a subsample (all pairs, ties count 1/2):
rng = np.random.default_rng(0)
pick = rng.choice(len(x_test), size=min(600, len(x_test)), replace=False)
s, p = scores["negative_elbo"][pick], is_anomaly[pick]
pairs = s[p][:, None] - s[~p][None, :]
by_definition = np.mean((pairs > 0) + 0.5 * (pairs == 0))
print(f"check on {len(pick)} images: rank formula {roc_auc(s, p):.6f}, "
      f"pairwise definition {by_definition:.6f}")

print(f"ROC AUC for class {args.anomaly_class} ({name}) held out:")
for key in scores:
    print(f"  score = {key:20s} {roc_auc(scores[key], is_anomaly):.3f}")
print("mean -ELBO per test class (nats):")
for label, class_name in enumerate(data.CLASS_NAMES):
    mark = "  <- held out" if label == args.anomaly_class else ""
    mask = y_test == label
    if mask.any():
        print(f"  {label} {class_name:12s} {scores['negative_elbo'][mask].mean():8.1f}{mark}")

# ## Draw
#
# Two histograms of -ELBO: the nine training classes and the held-out one.

figure = Figure(figsize=(7.0, 4.0), dpi=100)
FigureCanvasAgg(figure)
axes = figure.add_subplot(1, 1, 1)
bins = np.linspace(*np.percentile(scores["negative_elbo"], [0.5, 99.5]), 60)
axes.hist(scores["negative_elbo"][~is_anomaly], bins=bins, density=True, alpha=0.6,
          label="the nine training classes")
axes.hist(scores["negative_elbo"][is_anomaly], bins=bins, density=True, alpha=0.6,
          label=f"held out: {name}")
axes.set_xlabel("-ELBO (nats)")
axes.set_ylabel("density")
axes.set_title(f"ROC AUC {roc_auc(scores['negative_elbo'], is_anomaly):.3f}")
axes.legend(frameon=False)
figure.tight_layout()
picture = os.path.join(args.output, "scores.png")
with atomic_open(picture, "wb") as f:
    figure.savefig(f, format="png")
print(f"wrote {picture}")
