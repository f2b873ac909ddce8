"""The Flash-VStream v1 backend on tiny checkpoints written in the exact released format."""

from __future__ import annotations

import json
from pathlib import Path
import shutil

from _torch_features import half_dtypes
import numpy as np
import pytest
import torch

from flash_vstream_ros.config import AppConfig, MemoryConfig, ModelConfig, with_overrides
from flash_vstream_ros.errors import CheckpointError, ConfigError
from flash_vstream_ros.models import load_model
from flash_vstream_ros.models.base import GenerationRequest, PromptContext
from flash_vstream_ros.models.flash_vstream import FlashVStreamModel, load_flash_vstream
from flash_vstream_ros.models.tiny import ensure_tiny, write_tiny_v1
from flash_vstream_ros.models.v1_format import VISION_PREFIX

pytestmark = pytest.mark.model

CPU = torch.device('cpu')
CONTEXT = PromptContext(span=(100 * 10**9, 130 * 10**9), frames_seen=31, cameras=('front',))
HUB_CLIP = 'openai/clip-vit-large-patch14'


@pytest.fixture(scope='module')
def pristine(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, torch.Tensor]]:
    """A tiny v1 checkpoint with the CLIP tower embedded, and the state dict written."""
    folder = tmp_path_factory.mktemp('v1') / 'ckpt'
    return folder, write_tiny_v1(folder)


@pytest.fixture(scope='module')
def model(pristine: tuple[Path, dict[str, torch.Tensor]]) -> FlashVStreamModel:
    return load_flash_vstream(pristine[0], CPU, torch.float32)


@pytest.fixture
def broken(pristine: tuple[Path, dict[str, torch.Tensor]], tmp_path: Path) -> Path:
    """A fresh copy of the pristine checkpoint, to damage."""
    return Path(shutil.copytree(pristine[0], tmp_path / 'ckpt'))


def frames(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    sizes = [(480, 640), (224, 224), (120, 90), (720, 1280)]
    return [rng.integers(0, 256, (*sizes[i % 4], 3), dtype=np.uint8) for i in range(n)]


def resolve(root: object, dotted: str) -> torch.Tensor:
    obj: object = root
    for part in dotted.split('.'):
        obj = getattr(obj, part)
    assert isinstance(obj, torch.Tensor)
    return obj


def landing_place(model: FlashVStreamModel, name: str) -> torch.Tensor:
    """Where a checkpoint tensor must land, written out independently of the loader."""
    m = model.modules
    q_proj, k_proj = model.memory_qk() or (None, None)
    if name.startswith(VISION_PREFIX + 'vision_model.'):
        rest = name[len(VISION_PREFIX + 'vision_model.') :]
        tower = m.vision.vision_model if hasattr(m.vision, 'vision_model') else m.vision
        return resolve(tower, rest)
    if name.startswith('model.attention_model.q_proj.'):
        return resolve(q_proj, name.rsplit('.', 1)[1])
    if name.startswith('model.attention_model.k_proj.'):
        return resolve(k_proj, name.rsplit('.', 1)[1])
    for prefix, module in (
        ('model.mm_projector.', m.projector),
        ('model.attention_model.', m.attention),
        ('model.', m.lm.model),
        ('lm_head.', m.lm.lm_head),
    ):
        if name.startswith(prefix):
            return resolve(module, name[len(prefix) :])
    raise AssertionError(f'unexpected checkpoint name {name}')


def rewrite_shard(folder: Path, shard: str, edit: object) -> None:
    path = folder / shard
    state = torch.load(path, weights_only=True)
    edit(state)  # type: ignore[operator]
    torch.save(state, path)


def shard_of(folder: Path, key: str) -> str:
    index = json.loads((folder / 'pytorch_model.bin.index.json').read_text())
    return str(index['weight_map'][key])


# --------------------------------------------------------------------------- format and loading


def test_tiny_checkpoint_has_the_released_layout(pristine: tuple[Path, dict]) -> None:
    folder, state = pristine
    config = json.loads((folder / 'config.json').read_text())
    assert config['model_type'] == 'vstream'
    assert config['architectures'] == ['VStreamLlamaForCausalLM']
    for key in (
        'mm_vision_tower',
        'mm_hidden_size',
        'mm_projector_type',
        'compress_size',
        'compress_long_memory_size',
        'compress_Turing_memory_size',
        'video_long_memory_length',
        'video_Turing_memory_length',
        'video_current_memory_length',
    ):
        assert key in config
    assert config['mm_vision_select_layer'] == -2
    assert config['mm_projector_type'] == 'mlp2x_gelu'
    index = json.loads((folder / 'pytorch_model.bin.index.json').read_text())
    assert set(index['weight_map']) == set(state)
    assert sorted(set(index['weight_map'].values())) == [
        'pytorch_model-00001-of-00002.bin',
        'pytorch_model-00002-of-00002.bin',
    ]
    prefixes = (
        'model.embed_tokens.',
        'model.layers.',
        'model.norm.',
        'lm_head.',
        'model.mm_projector.0.',
        'model.mm_projector.2.',
        'model.attention_model.',
        VISION_PREFIX + 'vision_model.',
    )
    assert all(k.startswith(prefixes) for k in state)
    for prefix in prefixes:
        assert any(k.startswith(prefix) for k in state), prefix
    for part in ('q_proj', 'k_proj', 'v_proj', 'out_proj', 'out_ln'):
        assert f'model.attention_model.{part}.weight' in state


def test_every_tensor_lands_where_it_belongs(
    pristine: tuple[Path, dict], model: FlashVStreamModel
) -> None:
    _, state = pristine
    for name, written in state.items():
        loaded = landing_place(model, name)
        assert loaded.shape == written.shape, name
        assert torch.equal(loaded, written), name
    assert model.parameter_bytes() == sum(
        p.numel() * p.element_size() for p in model.modules.parameters()
    )


def test_tower_from_a_separate_folder(
    pristine: tuple[Path, dict], tmp_path: Path, model: FlashVStreamModel
) -> None:
    folder, clip = tmp_path / 'ckpt', tmp_path / 'clip'
    state = write_tiny_v1(folder, embed_vision=False, vision_tower=str(clip))
    assert not any(k.startswith(VISION_PREFIX) for k in state)
    assert (clip / 'config.json').is_file()
    via_config = load_flash_vstream(folder, CPU, torch.float32)  # mm_vision_tower = clip
    config = json.loads((folder / 'config.json').read_text())
    config['mm_vision_tower'] = HUB_CLIP  # the released value: overridden by a local path
    (folder / 'config.json').write_text(json.dumps(config))
    via_override = load_model(
        ModelConfig(family='flash_vstream', path=str(folder), vision_tower=str(clip), device='cpu')
    )
    batch = frames(3)
    expected = model.encode(batch)  # same seed: the same CLIP weights as the embedded tower
    for other in (via_config, via_override):
        assert torch.allclose(other.encode(batch), expected, atol=1e-5)
        for name in state:
            assert torch.equal(landing_place(other, name), state[name]), name  # type: ignore[arg-type]
    with pytest.raises(CheckpointError, match='no embedded vision tower'):
        load_flash_vstream(folder, CPU, torch.float32, offline=True)


def test_safetensors_variant(
    pristine: tuple[Path, dict], tmp_path: Path, model: FlashVStreamModel
) -> None:
    state = write_tiny_v1(tmp_path / 'st', safetensors=True)
    assert (tmp_path / 'st' / 'model.safetensors.index.json').is_file()
    loaded = load_flash_vstream(tmp_path / 'st', CPU, torch.float32)
    for name, written in state.items():
        assert torch.equal(landing_place(loaded, name), written), name
    batch = frames(2)
    assert torch.equal(loaded.encode(batch), model.encode(batch))
    shard = tmp_path / 'st' / 'model-00001-of-00002.safetensors'
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    with pytest.raises(CheckpointError, match='truncated or corrupt'):
        load_flash_vstream(tmp_path / 'st', CPU, torch.float32)


def test_builds_are_identical(tmp_path: Path, pristine: tuple[Path, dict]) -> None:
    again = write_tiny_v1(tmp_path / 'again')
    _, state = pristine
    assert set(again) == set(state)
    assert all(torch.equal(again[k], state[k]) for k in state)


def test_load_model_tiny_builds_once(tiny_cache_dir: Path) -> None:
    first = ensure_tiny(tiny_cache_dir, 'flash_vstream')
    stamp = (first / 'config.json').stat().st_mtime_ns
    m = load_model(ModelConfig(family='tiny', cache_dir=str(tiny_cache_dir), device='cpu'))
    assert m.family == 'flash_vstream'
    assert ensure_tiny(tiny_cache_dir, 'flash_vstream') == first
    assert (first / 'config.json').stat().st_mtime_ns == stamp
    assert not [p for p in tiny_cache_dir.iterdir() if p.name.startswith('.')]  # no temp left


def test_load_model_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match='must be empty'):
        load_model(ModelConfig(family='tiny', path='/x', cache_dir=str(tmp_path)))
    with pytest.raises(ConfigError, match='path is empty'):
        load_model(ModelConfig(family='flash_vstream'))
    with pytest.raises(CheckpointError, match='does not exist'):
        load_model(ModelConfig(family='flash_vstream', path=str(tmp_path / 'nope')))
    with pytest.raises(CheckpointError, match='offline'):
        load_model(
            ModelConfig(family='flash_vstream', path='IVGSZ/Flash-VStream-7b', offline=True)
        )
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match='CUDA is not available'):
            load_model(ModelConfig(family='tiny', device='cuda', cache_dir=str(tmp_path)))


# ---------------------------------------------------------------------- encode, memory, answer


def test_encode_shapes_and_determinism(model: FlashVStreamModel) -> None:
    batch = frames(4)
    maps = model.encode(batch)
    assert maps.shape == (4, 16, 16, 64)
    assert model.feature_grid == (16, 16)
    assert model.feature_dim == 64
    assert torch.equal(maps, model.encode(batch))
    one = torch.cat([model.encode([f]) for f in batch])
    assert torch.allclose(one, maps, atol=1e-5)  # batching does not change a frame's map


def test_memory_overrides_fit_the_config(model: FlashVStreamModel) -> None:
    overrides = model.memory_overrides()
    assert overrides['memory.star.temporal_clusters'] == 25
    assert overrides['memory.star.abstract_alpha'] == pytest.approx(0.2)
    cfg = with_overrides(AppConfig(), overrides)
    assert cfg.memory.star.token_count == 681
    q, k = model.memory_qk() or (None, None)
    assert isinstance(q, torch.nn.Linear)
    assert q.weight.shape == (32, 64)
    assert isinstance(k, torch.nn.Linear)
    assert k.weight.shape == (32, 64)


def test_encode_memory_answer_streams(model: FlashVStreamModel) -> None:
    from flash_vstream_ros.memory import build_memory

    memory = build_memory(MemoryConfig(), model.feature_dim, qk=model.memory_qk())
    for i, fmap in enumerate(model.encode(frames(30))):
        memory.update(fmap, (100 + i) * 1_000_000_000, 'front')
    readout = memory.snapshot().readout()
    assert readout.tokens.shape[1] == 64
    pieces: list[str] = []
    answer = model.answer(
        readout.tokens,
        'What happened?',
        CONTEXT,
        GenerationRequest(max_new_tokens=12),
        on_token=lambda piece, tokens: pieces.append(piece),
    )
    assert answer.stop_reason in ('length', 'eos')
    assert 0 < answer.tokens <= 12
    assert ''.join(pieces) == answer.text
    again = model.answer(
        readout.tokens, 'What happened?', CONTEXT, GenerationRequest(max_new_tokens=12)
    )
    assert again == answer  # greedy is deterministic
    sampled = model.answer(
        readout.tokens,
        'What happened?',
        CONTEXT,
        GenerationRequest(max_new_tokens=6, temperature=0.8, top_p=0.9),
    )
    assert sampled.tokens <= 6


def test_answer_length_cancel_and_eos(model: FlashVStreamModel) -> None:
    tokens = torch.randn(40, 64)
    long = model.answer(tokens, 'Q?', CONTEXT, GenerationRequest(max_new_tokens=3))
    calls = []

    def stop_after_two() -> bool:
        calls.append(1)
        return len(calls) > 2

    cancelled = model.answer(
        tokens, 'Q?', CONTEXT, GenerationRequest(max_new_tokens=50), should_stop=stop_after_two
    )
    assert cancelled.stop_reason == 'cancelled'
    assert cancelled.tokens == 2
    assert (
        model.answer(tokens, 'Q?', CONTEXT, GenerationRequest(), should_stop=lambda: True).tokens
        == 0
    )
    saved = model.decoder.eos_ids
    model.decoder.eos_ids = set(range(model.tokenizer.vocab_size + 8))  # every token ends it
    try:
        eos = model.answer(tokens, 'Q?', CONTEXT, GenerationRequest())
    finally:
        model.decoder.eos_ids = saved
    assert (eos.stop_reason, eos.tokens, eos.text) == ('eos', 0, '')
    assert long.tokens == 3 or long.stop_reason == 'eos'


def test_empty_memory_answers(model: FlashVStreamModel) -> None:
    empty = PromptContext(span=None, frames_seen=0, cameras=())
    out = model.answer(torch.zeros(0, 64), 'Anything?', empty, GenerationRequest(max_new_tokens=2))
    assert out.tokens <= 2


# --------------------------------------------------------------------------- damaged checkpoints


def test_truncated_shard(broken: Path) -> None:
    shard = broken / 'pytorch_model-00002-of-00002.bin'
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=r'pytorch_model-00002-of-00002\.bin.*truncated'):
        load_flash_vstream(broken, CPU, torch.float32)


def test_missing_shard(broken: Path) -> None:
    (broken / 'pytorch_model-00001-of-00002.bin').unlink()
    with pytest.raises(CheckpointError, match=r'missing.*00001-of-00002'):
        load_flash_vstream(broken, CPU, torch.float32)


def test_wrong_shape(broken: Path) -> None:
    key = 'model.mm_projector.0.weight'
    rewrite_shard(broken, shard_of(broken, key), lambda s: s.__setitem__(key, torch.zeros(3, 3)))
    with pytest.raises(CheckpointError, match=r'mm_projector\.0\.weight has shape \(3, 3\)'):
        load_flash_vstream(broken, CPU, torch.float32)


def test_unknown_key(broken: Path) -> None:
    shard = shard_of(broken, 'lm_head.weight')
    rewrite_shard(broken, shard, lambda s: s.__setitem__('model.surprise.weight', torch.ones(2)))
    with pytest.raises(CheckpointError, match=r'unexpected key.*model\.surprise\.weight'):
        load_flash_vstream(broken, CPU, torch.float32)


def test_missing_key(broken: Path) -> None:
    key = 'model.attention_model.k_proj.weight'
    rewrite_shard(broken, shard_of(broken, key), lambda s: s.pop(key))
    with pytest.raises(CheckpointError, match=r'missing key.*attention\.k_proj\.weight'):
        load_flash_vstream(broken, CPU, torch.float32)


@pytest.mark.parametrize(
    ('text', 'match'),
    [
        ('{not json', 'cannot parse'),
        ('[1, 2]', 'JSON object'),
        ('{"model_type": "llama", "hidden_size": 64}', "model_type is 'llama'"),
        ('{"model_type": "vstream"}', 'lacks integer key'),
    ],
)
def test_bad_config(broken: Path, text: str, match: str) -> None:
    (broken / 'config.json').write_text(text)
    with pytest.raises(CheckpointError, match=match):
        load_flash_vstream(broken, CPU, torch.float32)


def test_config_that_does_not_match_the_weights(broken: Path) -> None:
    config = json.loads((broken / 'config.json').read_text())
    config['hidden_size'] = 96
    (broken / 'config.json').write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match='has shape'):
        load_flash_vstream(broken, CPU, torch.float32)


def test_missing_files(broken: Path) -> None:
    (broken / 'tokenizer.json').unlink()
    (broken / 'tokenizer_config.json').unlink()
    with pytest.raises(CheckpointError, match='tokenizer'):
        load_flash_vstream(broken, CPU, torch.float32)
    for f in broken.glob('pytorch_model*'):
        f.unlink()
    with pytest.raises(CheckpointError, match='no weights'):
        load_flash_vstream(broken, CPU, torch.float32)
    (broken / 'config.json').unlink()
    with pytest.raises(CheckpointError, match='missing file'):
        load_flash_vstream(broken, CPU, torch.float32)


@pytest.mark.parametrize('dtype', half_dtypes())
def test_half_precision_load_keeps_values(pristine: tuple[Path, dict], dtype: torch.dtype) -> None:
    folder, state = pristine
    half = load_flash_vstream(folder, CPU, dtype)
    assert {p.dtype for p in half.modules.parameters()} == {dtype}
    assert torch.get_default_dtype() == torch.float32  # the build context restored it
    name = 'model.layers.1.mlp.down_proj.weight'
    assert torch.equal(landing_place(half, name), state[name].to(dtype))
    maps = half.encode(frames(1))
    assert maps.dtype == dtype
    assert bool(torch.isfinite(maps).all())
    out = half.answer(maps[0].reshape(-1, 64), 'Q?', CONTEXT, GenerationRequest(max_new_tokens=2))
    assert out.tokens <= 2
    half.close()
    assert all(p.device.type == 'meta' for p in half.modules.parameters())
