"""scripts/check_package_xml.py: package.xml keys against the imports, torch never via rosdep."""

from __future__ import annotations

import importlib.util
from pathlib import Path
import sys
from types import ModuleType

import pytest

pytestmark = pytest.mark.unit

SCRIPT = Path(__file__).resolve().parents[1] / 'scripts' / 'check_package_xml.py'

PACKAGE_XML = """<?xml version="1.0"?>
<package format="3">
  <name>flash_vstream_ros</name>
  <buildtool_depend>ament_cmake</buildtool_depend>
  <exec_depend>rclpy</exec_depend>
  {extra}
</package>
"""
PYPROJECT = """[project]
name = 'flash_vstream_ros'
dependencies = [{deps}]
"""


@pytest.fixture(scope='module')
def checker() -> ModuleType:
    spec = importlib.util.spec_from_file_location('check_package_xml', SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules['check_package_xml'] = module
    spec.loader.exec_module(module)
    return module


def make_repo(root: Path, code: str, extra: str = '', deps: str = "'torch>=2.1'") -> Path:
    (root / 'flash_vstream_ros').mkdir()
    (root / 'flash_vstream_ros' / 'mod.py').write_text(code)
    (root / 'package.xml').write_text(PACKAGE_XML.format(extra=extra))
    (root / 'pyproject.toml').write_text(PYPROJECT.format(deps=deps))
    return root


def test_a_consistent_package_passes(checker: ModuleType, tmp_path: Path) -> None:
    code = (
        'import rclpy\nimport numpy\nimport torch\ntry:\n    import cv_bridge\n'
        'except ImportError:\n    cv_bridge = None\n'
    )
    root = make_repo(tmp_path, code, '<exec_depend>python3-numpy</exec_depend>')
    assert checker.check(root).errors == []


def test_missing_rosdep_key_is_an_error(checker: ModuleType, tmp_path: Path) -> None:
    root = make_repo(tmp_path, 'import cv2\nimport sensor_msgs.msg\n')
    errors = checker.check(root).errors
    assert any('python3-opencv' in e for e in errors)
    assert any('<exec_depend>sensor_msgs</exec_depend>' in e for e in errors)


def test_rosdep_torch_is_refused_unless_conditional(checker: ModuleType, tmp_path: Path) -> None:
    root = make_repo(tmp_path, 'import torch\n', '<exec_depend>python3-torch</exec_depend>')
    assert any('python3-torch' in e for e in checker.check(root).errors)
    cond = '<exec_depend condition="$TORCH_FROM_ROSDEP == 1">python3-torch</exec_depend>'
    (root / 'package.xml').write_text(PACKAGE_XML.format(extra=cond))
    assert checker.check(root).errors == []


def test_pinned_torch_is_refused(checker: ModuleType, tmp_path: Path) -> None:
    root = make_repo(tmp_path, 'import torch\n', deps="'torch==2.13.0'")
    assert any('pins torch' in e for e in checker.check(root).errors)


def test_pip_only_import_must_be_in_pyproject(checker: ModuleType, tmp_path: Path) -> None:
    root = make_repo(tmp_path, 'import rosbags\n')
    assert any("'rosbags' to pyproject.toml" in e for e in checker.check(root).errors)


def test_unknown_import_is_an_error(checker: ModuleType, tmp_path: Path) -> None:
    root = make_repo(tmp_path, 'import somethingnew\n')
    assert any('unknown to this check' in e for e in checker.check(root).errors)


def test_the_script_runs_on_this_repository(checker: ModuleType) -> None:
    report = checker.check(SCRIPT.parents[1])
    assert not [e for e in report.errors if 'python3-torch' in e or 'pins torch' in e]
