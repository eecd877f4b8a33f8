"""
Title: A variational autoencoder on Fashion-MNIST, from training to serving
Description: Build a VAE from kerasvae's networks, train it with `fit`,
measure it, draw it, and export it for TensorFlow Serving.

This script is meant to be read top to bottom. It shows the user API of
`kerasvae` on real data (the Fashion-MNIST files, read locally):

1. build an encoder and a decoder with `kerasvae.networks` and wrap them in
   `kerasvae.VAE`;
2. train with plain `compile` / `fit`, a held-out validation split and Keras
   callbacks;
3. evaluate with `kerasvae.evaluation.evaluate_vae` (ELBO parts, an
   importance-sampled negative log-likelihood, active latent units);
4. draw prior samples, reconstructions and the latent space with
   `kerasvae.plotting`;
5. export a versioned SavedModel with `kerasvae.export_saved_model`, load it
   back with `tf.saved_model.load` and call its `sample_seeded` signature, the
   way TF Serving will.

Run it (about 10 seconds per epoch on 2 CPU cores):

```
python examples/train_fashion_mnist.py                          # 10 epochs
python examples/train_fashion_mnist.py --epochs 1 --train-examples 2000   # a quick look
python examples/train_fashion_mnist.py --quick     # the same, with a cheaper NLL estimate
```

Everything lands in `--output` (default `runs/example`): `samples.png`,
`reconstructions.png`, `latent.png`, `served_samples.png`, `history.csv` and
`savedmodel/<version>/`.
"""

# ## Setup
#
# SavedModel export needs the TensorFlow backend, so this example pins it
# before Keras is imported.

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ["KERAS_BACKEND"] = "tensorflow"

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import kerasvae  # noqa: E402
from kerasvae import data, evaluation, plotting  # noqa: E402

parser = argparse.ArgumentParser(description="Train a VAE on Fashion-MNIST, evaluate, export.")
parser.add_argument("--epochs", type=int, default=10)
parser.add_argument(
    "--train-examples", type=int, default=None, help="train on the first N images only (quick runs)"
)
parser.add_argument("--output", default=os.path.join("runs", "example"))
parser.add_argument("--seed", type=int, default=0)
parser.add_argument(
    "--quick", action="store_true", help="1 epoch on 2,000 images, NLL with K=10 on 100 images"
)
args = parser.parse_args()
nll_samples, nll_examples = 100, 1000
if args.quick:
    args.epochs, args.train_examples, nll_samples, nll_examples = 1, 2000, 10, 100
if args.epochs <= 0 or (args.train_examples is not None and args.train_examples <= 0):
    parser.error("--epochs and --train-examples must be positive")

os.makedirs(args.output, exist_ok=True)
# One seed for Python, NumPy and the backend: the same run gives the same numbers.
keras.utils.set_random_seed(args.seed)

# ## Data
#
# 60,000 training and 10,000 test images of clothing, 28x28 grey levels
# scaled to [0, 1]. The last 5,000 training images are held out for
# validation, so the test set is only looked at once, at the end. The grey
# levels are used as they are: a Bernoulli likelihood accepts any target in
# [0, 1] (the binary cross-entropy of keras-io's VAE example).

(x_train, y_train), (x_test, y_test) = data.load_fashion_mnist()
x_train, x_val = x_train[:-5000], x_train[-5000:]
if args.train_examples:
    x_train = x_train[: args.train_examples]
print(f"train {x_train.shape}, validation {x_val.shape}, test {x_test.shape}")

# ## Model
#
# The encoder maps an image to the mean and log-variance of a diagonal
# Gaussian q(z | x) over a 16-dimensional latent space; the decoder maps z to
# the logits of one Bernoulli per pixel. `kerasvae.VAE` adds the sampling step
# and the loss, the negative ELBO:
#
#     loss = -log p(x | z) + beta * KL(q(z | x) || N(0, I))
#
# (`kerasvae.zoo.build("mlp_fashion_mnist")` builds the same model in one line.)

latent_dim = 16
encoder = kerasvae.networks.build_mlp_encoder((28, 28, 1), latent_dim, hidden_units=(512, 256))
decoder = kerasvae.networks.build_mlp_decoder(latent_dim, (28, 28, 1), hidden_units=(256, 512))
vae = kerasvae.VAE(
    encoder, decoder, likelihood="bernoulli", beta=1.0, seed=args.seed, name="fashion_vae"
)
vae.compile(optimizer=keras.optimizers.Adam(learning_rate=1e-3))
print(f"encoder: {encoder.count_params():,} weights, decoder: {decoder.count_params():,} weights")

# ## Train
#
# `fit` reports `loss`, `reconstruction_loss` and `kl_loss` (nats per image)
# for the training data and, with a `val_` prefix, for the validation split.
# Early stopping keeps the weights of the best validation epoch; the CSV
# logger keeps the curves.

vae.fit(
    x_train,
    epochs=args.epochs,
    batch_size=128,
    validation_data=(x_val,),
    callbacks=[
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=3, restore_best_weights=True),
        keras.callbacks.TerminateOnNaN(),
        keras.callbacks.CSVLogger(os.path.join(args.output, "history.csv")),
    ],
    verbose=2,
)

# ## Evaluate
#
# On the test set: the negative ELBO (an upper bound on -log p(x)), a tighter
# estimate of -log p(x) from 100 importance samples per image (on the first
# 1,000 test images), bits per pixel, and how many latent units the model
# actually uses (the others have collapsed to the prior).

metrics = evaluation.evaluate_vae(
    vae, x_test, num_importance_samples=nll_samples, nll_examples=nll_examples
)
print("Test set:")
for key, value in metrics.items():
    print(f"  {key:24s} {value:.4f}" if isinstance(value, float) else f"  {key:24s} {value}")

# Pictures: decoded draws from the prior, test images above their
# reconstructions, and the posterior means of 2,000 test images projected
# onto their first two principal components, coloured by class.

plotting.image_grid(
    vae.sample(32, seed=args.seed),
    os.path.join(args.output, "samples.png"),
    title="Samples from the prior",
)
plotting.reconstruction_pairs(
    x_test[:10], vae.reconstruct(x_test[:10]), os.path.join(args.output, "reconstructions.png")
)
plotting.latent_scatter(
    evaluation.posterior_means(vae, x_test[:2000]),
    y_test[:2000],
    os.path.join(args.output, "latent.png"),
    class_names=data.CLASS_NAMES,
)
print(f"Figures written to {args.output}/: samples.png, reconstructions.png, latent.png")

# ## Export and serve
#
# `export_saved_model` writes `<base>/<version>/`, the layout TF Serving
# polls; each run adds the next version. The export carries six signatures
# (`encode`, `decode`, `reconstruct`, `sample`, `sample_seeded`,
# `serving_default`). Loading it back with `tf.saved_model.load` runs the
# same graphs a server would, without Keras.

export_path = kerasvae.export_saved_model(vae, os.path.join(args.output, "savedmodel"))
print(f"SavedModel written to {export_path}")

served = tf.saved_model.load(export_path)
sample_seeded = served.signatures["sample_seeded"]
outputs = sample_seeded(num_samples=tf.constant(16, tf.int32), seed=tf.constant(42, tf.int64))
again = sample_seeded(num_samples=tf.constant(16, tf.int32), seed=tf.constant(42, tf.int64))
samples = outputs["samples"].numpy()
print(
    f"sample_seeded: samples {samples.shape}, z {tuple(outputs['z'].shape)}; "
    f"same seed, same samples: {np.array_equal(samples, again['samples'].numpy())}"
)

# A deterministic signature must agree with the Keras model it came from.
served_reconstruction = served.signatures["reconstruct"](x=tf.constant(x_test[:100]))
keras_reconstruction = np.asarray(vae.reconstruct(x_test[:100]))
difference = np.max(np.abs(served_reconstruction["reconstruction"].numpy() - keras_reconstruction))
print(f"reconstruct: largest difference from the Keras model {difference:.2e}")

plotting.image_grid(
    samples, os.path.join(args.output, "served_samples.png"), title="sample_seeded(16, seed=42)"
)

# To serve the export over the network (TF Serving's binary or Docker image),
# then query it with examples/query_serving.py:
base_path = os.path.abspath(os.path.dirname(export_path))
print("Serve it with:")
print(
    f"  tensorflow_model_server --port=8500 --rest_api_port=8501 "
    f"--model_name=fashion_vae --model_base_path={base_path}"
)
print("and query it with:")
print("  python examples/query_serving.py --rest localhost:8501 --model fashion_vae")
