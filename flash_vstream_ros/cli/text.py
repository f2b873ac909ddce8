"""What the CLI prints: answers with their evidence, the memory's status line."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flash_vstream_ros.engine import Answer, Engine

from flash_vstream_ros.cli.stamps import format_stamp

PROG = 'flash-vstream'
EXIT_ERROR = 2


def count(n: int, noun: str) -> str:
    """'1 frame', '2 frames', '0 frames' (nouns here take a plain 's')."""
    return f'{n} {noun}' if n == 1 else f'{n} {noun}s'


def format_answer(answer: Answer) -> str:
    """Evidence stamps grouped by part and camera, then latency and token counts."""
    groups: dict[tuple[str, str], list[int]] = {}
    for e in answer.evidence:
        groups.setdefault((e.part, e.camera), []).append(e.stamp)
    lines = []
    for (part, camera), stamps in groups.items():
        shown = ', '.join(format_stamp(s) for s in sorted(stamps)[:12])
        more = f' (+{len(stamps) - 12} more)' if len(stamps) > 12 else ''
        lines.append(f'   {part:<9} {camera}: {shown}{more}')
    lines.append(
        f'   latency {answer.latency_s:.3f} s | {count(answer.answer_tokens, "token")} | '
        f'{count(answer.visual_tokens, "visual token")} | stop: {answer.stop_reason}'
    )
    return '\n'.join(lines)


def status_line(engine: Engine) -> str:
    """What the memory holds, for a replay without questions."""
    st = engine.status()
    return (
        f'memory: {count(st.frames_ingested, "frame")} ingested from {list(st.cameras)}, '
        f'{count(st.visual_tokens, "visual token")}, {count(st.memory_bytes, "byte")}, '
        f'stamps {span(st.oldest_stamp, st.newest_stamp)}'
    )


def span(oldest: int | None, newest: int | None) -> str:
    """'0.000..3.804 s', or 'none' for an empty memory."""
    if oldest is None and newest is None:
        return 'none'
    return f'{format_stamp(oldest)}..{format_stamp(newest)} s'
