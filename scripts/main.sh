#!/usr/bin/env bash
# Sets up (idempotent), then trains a VAE on the real Fashion-MNIST training set,
# evaluates it on the test set and exports a SavedModel for TF Serving.
# Resumable and quick to rerun: a finished run is reloaded, not retrained.
# Extra arguments go to `python -m kerasvae train` (e.g. --preset conv_fashion_mnist).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
.venv/bin/python -m kerasvae train --preset mlp_fashion_mnist "$@"
