"""Training-step time of IWAE (K = 5, standard and DReG) against the plain VAE.

The same networks (the `mlp_fashion_mnist` preset's: Dense 784-512-256,
16-d latent; or `--network conv`) train as a VAE and as an IWAE. Each
backend runs in its own process; within it the three models are timed in
turn for `--rounds` rounds and the fastest round of each is kept, so a busy
machine slows all three alike. Prints wall-clock ms per step (batch 128,
Adam, after a warm-up) and the ratio to the VAE step of the same backend;
then the same ratios in process CPU time (all threads), steadier than wall
time on a machine shared with other jobs.

    .venv/bin/python benchmarks/iwae_step_time.py [--network mlp|conv] [--steps 50] [--rounds 3]
"""

import argparse
import json
import os
import subprocess
import sys

CHILD = r"""
import json, sys, time
import numpy as np, keras
from kerasvae import zoo
from kerasvae.models import IWAE, VAE
network, steps, batch, rounds, k = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
preset = {"mlp": "mlp_fashion_mnist", "conv": "conv_fashion_mnist"}[network]
x = np.random.default_rng(0).random((steps * batch, 28, 28, 1), dtype=np.float32)

def make(kind):
    base = zoo.build(preset, seed=0)
    if kind == "vae":
        model = base
    else:
        model = IWAE(base.encoder, base.decoder, num_samples=k, gradient_estimator=kind, seed=0)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    model.fit(x[: 5 * batch], epochs=1, batch_size=batch, verbose=0)  # compile and warm up
    return model

models = {kind: make(kind) for kind in ("vae", "standard", "dreg")}
best = {kind: [float("inf"), float("inf")] for kind in models}
for _ in range(rounds):
    for kind, model in models.items():
        wall, cpu = time.perf_counter(), time.process_time()
        model.fit(x, epochs=1, batch_size=batch, verbose=0, shuffle=False)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        best[kind] = [min(best[kind][0], 1000 * wall / steps), min(best[kind][1], 1000 * cpu / steps)]
print(json.dumps(best))
"""


def measure(backend, args):
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    command = [sys.executable, "-c", CHILD, args.network, str(args.steps), str(args.batch_size),
               str(args.rounds), str(args.num_samples)]
    out = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--network", choices=["mlp", "conv"], default="mlp")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--num-samples", type=int, default=5)
    args = parser.parse_args()
    k = args.num_samples
    print(f"{args.network} networks, batch {args.batch_size}, ms per step (fastest of {args.rounds} rounds)")
    print(f"{'backend':12s} {'VAE (baseline)':>15s} {f'IWAE K={k}':>11s} {'ratio':>6s} {f'DReG K={k}':>11s} {'ratio':>6s}")
    cpu = {}
    for backend in ("tensorflow", "jax"):
        ms = measure(backend, args)
        vae, std, dreg = (ms[kind][0] for kind in ("vae", "standard", "dreg"))
        cpu[backend] = [ms[kind][1] for kind in ("vae", "standard", "dreg")]
        print(f"{backend:12s} {vae:15.2f} {std:11.2f} {std / vae:5.2f}x {dreg:11.2f} {dreg / vae:5.2f}x")
    print("CPU time per step (ms), same runs:")
    for backend, (vae, std, dreg) in cpu.items():
        print(f"{backend:12s} {vae:15.2f} {std:11.2f} {std / vae:5.2f}x {dreg:11.2f} {dreg / vae:5.2f}x")


if __name__ == "__main__":
    main()
