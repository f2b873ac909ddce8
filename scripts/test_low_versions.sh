#!/usr/bin/env bash
# The model tier on the LOWEST supported transformers + torch pair, in a second venv:
#
#   scripts/test_low_versions.sh [VENV_DIR]     default: $FVS_LOW_VENV or /tmp/fvs_venv_low
#
# Why: the package says torch>=2.2 and transformers>=4.56 (a Jetson on JetPack 6 has NVIDIA's
# torch 2.2-2.5, and transformers 5 disables torch older than 2.6, so such a board runs
# transformers 4.56-4.57). Main CI tests the newest versions; this proves the lower bounds.
# The venv lies outside the repository and is kept: the first run downloads torch with its
# CUDA libraries (PyPI has no CPU-only torch 2.2: 5.3 GB installed, 4.5 min on 2 busy cores
# with a warm pip cache), later runs reuse it
# (pip only checks the pins, a few seconds), then the model tests take about 15 s on 2 cores.
# numpy<2 and opencv<4.11: torch 2.2 was built against numpy 1.x.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${1:-${FVS_LOW_VENV:-/tmp/fvs_venv_low}}
PYTHON=${PYTHON:-python3}
LOW_TORCH=${LOW_TORCH:-2.2.2}
LOW_TRANSFORMERS=${LOW_TRANSFORMERS:-4.56.0}
MODEL_TESTS=(
    test/test_models_unit.py test/test_models_v1.py test/test_models_llava.py
    test/test_models_prompt.py test/test_models_preprocess.py test/test_models_v1_config.py
    test/test_models_bench.py test/test_engine_model.py test/test_budget_model.py
    test/test_models_qwen2_vl.py test/test_models_qwen_vision.py
)

if [ ! -x "$VENV/bin/python" ]; then
    echo "low-versions: creating $VENV with $($PYTHON --version 2>&1)"
    "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q "torch==$LOW_TORCH" "transformers==$LOW_TRANSFORMERS" \
    'numpy<2' 'opencv-python-headless<4.11' pillow sentencepiece protobuf pyyaml safetensors \
    pytest pytest-timeout hypothesis
"$VENV/bin/python" -c 'import torch, transformers
print(f"low-versions: torch {torch.__version__}, transformers {transformers.__version__}")'
cd "$ROOT"
# From the repository root: its flash_vstream_ros/ comes first (nothing is installed here).
HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 "$VENV/bin/python" -m pytest -p no:cacheprovider \
    "${MODEL_TESTS[@]}"
