# Sourced by the other scripts: idempotent set-up on a fresh Debian machine.
# - the Fashion-MNIST files from Debian's dataset-fashion-mnist package;
# - a virtual environment in .venv with kerasvae and its test extras.
# A second run only checks (the venv is reinstalled when setup.py changes).
if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] && [ -z "${KERASVAE_DATA_DIR:-}" ]; then
  sudo_cmd=""; [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq dataset-fashion-mnist
fi
[ -x .venv/bin/python ] || "${PYTHON:-python3}" -m venv .venv
_stamp=".venv/.kerasvae-setup-$(sha1sum setup.py | cut -c1-12)"
if [ ! -f "$_stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e ".[test]"
  rm -f .venv/.kerasvae-setup-*
  touch "$_stamp"
fi
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
