"""The LLaVA-family backend on a tiny LlavaForConditionalGeneration saved with save_pretrained."""

from __future__ import annotations

import json
from pathlib import Path
import shutil
from typing import Any

import numpy as np
import pytest
from safetensors.torch import load_file, save_file
import torch

from flash_vstream_ros.config import MemoryConfig, ModelConfig
from flash_vstream_ros.errors import CheckpointError
from flash_vstream_ros.models import load_model
from flash_vstream_ros.models.base import GenerationRequest, PromptContext
from flash_vstream_ros.models.llava import LlavaModel, load_llava
from flash_vstream_ros.models.tiny import write_tiny_llava

pytestmark = pytest.mark.model

CPU = torch.device('cpu')
CONTEXT = PromptContext(span=(0, 300 * 10**9), frames_seen=300, cameras=('front', 'rear'))


@pytest.fixture(scope='module')
def pristine(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, torch.Tensor]]:
    """A tiny LLaVA folder and the state dict of the model that was saved."""
    folder = tmp_path_factory.mktemp('llava') / 'ckpt'
    written = write_tiny_llava(folder)
    return folder, {k: v.detach().clone() for k, v in written.state_dict().items()}


@pytest.fixture(scope='module')
def model(pristine: tuple[Path, dict[str, torch.Tensor]]) -> LlavaModel:
    return load_llava(pristine[0], CPU, torch.float32)


@pytest.fixture
def broken(pristine: tuple[Path, dict[str, torch.Tensor]], tmp_path: Path) -> Path:
    return Path(shutil.copytree(pristine[0], tmp_path / 'ckpt'))


def frames(n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    return [rng.integers(0, 256, (240 + 40 * i, 320, 3), dtype=np.uint8) for i in range(n)]


def edit_weights(folder: Path, edit: Any) -> None:
    path = folder / 'model.safetensors'
    state = dict(load_file(str(path)))
    edit(state)
    save_file(state, str(path), metadata={'format': 'pt'})


def test_every_tensor_lands_where_it_belongs(
    pristine: tuple[Path, dict], model: LlavaModel
) -> None:
    _, written = pristine
    loaded = model.model.state_dict()
    assert set(loaded) == set(written)
    for name, tensor in written.items():
        assert torch.equal(loaded[name], tensor), name


def test_encode_uses_the_configured_layer_without_cls(model: LlavaModel) -> None:
    batch = frames(3)
    maps = model.encode(batch)
    assert maps.shape == (3, 16, 16, 64)
    assert model.feature_dim == 64
    from flash_vstream_ros.models.preprocess import preprocess

    pixels = preprocess(batch, model.image, CPU, torch.float32)
    with torch.inference_mode():
        hidden = model.vision(pixel_values=pixels, output_hidden_states=True).hidden_states
    assert torch.allclose(maps, hidden[-2][:, 1:].reshape(3, 16, 16, 64))
    assert torch.equal(maps, model.encode(batch))


def test_prompt_follows_the_chat_template(model: LlavaModel) -> None:
    before, after, bos = model._prompt('The video memory covers 5 min. What happened?')
    assert before == 'USER: '
    assert after.startswith('\nThe video memory covers 5 min. What happened?')
    assert after.rstrip().endswith('ASSISTANT:')
    assert bos  # the llava-1.5 hub template has no BOS: the tokenizer adds it, as the processor


def test_encode_memory_answer(model: LlavaModel) -> None:
    from flash_vstream_ros.memory import build_memory

    memory = build_memory(MemoryConfig(), model.feature_dim, qk=model.memory_qk())
    for i, fmap in enumerate(model.encode(frames(6))):
        memory.update(fmap, i * 1_000_000_000, 'front')
    tokens = memory.snapshot().readout().tokens
    pieces: list[str] = []
    out = model.answer(
        tokens,
        'What is there?',
        CONTEXT,
        GenerationRequest(max_new_tokens=8),
        on_token=lambda piece, tokens: pieces.append(piece),
    )
    assert ''.join(pieces) == out.text
    assert out.stop_reason in ('length', 'eos')
    assert out.tokens <= 8
    cancelled = model.answer(
        tokens, 'What?', CONTEXT, GenerationRequest(), should_stop=lambda: True
    )
    assert (cancelled.stop_reason, cancelled.tokens) == ('cancelled', 0)
    assert model.memory_qk() is None
    assert model.memory_overrides() == {}


def test_tiny_llava_through_load_model(tiny_cache_dir: Path) -> None:
    m = load_model(
        ModelConfig(
            family='tiny', tiny_family='llava', cache_dir=str(tiny_cache_dir), device='cpu'
        )
    )
    assert m.family == 'llava'
    assert m.encode(frames(1)).shape == (1, 16, 16, 64)


def test_truncated_weights(broken: Path) -> None:
    path = broken / 'model.safetensors'
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError):
        load_llava(broken, CPU, torch.float32)


def test_missing_weights(broken: Path) -> None:
    (broken / 'model.safetensors').unlink()
    with pytest.raises(CheckpointError, match='no weights'):
        load_llava(broken, CPU, torch.float32)


def test_wrong_shape(broken: Path) -> None:
    def shrink(state: dict[str, torch.Tensor]) -> None:
        key = next(k for k in state if 'multi_modal_projector.linear_1.weight' in k)
        state[key] = torch.zeros(3, 3)

    edit_weights(broken, shrink)
    with pytest.raises(CheckpointError, match='linear_1'):
        load_llava(broken, CPU, torch.float32)


def test_unknown_and_missing_keys(broken: Path, tmp_path: Path) -> None:
    edit_weights(broken, lambda s: s.__setitem__('surprise.weight', torch.ones(2)))
    with pytest.raises(CheckpointError, match='surprise'):
        load_llava(broken, CPU, torch.float32)

    def drop(state: dict[str, torch.Tensor]) -> None:
        state.pop('surprise.weight')
        state.pop(next(k for k in state if 'multi_modal_projector.linear_2.bias' in k))

    edit_weights(broken, drop)
    with pytest.raises(CheckpointError, match='missing'):
        load_llava(broken, CPU, torch.float32)


@pytest.mark.parametrize(
    ('text', 'match'),
    [
        ('{not json', 'cannot parse'),
        ('{"model_type": "bert"}', "model_type 'bert'"),
    ],
)
def test_bad_config(broken: Path, text: str, match: str) -> None:
    (broken / 'config.json').write_text(text)
    with pytest.raises(CheckpointError, match=match):
        load_llava(broken, CPU, torch.float32)


def test_config_that_does_not_match_the_weights(broken: Path) -> None:
    config = json.loads((broken / 'config.json').read_text())
    config['text_config']['hidden_size'] = 96
    (broken / 'config.json').write_text(json.dumps(config))
    with pytest.raises(CheckpointError):
        load_llava(broken, CPU, torch.float32)


def test_llava_onevision_with_siglip(tmp_path: Path) -> None:
    from transformers import (
        LlavaOnevisionConfig,
        LlavaOnevisionForConditionalGeneration,
        Qwen2Config,
        SiglipVisionConfig,
    )

    from flash_vstream_ros.models.tiny import IMAGE_TOKEN, build_tokenizer

    tokenizer = build_tokenizer(with_chat_template=True)
    tokenizer.save_pretrained(str(tmp_path))
    vision = SiglipVisionConfig(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=56,
        patch_size=14,
    )
    text = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
    )
    config = LlavaOnevisionConfig(
        vision_config=vision,
        text_config=text,
        vision_feature_layer=-1,
        image_token_index=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
        vision_feature_select_strategy='full',
    )
    torch.manual_seed(0)
    LlavaOnevisionForConditionalGeneration(config).save_pretrained(str(tmp_path))
    model = load_llava(tmp_path, CPU, torch.float32)
    maps = model.encode(frames(2))
    assert maps.shape == (2, 4, 4, 64)  # SigLIP: no class token, 56 / 14 = 4
    assert model.image.size == 0  # resized straight to the square, SigLIP normalisation
    assert model.image.mean == (0.5, 0.5, 0.5)
    out = model.answer(maps[0].reshape(-1, 64), 'Q?', CONTEXT, GenerationRequest(max_new_tokens=3))
    assert out.tokens <= 3
