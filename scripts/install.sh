#!/usr/bin/env bash
# Install the whole stack into a virtual environment (default: .venv in the repo root).
#
# Why a script and not just `pip install -e .`: mmcv 2.1.0 (the last release mmdet 3.3 accepts)
# exists on PyPI only as an sdist, and its ops must be compiled against the installed torch
# with a patched C++ standard (see ../shared/docs/STACK.md). The built wheel is cached under
# $HARNESS_WHEEL_CACHE keyed by mmcv/torch/python versions, so only the first install pays
# for the build (~7-15 min on 2 cores). A stamp file makes a second run a no-op.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${VENV:-.venv}"
PYTHON="${PYTHON:-python3}"
TORCH_SPEC="torch==2.14.1 torchvision==0.29.1"
MMCV_VERSION="2.1.0"
CACHE="${HARNESS_WHEEL_CACHE:-$HOME/.cache/dcpnas-harness/wheels}"

stamp_inputs() { cat scripts/install.sh pyproject.toml; }
STAMP_HASH="$(stamp_inputs | sha256sum | cut -c1-16)"
STAMP="$VENV/.harness-installed-$STAMP_HASH"
if [[ -f "$STAMP" ]]; then
  echo "[install] $VENV is up to date ($STAMP)"; exit 0
fi

[[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV"
# shellcheck disable=SC1091
source "$VENV/bin/activate"
export PIP_DISABLE_PIP_VERSION_CHECK=1
python -m pip install -q "pip>=24" "setuptools<80" wheel ninja
echo "[install] torch ($TORCH_SPEC)"
python -m pip install -q $TORCH_SPEC

PYTAG="$(python -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')"
TORCH_V="$(python -c 'import torch; print(torch.__version__.split("+")[0])')"
WHEEL_DIR="$CACHE/mmcv-$MMCV_VERSION/torch$TORCH_V-$PYTAG"
if ! ls "$WHEEL_DIR"/mmcv-*.whl >/dev/null 2>&1; then
  echo "[install] building mmcv $MMCV_VERSION with CPU ops (first time on this machine: ~7-15 min)"
  BUILD="$(mktemp -d)"
  python -m pip download -q --no-deps --no-build-isolation --no-binary :all: "mmcv==$MMCV_VERSION" -d "$BUILD"
  tar -xzf "$BUILD"/mmcv-"$MMCV_VERSION".tar.gz -C "$BUILD"
  SRC="$BUILD/mmcv-$MMCV_VERSION"
  # torch >= 2.10 headers need C++20; mmcv hard-codes c++14/c++17.
  sed -i -e 's/-std=c++14/-std=c++20/g' -e 's/-std=c++17/-std=c++20/g' "$SRC/setup.py"
  python -m pip install -q opencv-python-headless addict yapf packaging
  mkdir -p "$WHEEL_DIR.partial"
  ( cd "$SRC" && MMCV_WITH_OPS=1 FORCE_CUDA=0 MAX_JOBS="${MAX_JOBS:-2}" \
      python -m pip wheel -q --no-build-isolation --no-deps . -w "$WHEEL_DIR.partial" )
  rm -rf "$WHEEL_DIR" && mv "$WHEEL_DIR.partial" "$WHEEL_DIR"   # atomic publish of the cache
  rm -rf "$BUILD"
fi
echo "[install] mmcv from $WHEEL_DIR"
python -m pip install -q "$WHEEL_DIR"/mmcv-*.whl

echo "[install] the rest of the stack + this package"
python -m pip install -q -e ".[dev]"
python - <<'PY'
import mmcv, mmcv.ops, mmdet, mmengine, torchreid, torch, torchvision
from mmcv.ops import nms
print(f"[install] ok: torch {torch.__version__}, torchvision {torchvision.__version__}, "
      f"mmcv {mmcv.__version__} (ops), mmdet {mmdet.__version__}, mmengine {mmengine.__version__}")
PY
rm -f "$VENV"/.harness-installed-*
touch "$STAMP"
