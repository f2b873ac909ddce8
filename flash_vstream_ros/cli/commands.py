"""The commands: replay a source, ask a saved memory, describe a memory file, export GGUF."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from flash_vstream_ros.cli.answers import ask_all
from flash_vstream_ros.cli.checks import check_ask, check_replay
from flash_vstream_ros.cli.feeding import Unreadable, feed
from flash_vstream_ros.cli.stamps import after_memory
from flash_vstream_ros.cli.text import count
from flash_vstream_ros.errors import ConfigError

if TYPE_CHECKING:
    from flash_vstream_ros.config import AppConfig
    from flash_vstream_ros.engine import Engine


def load_config(args: argparse.Namespace) -> AppConfig:
    """The config tree from --config, --set and the model shortcuts (validated)."""
    import yaml

    from flash_vstream_ros.config import AppConfig, load_yaml, with_overrides

    cfg = load_yaml(args.config) if args.config else AppConfig()
    flat: dict[str, Any] = {}
    for item in args.set:
        key, sep, raw = item.partition('=')
        if not sep or not key:
            raise ConfigError(f'--set expects KEY=VALUE, got {item!r}')
        flat[key.strip()] = yaml.safe_load(raw) if raw.strip() else ''
    for key, value in (
        ('model.family', args.model_family),
        ('model.path', args.model_path),
        ('model.device', args.device),
    ):
        if value is not None:
            flat[key] = value
    return with_overrides(cfg, flat) if flat else cfg


def cmd_replay(args: argparse.Namespace) -> int:
    from flash_vstream_ros.engine import Engine
    from flash_vstream_ros.io.sources import open_source

    cfg = load_config(args)
    check_replay(args, cfg)
    unreadable = Unreadable(sys.stderr)
    source = open_source(args.source, fps=args.fps, topics=args.topic, on_bad=unreadable)
    engine = Engine(cfg)
    unreadable.engine = engine
    engine.start()
    try:
        newest = None
        if args.load:
            info = engine.load_memory(args.load)
            print(f'loaded {count(info.frames, "frame")} from {info.path}', file=sys.stderr)
            newest = newest_of(engine, source.cameras)
        frames = after_memory(source, newest, sys.stderr)
        feed(engine, frames, source.frames, args.speed, args.limit, sys.stderr)
        unreadable.report()
        if args.save:
            info = engine.save_memory(args.save)
            print(
                f'saved {count(info.frames, "frame")} to {info.path} '
                f'({count(info.bytes, "byte")})',
                file=sys.stderr,
            )
        return ask_all(engine, args, list(args.ask))
    finally:
        engine.stop()


def newest_of(engine: Engine, cameras: tuple[str, ...]) -> int | None:
    """The loaded memory's newest stamp when it holds one of ``cameras`` (else None).

    A replay of other cameras keeps its own stamps: they may be from the same time.
    """
    st = engine.status()
    return st.newest_stamp if set(st.cameras) & set(cameras) else None


def cmd_ask(args: argparse.Namespace) -> int:
    from flash_vstream_ros.engine import Engine

    cfg = load_config(args)
    questions = list(args.questions) + list(args.ask)
    check_ask(args, questions, cfg)
    engine = Engine(cfg)
    engine.start()
    try:
        engine.load_memory(args.load)
        return ask_all(engine, args, questions)
    finally:
        engine.stop()


def cmd_info(args: argparse.Namespace) -> int:
    import datetime

    from flash_vstream_ros.io.persistence import read_info

    info = read_info(args.file)
    created = info.get('created')
    when = datetime.datetime.fromtimestamp(created).isoformat() if created else '?'
    print(f'file:           {args.file}')
    print(f'format version: {info.get("format_version")}')
    print(
        f'memory kind:    {info.get("kind")}  per_camera={info.get("per_camera")}  '
        f'feature_dim={info.get("feature_dim")}'
    )
    print(f'frames:         {info.get("frames")}')
    print(f'created:        {when}')
    keys = [m.get('key') for m in info.get('memories', [])]
    print(f'memories:       {", ".join(map(str, keys)) or "none"}')
    return 0


def cmd_export_gguf(args: argparse.Namespace) -> int:
    """The checkpoint's language model as GGUF at --quant, the torch parts as its sidecar."""
    from flash_vstream_ros.models.gguf_export import export_gguf

    result = export_gguf(
        args.checkpoint,
        args.out,
        quant=args.quant,
        llama_cpp=args.llama_cpp,
        pre_tokenizer=args.pre_tokenizer,
        threads=args.threads,
    )
    print(f'{result.gguf} ({result.quant}, {result.gguf_bytes / 2**20:,.1f} MiB)')
    if result.sidecar is not None:
        size = result.sidecar.stat().st_size / 2**20
        print(
            f'{result.sidecar} (sidecar: vision tower, projector, memory q/k, tokenizer; '
            f'{size:,.1f} MiB)'
        )
    print(
        f'in {result.seconds:.1f} s; answer with: --set model.decoder=gguf '
        f'--set model.gguf.path={result.gguf}',
        file=sys.stderr,
    )
    return 0
