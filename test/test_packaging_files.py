"""The package's metadata and generated files agree with the code and with each other."""

from __future__ import annotations

import importlib.util
from pathlib import Path
import re
import subprocess
import sys
from types import ModuleType
from typing import Any
import xml.etree.ElementTree as ET

import pytest

from flash_vstream_ros import __version__
from flash_vstream_ros.config import AppConfig, load_yaml

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10
    tomllib = pytest.importorskip('tomli')

pytestmark = pytest.mark.unit

REPO_ROOT = Path(__file__).resolve().parents[1]

ROS_DEPENDS = {
    'buildtool_depend': {'ament_cmake', 'ament_cmake_python', 'rosidl_default_generators'},
    'depend': {'builtin_interfaces', 'std_msgs'},
    'exec_depend': {
        'rosidl_default_runtime',
        'rclpy',
        'sensor_msgs',
        'std_srvs',
        'diagnostic_msgs',
        'lifecycle_msgs',
        'action_msgs',
        'rosgraph_msgs',
        'python3-numpy',
        'python3-opencv',
        'python3-yaml',
    },
}
ROS_EXECUTABLES = {
    'flash_vstream_node': 'flash_vstream_ros.ros.node:main',
    'flash_vstream_ask': 'flash_vstream_ros.ros.ask_client:main',
    'flash_vstream_sim_camera': 'flash_vstream_ros.ros.sim_camera:main',
    'flash_vstream_bag': 'flash_vstream_ros.ros.bag_tools:main',
}


def load_script(name: str) -> ModuleType:
    path = REPO_ROOT / 'scripts' / f'{name}.py'
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='module')
def pyproject() -> dict[str, Any]:
    return tomllib.loads((REPO_ROOT / 'pyproject.toml').read_text())


@pytest.fixture(scope='module')
def package_xml() -> ET.Element:
    return ET.parse(REPO_ROOT / 'package.xml').getroot()


def test_default_yaml_is_the_config_defaults() -> None:
    text = (REPO_ROOT / 'config' / 'default.yaml').read_text()
    assert text == load_script('gen_default_yaml').render(), (
        'config/default.yaml is stale: run python scripts/gen_default_yaml.py'
    )
    assert load_yaml(REPO_ROOT / 'config' / 'default.yaml') == AppConfig()


def test_readme_tables_are_current() -> None:
    text = (REPO_ROOT / 'README.md').read_text()
    assert '<!-- params:start -->' in text
    assert '<!-- interfaces:start -->' in text
    assert load_script('gen_readme_tables').render(text) == text, (
        'README tables are stale: run python scripts/gen_readme_tables.py'
    )


def test_readme_names_the_two_commands() -> None:
    text = (REPO_ROOT / 'README.md').read_text()
    makefile = (REPO_ROOT / 'Makefile').read_text()
    for target in ('demo', 'test'):
        assert f'make {target}' in text
        assert re.search(rf'^{target}:', makefile, re.MULTILINE), f'Makefile has no {target}'


def test_package_xml_declares_the_package(package_xml: ET.Element) -> None:
    assert package_xml.get('format') == '3'
    assert package_xml.findtext('name') == 'flash_vstream_ros'
    assert package_xml.findtext('version') == __version__
    assert package_xml.findtext('export/build_type') == 'ament_cmake'
    assert package_xml.findtext('member_of_group') == 'rosidl_interface_packages'
    for tag, expected in ROS_DEPENDS.items():
        declared = {element.text for element in package_xml.findall(tag)}
        assert expected <= declared, f'{tag} misses {sorted(expected - declared)}'


def test_package_xml_does_not_declare_torch(package_xml: ET.Element) -> None:
    """A rosdep torch key would replace a Jetson's NVIDIA build (see README, Jetson)."""
    keys = {element.text or '' for element in package_xml.iter() if element.tag.endswith('depend')}
    assert not [key for key in keys if 'torch' in key]


def test_pyproject_matches_package(pyproject: dict[str, Any]) -> None:
    project = pyproject['project']
    assert project['name'] == 'flash_vstream_ros'
    assert project['version'] == __version__
    assert project['requires-python'] == '>=3.10'
    requirements = ' '.join(project['dependencies'] + project['optional-dependencies']['test'])
    assert 'torchvision' not in requirements
    assert project['scripts']['flash-vstream'] == 'flash_vstream_ros.cli:main'
    skbuild = pyproject['tool']['scikit-build']
    assert skbuild['wheel']['packages'] == [], 'CMake installs the Python package, not pip'
    assert skbuild['wheel']['install-dir'] == '${SKBUILD_DATA_DIR}'


def test_ros_executables_match_cmake_and_console_scripts(pyproject: dict[str, Any]) -> None:
    cmake = (REPO_ROOT / 'CMakeLists.txt').read_text()
    scripts = pyproject['project']['scripts']
    for exe, target in ROS_EXECUTABLES.items():
        assert f'"{exe}={target}"' in cmake
        assert scripts[exe.replace('_', '-')] == target


def test_build_pins_equal_the_installed_runtime_wheels(pyproject: dict[str, Any]) -> None:
    """The generated C code is compiled against the pinned wheels: they must match at run time."""
    from importlib import metadata

    checked = 0
    for requirement in pyproject['build-system']['requires']:
        name, _, pinned = requirement.partition('==')
        if not pinned:
            continue
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
        assert installed == pinned, f'{name}: built against {pinned}, installed {installed}'
        checked += 1
    if checked == 0:
        pytest.skip('no ROS 2 wheels installed here (a ROS distro install)')


def test_fastdds_profile_keeps_traffic_on_loopback() -> None:
    root = ET.parse(REPO_ROOT / 'config' / 'fastdds_loopback.xml').getroot()
    ns = {'dds': 'http://www.eprosima.com'}
    addresses = {a.text for a in root.iterfind('.//dds:address', ns)}
    assert addresses == {'127.0.0.1'}
    sizes = [int(s.text or 0) for s in root.iterfind('.//dds:segment_size', ns)]
    assert sizes
    assert min(sizes) >= 921_600 * 4, 'SHM segment must hold several 640x480 frames'


def test_interfaces_live_in_their_own_folders() -> None:
    """.srv or .action files under msg/ break the build (KeyError 'service_msgs')."""
    cmake = (REPO_ROOT / 'CMakeLists.txt').read_text()
    for kind in ('msg', 'srv', 'action'):
        files = sorted((REPO_ROOT / kind).iterdir())
        assert files
        assert all(f.suffix == f'.{kind}' for f in files), files
        for path in files:
            assert f'"{kind}/{path.name}"' in cmake, f'{kind}/{path.name} not generated'


@pytest.mark.parametrize(
    'script',
    [
        '.ci/run',
        'scripts/setup_venv.sh',
        'scripts/demo.sh',
        'scripts/colcon_smoke.sh',
        'scripts/check_uninstall.sh',
        'scripts/test_low_versions.sh',
    ],
)
def test_shell_scripts_parse(script: str) -> None:
    path = REPO_ROOT / script
    assert path.stat().st_mode & 0o111, f'{script} is not executable'
    subprocess.run(['bash', '-n', str(path)], check=True)
