#!/usr/bin/env bash
# Create (or reuse) the local virtual environment and install the project with its test and tracking extras
# (and the metrics extra's torch-fidelity, without its dependencies).
# torch is installed first, pinned (TORCH_SPEC, default torch==2.13.0: the CPU build on the CI
# machine); on a GPU machine install your own CUDA build of torch first and it is kept.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${VENV:-.venv}"
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"

if [ ! -x "$VENV/bin/python" ]; then
  echo "==> creating virtual environment $VENV with $($PYTHON --version)"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
fi

stamp="$VENV/.imagerlhf-installed"
want="$(cat pyproject.toml scripts/bootstrap.sh | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  if ! "$VENV/bin/python" -c "import torch" >/dev/null 2>&1; then
    echo "==> installing $TORCH_SPEC"
    "$VENV/bin/python" -m pip install --quiet "$TORCH_SPEC"
  fi
  echo "==> installing the project and its test and tracking extras"
  "$VENV/bin/python" -m pip install --quiet -e ".[test,tracking]"
  # The metrics extra's torch-fidelity without its dependencies: they are installed already but for torchvision,
  # which its FID Inception does not need and whose PyPI build cannot load beside the CPU torch (pyproject.toml).
  fidelity="$(grep -o 'torch-fidelity==[0-9.]*' pyproject.toml | head -n1)"
  echo "==> installing $fidelity (no dependencies)"
  "$VENV/bin/python" -m pip install --quiet --no-deps "$fidelity"
  echo "$want" > "$stamp"
fi
