#!/usr/bin/env bash
# Trains every zoo preset on the full Fashion-MNIST training set and exports
# the SavedModels committed under savedmodels/. Resumable: rerun after an
# interruption and each run continues from its last finished epoch.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
presets=${*:-"mlp_fashion_mnist conv_fashion_mnist mlp_full_cov_fashion_mnist"}
for preset in $presets; do
  .venv/bin/python -m kerasvae train --preset "$preset" --output "runs/$preset" \
    --export-dir "savedmodels/$preset" --nll-examples 10000
  .venv/bin/python -c "import sys, kerasvae; kerasvae.pretrained.publish(*sys.argv[1:])" "runs/$preset" "$preset"
done
