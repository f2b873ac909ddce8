#!/usr/bin/env python3
"""Rewrite the README's generated tables from the code.

    python scripts/gen_readme_tables.py          # rewrite README.md in place
    python scripts/gen_readme_tables.py --check  # exit 1 when a table is out of date

Blocks (the markers stay, the text between them is replaced):
  <!-- params:start --> ... <!-- params:end -->          from flash_vstream_ros.config.describe()
  <!-- interfaces:start --> ... <!-- interfaces:end -->  from msg/*.msg, srv/*.srv, action/*.action
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
import re
import sys
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
README = REPO_ROOT / 'README.md'
INTERFACE_DIRS = ('msg', 'srv', 'action')
SECTION_NAMES = {
    'srv': ('Request', 'Response'),
    'action': ('Goal', 'Result', 'Feedback'),
}


def _cell(text: str) -> str:
    return text.replace('|', '\\|').replace('\n', ' ').strip()


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if isinstance(value, str):
        return f"`'{value}'`" if value == '' else f'`{value}`'
    if isinstance(value, list):
        return '`[' + ', '.join(repr(v) for v in value) + ']`'
    return f'`{value}`'


def _range(low: float | None, high: float | None, choices: tuple[str, ...] | None) -> str:
    if choices:
        return ', '.join(f'`{c}`' for c in choices)
    if low is None and high is None:
        return ''
    lo = '' if low is None else f'{low:g}'
    hi = '' if high is None else f'{high:g}'
    return f'{lo} .. {hi}'.strip()


def _type_name(kind: Any) -> str:
    return str(getattr(kind, '__name__', kind))


def params_table() -> str:
    """One row per ROS parameter (= config leaf)."""
    sys.path.insert(0, str(REPO_ROOT))
    from flash_vstream_ros.config import describe

    rows = [
        '| parameter | type | default | range / choices | description |',
        '|---|---|---|---|---|',
    ]
    for spec in describe():
        kind = (
            _type_name(spec.type)
            if spec.item_type is None
            else (f'list[{_type_name(spec.item_type)}]')
        )
        rows.append(
            f'| `{spec.name}` | {kind} | {_value(spec.default)} | '
            f'{_range(spec.low, spec.high, spec.choices)} | {_cell(spec.description)} |'
        )
    return '\n'.join(rows)


_FIELD = re.compile(
    r'^(?P<type>[\w/\[\]<=]+)\s+(?P<name>\w+)(?:\s+(?P<default>[^#]+?))?\s*'
    r'(?:#\s*(?P<comment>.*))?$'
)


def parse_interface(path: Path) -> tuple[str, list[list[tuple[str, str, str]]]]:
    """(header comment, sections of (type, name, comment)) of one .msg/.srv/.action file."""
    header: list[str] = []
    sections: list[list[tuple[str, str, str]]] = [[]]
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line == '---':
            sections.append([])
        elif line.startswith('#'):
            if not any(sections) and len(sections) == 1:
                header.append(line.lstrip('#').strip())
        elif line:
            match = _FIELD.match(line)
            if match is None:
                raise ValueError(f'{path}: cannot parse line {raw!r}')
            sections[-1].append((match['type'], match['name'], match['comment'] or ''))
    return ' '.join(h for h in header if h), sections


def interfaces_table() -> str:
    """One small table per interface, with its header comment."""
    out: list[str] = []
    for kind in INTERFACE_DIRS:
        for path in sorted((REPO_ROOT / kind).glob(f'*.{kind}')):
            header, sections = parse_interface(path)
            names = SECTION_NAMES.get(kind, ('',))
            out.append(f'#### `flash_vstream_ros/{kind}/{path.stem}`\n')
            if header:
                out.append(f'{header}\n')
            with_part = len(names) > 1
            out.append(
                '| part | field | type | meaning |' if with_part else '| field | type | meaning |'
            )
            out.append('|---|---|---|---|' if with_part else '|---|---|---|')
            for part, fields in zip(names, sections, strict=True):
                for type_, name, comment in fields:
                    row = f'| `{name}` | `{type_}` | {_cell(comment)} |'
                    out.append(f'| {part} {row}' if with_part else row)
            out.append('')
    return '\n'.join(out).rstrip()


BLOCKS = {'params': params_table, 'interfaces': interfaces_table}


def _replacer(body: str) -> Callable[[re.Match[str]], str]:
    return lambda match: f'{match[1]}{body}\n{match[2]}'


def render(text: str) -> str:
    """``text`` with every marked block regenerated (blocks that are absent are left alone)."""
    for name, make in BLOCKS.items():
        pattern = re.compile(rf'(<!-- {name}:start -->\n).*?(<!-- {name}:end -->)', re.DOTALL)
        if pattern.search(text):
            body = make()
            text = pattern.sub(_replacer(body), text)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--check', action='store_true', help='only check, do not write')
    args = parser.parse_args(argv)
    current = README.read_text()
    text = render(current)
    if args.check:
        if text != current:
            print(f'{README} tables are out of date: run python scripts/gen_readme_tables.py')
            return 1
        return 0
    README.write_text(text)
    print(f'wrote {README}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
