"""Rows of the reliability table and how they are printed."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

COLUMNS = ('class', 'tried', 'crashes', 'hangs', 'errors', 'kills', 'lost', 'fail', 'notes')


@dataclass
class Row:
    """What one class of input or fault did.

    ``failures`` counts outcomes that break a promise other than a crash, hang or data loss
    (a bad input accepted, a missing reason, a stalled ingest, a counter that disagrees); the
    ``problems`` list says what each was.
    """

    name: str
    tried: int = 0
    crashes: int = 0
    hangs: int = 0
    errors: int = 0
    kills: int = 0
    lost: int = 0
    failures: int = 0
    notes: str = ''
    problems: list[str] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)

    def fail(self, problem: str) -> None:
        self.failures += 1
        if len(self.problems) < 20:
            self.problems.append(problem)

    def ok(self) -> bool:
        return not (self.crashes or self.hangs or self.lost or self.failures)

    def cells(self) -> list[str]:
        return [
            self.name,
            str(self.tried),
            str(self.crashes),
            str(self.hangs),
            str(self.errors),
            str(self.kills),
            str(self.lost),
            str(self.failures),
            self.notes,
        ]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def table(rows: Sequence[Row]) -> str:
    """A Markdown table of ``rows``."""
    lines = ['| ' + ' | '.join(COLUMNS) + ' |', '|' + '---|' * len(COLUMNS)]
    lines += ['| ' + ' | '.join(r.cells()) + ' |' for r in rows]
    total = Row(
        'TOTAL',
        tried=sum(r.tried for r in rows),
        crashes=sum(r.crashes for r in rows),
        hangs=sum(r.hangs for r in rows),
        errors=sum(r.errors for r in rows),
        kills=sum(r.kills for r in rows),
        lost=sum(r.lost for r in rows),
        failures=sum(r.failures for r in rows),
        notes='PASS' if all(r.ok() for r in rows) else 'FAIL',
    )
    lines.append('| ' + ' | '.join(f'**{c}**' for c in total.cells()) + ' |')
    return '\n'.join(lines)


def problems(rows: Sequence[Row]) -> str:
    """Every recorded problem, one line each (empty when there is none)."""
    return '\n'.join(f'{r.name}: {p}' for r in rows for p in r.problems)
