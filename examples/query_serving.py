"""
Title: Query a served VAE over REST or gRPC
Description: The client side of TF Serving: reconstruct test images and draw
seeded samples with `kerasvae.serving.RESTClient` and `GRPCClient`.

`examples/train_fashion_mnist.py` exports a SavedModel and prints the command
that serves it. With a server running, point this script at it:

```
python examples/query_serving.py --rest localhost:8501 --model fashion_vae
python examples/query_serving.py --grpc localhost:8500 --model fashion_vae
```

Without a TF Serving binary, `--local` serves an export from this process
instead, on 127.0.0.1 only, with the stand-ins the tests use
(`tests/serving_fakes.py`, so run it from a checkout of the repository), and
queries it over both protocols:

```
python examples/query_serving.py --local runs/example/savedmodel
```

For each protocol it prints the shapes that come back, the mean
reconstruction error on Fashion-MNIST test images, and whether the same seed
gives the same samples.
"""

# ## Setup

import argparse
import contextlib
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from kerasvae import data, serving  # noqa: E402

parser = argparse.ArgumentParser(description="Query a kerasvae export served by TF Serving.")
where = parser.add_mutually_exclusive_group(required=True)
where.add_argument("--rest", metavar="HOST:PORT", help="TF Serving's REST API, e.g. localhost:8501")
where.add_argument("--grpc", metavar="HOST:PORT", help="TF Serving's gRPC API, e.g. localhost:8500")
where.add_argument(
    "--local",
    metavar="SAVEDMODEL_BASE",
    help="serve this export folder (numbered versions inside) from this process, on 127.0.0.1",
)
parser.add_argument("--model", default="fashion_vae", help="the model's name on the server")
parser.add_argument("--examples", type=int, default=100, help="test images to reconstruct")
parser.add_argument("--seed", type=int, default=0)
args = parser.parse_args()
if args.examples <= 0:
    parser.error("--examples must be positive")


def split_host_port(text):
    """`"host:port"` (or `"[::1]:port"`) -> `(host, port)`."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        parser.error(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


# ## Data
#
# The first test images, float32 in [0, 1] with shape (n, 28, 28, 1): the
# input the export's `x` expects.

(_, _), (x_test, _) = data.load_fashion_mnist()
x = x_test[: args.examples]
print(f"test images {x.shape}")

# ## Connect
#
# `RESTClient` speaks JSON over HTTP (port 8501 by default) and `GRPCClient`
# protocol buffers (port 8500); both have one method per signature and
# return `{output name: np.ndarray}`. In `--local` mode both fake servers
# share one repository of loaded models; the `ExitStack` stops them at the end.

with contextlib.ExitStack() as stack:
    clients = {}
    if args.rest:
        host, port = split_host_port(args.rest)
        clients["REST"] = serving.RESTClient(host, port, model_name=args.model)
    elif args.grpc:
        clients["gRPC"] = serving.GRPCClient(args.grpc, model_name=args.model)
    else:
        # The stand-ins live with the tests, not in the package: import them
        # from the checkout this script sits in.
        sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        from tests import serving_fakes

        repository = serving_fakes.ModelRepository({args.model: args.local})
        rest = stack.enter_context(serving_fakes.FakeRESTServer(repository))
        grpc = stack.enter_context(serving_fakes.FakeGRPCServer(repository))
        print(f"serving {args.local} as {args.model!r}: REST {rest.url}, gRPC {grpc.target}")
        clients["REST"] = serving.RESTClient("127.0.0.1", rest.port, model_name=args.model)
        clients["gRPC"] = serving.GRPCClient(grpc.target, model_name=args.model)
    for client in clients.values():
        stack.enter_context(client)

    # ## Query
    #
    # `reconstruct` decodes the posterior mean of each image (deterministic);
    # `sample_seeded` decodes draws from the prior and returns the same draws
    # for the same seed. A refused request raises `ServingError` with the
    # server's own message.

    results = {}
    for protocol, client in clients.items():
        try:
            reconstruction = client.reconstruct(x)["reconstruction"]
            first = client.sample_seeded(8, seed=args.seed)
            second = client.sample_seeded(8, seed=args.seed)
        except serving.ServingError as e:
            raise SystemExit(f"{protocol}: the request failed: {e}") from None
        error = float(np.mean((reconstruction - x) ** 2))
        print(f"{protocol} ({client!r}):")
        print(f"  reconstruct    reconstruction {reconstruction.shape} {reconstruction.dtype}")
        print(f"                 mean squared error per pixel {error:.5f}")
        print(f"  sample_seeded  samples {first['samples'].shape}, z {first['z'].shape}")
        same = np.array_equal(first["samples"], second["samples"])
        print(f"                 same seed, same samples: {same}")
        results[protocol] = reconstruction

    if len(results) == 2:
        difference = np.max(np.abs(results["REST"] - results["gRPC"]))
        print(f"REST and gRPC reconstructions differ by at most {difference:.2e}")
