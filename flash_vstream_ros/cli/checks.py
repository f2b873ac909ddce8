"""Argument and file checks that run before the model loads or the replay starts.

Why: a model load takes seconds (17 s for a 7B model) and a replay minutes; a reversed window,
a blank question, a save into a missing folder or a ``--load`` of a video would otherwise fail
only after all that work. Each check raises the error the engine or the memory file code would
raise later (same message), so the user sees one line and exit status 2, and nothing else ran.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flash_vstream_ros.config import AppConfig


def check_questions(args: argparse.Namespace, texts: Sequence[str], cfg: AppConfig) -> None:
    """Every question text, the window, last_s and limits, as the engine will check them."""
    from flash_vstream_ros.cli.answers import make_question
    from flash_vstream_ros.engine.questions import check_limits, check_text, check_window

    for text in texts:
        check_text(text, cfg.generation.max_question_chars)
    probe = make_question(args, texts[0] if texts else 'probe')
    check_window(probe)
    check_limits(probe, cfg.generation)


def check_memory_file(path: str | None) -> None:
    """A ``--load`` file must exist and carry a memory file header (read in milliseconds)."""
    if path:
        from flash_vstream_ros.io.persistence import check_header

        check_header(path)


def check_save_path(path: str | None) -> None:
    """A ``--save`` path must be in an existing folder and not be a foreign file."""
    if path:
        from flash_vstream_ros.io.persistence import check_save_target

        check_save_target(path)


def check_replay(args: argparse.Namespace, cfg: AppConfig) -> None:
    """Everything ``replay`` can check before it opens the source and loads the model."""
    check_questions(args, list(args.ask), cfg)
    check_memory_file(args.load)
    check_save_path(args.save)


def check_ask(args: argparse.Namespace, questions: Sequence[str], cfg: AppConfig) -> None:
    """Everything ``ask`` can check before it loads the model."""
    check_questions(args, questions, cfg)
    check_memory_file(args.load)
