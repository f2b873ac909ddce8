"""The small protocol every model backend implements, and its value types.

The engine only talks to this protocol: encode frames into patch feature maps, and answer a
question from memory tokens (the backend projects them into its language model), streaming
tokens through a callback and stopping when asked.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch


@dataclass(frozen=True)
class GenerationRequest:
    """Limits for one answer."""

    max_new_tokens: int = 128
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    time_context: bool = False  # say what the memory covers before the question (untrained)


@dataclass(frozen=True)
class TokenGroup:
    """A run of memory tokens from one element (a frame map, a centroid), in readout order."""

    part: str  # the readout's part name ('synopsis', 'detail', 'front:spatial', ...)
    tokens: int
    stamp: int  # ns: the element's (weight-averaged) stamp


@dataclass(frozen=True)
class PromptContext:
    """What the prompt tells the model about the memory it is looking at."""

    span: tuple[int, int] | None  # (oldest, newest) stamp of the evidence, nanoseconds
    frames_seen: int
    cameras: tuple[str, ...]
    # the readout's tokens element by element (sums to N), for models that put each token's
    # time into their rotary positions (qwen2_vl); empty: unknown (one group of all tokens)
    layout: tuple[TokenGroup, ...] = ()


@dataclass(frozen=True)
class Generation:
    """An answer as the model produced it."""

    text: str
    tokens: int
    stop_reason: str  # 'eos' | 'length' | 'cancelled'


# on_token(piece, tokens): a new piece of the answer's text and how many tokens have been
# generated so far. A piece may stand for several tokens (a UTF-8 character split across
# byte-level tokens comes out once complete), so counting pieces would undercount the tokens.
TokenCallback = Callable[[str, int], None]
StopCheck = Callable[[], bool]


class VisionLanguageModel(Protocol):
    """A loaded model: vision encoder, projector, language model."""

    family: str
    device: torch.device
    dtype: torch.dtype
    feature_grid: tuple[int, int]  # (h, w) of encode()'s maps, e.g. (16, 16)
    feature_dim: int  # D of encode()'s maps (the memory's token width), e.g. 1024

    def encode(self, frames: Sequence[np.ndarray]) -> torch.Tensor:
        """RGB uint8 frames (H_i, W_i, 3), any sizes -> patch maps (B, h, w, D) on device."""
        ...

    def memory_qk(self) -> tuple[torch.nn.Module, torch.nn.Module] | None:
        """Trained q/k projections of the abstract memory (D -> d), or None."""
        ...

    def memory_overrides(self) -> dict[str, Any]:
        """Memory config from the checkpoint, as dotted overrides ('memory.star.*': value)."""
        ...

    def answer(
        self,
        tokens: torch.Tensor,
        question: str,
        context: PromptContext,
        request: GenerationRequest,
        on_token: TokenCallback | None = None,
        should_stop: StopCheck | None = None,
    ) -> Generation:
        """Answer from memory tokens (N, D) in readout order."""
        ...

    def parameter_bytes(self) -> int:
        """Bytes of all weights (for the GPU budget)."""
        ...

    def close(self) -> None:
        """Free the weights (and GPU memory)."""
        ...
