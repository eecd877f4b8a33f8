"""Time and peak memory of the K = 5000 importance-sampled NLL, TensorFlow beside JAX.

The protocol's test figure (`kerasvae.protocol.evaluate`) decodes K = 5000
latents for each of the 10,000 test images. Each backend runs in its own
process on the first `--examples` binarized test images; the time is
extrapolated to 10,000 images (the estimator's cost is linear in the images).
A second child per backend runs K = 500 so that the peak memory of the two
values of K can be set side by side: the draws go through the decoder in
chunks, so memory must not grow with K.

Also printed: the decoder's arithmetic (multiply-adds per latent, counted from
its Dense and gated layers' kernels) and the rate it ran at, to show how far
the estimator is from this CPU's arithmetic floor.

    .venv/bin/python benchmarks/nll_eval_time.py [--model savedmodels/NAME/model.keras] [--examples 200]
"""

import argparse
import json
import os
import subprocess
import sys

CHILD = r"""
import json, resource, sys, time
import numpy as np, keras
from kerasvae import evaluation, protocol
path, examples, k = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
model = keras.saving.load_model(path)
x = protocol.binarized_splits()["test"][0][:examples]
evaluation.importance_sampled_log_likelihood(model, x[:100], num_samples=100, seed=1)  # compile
start = time.perf_counter()
log_px = evaluation.importance_sampled_log_likelihood(model, x, num_samples=k, seed=0)
seconds = time.perf_counter() - start
macs = sum(int(np.prod(w.shape)) for w in model.decoder.weights if len(w.shape) == 2)
print(json.dumps({
    "seconds": seconds,
    "nll": float(-log_px.mean()),
    "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "decoder_macs": macs,
}))
"""


def measure(backend, model, examples, num_samples):
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    command = [sys.executable, "-c", CHILD, model, str(examples), str(num_samples)]
    out = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="savedmodels/vae_gated_mlp_binarized/model.keras")
    parser.add_argument("--examples", type=int, default=200)
    parser.add_argument("--num-samples", type=int, default=5000)
    args = parser.parse_args()
    print(f"{args.model}: K = {args.num_samples} on {args.examples} binarized test images; "
          f"memory also at K = {args.num_samples // 10}")
    print("| backend | s per 100 images | 10k images (min) | decoder GFLOP/s | peak RSS MiB, "
          f"K={args.num_samples} | K={args.num_samples // 10} | NLL |")
    print("|---|---|---|---|---|---|---|")
    for backend in ("tensorflow", "jax"):
        big = measure(backend, args.model, args.examples, args.num_samples)
        small = measure(backend, args.model, args.examples, args.num_samples // 10)
        per_100 = 100 * big["seconds"] / args.examples
        flops = 2 * big["decoder_macs"] * args.num_samples * args.examples / big["seconds"] / 1e9
        print(f"| {backend} | {per_100:.2f} | {per_100 * 100 / 60:.1f} | {flops:.0f} | "
              f"{big['peak_rss_mib']:.0f} | {small['peak_rss_mib']:.0f} | {big['nll']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
