"""The board profiles in ``config/profiles/`` and their table of expected GPU memory.

``python -m flash_vstream_ros.config.profiles --table`` prints the README's table; without
``--table`` it says per profile whether it fits its own ``gpu.max_gpu_memory_mb``.
"""

from __future__ import annotations

from collections.abc import Iterable
import os
from pathlib import Path
import sys

from flash_vstream_ros.config.budget import BudgetEstimate, _mib, budget_limit, estimate
from flash_vstream_ros.config.settings import AppConfig, load_yaml
from flash_vstream_ros.errors import ConfigError

PROFILES_DIR = Path(__file__).resolve().parents[2] / 'config' / 'profiles'
PROFILE_ORDER = (  # small to large; a board's qwen2_vl profiles after its first one
    'orin_nano',
    'orin_nx',
    'orin_nx_gguf',
    'orin_nx_qwen2_vl',
    'orin_nx_qwen2_5_vl',
    'agx_orin',
    'agx_orin_flash_vstream_qwen',
    'desktop_gpu',
    'cpu',
)

# --------------------------------------------------------------------------- profiles


def profile_dirs() -> list[Path]:
    """Where profile YAML files may be: the source tree, then installed share/ folders."""
    dirs = [PROFILES_DIR]
    prefixes = [*os.environ.get('AMENT_PREFIX_PATH', '').split(os.pathsep), sys.prefix]
    dirs += [
        Path(p) / 'share' / 'flash_vstream_ros' / 'config' / 'profiles' for p in prefixes if p
    ]
    return [d for d in dirs if d.is_dir()]


def profile_paths() -> list[Path]:
    """Profile files of the first folder that has any, sorted by name."""
    for folder in profile_dirs():
        paths = sorted(folder.glob('*.yaml'), key=_profile_order)
        if paths:
            return paths
    return []


def _profile_order(path: Path) -> tuple[int, str]:
    order = PROFILE_ORDER.index(path.stem) if path.stem in PROFILE_ORDER else len(PROFILE_ORDER)
    return order, path.stem


def profile_estimates(
    paths: Iterable[Path] | None = None,
) -> list[tuple[str, AppConfig, BudgetEstimate]]:
    """(name, config, estimate) of every profile; a profile on 'auto' is estimated on CUDA."""
    out: list[tuple[str, AppConfig, BudgetEstimate]] = []
    for path in paths if paths is not None else profile_paths():
        cfg = load_yaml(path, AppConfig)
        device = 'cpu' if cfg.model.device == 'cpu' else 'cuda'
        out.append((path.stem, cfg, estimate(cfg, device=device)))
    return out


# --------------------------------------------------------------------------- README table

TABLE_HEAD = (
    '| profile | model | dtype | memory | visual tokens | weights | memory state | '
    'KV cache | activations | overhead | total | max_gpu_memory_mb |\n'
    '|---|---|---|---|---|---|---|---|---|---|---|---|'
)


def _gib(n: int) -> str:
    return f'{n / (1 << 30):.2f}'


def _memory_label(cfg: AppConfig) -> str:
    if cfg.memory.kind == 'star':
        return 'STAR'
    syn = cfg.memory.synopsis
    detail = f' + {syn.detail_frames}x{syn.detail_size**2}' if syn.detail_frames else ''
    return f'synopsis {syn.clusters}x{syn.cluster_size**2}{detail}'


def markdown_table(rows: list[tuple[str, AppConfig, BudgetEstimate]]) -> str:
    """The README's table: expected memory per profile and part, in GiB."""
    lines = [TABLE_HEAD]
    for name, cfg, est in rows:
        where = '' if est.device == 'cuda' else ' (host RAM)'
        parts = ' | '.join(_gib(v) for v in est.parts().values())
        limit = cfg.gpu.max_gpu_memory_mb or '-'
        lines.append(
            f'| {name}{where} | {est.model} | {est.dtype} | {_memory_label(cfg)} | '
            f'{est.visual_tokens} | {parts} | **{_gib(est.total)}** | {limit} |'
        )
    return '\n'.join(lines)


def main(argv: list[str] | None = None) -> int:
    """``python -m flash_vstream_ros.budget [--table] [CONFIG.yaml ...]``."""
    import argparse

    parser = argparse.ArgumentParser(description='Expected GPU memory of configurations.')
    parser.add_argument(
        'configs',
        nargs='*',
        type=Path,
        help='config YAML files (default: every profile in config/profiles)',
    )
    parser.add_argument('--table', action='store_true', help='print a Markdown table (GiB)')
    args = parser.parse_args(argv)
    try:
        rows = profile_estimates(args.configs or None)
    except ConfigError as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 2
    if args.table:
        print(markdown_table(rows))
        return 0
    for name, cfg, est in rows:
        limit = budget_limit(cfg)
        verdict = (
            'no limit'
            if limit is None
            else ('fits' if est.total <= limit else f'DOES NOT FIT {_mib(limit)}')
        )
        print(f'{name}: {est.describe()} [{verdict}]')
    return 0


if __name__ == '__main__':
    sys.exit(main())
