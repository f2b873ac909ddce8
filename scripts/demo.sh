#!/usr/bin/env bash
# The main job of `make demo`. PLACEHOLDER (packaging): an interface smoke demo that round-trips
# one Ask request and one AskStream goal through rclpy's serializer. The node helper replaces this
# body with the real node demo on a sample stream.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export ROS_AUTOMATIC_DISCOVERY_RANGE=${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}

if python -c 'import flash_vstream_ros.demo' 2>/dev/null; then
    exec python -m flash_vstream_ros.demo "$@"
fi

python - <<'PY'
from rclpy.serialization import deserialize_message, serialize_message

from flash_vstream_ros.action import AskStream
from flash_vstream_ros.msg import Evidence
from flash_vstream_ros.srv import Ask

request = Ask.Request(question='What did the camera see?', window_last_s=60.0, cameras=['front'])
raw = serialize_message(request)
back = deserialize_message(raw, Ask.Request)
assert back == request, (back, request)
print(f'Ask.Request round trip: {len(raw)} bytes, question={back.question!r}')

response = Ask.Response(success=True, answer='a red toolbox', evidence=[Evidence(part='spatial')])
back_response = deserialize_message(serialize_message(response), Ask.Response)
assert back_response == response
print(f'Ask.Response round trip: answer={back_response.answer!r}')

goal = AskStream.Goal(question='What happened?', max_new_tokens=16)
assert deserialize_message(serialize_message(goal), AskStream.Goal) == goal
print('AskStream.Goal round trip: ok')
print('interface smoke demo: ok (the node demo replaces this placeholder)')
PY
