"""The demo family: real frozen parts, one small trained projector (model.family: demo).

EfficientNet-Lite0 (ImageNet, frozen) encodes each frame into a (7, 7, 320) map; the project's
memory keeps and compresses those maps like any encoder's; at answer time a linear projector
turns every memory token into two rows in SmolLM2-135M-Instruct's input space (a "colour word"
row and a "shape word" row), and the frozen instruct LM answers on llama.cpp (GgufDecoder).

The projector is trained by scripts/train_demo.py (ridge regression, closed form): feature
vectors of patches that show an object map to the LM's own input embeddings of that object's
words (' red', ' ball'), background patches to the embedding of '.'. Being linear, it maps a
memory token that averages patches (a centroid, a pooled cell) to the same average of rows.
Each projected row is then snapped to the nearest of the LM's own input embeddings (cosine,
over the whole vocabulary: a discrete bottleneck; unsnapped rows made the frozen LM answer
nothing, measured on seed 200), and rows of empty patches are dropped (``PRUNE``).
The LM then reads the memory almost like text, e.g. "red arrow blue cross . green". Questions
that it answers this way: which objects it saw (it copies the words); what it cannot do is
compare or count (a frozen 135M model answers yes/no presence questions at chance even from
plain text: measured in scripts/train_demo.py's docstring).
"""

from __future__ import annotations

from collections.abc import Sequence
import hashlib
import logging
from pathlib import Path
import time
from typing import Any

import numpy as np
import torch

from flash_vstream_ros.errors import CheckpointError, ConfigError
from flash_vstream_ros.models.base import (
    Generation,
    GenerationRequest,
    PromptContext,
    StopCheck,
    TokenCallback,
)
from flash_vstream_ros.models.demo_parts import FEATURE_DIM, GRID, LiteEncoder, smollm2_gguf
from flash_vstream_ros.models.prompt import user_text

log = logging.getLogger(__name__)
PROJECTOR = Path(__file__).with_name('demo_projector.npz')  # trained, fp16, in the repository
ROWS_PER_TOKEN = 2  # colour row, shape row
PRUNE = 0.8  # cosine to the background row above which a token is dropped
PROMPT_BEFORE = '<|im_start|>user\nThe video showed:'
PROMPT_AFTER = '\n{question}<|im_end|>\n<|im_start|>assistant\n'


class DemoProjector:
    """(N, 320) memory tokens -> (M * 2, H) rows: x @ W + b, W (320, 2H) from the npz.

    Tokens whose colour row lies within ``prune`` (cosine) of the background row (the
    embedding of '.', the projector's target for empty patches) are dropped: the LM reads
    only the rows that show something (at least one row pair is always kept).
    """

    def __init__(
        self, weight: np.ndarray, bias: np.ndarray, background: np.ndarray, prune: float
    ) -> None:
        self.weight = torch.from_numpy(weight.astype(np.float32))  # (D, 2H)
        self.bias = torch.from_numpy(bias.astype(np.float32))  # (2H,)
        self.hidden = int(self.weight.shape[1]) // ROWS_PER_TOKEN
        self.background = torch.from_numpy(background.astype(np.float32))  # (H,)
        self.prune = prune
        self.snap: torch.Tensor | None = None  # (V, H) the LM's input embeddings, when set

    def __call__(self, tokens: torch.Tensor) -> torch.Tensor:
        x = tokens.detach().to('cpu', torch.float32)  # (N, D)
        pairs = (x @ self.weight + self.bias).reshape(len(x), ROWS_PER_TOKEN, self.hidden)
        if self.prune < 1.0 and len(x):
            cos = torch.nn.functional.cosine_similarity(pairs[:, 0], self.background[None], -1)
            keep = cos < self.prune  # (N,)
            if not bool(keep.any()):
                keep[int(cos.argmin())] = True
            pairs = pairs[keep]
        rows = pairs.reshape(-1, self.hidden)  # (2M, H)
        if self.snap is not None:  # each row -> the nearest input embedding (cosine)
            table = self.snap / self.snap.norm(dim=1, keepdim=True)  # (V, H)
            rows = self.snap[(rows @ table.T).argmax(1)]
        return rows  # (2M, H): colour, shape, colour, shape, ...


def load_projector(path: Path, prune: float = PRUNE) -> tuple[DemoProjector, dict[str, Any]]:
    """The projector and its metadata; ConfigError when the file is missing."""
    if not path.is_file():
        raise ConfigError(
            f'the demo projector {path} is missing: regenerate it with '
            f'python scripts/train_demo.py --out {path}'
        )
    with np.load(path, allow_pickle=False) as data:
        weight, bias, background = data['weight'], data['bias'], data['background']
        meta = {k: data[k].tolist() for k in data.files if k not in ('weight', 'bias')}
    if weight.shape[0] != FEATURE_DIM or weight.shape[1] % ROWS_PER_TOKEN:
        raise CheckpointError(f'{path}: projector weight of shape {weight.shape}')
    return DemoProjector(weight, bias, background, prune), meta


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class DemoModel:
    """EfficientNet-Lite0 -> memory -> linear projector -> SmolLM2-135M-Instruct (llama.cpp)."""

    family = 'demo'
    feature_grid = GRID
    feature_dim = FEATURE_DIM

    def __init__(
        self, projector_path: Path, device: torch.device, n_threads: int = 0, n_ctx: int = 4096
    ) -> None:
        from flash_vstream_ros.models.gguf import GgufDecoder

        start = time.perf_counter()
        self.device, self.dtype = device, torch.float32
        self.projector, self.meta = load_projector(projector_path)
        self.encoder = LiteEncoder(device)
        self.decoder = GgufDecoder(
            smollm2_gguf(), n_gpu_layers=0, n_ctx=n_ctx, n_threads=n_threads
        )
        table = self.decoder.table
        self.projector.snap = torch.from_numpy(table.rows(list(range(table.vocab))))  # (V, H)
        if self.decoder.n_embd != self.projector.hidden:
            raise CheckpointError(
                f'{projector_path}: projector width {self.projector.hidden}, the LM '
                f'{self.decoder.n_embd}'
            )
        self.name = f'demo ({projector_path.name})'
        self.load_s = time.perf_counter() - start
        log.info('loaded the demo model (%s) in %.1f s', projector_path, self.load_s)

    def encode(self, frames: Sequence[np.ndarray]) -> torch.Tensor:
        return self.encoder(frames)  # (B, 7, 7, 320)

    def memory_qk(self) -> tuple[torch.nn.Module, torch.nn.Module] | None:
        return None

    def memory_overrides(self) -> dict[str, Any]:
        return {}

    def prompt_ids(
        self, question: str, context: PromptContext, time_context: bool
    ) -> tuple[list[int], list[int]]:
        vocab = self.decoder.vocab
        after = PROMPT_AFTER.format(question=user_text(question, context, time_context))
        return vocab.encode(PROMPT_BEFORE, False), vocab.encode(after, False)

    def answer(
        self,
        tokens: torch.Tensor,
        question: str,
        context: PromptContext,
        request: GenerationRequest,
        on_token: TokenCallback | None = None,
        should_stop: StopCheck | None = None,
    ) -> Generation:
        """Answer from memory tokens (N, 320): 2N rows between the prompt's two halves."""
        before, after = self.prompt_ids(question, context, request.time_context)
        rows = self.projector(tokens)  # (2N, H)
        return self.decoder.generate([before, rows, after], request, on_token, should_stop)

    def parameter_bytes(self) -> int:
        gguf = smollm2_gguf().stat().st_size
        return self.encoder.parameter_bytes() + gguf + self.projector.weight.numel() * 4

    def close(self) -> None:
        self.decoder.close()


def load_demo(path: str, device: torch.device) -> DemoModel:
    """model.family demo: ``path`` is the projector file ('' = the one in the package)."""
    if device.type != 'cpu':
        log.info('the demo family runs on the CPU (llama.cpp CPU build); ignoring %s', device)
    return DemoModel(Path(path).expanduser() if path else PROJECTOR, torch.device('cpu'))
