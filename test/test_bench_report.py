"""The benchmark report and plots (benchmarks/report.py, plots.py, run_all.py) on canned JSON."""

from __future__ import annotations

import json
from pathlib import Path
import sys

import pytest

from benchmarks import run_all
from benchmarks.plots import make_plots, series
from benchmarks.report import BenchRun, find_rows, fmt, markdown_from_stdout, render, table

pytestmark = pytest.mark.unit

ENCODER = {
    'benchmark': 'encoder',
    'matmul_gflops': {'1': 150.0},
    'rows': [
        {'encoder': 'CLIP ViT-B/32 224', 'image_size': 224, 'threads': 1, 'batch': 1,
         's_per_frame': 0.11, 'fps': 9.1, 'reps': 5, 'gflop_per_frame': 8.8,
         'floor_s_per_frame': 0.0587, 'ratio_to_floor': 1.87},
        {'encoder': 'CLIP ViT-L/14 224 (paper)', 'image_size': 224, 'threads': 1, 'batch': 1,
         's_per_frame': 1.4, 'fps': 0.71, 'reps': 2, 'gflop_per_frame': 162.0,
         'floor_s_per_frame': 1.08, 'ratio_to_floor': 1.3},
    ],
}  # fmt: skip

ROS = {
    'benchmark': 'ros_ingest', 'duration_s': 60.0, 'rate_hz': 30.0, 'size': [640, 480],
    'runs': [
        {'mode': 'profile', 'profile': '/x/fastdds_loopback.xml', 'sent': 1800,
         'frames_received': 1790, 'delivered_ratio': 0.994, 'frames_ingested': 59,
         'frames_skipped_rate': 1731, 'frames_dropped_queue': 0, 'frames_rejected': 0,
         'callback': {'count': 1790, 'mean_ms': 0.12, 'p95_ms': 0.2},
         'cpu_mean_percent': 14.0, 'rss_start_mb': 550.0, 'rss_end_mb': 560.0,
         'rss_max_mb': 561.0, 'rss_growth_last_two_thirds_mb': 1.0,
         'samples': [{'t': 1.0, 'rss_mb': 550.0}, {'t': 2.0, 'rss_mb': 555.0}]},
        {'mode': 'localhost', 'error': 'TimeoutError: node not active after 240 s'},
    ],
}  # fmt: skip

LATENCY = {
    'rows': [
        {'model': 'tiny', 'variant': v, 'frames': n, 'latency_s': 0.1 * (n if v == 'all' else 1)}
        for v in ('star', 'all') for n in (10, 100, 1000)
    ]
}  # fmt: skip


LATENCY_ROWS = {
    'rows': [
        {'model': m, 'frames': n, 'ours_tokens': min(4 * n, 681), 'ours_s': 0.2,
         'baseline_tokens': 4 * n, 'baseline_s': 0.01 * n if n < 1000 else None,
         'baseline_note': '', 'answer_tokens': 16, 'update_ms': 1.0}
        for m in ('tiny', 'mid') for n in (10, 100, 1000)
    ]
}  # fmt: skip


def runs() -> list[BenchRun]:
    return [
        BenchRun('memory', '1. Memory', ['python', 'benchmarks/bench_memory.py'], 'missing',
                 note='not there yet'),
        BenchRun('latency', '2. Latency', ['python', 'x'], 'ok', 0, 3.0, LATENCY),
        BenchRun('ros_ingest', '3. ROS', ['python', 'y'], 'failed', 1, 80.0, ROS,
                 ['line 1', 'Traceback: boom']),
        BenchRun('encoder', '4. Encoder', ['python', 'z'], 'ok', 0, 9.0, ENCODER),
    ]  # fmt: skip


def test_fmt_and_table() -> None:
    assert fmt(1234567) == '1,234,567'
    assert fmt(0.5) == '0.500'
    assert fmt(12.34) == '12.3'
    assert fmt(None) == ''
    assert fmt([1, 2]) == '1, 2'
    text = table([{'a': 1, 'b': 'x|y', 'c': [1]}])
    assert text.splitlines()[0] == '| a | b |'  # list columns left out by default
    assert 'x/y' in text


def test_find_rows_prefers_rows_then_any_list_of_dicts() -> None:
    assert find_rows({'x': [{'a': 1}], 'rows': [{'b': 2}]}) == [{'b': 2}]
    assert find_rows({'results': {'star': [{'a': 1}]}}) == [{'a': 1}]
    assert find_rows({'rows': []}) == []


def test_series_groups_and_sorts() -> None:
    lines = series(LATENCY['rows'], ('frames',), ('latency_s',), ('variant',))
    assert sorted(lines) == ['all', 'star']
    assert [x for x, _ in lines['all']] == [10.0, 100.0, 1000.0]
    with pytest.raises(KeyError, match='no rows'):
        series([{'q': 1}], ('frames',), ('latency_s',), ())


def test_markdown_from_stdout_keeps_tables_and_bullets() -> None:
    printed = 'progress 1\n| a | b |\n|---|---|\n| 1 | 2 |\n* a bullet\n| c |\n|---|\ndone'
    assert markdown_from_stdout(printed).split('\n') == [
        '| a | b |',
        '|---|---|',
        '| 1 | 2 |',
        '',
        '* a bullet',
        '',
        '| c |',
        '|---|',
    ]


def test_render_reports_every_status(tmp_path: Path) -> None:
    text = render(
        runs(),
        {'encoder': {'encoder_vs_floor': 'encoder_vs_floor.png'}},
        {'command': 'python benchmarks/run_all.py', 'machine': {'cpu': 'Xeon'}},
    )
    assert '**missing**' in text
    assert 'not there yet' in text
    assert '**failed**' in text
    assert 'Traceback: boom' in text
    assert 'localhost: FAILED: TimeoutError' in text
    assert '| loopback profile | 1,800 | 1,790 | 99.4 |' in text
    assert '| CLIP ViT-L/14 224 (paper) | 1 | 1 | 1.400 |' in text
    assert '![encoder_vs_floor](encoder_vs_floor.png)' in text


def test_render_survives_an_unexpected_shape() -> None:
    bad = BenchRun('ros_ingest', '3. ROS', ['x'], 'ok', 0, 1.0, {'rows': [{'mode': 'm'}]})
    text = render([bad], {}, {})
    assert 'unexpected JSON shape' in text
    assert '| m |' in text
    printed = BenchRun('encoder', '4', ['x'], 'timeout', -2, 9.0, {}, stdout='| a |\n|---|\n')
    assert '| a |\n|---|' in render([printed], {}, {})


def test_make_plots_draws_pngs_and_reports_what_it_cannot(tmp_path: Path) -> None:
    made, problems = make_plots('encoder', ENCODER, tmp_path)
    assert made == {'encoder_vs_floor': 'encoder_vs_floor.png'}
    assert problems == []
    made, problems = make_plots('latency', LATENCY, tmp_path)
    assert made == {'latency_vs_frames': 'latency_vs_frames.png'}
    made, problems = make_plots('latency', LATENCY_ROWS, tmp_path)
    assert (made, problems) == ({'latency_vs_frames': 'latency_vs_frames.png'}, [])
    made, _ = make_plots('ros_ingest', ROS, tmp_path)
    assert made == {'rss_vs_time': 'rss_vs_time.png'}
    made, problems = make_plots('memory', {'rows': [{'frames': 10}]}, tmp_path)
    assert made == {}
    assert len(problems) == 2
    for name in ('encoder_vs_floor', 'latency_vs_frames', 'rss_vs_time'):
        assert (tmp_path / f'{name}.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'


def test_run_all_reports_missing_failing_and_passing_scripts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bench_dir = tmp_path / 'benchmarks'
    bench_dir.mkdir()
    (bench_dir / 'ok.py').write_text(
        'import json, pathlib, sys\n'
        'out = pathlib.Path(sys.argv[sys.argv.index("--out") + 1])\n'
        'out.mkdir(parents=True, exist_ok=True)\n'
        'rows = [{"encoder": "e", "threads": 1, "batch": 1, "s_per_frame": 1.0, "fps": 1.0,'
        ' "reps": 1, "gflop_per_frame": 1.0, "floor_s_per_frame": 0.5, "ratio_to_floor": 2.0}]\n'
        '(out / "encoder.json").write_text(json.dumps({"rows": rows}))\n'
    )
    (bench_dir / 'bad.py').write_text('import sys\nprint("went wrong")\nsys.exit(3)\n')
    specs = (
        run_all.BenchSpec('memory', 'M', 'absent.py', 30, 30),
        run_all.BenchSpec('latency', 'L', 'bad.py', 30, 30),
        run_all.BenchSpec('encoder', 'E', 'ok.py', 30, 30, quick_args=()),
    )
    monkeypatch.setattr(run_all, 'ROOT', tmp_path)
    monkeypatch.setattr(run_all, 'BENCHES', specs)
    monkeypatch.setattr(sys, 'argv', ['run_all.py'])
    out = tmp_path / 'out'
    assert run_all.main(['--out', str(out), '--quick']) == 1
    summary = json.loads((out / 'run_all.json').read_text())
    assert [r['status'] for r in summary['runs']] == ['missing', 'failed', 'ok']
    report = (out / 'REPORT.md').read_text()
    assert 'went wrong' in report
    assert (out / 'encoder_vs_floor.png').exists()
