"""The Markdown report of a benchmark run (bench_out/REPORT.md), from the benchmarks' JSON.

Pure functions of plain dicts: run_all.py collects each benchmark's JSON and its exit status,
plots.py draws the figures, this module writes the text. A benchmark that failed, timed out or
wrote JSON of an unexpected shape gets a line saying so and the tail of its log, never a crash.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
import math
from typing import Any

Row = dict[str, Any]


@dataclass
class BenchRun:
    """One benchmark script's outcome, as run_all saw it."""

    name: str
    title: str
    command: list[str]
    status: str  # ok, failed, timeout, missing (script not there), skipped
    returncode: int | None = None
    wall_s: float = 0.0
    data: dict[str, Any] = field(default_factory=dict)  # its JSON (merged when several files)
    log_tail: list[str] = field(default_factory=list)  # stderr
    note: str = ''
    stdout: str = ''  # what the script printed (its own Markdown tables, when it prints them)


# --------------------------------------------------------------------------- table helpers


def fmt(value: Any) -> str:
    """A table cell: numbers with sensible precision, lists joined, None empty."""
    if value is None:
        return ''
    if isinstance(value, bool):
        return 'yes' if value else 'no'
    if isinstance(value, int):
        return f'{value:,}'
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        if value == 0:
            return '0'
        magnitude = abs(value)
        if magnitude >= 1000:
            return f'{value:,.0f}'
        if magnitude >= 10:
            return f'{value:.1f}'
        if magnitude >= 0.01:
            return f'{value:.3f}'
        return f'{value:.2e}'
    if isinstance(value, (list, tuple)):
        return ', '.join(fmt(v) for v in value)
    return str(value).replace('|', '/')


def table(
    rows: Sequence[Row], columns: Sequence[str] | None = None, headers: Sequence[str] | None = None
) -> str:
    """A Markdown table of ``rows`` (scalar columns only when ``columns`` is not given)."""
    if not rows:
        return '_no rows_'
    if columns is None:
        columns = [k for k, v in rows[0].items() if not isinstance(v, (dict, list))]
    heads = list(headers) if headers is not None else list(columns)
    lines = ['| ' + ' | '.join(heads) + ' |', '|' + '---|' * len(heads)]
    lines += ['| ' + ' | '.join(fmt(r.get(c)) for c in columns) + ' |' for r in rows]
    return '\n'.join(lines)


def find_rows(data: Any) -> list[Row]:
    """The first list of dicts in ``data`` ('rows' first, then any key, depth first)."""
    if isinstance(data, list) and data and all(isinstance(r, dict) for r in data):
        return list(data)
    if isinstance(data, dict):
        keys = sorted(data, key=lambda k: k != 'rows')
        for key in keys:
            rows = find_rows(data[key])
            if rows:
                return rows
    return []


def pick(row: Row, names: Iterable[str]) -> Any:
    """The value of the first of ``names`` present in ``row`` (None if none is)."""
    for name in names:
        if name in row:
            return row[name]
    return None


# --------------------------------------------------------------------------- sections


def markdown_from_stdout(text: str) -> str:
    """The Markdown tables and bullet lines a script printed (progress lines left out)."""
    kept: list[str] = []
    for line in text.splitlines():
        if not line.startswith(('|', '* ', '- ')):
            continue
        if kept and kept[-1].startswith('|') != line.startswith('|'):
            kept.append('')
        elif kept and line.startswith('|') and line.count('|') != kept[-1].count('|'):
            kept.append('')  # a new table
        kept.append(line)
    return '\n'.join(kept)


def section_printed(run: BenchRun) -> str:
    """What the script printed as Markdown, else a table of its JSON rows."""
    printed = markdown_from_stdout(run.stdout)
    return printed if printed else section_generic(run)


def section_generic(run: BenchRun) -> str:
    rows = find_rows(run.data)
    if not rows:
        return '_the benchmark wrote no table rows_'
    return table(rows)


def section_encoder(run: BenchRun) -> str:
    rows = run.data['rows']
    rates = run.data.get('matmul_gflops', {})
    text = table(
        rows,
        ['encoder', 'threads', 'batch', 's_per_frame', 'fps', 'gflop_per_frame',
         'floor_s_per_frame', 'ratio_to_floor', 'ratio_to_adjacent_floor', 'reps'],
        ['encoder', 'threads', 'batch', 's/frame (median)', 'frames/s', 'GFLOP/frame',
         'floor s/frame', 'measured/floor', 'measured/adjacent floor', 'reps'],
    )  # fmt: skip
    skipped = run.data.get('skipped') or []
    if skipped:
        text += f"\n\nNot timed (the run's time budget was spent): {', '.join(skipped)}."
    rate_text = ', '.join(f'{t} thread(s): {fmt(float(g))} GFLOP/s' for t, g in rates.items())
    return (
        f'{text}\n\nFloor = FLOPs (patch embedding + attention + MLP matmuls, counted from '
        f'the config) / the best fp32 `torch.mm` rate of the run ({rate_text}). "Adjacent '
        'floor" uses the `torch.mm` rate measured right before that encoder instead: on a busy '
        'machine both are slowed alike, so that ratio is the steadier one. Random weights, '
        'fp32, preprocessing excluded.'
    )


ROS_FRAMES = (
    ('mode', 'DDS setting'),
    ('sent', 'sent'),
    ('frames_received', 'delivered'),
    ('delivered_pct', 'delivered %'),
    ('frames_ingested', 'ingested'),
    ('frames_skipped_rate', 'skipped (rate)'),
    ('frames_dropped_queue', 'dropped (queue)'),
    ('frames_rejected', 'rejected'),
    ('callback_mean_ms', 'callback mean ms'),
    ('callback_p95_ms', 'callback p95 ms'),
    ('node_cpu_ms_per_received_frame', 'node CPU ms/frame'),
    ('cpu_mean_percent', 'node CPU %'),
)
ROS_MEMORY = (
    ('mode', 'DDS setting'), ('rss_start_mb', 'RSS start MB'), ('rss_end_mb', 'RSS end MB'),
    ('rss_max_mb', 'RSS max MB'), ('rss_growth_last_two_thirds_mb', 'RSS growth last 2/3 MB'),
    ('rss_slope_mb_per_min_last_half', 'RSS slope last half MB/min'),
    ('memory_mb_start', 'memory state MB start'), ('memory_mb_end', 'memory state MB end'),
)  # fmt: skip


ROS_LABELS = {
    'profile': 'loopback profile',
    'localhost': 'LOCALHOST, no profile',
    'fill': 'loopback profile, ingest 10 Hz',
}


def section_ros(run: BenchRun) -> str:
    rows, failed = [], []
    for r in run.data['runs']:
        if 'error' in r:
            failed.append(f'* {r["mode"]}: FAILED: {r["error"]}')
            continue
        cb = r.get('callback', {})
        label = ROS_LABELS.get(r['mode'], r['mode'])
        rows.append(
            {
                **r,
                'mode': label,
                'delivered_pct': 100.0 * r.get('delivered_ratio', 0.0),
                'callback_mean_ms': cb.get('mean_ms'),
                'callback_p95_ms': cb.get('p95_ms'),
                'memory_mb_start': r.get('memory_bytes_start', 0) / 2**20,
                'memory_mb_end': r.get('memory_bytes', 0) / 2**20,
            }
        )
    text = (
        '\n\n'.join(
            table(rows, [c for c, _ in cols], [h for _, h in cols])
            for cols in (ROS_FRAMES, ROS_MEMORY)
        )
        if rows
        else ''
    )
    info = (
        f'{fmt(run.data.get("size"))} rgb8 at {fmt(run.data.get("rate_hz"))} Hz, best '
        f'effort, {fmt(run.data.get("duration_s"))} s per setting; the node runs the tiny '
        'model at its default ingest rate (1 Hz). "loopback profile": the Fast DDS profile '
        'config/fastdds_loopback.xml (16 MB shared memory, UDP on 127.0.0.1); "LOCALHOST, no '
        'profile": ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST alone (512 KB shared memory '
        'segment); "ingest 10 Hz": the profile with engine.ingest_rate_hz=10, so the 300-frame '
        'feature buffer is full after 30 s and the RSS after that shows whether memory stays '
        'flat. '
        "Callback = the node's image callback (convert + hand to the engine), timed by "
        "benchmarks/node_timed.py; node CPU ms/frame = all of the node's CPU time (DDS receive "
        'and deserialization, callbacks, encode, update, status) per delivered frame. The '
        'memory state grows '
        'until its feature buffer is full (memory.star.buffer_frames frames at '
        'engine.ingest_rate_hz), then stays constant.'
    )
    return '\n\n'.join(p for p in (text, '\n'.join(failed), info) if p)


SECTIONS: dict[str, Callable[[BenchRun], str]] = {
    'encoder': section_encoder,
    'ros_ingest': section_ros,
}


def section(run: BenchRun, plots: dict[str, str]) -> str:
    """One benchmark's part of the report: status, table (or why not), plots, command."""
    lines = [
        f'## {run.title}',
        '',
        f'`{" ".join(run.command)}`: **{run.status}** in {run.wall_s:.0f} s'
        + (f' (exit code {run.returncode})' if run.returncode not in (0, None) else ''),
    ]
    if run.note:
        lines += ['', run.note]
    if run.data or run.stdout:
        render = SECTIONS.get(run.name, section_printed) if run.data else section_printed
        try:
            lines += ['', render(run)]
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            lines += ['', f'_unexpected JSON shape ({type(exc).__name__}: {exc}):_', '',
                      section_printed(run)]  # fmt: skip
    if run.status != 'ok' and run.log_tail:
        lines += ['', '```', *run.log_tail[-12:], '```']
    lines += [f'\n![{name}]({path})' for name, path in plots.items()]
    return '\n'.join(lines)


def render(
    runs: Sequence[BenchRun], plots: dict[str, dict[str, str]], header: dict[str, Any]
) -> str:
    """The whole REPORT.md: header (machine, command, totals), summary, one section each."""
    summary = table(
        [{'benchmark': r.title, 'status': r.status, 'wall_s': round(r.wall_s, 1)} for r in runs],
        ['benchmark', 'status', 'wall_s'],
        ['benchmark', 'status', 'wall s'],
    )
    machine = header.get('machine', {})
    head = [
        '# flash_vstream_ros benchmarks', '',
        f'Command: `{header.get("command", "")}`  ',
        f'Date: {header.get("date", "")}; total {fmt(header.get("wall_s", 0.0))} s'
        + (' (quick mode: smoke figures only)' if header.get('quick') else ''),
        f'Machine: {machine.get("cpu", "?")}, {machine.get("cores", "?")} cores, '
        f'{fmt(machine.get("memory_gb"))} GB, torch {machine.get("torch", "?")}; load average '
        f'{fmt(machine.get("loadavg_start"))} at start, {fmt(machine.get("loadavg_end"))} at end. '
        'The machine is shared: compare ratios within one run, not absolute times.',
        '', summary,
    ]  # fmt: skip
    parts = ['\n'.join(head)] + [section(r, plots.get(r.name, {})) for r in runs]
    return '\n\n'.join(parts) + '\n'
