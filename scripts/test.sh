#!/usr/bin/env bash
# Sets up (idempotent) and runs the test suite: everything on Keras/TensorFlow,
# then the backend-neutral tests again on Keras/JAX. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
echo "== Keras on TensorFlow: the whole suite =="
.venv/bin/python -m pytest -m "not slow" "$@"
echo "== Keras on JAX: the backend-neutral tests (TF-only export/serving tests deselected) =="
KERAS_BACKEND=jax .venv/bin/python -m pytest -m "not slow and not requires_tensorflow" "$@"
