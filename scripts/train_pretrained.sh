#!/usr/bin/env bash
# Regenerates every model under savedmodels/ from scratch. Resumable: rerun
# after an interruption and each run continues from its last finished epoch.
#
# 1. Binarized Fashion-MNIST under the standard protocol (kerasvae/protocol.py):
#    trained on Keras/JAX (the dense families train about twice as fast there),
#    evaluated with K = 5000 on Keras/TensorFlow (about 1.7x faster than JAX there,
#    benchmarks/RESULTS.md), exported from Keras/TensorFlow as <preset>_binarized.
# 2. The grey-level plain VAEs (Bernoulli on grey levels; not comparable with
#    published binarized results), trained by `kerasvae train`.
#
# Usage: ./scripts/train_pretrained.sh [binarized|grey] [PRESET ...]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
which=${1:-all}
shift || true
# The epochs each shipped binarized model was trained for (early stopping may
# end a run sooner); MAX_EPOCHS overrides them all, e.g. to continue a run.
declare -A EPOCHS=([vae_gated_mlp]=1100 [beta_vae_mlp]=200 [cvae_mlp]=200 [iwae_mlp]=200 [vampprior_mlp]=600 [hvae_mlp]=780)
if [ "$which" = all ] || [ "$which" = binarized ]; then
  presets=${*:-"vae_gated_mlp beta_vae_mlp cvae_mlp iwae_mlp vampprior_mlp hvae_mlp"}
  for preset in $presets; do
    run="runs/protocol/$preset"
    KERAS_BACKEND=jax .venv/bin/python -m kerasvae.protocol train "$preset" "$run" \
      --max-epochs "${MAX_EPOCHS:-${EPOCHS[$preset]:-400}}"
    [ -f "$run/metrics.json" ] && [ "$run/metrics.json" -nt "$run/best.keras" ] ||
      KERAS_BACKEND=tensorflow .venv/bin/python -m kerasvae.protocol evaluate "$run"
    KERAS_BACKEND=tensorflow .venv/bin/python -c \
      "import sys, kerasvae; print(kerasvae.pretrained.publish_binarized(*sys.argv[1:]))" "$run" "${preset}_binarized"
  done
fi
if [ "$which" = all ] || [ "$which" = grey ]; then
  presets=${*:-"mlp_fashion_mnist conv_fashion_mnist mlp_full_cov_fashion_mnist"}
  for preset in $presets; do
    .venv/bin/python -m kerasvae train --preset "$preset" --output "runs/$preset" \
      --export-dir "savedmodels/${preset}_grey" --nll-examples 10000
    .venv/bin/python -c "import sys, kerasvae; kerasvae.pretrained.publish(*sys.argv[1:])" "runs/$preset" "${preset}_grey"
  done
fi
