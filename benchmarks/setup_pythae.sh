#!/usr/bin/env bash
# Idempotent set-up of the pythae baseline's own virtual environment:
# benchmarks/.venv-pythae with the CPU wheel of torch 2.13.0 and pythae 0.1.2.
#
#     bash benchmarks/setup_pythae.sh          # prints the venv's python when done
#
# pythae is installed with --no-deps and its requirements are listed here, so
# pip can never swap the CPU torch for a CUDA build while resolving pythae.
# A second run only checks the stamp (it reinstalls when this file changes).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.venv-pythae"
TORCH_SPEC="torch==2.13.0+cpu"   # the CPU build; PyPI's plain 2.13.0 pulls CUDA libraries
PYTHAE_SPEC="pythae==0.1.2"
# pythae 0.1.2's requirements (from its wheel metadata), minus torch:
PYTHAE_DEPS=("numpy>=1.19,<3" "scipy>=1.7.1" "scikit-learn" "pydantic>=2.0" "cloudpickle>=2.1.0"
             "imageio" "tqdm" "typing-extensions" "dataclasses>=0.6")

stamp="$venv/.setup-$(sha1sum "${BASH_SOURCE[0]}" | cut -c1-12)"
if [ -f "$stamp" ]; then
  echo "$venv/bin/python"
  exit 0
fi
[ -x "$venv/bin/python" ] || "${PYTHON:-python3}" -m venv "$venv"
pip=("$venv/bin/python" -m pip install -q)
if ! "${pip[@]}" "$TORCH_SPEC"; then
  echo "setup_pythae.sh: could not install $TORCH_SPEC (the CPU wheel). Put it in a" \
       "pip find-links folder, or install a CPU torch into $venv by hand." >&2
  exit 1
fi
"${pip[@]}" "${PYTHAE_DEPS[@]}"
"${pip[@]}" --no-deps "$PYTHAE_SPEC"
# Refuse a CUDA torch: the comparison is CPU against CPU.
"$venv/bin/python" - <<'PY'
import importlib.metadata as md, sys
import torch, pythae
cuda = [d.metadata["Name"] for d in md.distributions() if d.metadata["Name"].lower().startswith("nvidia-")]
if cuda or torch.version.cuda:
    sys.exit(f"setup_pythae.sh: a CUDA torch crept in ({torch.__version__}, {cuda}); remove {sys.prefix}")
print(f"torch {torch.__version__}, pythae {pythae.__version__ if hasattr(pythae, '__version__') else md.version('pythae')}", file=sys.stderr)
PY
rm -f "$venv"/.setup-*
touch "$stamp"
echo "$venv/bin/python"
