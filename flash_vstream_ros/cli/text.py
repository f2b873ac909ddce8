"""What the CLI prints: answers with their evidence, the memory's status line."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flash_vstream_ros.engine import Answer, Engine

PROG = 'flash-vstream'
EXIT_ERROR = 2


def format_answer(answer: Answer) -> str:
    """Evidence stamps grouped by part and camera, then latency and token counts."""
    groups: dict[tuple[str, str], list[float]] = {}
    for e in answer.evidence:
        groups.setdefault((e.part, e.camera), []).append(e.stamp)
    lines = []
    for (part, camera), stamps in groups.items():
        shown = ', '.join(f'{s:.2f}' for s in sorted(stamps)[:12])
        more = f' (+{len(stamps) - 12} more)' if len(stamps) > 12 else ''
        lines.append(f'   {part:<9} {camera}: {shown}{more}')
    lines.append(
        f'   latency {answer.latency_s:.3f} s | {answer.answer_tokens} tokens | '
        f'{answer.visual_tokens} visual tokens | stop: {answer.stop_reason}'
    )
    return '\n'.join(lines)


def status_line(engine: Engine) -> str:
    st = engine.status()
    return (
        f'memory: {st.frames_ingested} frames ingested from {list(st.cameras)}, '
        f'{st.visual_tokens} visual tokens, {st.memory_bytes} bytes, '
        f'stamps {st.oldest_stamp}..{st.newest_stamp}'
    )
