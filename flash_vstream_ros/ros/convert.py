"""Conversions between the engine's value types and this package's ROS messages.

Pure functions (no node, no I/O): requests to :class:`Question`, :class:`Answer` and
:class:`EngineStatus` to responses, results and ``MemoryStatus``, and the camera name of a
topic.

Camera names: the fully resolved topic name (after remapping and namespace expansion) with the
node's namespace stripped when the topic lies inside it, the leading '/' dropped and every other
'/' replaced by '_'. So ``image_raw`` in namespace ``/robot1`` is camera ``image_raw``,
``/front/image_raw`` is ``front_image_raw``, and a remapped ``image_raw:=/cam/left/image`` is
``cam_left_image``. Every subscribed topic is one camera.
"""

from __future__ import annotations

from typing import Any

from flash_vstream_ros.engine import Answer, EngineStatus, Question
from flash_vstream_ros.memory.base import Evidence, TimeWindow
from flash_vstream_ros.msg import Evidence as EvidenceMsg
from flash_vstream_ros.msg import MemoryStatus
from flash_vstream_ros.ros.stamps import is_zero, ns_to_time, to_ns


def camera_name(resolved_topic: str, namespace: str) -> str:
    """The camera name of a resolved topic (see the module docstring)."""
    topic = resolved_topic
    prefix = namespace.rstrip('/') + '/'
    if prefix != '/' and topic.startswith(prefix):
        topic = topic[len(prefix) :]
    return topic.strip('/').replace('/', '_')


def to_question(request: Any) -> Question:
    """An Ask request or AskStream goal as a Question (the engine validates the values)."""
    start = None if is_zero(request.window_start) else to_ns(request.window_start)
    end = None if is_zero(request.window_end) else to_ns(request.window_end)
    window = TimeWindow(start, end) if start is not None or end is not None else None
    temperature = float(request.temperature)
    return Question(
        text=str(request.question),
        window=window,
        last_s=float(request.window_last_s),
        cameras=tuple(str(c) for c in request.cameras),
        max_new_tokens=int(request.max_new_tokens),
        temperature=None if temperature < 0.0 else temperature,
    )


def to_evidence_msg(ev: Evidence) -> EvidenceMsg:
    return EvidenceMsg(
        part=ev.part,
        camera=ev.camera,
        stamp=ns_to_time(ev.stamp),
        start=ns_to_time(ev.start),
        end=ns_to_time(ev.end),
        weight=float(ev.weight),
    )


def fill_answer(out: Any, answer: Answer, state: str) -> Any:
    """Copy an Answer into an Ask response or AskStream result (same field names)."""
    out.success = True
    out.error_message = ''
    out.answer = answer.text
    out.evidence = [to_evidence_msg(ev) for ev in answer.evidence]
    out.latency_s = float(answer.latency_s)
    out.answer_tokens = int(answer.answer_tokens)
    out.visual_tokens = int(answer.visual_tokens)
    out.stop_reason = answer.stop_reason
    out.memory = to_status_msg(answer.status, state)
    return out


def fill_failure(out: Any, message: str, status: EngineStatus | None, state: str) -> Any:
    """Mark an Ask response or AskStream result failed with ``message``."""
    out.success = False
    out.error_message = message
    out.memory = to_status_msg(status, state)
    return out


def to_status_msg(status: EngineStatus | None, state: str, stamp: Any = None) -> Any:
    """MemoryStatus from an EngineStatus (only the lifecycle state when there is no engine)."""
    msg = MemoryStatus(state=state)
    if stamp is not None:
        msg.header.stamp = stamp
    if status is None:
        return msg
    msg.model = status.model
    msg.memory_kind = status.memory_kind
    for name in (
        'frames_received',
        'frames_ingested',
        'frames_skipped_rate',
        'frames_dropped_queue',
        'frames_rejected',
        'visual_tokens',
        'memory_bytes',
        'questions_answered',
        'questions_failed',
        'gpu_memory_used_bytes',
        'gpu_memory_peak_bytes',
        'gpu_memory_budget_bytes',
    ):
        setattr(msg, name, max(0, int(getattr(status, name))))
    for name in (
        'ingest_rate_hz',
        'encode_ms',
        'update_ms',
        'last_answer_latency_s',
        'answer_latency_p50_s',
    ):
        setattr(msg, name, float(getattr(status, name)))
    msg.cameras = list(status.cameras)
    msg.parts = [part for part, _, _ in status.fill]
    msg.part_used = [int(used) for _, used, _ in status.fill]
    msg.part_capacity = [int(cap) for _, _, cap in status.fill]
    msg.oldest_stamp = ns_to_time(status.oldest_stamp)
    msg.newest_stamp = ns_to_time(status.newest_stamp)
    return msg
