"""Both memories on CUDA in fp32/fp16/bf16 (marked gpu; skipped where there is no CUDA)."""

from __future__ import annotations

from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file
import torch

from flash_vstream_ros.config import MemoryConfig
from flash_vstream_ros.memory import build_memory

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA'),
]


@pytest.mark.parametrize('kind', ['star', 'synopsis'])
@pytest.mark.parametrize('dtype', [torch.float32, torch.float16, torch.bfloat16])
def test_paper_sizes_on_cuda(kind: str, dtype: torch.dtype, tmp_path: Path) -> None:
    cfg = MemoryConfig(kind=kind)
    mem = build_memory(cfg, 1024, device='cuda', dtype=dtype)
    x = torch.randn(40, 16, 16, 1024, device='cuda')
    for i in range(x.shape[0]):
        mem.update(x[i] * (1 + i / 40), i * 100_000_000, 'cam')  # 10 Hz, ns
    snap = mem.snapshot()
    out = snap.readout()
    assert out.tokens.device.type == 'cuda'
    assert out.tokens.dtype == dtype
    assert torch.isfinite(out.tokens.float()).all()
    assert out.tokens.shape[0] == sum(n for _, n in out.parts)
    tensors, meta = snap.state()
    save_file({k: v.contiguous().cpu() for k, v in tensors.items()}, str(tmp_path / 'm.st'))
    copy = build_memory(cfg, 1024, device='cuda', dtype=dtype)
    copy.load_state(load_file(str(tmp_path / 'm.st')), meta)
    again = copy.snapshot().readout()
    assert torch.equal(again.tokens, out.tokens)
    assert again.evidence == out.evidence


def test_learned_projections_on_cuda() -> None:
    qk = (torch.nn.Linear(1024, 32).cuda().half(), torch.nn.Linear(1024, 32).cuda().half())
    mem = build_memory(MemoryConfig(), 1024, qk=qk, device='cuda', dtype=torch.float16)
    for i in range(30):
        mem.update(torch.randn(16, 16, 1024, device='cuda'), i * 100_000_000, 'cam')
    assert mem.snapshot().readout().tokens.shape == (681, 1024)
