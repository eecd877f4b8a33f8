"""Serving latency of an exported kerasvae model beside the Keras model, in the same process.

Builds the `mlp_fashion_mnist` preset (untrained weights: latency does not depend on them),
exports it with `kerasvae.export_saved_model` to a temporary folder, loads it back with
`tf.saved_model.load`, and times, on Fashion-MNIST test images:

- the exported signatures `reconstruct` and `serving_default` (`loaded.signatures[name](x=...)`),
  and the restored endpoint function `loaded.reconstruct(x)`;
- the exported `elbo` signature (per-image negative ELBO, one seeded draw) beside the same
  `model.negative_elbo` traced here and called eagerly;
- the same reconstruct graph traced here without the in-graph input check, to show what the
  check costs (`--no-check-variant` leaves it out);
- the Keras model's `predict(x)`, `predict_on_batch(x)` and `__call__(x)` (eager).

Latency: p50/p99 of single calls at batch 1 (each call timed alone, input already a tensor,
outputs fetched to NumPy), and the process CPU time per call (all threads), which on a loaded
machine shows the work a call costs when wall times mostly show waiting for a core.
Throughput: images/s at batch 256. The methods are timed in
alternated rounds so that load from other processes falls on all of them alike.

    .venv/bin/python benchmarks/serving_latency.py [--calls 1000] [--rounds 5]
"""

import argparse
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # this checkout's kerasvae

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402


def percentile(values, q):
    return float(np.percentile(np.asarray(values) * 1e3, q))


def build_methods(model, loaded, check_variant):
    import tensorflow as tf

    from kerasvae import export

    reconstruct_sig = loaded.signatures["reconstruct"]
    default_sig = loaded.signatures["serving_default"]
    elbo_sig = loaded.signatures["elbo"]
    methods = {
        "signature reconstruct": lambda x: reconstruct_sig(x=x)["reconstruction"].numpy(),
        "signature serving_default": lambda x: default_sig(x=x)["reconstruction"].numpy(),
        "loaded.reconstruct (restored fn)": lambda x: loaded.reconstruct(x)["reconstruction"].numpy(),
    }
    if check_variant:
        spec = tf.TensorSpec((None,) + tuple(model.data_shape), tf.float32)

        @tf.function(input_signature=[spec])
        def unchecked(x):
            return {"reconstruction": model.reconstruct(x)}

        @tf.function(input_signature=[spec])
        def checked(x):
            return {"reconstruction": model.reconstruct(export._checked(x, model.data_shape, "x"))}

        methods["in-process tf.function, with check"] = lambda x: checked(x)["reconstruction"].numpy()
        methods["in-process tf.function, no check"] = lambda x: unchecked(x)["reconstruction"].numpy()
    methods["keras predict"] = lambda x: model.predict(x, verbose=0)
    methods["keras predict_on_batch"] = lambda x: model.predict_on_batch(x)
    methods["keras __call__ (eager)"] = lambda x: model(x).numpy()

    @tf.function(input_signature=[tf.TensorSpec((None,) + tuple(model.data_shape), tf.float32)])
    def negative_elbo(x):
        return model.negative_elbo(x)

    methods["signature elbo"] = lambda x: elbo_sig(x=x)["negative_elbo"].numpy()
    methods["in-process tf.function, negative_elbo"] = lambda x: negative_elbo(x)["negative_elbo"].numpy()
    methods["model.negative_elbo (eager)"] = lambda x: model.negative_elbo(x)["negative_elbo"].numpy()
    return methods


def time_calls(fn, x, calls):
    """Wall time of each call, and the process CPU time per call over the block."""
    out = []
    cpu = time.process_time()
    for _ in range(calls):
        start = time.perf_counter()
        fn(x)
        out.append(time.perf_counter() - start)
    return out, (time.process_time() - cpu) / calls


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=1000, help="batch-1 calls per method, over all rounds")
    parser.add_argument("--predict-calls", type=int, default=50,
                        help="batch-1 calls of keras predict (about 0.1-0.5 s each), over all rounds")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch-calls", type=int, default=50, help="batch-256 calls per method, over all rounds")
    parser.add_argument("--no-check-variant", action="store_true")
    args = parser.parse_args()

    import keras
    import tensorflow as tf

    import kerasvae
    from kerasvae import data, zoo

    (_, _), (x_test, _) = data.load_fashion_mnist()
    model = zoo.build("mlp_fashion_mnist", seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        path = kerasvae.export_saved_model(model, os.path.join(tmp, "mlp"))
        loaded = tf.saved_model.load(path)
        methods = build_methods(model, loaded, not args.no_check_variant)
        x1 = tf.constant(x_test[:1])
        x256 = tf.constant(x_test[:256])
        references = {
            "model.reconstruct": model.reconstruct(x_test[:256]).numpy(),
            "model.negative_elbo": model.negative_elbo(x_test[:256])["negative_elbo"].numpy(),
        }
        for name, fn in methods.items():  # warm-up, tracing, and a check that all agree
            for _ in range(20):
                fn(x1)
            got = fn(x256)
            what = "model.negative_elbo" if "elbo" in name else "model.reconstruct"
            reference = references[what]
            if not np.allclose(got, reference, rtol=1e-5, atol=1e-4):
                raise AssertionError(f"{name} disagrees with {what}: max diff {np.abs(got - reference).max()}")
        lat = {name: [] for name in methods}
        thr = {name: [] for name in methods}
        cpu = {name: [] for name in methods}
        loads = []
        for _ in range(args.rounds):
            loads.append(os.getloadavg()[0])
            for name, fn in methods.items():
                calls = args.predict_calls if name == "keras predict" else args.calls
                wall, cpu_per_call = time_calls(fn, x1, max(1, calls // args.rounds))
                lat[name] += wall
                cpu[name].append(cpu_per_call)
                thr[name] += time_calls(fn, x256, max(1, args.batch_calls // args.rounds))[0]

    print(
        f"mlp_fashion_mnist, TF {tf.__version__}, Keras {keras.__version__}, "
        f"{os.cpu_count()} CPUs, 1-min load average {statistics.median(loads):.1f} (median over rounds)"
    )
    print()
    print("| method | batch 1 p50 ms | batch 1 p99 ms | batch 1 CPU ms/call | batch 256 images/s |")
    print("|---|---|---|---|---|")
    for name in methods:
        print(
            f"| {name} | {percentile(lat[name], 50):.3f} | {percentile(lat[name], 99):.3f} | "
            f"{1e3 * statistics.median(cpu[name]):.3f} | {256 / statistics.median(thr[name]):.0f} |"
        )


if __name__ == "__main__":
    main()
