#!/usr/bin/env bash
# The colcon path, smoke-tested: build this package with colcon (from PyPI) in a throwaway
# workspace against the ROS 2 wheels of a venv, then import the generated interfaces and the
# Python package from the workspace's install/ (not from the venv's pip install).
#
#   scripts/colcon_smoke.sh [VENV_DIR]     default: .venv (must have the ros-* wheels)
#
# colcon-common-extensions goes into its own venv (COLCON_VENV, default build/colcon_venv): it
# only orchestrates CMake, which generates with the VENV's interpreter (-DPython3_EXECUTABLE).
# Keeps the workspace when KEEP_WS=1.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=$(cd "${1:-$ROOT/.venv}" && pwd)
PYBIN=$VENV/bin/python
COLCON_VENV=${COLCON_VENV:-$ROOT/build/colcon_venv}

if [ ! -x "$COLCON_VENV/bin/colcon" ]; then
    echo "colcon_smoke: installing colcon-common-extensions into $COLCON_VENV"
    python3 -m venv "$COLCON_VENV"
    "$COLCON_VENV/bin/python" -m pip install -q colcon-common-extensions
fi

WS=$(mktemp -d /tmp/fvs_colcon_ws.XXXXXX)
cleanup() { if [ "${KEEP_WS:-0}" != 1 ]; then rm -rf "$WS"; fi; }
trap cleanup EXIT

# The workspace a user would have: src/flash_vstream_ros with the repository's files (tracked
# and untracked, not ignored: no venv, no build folders).
mkdir -p "$WS/src/flash_vstream_ros"
(cd "$ROOT" && git ls-files -z --cached --others --exclude-standard |
    xargs -0 -I{} sh -c 'test -e "{}" && printf "%s\0" "{}"' |
    tar -c --null -T - -f -) | tar -x -C "$WS/src/flash_vstream_ros"

start=$(date +%s)
(
    cd "$WS"
    "$COLCON_VENV/bin/colcon" --log-base "$WS/log" build --event-handlers console_cohesion- \
        --cmake-args "-DPython3_EXECUTABLE=$PYBIN" -DBUILD_TESTING=OFF >"$WS/build.log" 2>&1 ||
        { tail -50 "$WS/build.log"; echo 'colcon_smoke: colcon build FAILED'; exit 1; }
)
echo "colcon_smoke: colcon build took $(($(date +%s) - start)) s"

for exe in flash_vstream_node flash_vstream_ask flash_vstream_sim_camera flash_vstream_bag; do
    test -x "$WS/install/flash_vstream_ros/lib/flash_vstream_ros/$exe" ||
        { echo "colcon_smoke: lib/flash_vstream_ros/$exe missing"; exit 1; }
done
test -f "$WS/install/flash_vstream_ros/share/flash_vstream_ros/config/default.yaml"
test -f "$WS/install/flash_vstream_ros/share/flash_vstream_ros/launch/flash_vstream.launch.py"

# shellcheck disable=SC1091
set +u  # colcon's setup scripts read unset variables
source "$WS/install/setup.bash"
set -u
cd /tmp
FVS_INSTALL="$WS/install" "$PYBIN" - <<'PY'
import os

from ament_index_python.packages import get_package_share_directory

import flash_vstream_ros
import flash_vstream_ros.config
from flash_vstream_ros.action import AskStream
from flash_vstream_ros.msg import Evidence, MemoryStatus
from flash_vstream_ros.srv import Ask, MemoryFile

install = os.environ['FVS_INSTALL']
for module in (flash_vstream_ros, flash_vstream_ros.msg, flash_vstream_ros.config):
    assert module.__file__.startswith(install), f'{module.__name__} from {module.__file__}'
share = get_package_share_directory('flash_vstream_ros')
assert share.startswith(install), share
assert Ask.Request(question='q').question == 'q'
assert AskStream.Feedback(text='t').text == 't'
assert MemoryFile.Response(frames=3).frames == 3
assert MemoryStatus(cameras=['a']).cameras == ['a'] and Evidence(weight=2.0).weight == 2.0
print(f'colcon_smoke: ok, imported from {os.path.dirname(flash_vstream_ros.__file__)}')
PY
