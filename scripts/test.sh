#!/usr/bin/env bash
# Sets up (idempotent) and runs the test suite: everything on Keras/TensorFlow,
# then the backend-neutral tests again on Keras/JAX. Extra arguments go to pytest.
# Tests run in one worker process per CPU core (pytest-xdist; `-n 0` runs them
# in this process): most of a small test's time is single-threaded Python.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
# JAX (the JAX half, and the JAX subprocesses of the TF half): most of a tiny
# model test's time is XLA compiling it, and many tests compile the same
# programs. A compilation cache for this run (keyed by the program, so a hit is
# the same executable) and XLA's CPU code generation without LLVM optimization
# halve the hierarchical tests' time (121 s -> 62 s, 2 workers). The HLO
# programs are unchanged; only their machine code is less optimized.
jax_cache=$(mktemp -d)
trap 'rm -rf "$jax_cache"' EXIT
export JAX_COMPILATION_CACHE_DIR="$jax_cache" JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0 \
  JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES=0 XLA_FLAGS="${XLA_FLAGS:-} --xla_backend_optimization_level=0"
echo "== Keras on TensorFlow: the whole suite =="
.venv/bin/python -m pytest -n auto -m "not slow" "$@"
echo "== Keras on JAX: the backend-neutral tests (TF-only, once-per-suite and conv-variant tests deselected) =="
KERAS_BACKEND=jax .venv/bin/python -m pytest -n auto -m "not slow and not requires_tensorflow and not conv_variant" "$@"
