"""
Title: A minimal VAE on your own encoder and decoder
Description: Two plain Keras functional models, `kerasvae.VAE`, `fit`, done.

`python examples/minimal_vae.py [--epochs 5] [--quick]` prints the test-set
loss terms and writes `samples.png` into `--output` (default runs/minimal).
"""

import argparse
import os

import keras
from keras import layers

import kerasvae
from kerasvae import data, plotting

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=5)
parser.add_argument("--quick", action="store_true", help="1 epoch on 2,000 images")
parser.add_argument("--output", default=os.path.join("runs", "minimal"))
args = parser.parse_args()
(x_train, _), (x_test, _) = data.load_fashion_mnist()
if args.quick:
    args.epochs, x_train = 1, x_train[:2000]

# The encoder: an image to the mean and log-variance of q(z | x).
latent_dim = 2
inputs = keras.Input((28, 28, 1))
h = layers.Dense(256, activation="relu")(layers.Flatten()(inputs))
encoder = keras.Model(inputs, [layers.Dense(latent_dim)(h), layers.Dense(latent_dim)(h)])

# The decoder: a latent point to one Bernoulli logit per pixel.
z = keras.Input((latent_dim,))
h = layers.Dense(256, activation="relu")(z)
decoder = keras.Model(z, layers.Reshape((28, 28, 1))(layers.Dense(28 * 28)(h)))

# kerasvae adds the sampling step and the loss, -log p(x | z) + KL(q || N(0, I)).
vae = kerasvae.VAE(encoder, decoder, likelihood="bernoulli")
vae.compile(optimizer=keras.optimizers.Adam(1e-3))
vae.fit(x_train, epochs=args.epochs, batch_size=128, verbose=2)

for name, value in vae.evaluate(x_test, verbose=0, return_dict=True).items():
    print(f"test {name}: {value:.2f}")
path = plotting.plot_samples(vae, os.path.join(args.output, "samples.png"))
print(f"wrote {path}")
