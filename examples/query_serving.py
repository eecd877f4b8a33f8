"""
Title: Export a VAE and query its serving signatures
Description: Write a versioned SavedModel with `kerasvae.export_saved_model`
and call every signature the way TensorFlow Serving does: in this process
with `tf.saved_model.load`, or over the network with kerasvae's REST and
gRPC clients when a model server is running.

```
python examples/query_serving.py                     # export the pretrained mlp model, query it here
python examples/query_serving.py --quick             # train a small model for 1 epoch instead
python examples/query_serving.py --epochs 3          # ... for 3 epochs
python examples/query_serving.py --savedmodel runs/example/savedmodel   # query an existing export
```

With a TF Serving running (its binary or Docker image; neither is needed for
the commands above), point the script at it instead:

```
python examples/query_serving.py --rest localhost:8501 --model fashion_vae
python examples/query_serving.py --grpc localhost:8500 --model fashion_vae
```

For each signature it prints the output names and shapes, then the checks
a client can make: the reconstruction error on test images, the same seed
giving the same samples, the ELBO terms adding up, and `prior_log_prob`
against the closed form of N(0, I).
"""

# ## Setup
#
# Export needs the TensorFlow backend, so it is pinned before Keras loads.

import argparse
import math
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ["KERAS_BACKEND"] = "tensorflow"

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import kerasvae  # noqa: E402
from kerasvae import data, pretrained, serving, zoo  # noqa: E402

parser = argparse.ArgumentParser(description="Export a kerasvae model and query its signatures.")
where = parser.add_mutually_exclusive_group()
where.add_argument("--savedmodel", metavar="BASE_OR_VERSION", help="query this export in-process")
where.add_argument("--rest", metavar="HOST:PORT", help="a running TF Serving's REST API")
where.add_argument("--grpc", metavar="HOST:PORT", help="a running TF Serving's gRPC API")
parser.add_argument("--model", default="fashion_vae", help="the model's name on the server")
parser.add_argument("--keras-file", default=os.path.join(
    pretrained.savedmodels_dir(), "mlp_fashion_mnist_grey", "model.keras"),
    help="the Keras model to export (default: the pretrained mlp_fashion_mnist_grey)")
parser.add_argument("--epochs", type=int, help="train a small model for this many epochs instead")
parser.add_argument("--quick", action="store_true", help="train a small model for 1 epoch instead")
parser.add_argument("--examples", type=int, default=100, help="test images to send")
parser.add_argument("--output", default=os.path.join("runs", "serving_example"))
args = parser.parse_args()
if args.quick:
    args.epochs, args.examples = 1, 16
if (args.epochs is not None and args.epochs <= 0) or args.examples <= 0:
    parser.error("--epochs and --examples must be positive")

(x_train, _), (x_test, _) = data.load_fashion_mnist()
x = x_test[: args.examples]

# ## A model to export
#
# Either the pretrained Keras file (loaded with `load_keras_model`, which
# refuses files that carry code) or a small model trained here. The export
# goes to `<output>/savedmodel/<version>/`, the layout TF Serving polls; each
# run adds a version.

if args.rest is None and args.grpc is None and args.savedmodel is None:
    if args.epochs is not None:
        vae = zoo.build("mlp_fashion_mnist", seed=0)
        vae.compile(optimizer=keras.optimizers.Adam(1e-3))
        vae.fit(x_train[:5000], epochs=args.epochs, batch_size=128, verbose=2)
    else:
        vae = pretrained.load_keras_model(args.keras_file, compile=False)
    version = kerasvae.export_saved_model(vae, os.path.join(args.output, "savedmodel"))
    print(f"exported {version}")
    args.savedmodel = version

# ## Three ways to call a signature
#
# In-process, a loaded SavedModel's `signatures[name](**inputs)` runs the
# graph TF Serving would run. Over the network, the clients' `predict` sends
# the same inputs by name and returns `{output name: np.ndarray}`.

if args.savedmodel is not None:
    path = args.savedmodel
    versions = kerasvae.export.existing_versions(path)
    if versions:  # a base path: its newest version, as TF Serving picks it
        path = os.path.join(path, str(versions[-1]))
    served = tf.saved_model.load(path)
    print(f"querying {path} in this process; signatures: {sorted(served.signatures)}")

    def call(name, inputs):
        outputs = served.signatures[name](**inputs)
        return {key: value.numpy() for key, value in outputs.items()}

else:
    if args.rest:
        host, _, port = args.rest.rpartition(":")
        client = serving.RESTClient(host.strip("[]"), int(port), model_name=args.model)
    else:
        client = serving.GRPCClient(args.grpc, model_name=args.model)
    print(f"querying {client!r}")

    # REST's columnar "inputs" format carries scalars (the row format cannot).
    options = {"format": "inputs"} if args.rest else {}

    def call(name, inputs):
        try:
            return client.predict(inputs, signature_name=name, **options)
        except serving.ServingError as e:
            raise SystemExit(f"{name}: the server refused the request: {e}") from None


def show(name, outputs):
    shapes = ", ".join(f"{key} {tuple(np.shape(value))}" for key, value in sorted(outputs.items()))
    print(f"  {name:15s} {shapes}")


# ## Query
#
# Scalars go in as NumPy scalars of the declared dtype (int32 num_samples,
# int64 seed); images as float32 (batch, 28, 28, 1) in [0, 1].

print("signatures:")
encoded = call("encode", {"x": x})
show("encode", encoded)
decoded = call("decode", {"z": encoded["z_mean"]})
show("decode", decoded)
reconstruction = call("reconstruct", {"x": x})["reconstruction"]
show("reconstruct", {"reconstruction": reconstruction})
first = call("sample_seeded", {"num_samples": np.int32(4), "seed": np.int64(7)})
second = call("sample_seeded", {"num_samples": np.int32(4), "seed": np.int64(7)})
show("sample_seeded", first)
elbo = call("elbo", {"x": x})
show("elbo", elbo)
prior = call("prior_log_prob", {"z": first["z"]})
show("prior_log_prob", prior)

# ## Checks a client can make
#
# The ELBO is reported per example: -ELBO = reconstruction term + KL term, a
# score that is high for images unlike the training data (see
# examples/anomaly_detection.py). For the N(0, I) prior, log p(z) =
# -(|z|^2 + d log 2 pi) / 2.

print("checks:")
print(f"  reconstruction mean squared error per pixel: {np.mean((reconstruction - x) ** 2):.5f}")
print(f"  same seed, same samples: {np.array_equal(first['samples'], second['samples'])}")
parts = elbo["reconstruction_loss"] + elbo["kl_loss"]
print(f"  mean -ELBO over {len(x)} images: {elbo['negative_elbo'].mean():.2f} nats; "
      f"largest |-ELBO - (reconstruction + KL)|: {np.max(np.abs(elbo['negative_elbo'] - parts)):.2e}")
z = first["z"]
closed_form = -0.5 * (np.sum(z**2, axis=1) + z.shape[1] * math.log(2 * math.pi))
print(f"  prior_log_prob against the N(0, I) closed form: largest difference "
      f"{np.max(np.abs(prior['log_prob'] - closed_form)):.2e}")
