#!/usr/bin/env bash
# Install the whole stack into a virtual environment (default: .venv in the repo root).
#
#   scripts/install.sh                   install into $VENV (a stamp makes a second run a no-op)
#   scripts/install.sh --no-cache        the cold path, proven: a temporary venv, a temporary
#                                        mmcv wheel cache and no pip cache; installs everything,
#                                        builds mmcv, imports mmcv.ops, prints the times, and
#                                        removes the temporary venv (`make install-check`)
#   scripts/install.sh --build-env-only  create $VENV with the pinned build environment (tools +
#                                        torch), check it and run mmcv's metadata step; no
#                                        compilation (tests/test_install.py)
#
# Why a script and not just `pip install -e .`: mmcv 2.1.0 (the last release mmdet 3.3 accepts)
# exists on PyPI only as an sdist, and its ops must be compiled against the installed torch
# with a patched C++ standard (see ../shared/docs/STACK.md). The built wheel is cached under
# $HARNESS_WHEEL_CACHE keyed by mmcv/torch/python versions, so only the first install pays
# for the build (~7-15 min on 2 cores). Every pip call reads scripts/constraints.txt
# (PIP_CONSTRAINT), so no step can move setuptools or torch out from under the build.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"

MODE=install
case "${1:-}" in
  "") ;;
  --no-cache) MODE=check ;;
  --build-env-only) MODE=build-env ;;
  -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
  *) echo "[install] error: unknown option '$1' (expected --no-cache or --build-env-only)" >&2; exit 2 ;;
esac

VENV="${VENV:-.venv}"
PYTHON="${PYTHON:-python3}"
MMCV_VERSION="2.1.0"
CACHE="${HARNESS_WHEEL_CACHE:-$HOME/.cache/dcpnas-harness/wheels}"
export PIP_CONSTRAINT="$ROOT/scripts/constraints.txt"
export PIP_DISABLE_PIP_VERSION_CHECK=1

die() { echo "[install] error: $*" >&2; exit 1; }
now() { date +%s; }
T0="$(now)"

if [[ "$MODE" == check ]]; then
  # Nothing cached may help: new venv, new wheel cache, pip's own cache off.
  TMP="$(mktemp -d "${TMPDIR:-/tmp}/harness-install-check.XXXXXX")"
  trap 'rm -rf "$TMP"' EXIT
  VENV="$TMP/venv"; CACHE="$TMP/wheels"
  export PIP_NO_CACHE_DIR=1
  echo "[install] cold-path check: venv $VENV, wheel cache $CACHE, no pip cache"
fi

stamp_inputs() { cat scripts/install.sh scripts/check_build_env.py scripts/constraints.txt pyproject.toml; }
STAMP_HASH="$(stamp_inputs | sha256sum | cut -c1-16)"
STAMP="$VENV/.harness-installed-$STAMP_HASH"
if [[ "$MODE" == install && -f "$STAMP" ]]; then
  echo "[install] $VENV is up to date ($STAMP)"; exit 0
fi

[[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV"
VENV_BIN="$(cd "$VENV/bin" && pwd)"
PY="$VENV_BIN/python"
pip_() { "$PY" -m pip "$@"; }

echo "[install] build tools and torch (constraints: scripts/constraints.txt)"
pip_ install -q "pip>=24" setuptools wheel ninja
pip_ install -q torch torchvision

# The build environment, checked before anything compiles: one line naming what is wrong.
check_build_env() {
  "$PY" scripts/check_build_env.py || exit 1
  command -v "${CXX:-c++}" >/dev/null || die "no C++ compiler (${CXX:-c++}) on PATH; mmcv's ops need one"
}
check_build_env

PYTAG="$("$PY" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')"
TORCH_V="$("$PY" -c 'import torch; print(torch.__version__.split("+")[0])')"
WHEEL_DIR="$CACHE/mmcv-$MMCV_VERSION/torch$TORCH_V-$PYTAG"

# Download the sdist; pip prepares its metadata here (runs setup.py, which imports pkg_resources
# and, with MMCV_WITH_OPS=1, torch's extension builder), so a broken build env stops in seconds.
fetch_mmcv_source() {
  local dest="$1"
  echo "[install] mmcv $MMCV_VERSION sdist and its metadata step (no compilation)"
  ( cd "$dest" && PATH="$VENV_BIN:$PATH" MMCV_WITH_OPS=1 FORCE_CUDA=0 \
      "$PY" -m pip download -q --no-deps --no-build-isolation --no-binary :all: \
      "mmcv==$MMCV_VERSION" -d . ) \
    || die "mmcv $MMCV_VERSION's metadata step failed in $VENV (output above)"
  tar -xzf "$dest/mmcv-$MMCV_VERSION.tar.gz" -C "$dest"
}

if [[ "$MODE" == build-env ]]; then
  BUILD="$(mktemp -d)"; trap 'rm -rf "$BUILD"' EXIT
  fetch_mmcv_source "$BUILD"
  echo "[install] build environment ok ($(( $(now) - T0 )) s)"
  exit 0
fi

T_BUILD=0
if ! ls "$WHEEL_DIR"/mmcv-*.whl >/dev/null 2>&1; then
  echo "[install] building mmcv $MMCV_VERSION with CPU ops (first time on this machine: ~7-15 min)"
  TB="$(now)"
  BUILD="$(mktemp -d)"
  fetch_mmcv_source "$BUILD"
  SRC="$BUILD/mmcv-$MMCV_VERSION"
  # torch >= 2.10 headers need C++20; mmcv hard-codes c++14/c++17.
  sed -i -e 's/-std=c++14/-std=c++20/g' -e 's/-std=c++17/-std=c++20/g' "$SRC/setup.py"
  pip_ install -q opencv-python-headless addict yapf packaging
  check_build_env   # the line above must not have moved anything the build needs
  mkdir -p "$WHEEL_DIR.partial"
  ( cd "$SRC" && PATH="$VENV_BIN:$PATH" MMCV_WITH_OPS=1 FORCE_CUDA=0 \
      MAX_JOBS="${MAX_JOBS:-2}" "$PY" -m pip wheel -q --no-build-isolation --no-deps . \
      -w "$WHEEL_DIR.partial" )
  rm -rf "$WHEEL_DIR" && mv "$WHEEL_DIR.partial" "$WHEEL_DIR"   # atomic publish of the cache
  rm -rf "$BUILD"
  T_BUILD=$(( $(now) - TB ))
fi
echo "[install] mmcv from $WHEEL_DIR"
pip_ install -q "$WHEEL_DIR"/mmcv-*.whl

echo "[install] the rest of the stack + this package"
pip_ install -q -e ".[dev]"
"$PY" - <<'PY'
import mmcv, mmcv.ops, mmdet, mmengine, torchreid, torch, torchvision
from mmcv.ops import nms
import torch
boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 10.0, 10.0]])
kept = nms(boxes, torch.tensor([0.9, 0.8]), 0.5)[1]   # a compiled op actually runs
assert kept.tolist() == [0], kept
print(f"[install] ok: torch {torch.__version__}, torchvision {torchvision.__version__}, "
      f"mmcv {mmcv.__version__} (ops), mmdet {mmdet.__version__}, mmengine {mmengine.__version__}")
PY
T_ALL=$(( $(now) - T0 ))
if [[ "$MODE" == check ]]; then
  echo "[install] cold-path check passed: $(( T_ALL / 60 )) min $(( T_ALL % 60 )) s in all," \
       "of which the mmcv build $(( T_BUILD / 60 )) min $(( T_BUILD % 60 )) s"
  exit 0
fi
rm -f "$VENV"/.harness-installed-*
touch "$STAMP"
echo "[install] done in $(( T_ALL / 60 )) min $(( T_ALL % 60 )) s (mmcv build: $T_BUILD s)"
