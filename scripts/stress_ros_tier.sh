#!/usr/bin/env bash
# The ROS tier (pytest -m ros) N times in a row with busy loops beside it: the check that the
# ROS tests hold on a loaded machine, not only on an idle one.
#
#   scripts/stress_ros_tier.sh [ROUNDS] [BUSY]     default: 10 rounds, 2 busy loops
#
# Uses .venv (make venv) or $VENV; DDS stays on loopback; the busy loops are ended by their
# PIDs when the script exits, however it exits. Prints one line per round and a summary;
# exit 0 only when every round passed. Each round's pytest output: $OUT/round-N.log.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
ROUNDS=${1:-10}
BUSY=${2:-2}
VENV=${VENV:-$ROOT/.venv}
OUT=${OUT:-$(mktemp -d /tmp/fvs_stress.XXXXXX)}
mkdir -p "$OUT"
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export OMP_NUM_THREADS=1

pids=()
stop_busy() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
}
trap stop_busy EXIT
for _ in $(seq "$BUSY"); do
    "$VENV/bin/python" -c 'while True: pass' &
    pids+=($!)
done
echo "stress: $ROUNDS rounds of pytest -m ros beside $BUSY busy loop(s) (PIDs ${pids[*]}); logs in $OUT"

passed=0
for round in $(seq "$ROUNDS"); do
    start=$(date +%s)
    set +e
    # Each round's temporary files (node, camera and bag logs) are kept for the post-mortem.
    "$VENV/bin/python" -m pytest -q -m 'ros and not slow and not gpu' -p no:cacheprovider \
        --basetemp="$OUT/round-$round-tmp" >"$OUT/round-$round.log" 2>&1
    rc=$?
    set -e
    summary=$(grep -E '(passed|failed|error)' "$OUT/round-$round.log" | tail -1)
    echo "round $round: rc=$rc $(($(date +%s) - start)) s: $summary"
    if [ "$rc" -eq 0 ]; then passed=$((passed + 1)); else
        grep -E '^(FAILED|ERROR) ' "$OUT/round-$round.log" | sed 's/^/    /' || true
    fi
done
echo "stress: $passed of $ROUNDS rounds passed"
[ "$passed" -eq "$ROUNDS" ]
