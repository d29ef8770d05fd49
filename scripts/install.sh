#!/usr/bin/env bash
# One install path for the README, CI and the Docker image.
#   scripts/install.sh [--test]     installs the project (with --test: the `test` and `eval` extras) into $VENV
#                                   (default .venv); without extras it is what `serve` and `segment` need
#   EXTRAS=ray scripts/install.sh   adds optional extras (comma-separated; `ray`: the Ray backend; `eval`:
#                                   evaluation, benchmarks and plots)
# If torch is already importable in the target Python (e.g. the CUDA base image), it is kept; otherwise
# the pinned CPU build is installed first so pip never pulls a multi-GB CUDA build by accident.
set -euo pipefail
cd "$(dirname "$0")/.."
wanted="${EXTRAS:-}"
[ "${1:-}" = "--test" ] && wanted="test,eval${wanted:+,$wanted}"
extras="${wanted:+[$wanted]}"
if [ "${VENV:-.venv}" != "system" ]; then
  VENV="${VENV:-.venv}"
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  PY="$VENV/bin/python"
else
  PY=python3
fi
"$PY" -m pip install -q --upgrade pip >/dev/null
if ! "$PY" -c "import torch" 2>/dev/null; then
  "$PY" -m pip install -q "torch==${TORCH_VERSION:-2.13.0}"
fi
"$PY" -m pip install -q -e ".${extras}"
