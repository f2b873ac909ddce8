"""scripts/export_lm.py: the language model of a v1 or LLaVA checkpoint as a plain causal LM.

The exported folder must load with transformers' own class and give the same logits as the
language model inside the full model (what vLLM then serves for model.decoder=remote).
"""

from __future__ import annotations

import json
from pathlib import Path
import subprocess
import sys

import pytest
import torch

from flash_vstream_ros.errors import CheckpointError
from flash_vstream_ros.models.flash_vstream import load_flash_vstream
from flash_vstream_ros.models.llava import load_llava
from flash_vstream_ros.models.lm_export import export_lm, llava_rename, v1_rename
from flash_vstream_ros.models.tiny import write_tiny_llava, write_tiny_v1

pytestmark = pytest.mark.model

CPU = torch.device('cpu')
REPO_ROOT = Path(__file__).resolve().parents[1]


def ids() -> torch.Tensor:
    return torch.tensor([[1, 5, 17, 42, 99, 7, 3]])  # (1, T)


def exported_logits(folder: Path) -> torch.Tensor:
    from transformers import AutoModelForCausalLM

    lm = AutoModelForCausalLM.from_pretrained(str(folder), local_files_only=True).eval()
    with torch.inference_mode():
        return lm(input_ids=ids()).logits  # (1, T, V)


def test_v1_export_equals_the_models_language_model(tmp_path: Path) -> None:
    source = tmp_path / 'v1'
    write_tiny_v1(source)
    out = tmp_path / 'lm'
    summary = export_lm(source, out)
    assert summary['format'] == 'flash_vstream'
    assert summary['architecture'] == 'LlamaForCausalLM'
    config = json.loads((out / 'config.json').read_text())
    assert config['model_type'] == 'llama'
    assert not [k for k in config if k.startswith(('mm_', 'compress_', 'video_'))]
    index = json.loads((out / 'model.safetensors.index.json').read_text())
    names = set(index['weight_map'])
    assert 'lm_head.weight' in names
    assert 'model.embed_tokens.weight' in names
    assert not [n for n in names if 'vision' in n or 'mm_projector' in n or 'attention_model' in n]
    for f in set(index['weight_map'].values()):
        assert (out / f).is_file()
    assert (out / 'tokenizer.json').is_file()
    model = load_flash_vstream(source, CPU, torch.float32)
    with torch.inference_mode():
        want = model.modules.lm(input_ids=ids()).logits
    torch.testing.assert_close(exported_logits(out), want)


def test_llava_export_equals_the_models_language_model(tmp_path: Path) -> None:
    source = tmp_path / 'llava'
    write_tiny_llava(source)
    out = tmp_path / 'lm'
    summary = export_lm(source, out)
    assert (summary['format'], summary['architecture']) == ('llava', 'LlamaForCausalLM')
    model = load_llava(source, CPU, torch.float32)
    with torch.inference_mode():
        want = model.model(input_ids=ids()).logits  # text only: the language model's
    torch.testing.assert_close(exported_logits(out), want)


def test_half_precision_export(tmp_path: Path) -> None:
    source = tmp_path / 'v1'
    write_tiny_v1(source)
    full = export_lm(source, tmp_path / 'fp32')
    half = export_lm(source, tmp_path / 'fp16', torch.float16)
    assert half['bytes'] * 2 == full['bytes']
    config = json.loads((tmp_path / 'fp16' / 'config.json').read_text())
    assert config.get('dtype', config.get('torch_dtype')) == 'float16'


def test_renames() -> None:
    assert v1_rename('model.layers.0.self_attn.q_proj.weight') == (
        'model.layers.0.self_attn.q_proj.weight'
    )
    assert v1_rename('lm_head.weight') == 'lm_head.weight'
    for skipped in (
        'model.mm_projector.0.weight',
        'model.attention_model.q_proj.weight',
        'model.vision_tower.vision_tower.vision_model.embeddings.patch_embedding.weight',
        'model.layers.0.self_attn.rotary_emb.inv_freq',
    ):
        assert v1_rename(skipped) is None
    assert llava_rename('model.language_model.norm.weight') == 'model.norm.weight'
    assert llava_rename('language_model.model.norm.weight') == 'model.norm.weight'
    assert llava_rename('language_model.lm_head.weight') == 'lm_head.weight'
    assert llava_rename('model.vision_tower.x') is None
    assert llava_rename('model.multi_modal_projector.linear_1.weight') is None


def test_refusals(tmp_path: Path) -> None:
    source = tmp_path / 'v1'
    write_tiny_v1(source)
    (tmp_path / 'full').mkdir()
    (tmp_path / 'full' / 'x').write_text('x')
    with pytest.raises(CheckpointError, match='not empty'):
        export_lm(source, tmp_path / 'full')
    (tmp_path / 'other').mkdir()
    (tmp_path / 'other' / 'config.json').write_text(json.dumps({'model_type': 'bert'}))
    with pytest.raises(CheckpointError, match="model_type 'bert'"):
        export_lm(tmp_path / 'other', tmp_path / 'out')


def test_script(tmp_path: Path) -> None:
    source = tmp_path / 'v1'
    write_tiny_v1(source)
    run = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / 'scripts' / 'export_lm.py'),
            str(source),
            str(tmp_path / 'o'),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout.strip().splitlines()[-1])['architecture'] == 'LlamaForCausalLM'
    bad = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / 'scripts' / 'export_lm.py'),
            str(tmp_path),
            str(tmp_path / 'p'),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert bad.returncode == 1
    assert 'export_lm: missing file' in bad.stderr
