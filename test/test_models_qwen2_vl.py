"""The qwen2_vl family on tiny checkpoints in the released layouts, through the real loader.

The strongest check: for one memory frame, our answer (pre-merger memory tokens through the
merger, our prompt ids, our M-RoPE positions, our generation loop) gives exactly the tokens
of transformers' own video path (processor-style input ids with ``<|video_pad|>``, the pixel
rows, ``video_grid_thw``, ``model.generate``), for Qwen2-VL and Qwen2.5-VL.
"""

from __future__ import annotations

from collections.abc import Iterator
import inspect
import json
from pathlib import Path
import threading
from typing import Any

import numpy as np
import pytest
from safetensors import safe_open
import torch

from flash_vstream_ros.config import AppConfig, ModelConfig, with_overrides
from flash_vstream_ros.engine import Engine, Question
from flash_vstream_ros.errors import CheckpointError
from flash_vstream_ros.models import load_model
from flash_vstream_ros.models.base import GenerationRequest, PromptContext, TokenGroup
from flash_vstream_ros.models.qwen2_vl import QwenVLModel, load_qwen2_vl
from flash_vstream_ros.models.qwen_positions import Block, prompt_positions
from flash_vstream_ros.models.qwen_vision import frames_to_patches
from flash_vstream_ros.models.tiny_qwen import write_tiny_qwen
from flash_vstream_ros.stamps import to_ns

pytestmark = pytest.mark.model
CPU = torch.device('cpu')


@pytest.fixture(scope='module')
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp('qwen')
    out = {}
    for fmt in ('flash_vstream_qwen', 'qwen2_5_vl', 'qwen2_vl'):
        write_tiny_qwen(root / fmt, fmt)
        out[fmt] = root / fmt
    return out


@pytest.fixture(scope='module')
def v2(tiny_cache_dir: Path) -> Iterator[QwenVLModel]:
    m = load_model(
        ModelConfig(
            family='tiny',
            tiny_family='flash_vstream_qwen',
            cache_dir=str(tiny_cache_dir),
            device='cpu',
        )
    )
    assert isinstance(m, QwenVLModel)
    yield m
    m.close()


def frames(n: int, seed: int = 0, size: tuple[int, int] = (48, 64)) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (*size, 3), dtype=np.uint8) for _ in range(n)]


def test_v2_checkpoint_is_in_the_released_layout(folders: dict[str, Path]) -> None:
    folder = folders['flash_vstream_qwen']
    cfg = json.loads((folder / 'config.json').read_text())
    assert cfg['model_type'] == 'flash_vstream_qwen2_vl'
    assert cfg['architectures'] == ['FlashVStreamQwen2VLModel']
    assert cfg['vision_config']['flash_memory_config']['flash_memory_temporal_length'] == 120
    index = json.loads((folder / 'model.safetensors.index.json').read_text())
    names = set(index['weight_map'])
    assert 'model.embed_tokens.weight' in names
    assert 'visual.merger.ln_q.weight' in names
    assert 'lm_head.weight' in names
    assert not any('language_model' in n for n in names)  # transformers 4 names, as released
    with safe_open(str(folder / index['weight_map']['lm_head.weight']), 'pt') as f:
        assert f.get_tensor('lm_head.weight').shape[1] == cfg['hidden_size']


def test_tiny_v2_through_load_model(v2: QwenVLModel) -> None:
    assert (v2.family, v2.model_type, v2.layout) == (
        'qwen2_vl',
        'flash_vstream_qwen2_vl',
        'am_rope',
    )
    assert v2.feature_grid == (16, 16)
    assert v2.feature_dim == 4 * 32  # a merged unit: 2x2 patches of the ViT width
    assert v2.encode(frames(2)).shape == (2, 16, 16, 128)
    assert v2.memory_overrides() == {
        'memory.kind': 'synopsis',
        'memory.synopsis.clusters': 60,
        'memory.synopsis.detail_frames': 30,
        'memory.synopsis.detail_size': 16,
        'memory.synopsis.cluster_size': 8,
    }


def test_memory_sizes_follow_the_checkpoint(folders: dict[str, Path], tmp_path: Path) -> None:
    folder = tmp_path / 'v2'
    write_tiny_qwen(folder, 'flash_vstream_qwen')
    cfg = json.loads((folder / 'config.json').read_text())
    cfg['vision_config']['flash_memory_config'].update(
        flash_memory_temporal_length=30, flash_memory_spatial_length=0
    )
    (folder / 'config.json').write_text(json.dumps(cfg))
    m = load_qwen2_vl(folder, CPU, torch.float32)
    over = m.memory_overrides()
    assert (over['memory.synopsis.clusters'], over['memory.synopsis.detail_frames']) == (15, 0)


@pytest.mark.parametrize('fmt', ['flash_vstream_qwen', 'qwen2_5_vl', 'qwen2_vl'])
def test_merger_of_the_memory_tokens_is_the_towers_output(
    folders: dict[str, Path], fmt: str
) -> None:
    """encode() gives the pre-merger features in raster order (Qwen2.5-VL: out of windows)."""
    m = load_qwen2_vl(folders[fmt], CPU, torch.float32)
    images = frames(2, size=(300, 400))
    fmap = m.encode(images)  # (2, 16, 16, 4C)
    rows, grids = frames_to_patches(images, m.image, m.side)
    with torch.inference_mode():
        out = m.visual(torch.from_numpy(rows), grid_thw=torch.from_numpy(grids))
        merged = m.merger(fmap.reshape(-1, m.vit_dim))  # (2*256, H)
    tower = getattr(out, 'pooler_output', out)  # transformers 4 returns the merged tensor
    torch.testing.assert_close(merged, tower, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize('fmt', ['qwen2_vl', 'qwen2_5_vl'])
def test_answer_equals_the_transformers_video_path(folders: dict[str, Path], fmt: str) -> None:
    m = load_qwen2_vl(folders[fmt], CPU, torch.float32)
    image = frames(1, seed=3, size=(300, 400))
    tokens = m.encode(image).reshape(256, -1)
    context = PromptContext(
        span=(0, 0), frames_seen=1, cameras=('c',), layout=(TokenGroup('detail', 256, 0),)
    )
    before, after = m.prompt_ids('What is there?', context)
    video = int(m.model.config.video_token_id)
    ids = torch.tensor([before + [video] * 256 + after])
    types = (ids == video).long() * 2
    rows, grids = frames_to_patches(image, m.image, m.side)
    extra: dict[str, Any] = (
        {'second_per_grid_ts': torch.tensor([1.0])} if fmt == 'qwen2_5_vl' else {}
    )
    rope_index = m.model.model.get_rope_index
    if 'mm_token_type_ids' in inspect.signature(rope_index).parameters:  # transformers 5
        extra['mm_token_type_ids'] = types
    theirs, _ = rope_index(
        ids, video_grid_thw=torch.from_numpy(grids), attention_mask=torch.ones_like(ids), **extra
    )
    ours = prompt_positions(
        len(before), [Block('detail', 16, 16, 0)], len(after), m.per_second, m.layout
    )
    assert torch.equal(theirs[:, 0], ours)
    with torch.inference_mode():
        gen = m.model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            pixel_values_videos=torch.from_numpy(rows),
            video_grid_thw=torch.from_numpy(grids),
            max_new_tokens=8,
            do_sample=False,
            **extra,
        )[0, ids.shape[1] :]
    want = m.tokenizer.decode(gen.tolist(), skip_special_tokens=True).lstrip()
    got = m.answer(tokens, 'What is there?', context, GenerationRequest(max_new_tokens=8))
    assert got.text == want


def test_am_rope_positions_of_v2() -> None:
    """Detail first at (base + t, row, col); synopsis at base + D + (t, row, col); the text after
    where v2's get_rope_index puts it (after the sequential layout)."""
    s = 10**9
    blocks = [
        Block('detail', 2, 2, 0),
        Block('detail', 2, 2, 8 * s),
        Block('synopsis', 1, 1, 4 * s),
    ]
    pos = prompt_positions(3, blocks, 2, 0.5, 'am_rope')
    base, d = 3, 8
    assert pos[:, :3].tolist() == [[0, 1, 2]] * 3
    assert pos[:, 3:7].tolist() == [
        [base] * 4,
        [base, base, base + 1, base + 1],
        [base, base + 1] * 2,
    ]
    assert pos[0, 7:11].tolist() == [base + 4] * 4  # 8 s at 0.5 per second
    assert pos[:, 11].tolist() == [base + d + 2, base + d, base + d]  # 4 s -> t = 2
    # sequential layout: detail t = 0, 1 (max row/col 1), synopsis t = 0 at D: text at D + 1
    assert pos[:, 12:].tolist() == [[base + d + 1, base + d + 2]] * 3


def test_v2_feeds_detail_first_with_positions(v2: QwenVLModel) -> None:
    seen: dict[str, Any] = {}

    class Recorder:
        name = 'recorder'

        def __init__(self) -> None:
            self.eos_ids: set[int] = set()

        def generate(self, prompt, request, on_token=None, should_stop=None, positions=None):  # type: ignore[no-untyped-def]
            seen.update(prompt=prompt, positions=positions)
            from flash_vstream_ros.models.base import Generation

            return Generation('', 0, 'eos')

        def close(self) -> None: ...

    real, v2.decoder = v2.decoder, Recorder()
    try:
        fmap = v2.encode(frames(2))
        syn = fmap[0, ::2, ::2].reshape(64, -1)  # an 8x8 synopsis element
        det = fmap[1].reshape(256, -1)  # a 16x16 detail element
        layout = (TokenGroup('synopsis', 64, 0), TokenGroup('detail', 256, 4 * 10**9))
        ctx = PromptContext(span=(0, 4 * 10**9), frames_seen=2, cameras=('c',), layout=layout)
        v2.answer(torch.cat([syn, det]), 'Where?', ctx, GenerationRequest())
    finally:
        v2.decoder = real
    before, visual, after = seen['prompt']
    with torch.inference_mode():
        want = v2.merger(torch.cat([det, syn]).reshape(-1, v2.vit_dim))
    torch.testing.assert_close(visual, want)
    positions = seen['positions']
    assert positions.shape == (3, len(before) + 320 + len(after))
    assert int(positions[0, len(before)]) == len(before) + 2  # the detail frame at 4 s
    tok = v2.tokenizer
    assert 'Answer the following open-ended question based on the video.' in tok.decode(after)


def make_engine(model: Any, **flat: object) -> Engine:
    base: dict[str, object] = {'engine.ingest_rate_hz': 0.0, 'engine.frame_queue_size': 1000}
    base.update(flat)
    eng = Engine(with_overrides(AppConfig(), base), model)
    eng.start()
    return eng


def ask_stream_cancel(eng: Engine) -> None:
    for i, img in enumerate(frames(6, seed=1)):
        eng.submit_frame(img, to_ns(float(i)), 'front')
    assert eng.wait_idle(120.0)
    pieces: list[str] = []
    ans = eng.ask(Question('What happened?', max_new_tokens=6), lambda p, n: pieces.append(p))
    assert ans.stop_reason in ('length', 'eos')
    assert ''.join(pieces) == ans.text
    assert ans.visual_tokens > 0
    assert ans.evidence
    cancel, seen = threading.Event(), []

    def on_token(piece: str, tokens: int) -> None:
        seen.append(piece)
        if len(seen) == 3:
            cancel.set()

    cancelled = eng.ask(Question('Describe everything.', max_new_tokens=500), on_token, cancel)
    assert cancelled.stop_reason == 'cancelled'
    assert 3 <= cancelled.answer_tokens < 500


def test_engine_on_v2_uses_the_synopsis_memory(v2: QwenVLModel) -> None:
    eng = make_engine(v2)
    try:
        assert eng.config.memory.kind == 'synopsis'  # from the checkpoint, not the default star
        ask_stream_cancel(eng)
        assert eng.ask(Question('x', max_new_tokens=1)).visual_tokens == 6 * 64 + 6 * 256
    finally:
        eng.stop()


def test_engine_on_qwen2_5_vl_by_path(folders: dict[str, Path]) -> None:
    model = load_model(
        ModelConfig(family='qwen2_vl', path=str(folders['qwen2_5_vl']), device='cpu')
    )
    eng = make_engine(model)
    try:
        ask_stream_cancel(eng)
    finally:
        eng.stop()
        model.close()


def test_star_memory_stays_usable(v2: QwenVLModel) -> None:
    eng = make_engine(v2, **{'memory.use_checkpoint_sizes': False, 'memory.kind': 'star'})
    try:
        assert eng.config.memory.kind == 'star'
        ask_stream_cancel(eng)
    finally:
        eng.stop()


def test_not_a_qwen_checkpoint(folders: dict[str, Path], tmp_path: Path) -> None:
    folder = tmp_path / 'other'
    folder.mkdir()
    (folder / 'config.json').write_text(json.dumps({'model_type': 'llava'}))
    with pytest.raises(CheckpointError, match='not a Qwen2-VL-family model'):
        load_qwen2_vl(folder, CPU, torch.float32)


@pytest.mark.parametrize('fmt', ['flash_vstream_qwen', 'qwen2_5_vl', 'qwen2_vl'])
def test_budget_shapes_from_the_config_count_every_weight(
    folders: dict[str, Path], fmt: str
) -> None:
    from flash_vstream_ros.config.budget import ModelInfo
    from flash_vstream_ros.config.model_configs import spec_from_folder

    spec = spec_from_folder(folders[fmt], weights=False)
    assert spec is not None
    m = load_qwen2_vl(folders[fmt], CPU, torch.float32)
    assert spec.parameters == sum(p.numel() for p in m.model.parameters())
    assert spec.encoder.feature_dim == m.feature_dim
    info = ModelInfo.from_model(m, AppConfig())
    assert (info.lm, info.encoder) == (spec.lm, spec.encoder)


def test_known_qwen_checkpoints_in_the_table() -> None:
    from flash_vstream_ros.config.model_specs import table_spec

    sizes = {
        'zhang9302002/Flash-VStream-Qwen-7b': 8.29,
        'Qwen/Qwen2-VL-2B-Instruct': 2.21,
        'Qwen/Qwen2-VL-7B-Instruct': 8.29,
        'Qwen/Qwen2.5-VL-3B-Instruct': 3.75,
        'Qwen/Qwen2.5-VL-7B-Instruct': 8.29,
    }  # the published parameter counts, in billions
    for hub_id, billions in sizes.items():
        spec = table_spec(hub_id)
        assert spec is not None, hub_id
        assert abs(spec.parameters / 1e9 - billions) < 0.01, (hub_id, spec.parameters)
        assert spec.encoder.feature_dim == 5120


@pytest.mark.unit
def test_token_layout_splits_parts_over_their_evidence() -> None:
    from flash_vstream_ros.engine.readouts import token_layout
    from flash_vstream_ros.memory.base import Evidence, Readout

    def ev(part: str, stamp: int) -> Evidence:
        return Evidence(part, 'c', stamp, stamp, stamp, 1.0)

    readout = Readout(
        torch.zeros(64 * 2 + 256 + 5, 4),
        (('synopsis', 128), ('detail', 256), ('front:recent', 5)),
        (ev('synopsis', 1), ev('synopsis', 2), ev('detail', 3), ev('recent', 4), ev('recent', 5)),
    )
    layout = token_layout(readout)
    assert [(g.part, g.tokens, g.stamp) for g in layout] == [
        ('synopsis', 64, 1),
        ('synopsis', 64, 2),
        ('detail', 256, 3),
        ('front:recent', 3, 4),  # 5 tokens thinned over 2 elements: the first gets one more
        ('front:recent', 2, 5),
    ]
    assert sum(g.tokens for g in layout) == readout.tokens.shape[0]
