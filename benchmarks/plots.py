"""PNG figures of a benchmark run (matplotlib, Agg backend), from the benchmarks' JSON.

Each ``plot_*`` takes one benchmark's JSON and a path, draws one figure and returns the path, or
raises KeyError / ValueError when the JSON lacks what the figure needs (run_all reports that).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt

from benchmarks.report import ROS_LABELS, Row, find_rows, pick

FRAMES_KEYS = ('frames', 'n_frames', 'frames_ingested', 'stream_frames', 'num_frames')
GROUP_KEYS = ('variant', 'memory', 'method', 'kind', 'system', 'name', 'baseline')
LATENCY_KEYS = (
    'latency_s',
    'answer_latency_s',
    'latency_median_s',
    'latency_p50_s',
    'median_s',
    'latency_ms',
)
BYTES_KEYS = ('state_bytes', 'memory_bytes', 'nbytes', 'bytes', 'state_mb')
UPDATE_KEYS = ('update_ms', 'update_ms_per_frame', 'update_us', 'update_s')


def series(
    rows: Iterable[Row], x_keys: Sequence[str], y_keys: Sequence[str], group_keys: Sequence[str]
) -> dict[str, list[tuple[float, float]]]:
    """{group label: sorted (x, y)} from rows that have an x and a y key."""
    out: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for row in rows:
        x, y = pick(row, x_keys), pick(row, y_keys)
        if x is None or y is None:
            continue
        label = ' / '.join(str(row[k]) for k in group_keys if k in row) or 'all'
        out[label].append((float(x), float(y)))
    if not out:
        raise KeyError(f'no rows with one of {list(x_keys)} and one of {list(y_keys)}')
    return {k: sorted(v) for k, v in out.items()}


def used_key(rows: Sequence[Row], keys: Sequence[str]) -> str:
    for key in keys:
        if any(key in r for r in rows):
            return key
    raise KeyError(f'none of {list(keys)} in the rows')


def line_plot(
    lines: dict[str, list[tuple[float, float]]],
    path: Path,
    title: str,
    xlabel: str,
    ylabel: str,
    logx: bool = True,
    logy: bool = False,
) -> Path:
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for label, points in sorted(lines.items()):
        xs, ys = zip(*points, strict=True)
        ax.plot(xs, ys, marker='o', label=label)
    if logx:
        ax.set_xscale('log')
    if logy:
        ax.set_yscale('log')
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.grid(True, which='both', alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_latency(data: dict[str, Any], path: Path) -> Path:
    """Answer latency and visual tokens vs frames: ours vs keep-every-frame, per model, log x."""
    rows = find_rows(data)
    if not any('ours_s' in r for r in rows):
        return plot_latency_generic(rows, path)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for i, model in enumerate(dict.fromkeys(r['model'] for r in rows)):
        mine = sorted((r for r in rows if r['model'] == model), key=lambda r: r['frames'])
        base = [r for r in mine if r.get('baseline_s') is not None]
        for ax, ours_key, base_key in (
            (left, 'ours_s', 'baseline_s'),
            (right, 'ours_tokens', 'baseline_tokens'),
        ):
            ax.plot(
                [r['frames'] for r in mine],
                [r[ours_key] for r in mine],
                marker='o',
                color=f'C{i}',
                label=f'{model}: STAR memory (ours)',
            )
            shown = base if ax is left else mine
            ax.plot(
                [r['frames'] for r in shown],
                [r[base_key] for r in shown],
                marker='s',
                linestyle='--',
                color=f'C{i}',
                label=f'{model}: keep every frame',
            )
    left.set(
        title='Answer latency vs stream length',
        xlabel='frames ingested',
        ylabel='answer latency (s)',
    )
    right.set(
        title='Visual tokens given to the language model',
        xlabel='frames ingested',
        ylabel='visual tokens',
    )
    for ax in (left, right):
        ax.set(xscale='log', yscale='log')
        ax.grid(True, which='both', alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_latency_generic(rows: list[Row], path: Path) -> Path:
    key = used_key(rows, LATENCY_KEYS)
    groups = [k for k in ('model', *GROUP_KEYS) if any(k in r for r in rows)][:2]
    lines = series(rows, FRAMES_KEYS, (key,), groups)
    unit = 'ms' if key.endswith('_ms') else 's'
    return line_plot(
        lines,
        path,
        'Answer latency vs stream length',
        'frames ingested',
        f'answer latency ({unit})',
        logy=True,
    )


def plot_memory_bytes(data: dict[str, Any], path: Path) -> Path:
    """Memory state bytes vs frames, one line per memory kind, log-log."""
    rows = find_rows(data)
    groups = [k for k in GROUP_KEYS if any(k in r for r in rows)][:1]
    key = used_key(rows, BYTES_KEYS)
    unit = 'state MB' if key.endswith('_mb') else 'state bytes'
    lines = series(rows, FRAMES_KEYS, (key,), groups)
    return line_plot(lines, path, 'Memory state size vs frames', 'frames', unit, logy=True)


def plot_update_time(data: dict[str, Any], path: Path) -> Path:
    """Memory update time per frame vs frames, one line per memory kind."""
    rows = find_rows(data)
    key = used_key(rows, UPDATE_KEYS)
    groups = [k for k in GROUP_KEYS if any(k in r for r in rows)][:1]
    return line_plot(
        series(rows, FRAMES_KEYS, (key,), groups),
        path,
        'Memory update time per frame vs frames',
        'frames',
        key,
        logy=True,
    )


def plot_rss(data: dict[str, Any], path: Path) -> Path:
    """Node RSS over time during the ingest run, one line per DDS setting."""
    lines = {}
    for run in data['runs']:
        if run.get('samples'):
            label = ROS_LABELS.get(run['mode'], run['mode'])
            lines[label] = [(s['t'], s['rss_mb']) for s in run['samples']]
    if not lines:
        raise ValueError('no ROS ingest run has RSS samples')
    return line_plot(
        lines,
        path,
        'Node RSS while a 640x480 camera publishes at 30 Hz',
        'seconds since the camera started',
        'RSS (MB)',
        logx=False,
    )


def plot_encoder(data: dict[str, Any], path: Path) -> Path:
    """Seconds per frame, measured and floor, per encoder (1 thread batch 1, 2 threads batch 4)."""
    rows = data['rows']
    names = list(dict.fromkeys(r['encoder'] for r in rows))
    configs = sorted({(r['threads'], r['batch']) for r in rows})
    fig, ax = plt.subplots(figsize=(9, 4.5))
    width = 0.8 / (2 * len(configs))
    for i, (threads, batch) in enumerate(configs):
        picked = {r['encoder']: r for r in rows if (r['threads'], r['batch']) == (threads, batch)}
        for j, (key, hatch) in enumerate((('s_per_frame', ''), ('floor_s_per_frame', '//'))):
            offset = (2 * i + j) * width - 0.4 + width / 2
            ys = [picked[n][key] if n in picked else 0.0 for n in names]
            kind = 'measured' if j == 0 else 'floor'
            ax.bar(
                [k + offset for k in range(len(names))],
                ys,
                width,
                hatch=hatch,
                label=f'{kind}, {threads} thr, batch {batch}',
                color=f'C{i}',
                alpha=1.0 if j == 0 else 0.45,
            )
    ax.set_xticks(
        range(len(names)), [n.replace(' (paper)', '\n(paper)') for n in names], fontsize=8
    )
    ax.set_yscale('log')
    ax.set(
        title='Vision encoder time per frame on this CPU vs the FLOP floor',
        ylabel='seconds per frame (fp32)',
    )
    ax.grid(True, axis='y', which='both', alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


PlotFn = Callable[[dict[str, Any], Path], Path]
PLOTS: dict[str, list[tuple[str, PlotFn]]] = {
    'latency': [('latency_vs_frames', plot_latency)],
    'memory': [('bytes_vs_frames', plot_memory_bytes), ('update_vs_frames', plot_update_time)],
    'ros_ingest': [('rss_vs_time', plot_rss)],
    'encoder': [('encoder_vs_floor', plot_encoder)],
}


def make_plots(name: str, data: dict[str, Any], out: Path) -> tuple[dict[str, str], list[str]]:
    """({figure name: PNG file name relative to ``out``}, [problems]) for one benchmark."""
    made: dict[str, str] = {}
    problems: list[str] = []
    for figure, fn in PLOTS.get(name, []):
        try:
            made[figure] = fn(data, out / f'{figure}.png').name
        except (KeyError, ValueError, TypeError, IndexError) as exc:
            problems.append(f'{figure}: not drawn ({type(exc).__name__}: {exc})')
    return made, problems
