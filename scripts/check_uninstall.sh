#!/usr/bin/env bash
# `pip uninstall flash_vstream_ros` must leave nothing behind but empty folders, and a reinstall
# must work again. Run once by hand (it briefly removes the package from the venv):
#
#   scripts/check_uninstall.sh [VENV_DIR]      default: .venv
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=$(cd "${1:-$ROOT/.venv}" && pwd)
PYBIN=$VENV/bin/python
LIST=$(mktemp)
trap 'rm -f "$LIST"' EXIT

# Every file of the installed distribution (absolute), from its RECORD.
"$PYBIN" - "$LIST" <<'PY'
import importlib.metadata as md
import sys

dist = md.distribution('flash_vstream_ros')
paths = sorted({str(dist.locate_file(f).resolve()) for f in dist.files or ()})
with open(sys.argv[1], 'w') as out:
    out.write('\n'.join(paths) + '\n')
print(f'check_uninstall: {len(paths)} installed files')
PY

"$PYBIN" -m pip uninstall -y -q flash_vstream_ros

left=0
while IFS= read -r path; do
    if [ -e "$path" ]; then echo "left behind: $path"; left=$((left + 1)); fi
done <"$LIST"
# Anything else of ours in the venv that RECORD did not list (a generated file, an egg-info).
others=$(find "$VENV" \( -path '*flash_vstream_ros*' -o -name 'flash[-_]vstream*' \) \
    -not -type d -not -name '*.pyc' -print)
if [ -n "$others" ]; then echo "left behind (not in RECORD):"; echo "$others"; left=$((left + 1)); fi
empty_dirs=$(find "$VENV" -depth -type d -path '*flash_vstream_ros*' | wc -l)
if [ "$left" -ne 0 ]; then echo 'check_uninstall: FAILED'; exit 1; fi
echo "check_uninstall: nothing left behind but $empty_dirs empty folder(s)"

start=$(date +%s)
"$PYBIN" -m pip install -q --no-deps "$ROOT"
(cd /tmp && "$PYBIN" -c 'from flash_vstream_ros.srv import Ask; from flash_vstream_ros.action import AskStream')
echo "check_uninstall: reinstall ok in $(($(date +%s) - start)) s"
