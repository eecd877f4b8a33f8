#!/usr/bin/env bash
# Sets up (idempotent) and runs the test suite: everything on Keras/TensorFlow,
# then the backend-neutral tests again on Keras/JAX. Extra arguments go to pytest.
# Tests run in one worker process per CPU core (pytest-xdist; `-n 0` runs them
# in this process): most of a small test's time is single-threaded Python.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
echo "== Keras on TensorFlow: the whole suite =="
.venv/bin/python -m pytest -n auto -m "not slow" "$@"
echo "== Keras on JAX: the backend-neutral tests (TF-only, once-per-suite and conv-variant tests deselected) =="
KERAS_BACKEND=jax .venv/bin/python -m pytest -n auto -m "not slow and not requires_tensorflow and not conv_variant" "$@"
