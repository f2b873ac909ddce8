"""The node's /diagnostics entry, built by hand (diagnostic_updater has no PyPI wheel).

One ``DiagnosticStatus`` named ``<node name>: memory`` with the key figures of the engine's
status as key/value pairs. Level: ERROR when the engine failed or is absent after a failed
configure, WARN while not active or when frames were dropped from the queue or rejected since
the previous report, OK otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass

from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

from flash_vstream_ros.engine import EngineStatus
from flash_vstream_ros.stamps import fmt_s

OK = DiagnosticStatus.OK
WARN = DiagnosticStatus.WARN
ERROR = DiagnosticStatus.ERROR


@dataclass
class DiagnosticsState:
    """Counters seen at the previous report, to spot new drops and rejects."""

    dropped: int = 0
    rejected: int = 0


def level_and_message(
    status: EngineStatus | None, state: str, problem: str, previous: DiagnosticsState
) -> tuple[bytes, str]:
    """(level, summary) for one report; updates ``previous``."""
    if status is None:
        if problem:
            return ERROR, f'{state}: {problem}'
        return WARN, f'{state}: not configured'
    if status.state == 'failed':
        return ERROR, f'engine failed: {problem}' if problem else 'engine failed'
    new_drops = status.frames_dropped_queue - previous.dropped
    new_rejects = status.frames_rejected - previous.rejected
    previous.dropped, previous.rejected = status.frames_dropped_queue, status.frames_rejected
    if state != 'active':
        return WARN, f'{state}: not ingesting'
    if new_drops > 0 or new_rejects > 0:
        return WARN, (
            f'{new_drops} frames dropped (ingest behind), {new_rejects} rejected '
            f'(malformed) since the last report'
        )
    return OK, f'ingesting {status.ingest_rate_hz:.2f} frames/s'


def key_values(status: EngineStatus) -> list[KeyValue]:
    """The status figures as diagnostic key/value pairs."""
    pairs: list[tuple[str, str]] = [
        ('model', status.model),
        ('memory kind', status.memory_kind),
        ('engine state', status.state),
        ('frames received', str(status.frames_received)),
        ('frames ingested', str(status.frames_ingested)),
        ('frames skipped (rate)', str(status.frames_skipped_rate)),
        ('frames dropped (queue)', str(status.frames_dropped_queue)),
        ('frames rejected', str(status.frames_rejected)),
        ('ingest rate (Hz)', f'{status.ingest_rate_hz:.3f}'),
        ('encode (ms)', f'{status.encode_ms:.1f}'),
        ('update (ms)', f'{status.update_ms:.1f}'),
        ('cameras', ','.join(status.cameras)),
        *((f'fill {part}', f'{used}/{cap}') for part, used, cap in status.fill),
        ('visual tokens', str(status.visual_tokens)),
        ('memory bytes', str(status.memory_bytes)),
        ('oldest stamp', _stamp(status.oldest_stamp)),
        ('newest stamp', _stamp(status.newest_stamp)),
        ('questions answered', str(status.questions_answered)),
        ('questions failed', str(status.questions_failed)),
        ('last answer latency (s)', f'{status.last_answer_latency_s:.3f}'),
        ('answer latency p50 (s)', f'{status.answer_latency_p50_s:.3f}'),
        ('gpu memory used (bytes)', str(status.gpu_memory_used_bytes)),
        ('gpu memory peak (bytes)', str(status.gpu_memory_peak_bytes)),
        ('gpu memory budget (bytes)', str(status.gpu_memory_budget_bytes)),
    ]
    return [KeyValue(key=k, value=v) for k, v in pairs]


def _stamp(value: int | None) -> str:
    return '' if value is None else fmt_s(value)


def diagnostic_array(
    node_name: str,
    status: EngineStatus | None,
    state: str,
    problem: str,
    previous: DiagnosticsState,
    stamp: Time,
) -> DiagnosticArray:
    """The full /diagnostics message of one report."""
    level, message = level_and_message(status, state, problem, previous)
    entry = DiagnosticStatus(
        level=level,
        name=f'{node_name}: memory',
        message=message,
        hardware_id=status.model if status is not None else '',
    )
    entry.values = [KeyValue(key='lifecycle state', value=state)]
    if status is not None:
        entry.values += key_values(status)
    array = DiagnosticArray(status=[entry])
    array.header.stamp = stamp
    return array
