"""The matmul cap of the MLP benchmark: its matrix products alone, timed with PyTorch/MKL.

One training step of the 784-512-16 VAE of `compare_speed.py` at batch 128 is
eleven matrix products: forward, weight gradients and input gradients (none for
the data). This times them alone, with nothing else of a step (no elementwise
ops, no loss, no optimizer update), on 1 and 2 threads, best of 5 rounds of 200
batches, and prints the GFLOP/s and the images per second they allow: no
float32 training step of this model can go faster here.

Runs in the baseline's environment (`bash benchmarks/setup_pythae.sh`):

    benchmarks/.venv-pythae/bin/python benchmarks/matmul_cap.py
"""

import time

import torch

BATCH = 128
SHAPES = [  # (m, k, n) of an (m, k) @ (k, n) product
    (BATCH, 784, 512), (BATCH, 512, 32), (BATCH, 16, 512), (BATCH, 512, 784),  # forward
    (784, BATCH, 512), (512, BATCH, 32), (16, BATCH, 512), (512, BATCH, 784),  # weight gradients
    (BATCH, 32, 512), (BATCH, 512, 16), (BATCH, 784, 512),  # input gradients
]


def main():
    macs = sum(m * k * n for m, k, n in SHAPES)
    print(f"{macs / BATCH / 1e6:.2f} M multiply-adds per image, batch {BATCH}")
    for threads in (1, 2):
        torch.set_num_threads(threads)
        pairs = [(torch.randn(m, k), torch.randn(k, n)) for m, k, n in SHAPES]
        for _ in range(50):  # warm-up
            for a, b in pairs:
                a @ b
        best = float("inf")
        for _ in range(5):
            start = time.perf_counter()
            for _ in range(200):
                for a, b in pairs:
                    a @ b
            best = min(best, (time.perf_counter() - start) / 200)
        print(f"{threads} thread(s): {2 * macs / best / 1e9:.1f} GFLOP/s, cap {BATCH / best:.0f} images/s")


if __name__ == "__main__":
    main()
