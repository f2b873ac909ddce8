#!/usr/bin/env python3
"""Train the demo family's low-rank adapter (flash_vstream_ros/models/demo_adapter.npz).

    python scripts/train_demo_adapter.py --out flash_vstream_ros/models/demo_adapter.npz

The frozen SmolLM2-135M-Instruct reads the projector's words ("The video showed: yellow ball,
cyan diamond") but does not answer from them: asked which objects it saw it names a blue ball
and a green ball; asked yes/no about an object it answers at chance. So, as LLaVA does when a
projector alone is not enough, a low-rank adapter (rank ``--rank`` on q/k/v/o/up/down of the top
``--layers`` decoder layers) is trained with the LM's own loss on the answer tokens. The
projector's output space is discrete (its words), so the training readouts are sampled lists
of objects in those words (flash_vstream_ros/sim/demo_talk.py), each with one question of the
demo's types and its right answer, in exactly the prompt the demo model builds. Deterministic
(numpy and torch seeded; float32 on the CPU; another CPU may differ in the last bits).
Prints the held-out accuracy on fresh sampled readouts per question type.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
from pathlib import Path
import sys
import time
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flash_vstream_ros.models.demo import PROMPT_AFTER, PROMPT_BEFORE, readout_text
from flash_vstream_ros.models.demo_lm import MODULES, load_smollm2, module
from flash_vstream_ros.sim import demo_talk


def encode(tokenizer: Any, objects: list[str], question: str) -> list[int]:
    """The prompt's ids exactly as DemoModel.answer builds them."""
    parts = (
        PROMPT_BEFORE,
        ' ' + readout_text(objects),
        PROMPT_AFTER.format(question=question),
    )
    return [i for part in parts for i in tokenizer(part, add_special_tokens=False)['input_ids']]


class LoRA:
    """Factors A (r, in), B (out, r) on one frozen linear layer: y = W x + scale * B A x."""

    def __init__(self, linear: Any, rank: int, scale: float, gen: Any) -> None:
        import torch

        self.linear, self.scale = linear, scale
        self.a = torch.nn.Parameter(
            torch.randn(rank, linear.in_features, generator=gen) / math.sqrt(linear.in_features)
        )
        self.b = torch.nn.Parameter(torch.zeros(linear.out_features, rank))
        self.forward = linear.forward
        linear.forward = self.__call__

    def __call__(self, x: Any) -> Any:
        return self.forward(x) + self.scale * ((x @ self.a.T) @ self.b.T)


def batch_loss(lm: Any, tokenizer: Any, batch: list[tuple[list[str], str, str]]) -> Any:
    """Mean cross-entropy of the answer tokens (answer + <|im_end|>) of a batch."""
    import torch

    seqs, spans = [], []
    for objects, question, answer in batch:
        prompt = encode(tokenizer, objects, question)
        target = tokenizer(answer + '<|im_end|>', add_special_tokens=False)['input_ids']
        seqs.append(prompt + target)
        spans.append((len(prompt), len(prompt) + len(target)))
    width = max(len(s) for s in seqs)
    ids = torch.zeros(len(seqs), width, dtype=torch.long)
    mask = torch.zeros(len(seqs), width, dtype=torch.long)
    for k, s in enumerate(seqs):
        ids[k, : len(s)] = torch.tensor(s)
        mask[k, : len(s)] = 1
    hidden = lm.model(input_ids=ids, attention_mask=mask).last_hidden_state  # (B, T, H)
    rows = torch.cat([hidden[k, a - 1 : b - 1] for k, (a, b) in enumerate(spans)])  # (n, H)
    labels = torch.cat([ids[k, a:b] for k, (a, b) in enumerate(spans)])  # (n,)
    return torch.nn.functional.cross_entropy(lm.lm_head(rows), labels)


def held_out(lm: Any, tokenizer: Any, n: int, seed: int) -> dict[str, float]:
    """Greedy answers to ``n`` fresh sampled questions: exact-answer rate per question type."""
    import torch

    rng = np.random.default_rng(seed)
    right: dict[str, list[int]] = {}
    for _ in range(n):
        objects = demo_talk.sample_readout(rng)
        question, answer = demo_talk.sample_question(rng, objects)
        ids = torch.tensor([encode(tokenizer, objects, question)])
        with torch.inference_mode():
            out = lm.generate(ids, max_new_tokens=32, do_sample=False, pad_token_id=0)
        text = tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True).strip()
        kind = question.split()[0] + ' ' + question.split()[1]
        right.setdefault(kind, []).append(int(text == answer))
    return {k: round(sum(v) / len(v), 3) for k, v in sorted(right.items())}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--out', default='flash_vstream_ros/models/demo_adapter.npz')
    ap.add_argument('--steps', type=int, default=400)
    ap.add_argument('--batch', type=int, default=8)
    ap.add_argument('--lr', type=float, default=2e-3)
    ap.add_argument('--rank', type=int, default=8)
    ap.add_argument('--layers', type=int, default=12, help='adapt the top N decoder layers')
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--check', type=int, default=200, help='held-out questions after training')
    args = ap.parse_args()

    import torch

    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    torch.manual_seed(args.seed)
    start = time.perf_counter()
    lm, tokenizer = load_smollm2()
    for p in lm.parameters():
        p.requires_grad_(False)
    n_layers = lm.config.num_hidden_layers
    names = [
        f'model.layers.{i}.{m}' for i in range(n_layers - args.layers, n_layers) for m in MODULES
    ]
    gen = torch.Generator().manual_seed(args.seed)
    scale = 2.0  # alpha / rank with alpha = 2 * rank
    adapters = [LoRA(module(lm, n), args.rank, scale, gen) for n in names]
    params = [p for a in adapters for p in (a.a, a.b)]
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0)
    rng = np.random.default_rng(args.seed)
    print(
        f'loaded in {time.perf_counter() - start:.1f} s; {sum(p.numel() for p in params)} params'
    )
    for step in range(args.steps):
        lr = (
            args.lr * min(1.0, (step + 1) / 20) * 0.5 * (1 + math.cos(math.pi * step / args.steps))
        )
        for group in opt.param_groups:
            group['lr'] = lr
        batch = []
        for _ in range(args.batch):
            objects = demo_talk.sample_readout(rng)
            batch.append((objects, *demo_talk.sample_question(rng, objects)))
        loss = batch_loss(lm, tokenizer, batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 10 == 0 or step == args.steps - 1:
            print(
                f'step {step}: loss {loss.item():.4f} ({time.perf_counter() - start:.0f} s)',
                flush=True,
            )
    train_s = time.perf_counter() - start
    out = Path(args.out)
    arrays: dict[str, Any] = {}
    for k, a in enumerate(adapters):
        arrays[f'f{k}_a'] = a.a.detach().numpy().astype(np.float16)
        arrays[f'f{k}_b'] = a.b.detach().numpy().astype(np.float16)
    np.savez(
        out,
        names=np.asarray(names),
        scale=np.asarray(scale),
        rank=np.asarray(args.rank),
        steps=np.asarray(args.steps),
        batch=np.asarray(args.batch),
        lr=np.asarray(args.lr),
        seed=np.asarray(args.seed),
        **arrays,
    )
    for a in adapters:  # answer with the merged adapter, as the demo model does
        a.linear.forward = a.forward
    from flash_vstream_ros.models.demo_lm import merge_adapter

    merge_adapter(lm, out)
    check = held_out(lm, tokenizer, args.check, seed=10_000 + args.seed)
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    print(
        json.dumps(
            {
                'out': str(out),
                'sha256': digest,
                'bytes': out.stat().st_size,
                'train_s': round(train_s, 1),
                'held_out_exact': check,
                'seconds': round(time.perf_counter() - start, 1),
            }
        )
    )
    return 0


if __name__ == '__main__':
    sys.exit(main())
