"""Asking the engine the command line's (and stdin's) questions and printing the answers."""

from __future__ import annotations

import argparse
import math
import sys
from typing import TYPE_CHECKING, Any

from flash_vstream_ros.cli.text import EXIT_ERROR, PROG, format_answer, status_line

if TYPE_CHECKING:
    from flash_vstream_ros.engine import Engine, Question


def make_question(args: argparse.Namespace, text: str) -> Question:
    from flash_vstream_ros.engine import Question
    from flash_vstream_ros.errors import BadQuestionError
    from flash_vstream_ros.memory.base import TimeWindow
    from flash_vstream_ros.stamps import to_ns

    window = None
    if args.window:
        if not all(math.isfinite(v) and abs(v) < 9e9 for v in args.window):
            raise BadQuestionError(
                f'--window needs two finite times in seconds, got {args.window}'
            )
        window = TimeWindow(to_ns(args.window[0]), to_ns(args.window[1]))
    return Question(
        text=text,
        window=window,
        last_s=args.window_last,
        cameras=tuple(args.camera),
        max_new_tokens=args.max_new_tokens,
    )


def ask_all(engine: Engine, args: argparse.Namespace, questions: list[str]) -> int:
    """Answer the given questions, then stdin's when --interactive; 2 if any failed."""
    if not questions and not args.interactive:
        print(status_line(engine), file=sys.stderr)
        return 0
    status = 0
    for text in questions:
        status = max(status, ask_one(engine, make_question(args, text), stream=False))
    if args.interactive:
        status = max(status, interactive(engine, args))
    return status


def ask_one(engine: Engine, question: Question, stream: bool) -> int:
    from flash_vstream_ros.errors import BadQuestionError, BusyError, ModelError

    print(f'Q: {question.text}')
    if stream:
        print('A: ', end='', flush=True)
    try:
        answer = engine.ask(question, on_token=_printer() if stream else None)
    except (BadQuestionError, BusyError, ModelError) as exc:
        print(f'{PROG}: error: {exc}', file=sys.stderr)
        return EXIT_ERROR
    print('' if stream else f'A: {answer.text}')
    print(format_answer(answer))
    return 0


def _printer() -> Any:
    def on_token(token: str, tokens: int) -> None:  # tokens: generated so far (unused here)
        sys.stdout.write(token)
        sys.stdout.flush()

    return on_token


def interactive(engine: Engine, args: argparse.Namespace) -> int:
    status = 0
    while True:
        try:
            line = input('question> ' if sys.stdin.isatty() else '')
        except EOFError:
            return status
        text = line.strip()
        if text in ('quit', 'exit'):
            return status
        if text:
            status = max(status, ask_one(engine, make_question(args, text), stream=True))
