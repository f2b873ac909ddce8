"""scripts/check_py_compat.sh: Python 3.10 minimum (vermin, ruff), nothing removed by 3.13."""

from __future__ import annotations

from pathlib import Path
import shutil
import subprocess
import sys

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / 'scripts' / 'check_py_compat.sh'
BIN = Path(sys.executable).parent


def run(*paths: Path) -> subprocess.CompletedProcess[str]:
    env = {'PATH': f'{BIN}:/usr/bin:/bin', 'PYTHON': sys.executable}
    return subprocess.run(
        [str(SCRIPT), *map(str, paths)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        check=False,
        timeout=300,
    )


needs_tools = pytest.mark.skipif(
    shutil.which('vermin', path=str(BIN)) is None or shutil.which('ruff', path=str(BIN)) is None,
    reason='vermin and ruff are not installed beside this Python',
)


@needs_tools
def test_the_package_supports_python_3_10_to_3_13() -> None:
    done = run()
    assert done.returncode == 0, done.stdout + done.stderr


@needs_tools
@pytest.mark.parametrize(
    'source',
    [
        'type Alias = int\n',
        'import tomllib\n',
        'import distutils\n',
        'try:\n    pass\nexcept* ValueError:\n    pass\n',
    ],
    ids=['pep695', 'tomllib', 'distutils', 'except-star'],
)
def test_newer_code_is_refused(tmp_path: Path, source: str) -> None:
    bad = tmp_path / 'bad.py'
    bad.write_text(source)
    assert run(bad).returncode != 0
