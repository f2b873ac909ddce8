"""Prompt text: the vicuna_v1 template Flash-VStream was trained and evaluated with.

The research evaluation (``eval_video/model_*_qa.py``) builds ``<image>\\n{question}`` as the
user turn of ``conv_vicuna_v1`` (system text, separator ' ', roles USER / ASSISTANT) and puts the
memory tokens where ``<image>`` stands. That is the default here, token for token. The sentence
about the memory span (:func:`context_sentence`) is opt-in (``generation.time_context``): the
model never saw it in training, but it tells the model how much video and which cameras its
memory covers, which helps questions about time ("how long ...", "in the last minute").
"""

from __future__ import annotations

from flash_vstream_ros.models.base import PromptContext

IMAGE_TOKEN = '<image>'
VICUNA_SYSTEM = (
    'A chat between a curious user and an artificial intelligence assistant. '
    "The assistant gives helpful, detailed, and polite answers to the user's "
    'questions.'
)
VICUNA_SEP = ' '  # conv_vicuna_v1.sep: after the system text and after the user turn
VICUNA_ROLES = ('USER', 'ASSISTANT')


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


def user_text(question: str, context: PromptContext, time_context: bool) -> str:
    """The question as the user turn says it, with the memory sentence first when asked for."""
    text = question.strip()
    return f'{context_sentence(context)} {text}' if time_context else text


def vicuna_v1(
    question: str, context: PromptContext, time_context: bool = False
) -> tuple[str, str]:
    """The prompt split around the memory tokens: (text before, text after).

    ``conv_vicuna_v1.get_prompt()`` of ``<image>\\n{question}`` is
    ``{system} USER: <image>\\n{question} ASSISTANT:``; ``tokenizer_image_token`` tokenizes the
    two sides of ``<image>`` apart (BOS only at the very start), as the caller does.
    """
    user, assistant = VICUNA_ROLES
    before = f'{VICUNA_SYSTEM}{VICUNA_SEP}{user}: '
    after = f'\n{user_text(question, context, time_context)}{VICUNA_SEP}{assistant}:'
    return before, after
