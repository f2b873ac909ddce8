"""The demo family: real frozen parts, one small trained projector (model.family: demo).

EfficientNet-Lite0 (ImageNet, frozen) encodes each frame into a (7, 7, 472) map (three of its
blocks, demo_parts.TAPS); the project's memory keeps and compresses those maps like any
encoder's. At answer time the projector reads every memory token with two linear softmax heads
trained by scripts/train_demo.py (multinomial logistic regression on labelled cells): a colour
head and a shape head over the world's words plus background. Its output space is a codebook of
the LM's own word embeddings: the tokens of one colour are one object (the world gives each
object its own colour), named by the shape their heads favour together, and become the input
rows of its words (' red ball'), once, in the order the readout first shows it (a 681-token
memory holds the same object in many tokens); background tokens are dropped.
SmolLM2-135M-Instruct (torch, with the low-rank adapter of models/demo_lm.py merged) then reads
the memory as words, e.g. "red arrow, blue cross", and answers.

The discrete bottleneck is deliberate: an earlier ridge projector onto unsnapped rows made the
frozen LM answer nothing, and snapping to the whole vocabulary named the right colour for half
of the object cells only. The frozen 135M LM does not answer from the words either (it answers
yes/no presence questions at chance even from plain text), hence the adapter
(scripts/train_demo_adapter.py); the questions and answers are in sim/demo_talk.py.
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
from flash_vstream_ros.models.demo_lm import ADAPTER, load_smollm2, merge_adapter
from flash_vstream_ros.models.demo_parts import FEATURE_DIM, GRID, LiteEncoder
from flash_vstream_ros.models.prompt import user_text

log = logging.getLogger(__name__)
PROJECTOR = Path(__file__).with_name('demo_projector.npz')  # trained, in the repository
BACKGROUND = '.'  # class 0 of both heads
PROMPT_BEFORE = '<|im_start|>user\nThe video showed:'
PROMPT_AFTER = '\n{question}<|im_end|>\n<|im_start|>assistant\n'


def readout_text(objects: Sequence[str]) -> str:
    """What the LM reads after 'The video showed:': 'red ball, blue cross' or 'nothing'."""
    return ', '.join(objects) or 'nothing'


class DemoProjector:
    """(N, 472) memory tokens -> the objects they show, as words of the LM's vocabulary.

    ``weight`` (D, C + S) and ``bias`` (C + S,) hold the colour head's C logits, then the shape
    head's S (standardisation folded in); ``colours[0]`` and ``shapes[0]`` are background. A
    token shows a colour when its background probability is at most ``background_max`` (memory
    tokens average an object with its surroundings: plain argmax calls most of them background);
    the world gives every object its own colour, so the tokens of one colour are one object,
    named by the shape that their shape probabilities favour together. A colour shown by fewer
    than ``min_count`` tokens is dropped.
    """

    def __init__(
        self,
        weight: np.ndarray,
        bias: np.ndarray,
        colours: Sequence[str],
        shapes: Sequence[str],
        background_max: float = 0.9,
        min_count: int = 1,
    ) -> None:
        if weight.shape[1] != len(colours) + len(shapes) or bias.shape != (weight.shape[1],):
            raise CheckpointError(
                f'projector heads {weight.shape}/{bias.shape} do not match '
                f'{len(colours)} colours + {len(shapes)} shapes'
            )
        self.weight = torch.from_numpy(weight.astype(np.float32))  # (D, C + S)
        self.bias = torch.from_numpy(bias.astype(np.float32))  # (C + S,)
        self.colours, self.shapes = list(colours), list(shapes)
        self.background_max, self.min_count = background_max, min_count

    def probabilities(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, D) tokens -> colour (N, C) and shape (N, S) probabilities (index 0: background)."""
        x = tokens.detach().to('cpu', torch.float32)  # (N, D)
        logits = x @ self.weight + self.bias  # (N, C + S)
        c = len(self.colours)
        return logits[:, :c].softmax(1), logits[:, c:].softmax(1)

    def colour_of(self, colour_p: torch.Tensor) -> torch.Tensor:
        """(N, C) -> (N,) int64: the likeliest colour, 0 where background is too likely."""
        colour = colour_p[:, 1:].argmax(1) + 1
        colour[colour_p[:, 0] > self.background_max] = 0
        return colour

    def objects(self, tokens: torch.Tensor) -> list[str]:
        """The objects the tokens show ('red ball'), each once, in order of first showing."""
        colour_p, shape_p = self.probabilities(tokens)
        colour = self.colour_of(colour_p)  # (N,)
        found = []
        for c in dict.fromkeys(colour.tolist()):
            mine = colour == c
            if c and int(mine.sum()) >= self.min_count:
                shape = int(shape_p[mine, 1:].sum(0).argmax()) + 1
                found.append(f'{self.colours[c]} {self.shapes[shape]}')
        return found

    def text(self, tokens: torch.Tensor) -> str:
        """What the LM reads: 'red ball, blue cross' (or 'nothing')."""
        return readout_text(self.objects(tokens))


def load_projector(path: Path) -> tuple[DemoProjector, dict[str, Any]]:
    """The projector and its metadata; ConfigError when the file is missing."""
    if not path.is_file():
        raise ConfigError(
            f'the demo projector {path} is missing: regenerate it with '
            f'python scripts/train_demo.py --out {path}'
        )
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        weight, bias = arrays.pop('weight'), arrays.pop('bias')
        colours, shapes = arrays.pop('colours').tolist(), arrays.pop('shapes').tolist()
    except (KeyError, ValueError, OSError) as exc:
        raise CheckpointError(f'{path} is not a demo projector: {exc}') from exc
    if weight.ndim != 2 or weight.shape[0] != FEATURE_DIM:
        raise CheckpointError(
            f'{path}: projector weight of shape {weight.shape}, the encoder gives {FEATURE_DIM}'
        )
    meta = {k: v.tolist() for k, v in arrays.items()}
    rule = float(meta.get('background_max', 0.9)), int(meta.get('min_count', 1))
    return DemoProjector(weight, bias, colours, shapes, *rule), meta


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class DemoModel:
    """EfficientNet-Lite0 -> memory -> word projector -> SmolLM2-135M-Instruct + adapter."""

    family = 'demo'
    feature_grid = GRID
    feature_dim = FEATURE_DIM

    def __init__(self, projector_path: Path, adapter_path: Path | None = ADAPTER) -> None:
        from flash_vstream_ros.models.decoder import TorchDecoder
        from flash_vstream_ros.models.llava import eos_ids

        start = time.perf_counter()
        self.device, self.dtype = torch.device('cpu'), torch.float32
        self.projector, self.meta = load_projector(projector_path)
        self.encoder = LiteEncoder(self.device)
        self.lm, self.tokenizer = load_smollm2()
        self.adapter = merge_adapter(self.lm, adapter_path) if adapter_path else None
        self.decoder = TorchDecoder(self.lm, self.tokenizer, eos_ids(self.lm, self.tokenizer))
        self.name = (
            f'demo ({projector_path.name}, {adapter_path.name if adapter_path else "frozen LM"})'
        )
        self.load_s = time.perf_counter() - start
        log.info('loaded the %s model in %.1f s', self.name, self.load_s)

    def encode(self, frames: Sequence[np.ndarray]) -> torch.Tensor:
        return self.encoder(frames)  # (B, 7, 7, 472)

    def memory_qk(self) -> tuple[torch.nn.Module, torch.nn.Module] | None:
        return None

    def memory_overrides(self) -> dict[str, Any]:
        return {}

    def prompt_ids(
        self, question: str, context: PromptContext, time_context: bool
    ) -> tuple[list[int], list[int]]:
        after = PROMPT_AFTER.format(question=user_text(question, context, time_context))
        return self.ids(PROMPT_BEFORE), self.ids(after)

    def ids(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)['input_ids'])

    def answer(
        self,
        tokens: torch.Tensor,
        question: str,
        context: PromptContext,
        request: GenerationRequest,
        on_token: TokenCallback | None = None,
        should_stop: StopCheck | None = None,
    ) -> Generation:
        """Answer from memory tokens (N, 472): the words they show between the prompt's two
        halves (the decoder embeds them with the LM's own input table)."""
        before, after = self.prompt_ids(question, context, request.time_context)
        words = self.ids(' ' + self.projector.text(tokens))
        return self.decoder.generate([before, words, after], request, on_token, should_stop)

    def parameter_bytes(self) -> int:
        lm = sum(p.numel() * p.element_size() for p in self.lm.parameters())
        heads = self.projector.weight.numel() + self.projector.bias.numel()
        return self.encoder.parameter_bytes() + lm + heads * 4

    def close(self) -> None:
        self.decoder.close()
        self.lm = None


def load_demo(path: str, device: torch.device) -> DemoModel:
    """model.family demo: ``path`` is the projector file ('' = the one in the package)."""
    if device.type != 'cpu':
        log.info('the demo family runs on the CPU (a 135M LM); ignoring %s', device)
    return DemoModel(Path(path).expanduser() if path else PROJECTOR)
