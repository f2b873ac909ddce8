"""Prompt text: the vicuna_v1 template of Flash-VStream and a sentence about the memory span."""

from __future__ import annotations

from flash_vstream_ros.models.base import PromptContext

IMAGE_TOKEN = '<image>'
VICUNA_SYSTEM = (
    'A chat between a curious user and an artificial intelligence assistant. '
    "The assistant gives helpful, detailed, and polite answers to the user's "
    'questions.'
)


def duration_text(seconds: float) -> str:
    """'2 h 5 min', '3 min 20 s', '12 s', '0.5 s'."""
    s = max(0.0, seconds)
    if s < 10:
        return f'{s:.1f} s'.replace('.0 s', ' s')
    whole = round(s)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f'{hours} h {minutes} min'
    if minutes:
        return f'{minutes} min {secs} s' if secs else f'{minutes} min'
    return f'{secs} s'


def context_sentence(context: PromptContext) -> str:
    """What the memory covers, e.g. 'The video memory covers 5 min 3 s (302 frames) ...'."""
    if context.frames_seen <= 0 or context.span is None:
        return 'The video memory is empty.'
    frames = f'{context.frames_seen} frame' + ('s' if context.frames_seen != 1 else '')
    where = ''
    if context.cameras:
        names = ', '.join(context.cameras)
        where = f' from camera{"s" if len(context.cameras) > 1 else ""} {names}'
    span = duration_text((context.span[1] - context.span[0]) / 1e9)  # ns -> s
    return f'The video memory covers {span} ({frames}{where}), ending now.'


def vicuna_v1(question: str, context: PromptContext) -> tuple[str, str]:
    """The prompt split around the memory tokens: (text before, text after)."""
    before = f'{VICUNA_SYSTEM} USER: '
    after = f'\n{context_sentence(context)} {question.strip()} ASSISTANT:'
    return before, after
