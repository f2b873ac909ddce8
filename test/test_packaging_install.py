"""What `pip install .` put into the environment: interfaces, executables, share/, metadata.

Checks the installed distribution where there is one (skipped on a colcon-only ROS install),
and, in the slow tier, the contents of a freshly built wheel.
"""

from __future__ import annotations

from importlib import metadata
import os
from pathlib import Path
import subprocess
import sys
import zipfile

import pytest

pytestmark = pytest.mark.unit

REPO_ROOT = Path(__file__).resolve().parents[1]
EXECUTABLES = (
    'flash_vstream_node',
    'flash_vstream_ask',
    'flash_vstream_sim_camera',
    'flash_vstream_bag',
)


@pytest.fixture(scope='module')
def dist() -> metadata.Distribution:
    try:
        return metadata.distribution('flash_vstream_ros')
    except metadata.PackageNotFoundError:
        pytest.skip('flash_vstream_ros is not pip-installed here')


def installed(dist: metadata.Distribution) -> dict[str, Path]:
    """Installed files by their path relative to the environment root (share/..., lib/...)."""
    root = Path(sys.prefix).resolve()
    out = {}
    for file in dist.files or ():
        path = Path(str(dist.locate_file(file))).resolve()
        if root in path.parents:
            out[path.relative_to(root).as_posix()] = path
    return out


def test_generated_interfaces_import_from_another_directory(tmp_path: Path) -> None:
    code = (
        'from flash_vstream_ros.msg import Evidence, MemoryStatus; '
        'from flash_vstream_ros.srv import Ask, MemoryFile; '
        'from flash_vstream_ros.action import AskStream; '
        'import flash_vstream_ros; print(flash_vstream_ros.__file__)'
    )
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    result = subprocess.run(
        [sys.executable, '-c', code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr


def test_ros_run_executables_are_installed(dist: metadata.Distribution) -> None:
    files = installed(dist)
    for exe in EXECUTABLES:
        path = files.get(f'lib/flash_vstream_ros/{exe}')
        assert path is not None, f'lib/flash_vstream_ros/{exe} not installed'
        assert os.access(path, os.X_OK)
        interpreter = path.read_text().splitlines()[0].removeprefix('#!')
        assert Path(interpreter).exists(), f'{exe}: interpreter {interpreter} missing'


def test_share_holds_package_xml_launch_and_config(dist: metadata.Distribution) -> None:
    files = installed(dist)
    for name in (
        'package.xml',
        'launch/flash_vstream.launch.py',
        'config/default.yaml',
        'config/fastdds_loopback.xml',
        'srv/Ask.srv',
    ):
        assert f'share/flash_vstream_ros/{name}' in files, name
    assert 'share/ament_index/resource_index/packages/flash_vstream_ros' in files


def test_no_egg_info_beside_the_dist_info(dist: metadata.Distribution) -> None:
    """The ament helpers' egg-info would make pip see the package twice."""
    assert not [name for name in installed(dist) if '.egg-info' in name]
    site = Path(str(dist.locate_file(''))).resolve()
    assert not list(site.glob('flash_vstream_ros*.egg-info'))


def test_console_scripts_are_declared(dist: metadata.Distribution) -> None:
    scripts = {ep.name: ep.value for ep in dist.entry_points if ep.group == 'console_scripts'}
    assert scripts['flash-vstream'] == 'flash_vstream_ros.cli:main'
    assert scripts['flash-vstream-node'] == 'flash_vstream_ros.ros.node:main'


@pytest.mark.slow
def test_built_wheel_ships_each_file_once(tmp_path: Path) -> None:
    """A fresh wheel: data tree only, no egg-info, no duplicate module, no __pycache__."""
    subprocess.run(
        [
            sys.executable,
            '-m',
            'pip',
            'wheel',
            '-q',
            '--no-deps',
            '--no-build-isolation',
            '-w',
            str(tmp_path),
            str(REPO_ROOT),
        ],
        check=True,
        timeout=900,
    )
    (wheel,) = tmp_path.glob('flash_vstream_ros-*.whl')
    names = zipfile.ZipFile(wheel).namelist()
    assert len(names) == len(set(names))
    assert not [n for n in names if '.egg-info' in n or '__pycache__' in n]
    data = [n for n in names if '.data/data/' in n]
    assert not [n for n in names if n not in data and '.dist-info/' not in n]
    site = [n.split('site-packages/', 1)[1] for n in data if 'site-packages/' in n]
    assert 'flash_vstream_ros/__init__.py' in site
    assert 'flash_vstream_ros/config/settings.py' in site
    assert any(n.startswith('flash_vstream_ros/srv/_ask') for n in site)
