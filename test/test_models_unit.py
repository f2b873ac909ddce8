"""Pieces of the model backends that need no model: prompt, streaming, sampling, preprocessing."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from flash_vstream_ros.config import ModelConfig
from flash_vstream_ros.errors import BadFrameError, ConfigError
from flash_vstream_ros.models import resolve_device, resolve_dtype
from flash_vstream_ros.models.base import GenerationRequest, PromptContext
from flash_vstream_ros.models.generate import TextStream, pick_token
from flash_vstream_ros.models.preprocess import CLIP_MEAN, CLIP_STD, ImageSpec, preprocess
from flash_vstream_ros.models.prompt import context_sentence, duration_text, vicuna_v1

pytestmark = pytest.mark.unit

CPU = torch.device('cpu')


class ByteTokenizer:
    """Token i = byte i: multi-byte characters arrive in pieces, as with byte-level BPE."""

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return bytes(ids).decode('utf-8', errors='replace')


def test_import_does_not_load_transformers() -> None:
    code = 'import sys, flash_vstream_ros.models; sys.exit(int("transformers" in sys.modules))'
    assert subprocess.run([sys.executable, '-c', code], check=False).returncode == 0


@pytest.mark.parametrize(
    ('seconds', 'text'),
    [
        (0.5, '0.5 s'),
        (3.0, '3 s'),
        (42.4, '42 s'),
        (180.0, '3 min'),
        (303.0, '5 min 3 s'),
        (7500.0, '2 h 5 min'),
    ],
)
def test_duration_text(seconds: float, text: str) -> None:
    assert duration_text(seconds) == text


def test_context_sentence_and_vicuna_template() -> None:
    ctx = PromptContext(span=(10 * 10**9, 313 * 10**9), frames_seen=302, cameras=('front',))
    assert context_sentence(ctx) == (
        'The video memory covers 5 min 3 s (302 frames from camera front), ending now.'
    )
    two = PromptContext(span=(0, 10**9), frames_seen=1, cameras=('a', 'b'))
    assert '(1 frame from cameras a, b)' in context_sentence(two)
    assert context_sentence(PromptContext(None, 0, ())) == 'The video memory is empty.'
    before, after = vicuna_v1('  Where is the box? ', ctx)
    assert before.startswith('A chat between a curious user and an artificial intelligence')
    assert before.endswith(' USER: ')
    assert after == '\nWhere is the box? ASSISTANT:'  # the trained prompt: no extra sentence
    _, with_time = vicuna_v1('  Where is the box? ', ctx, time_context=True)
    assert with_time == f'\n{context_sentence(ctx)} Where is the box? ASSISTANT:'


def test_text_stream_holds_back_partial_characters() -> None:
    pieces: list[str] = []
    stream = TextStream(ByteTokenizer(), lambda piece, tokens: pieces.append(piece))
    for b in ' café 🙂!'.encode():
        stream.push(b)
    assert stream.finish() == 'café 🙂!'
    assert ''.join(pieces) == 'café 🙂!'
    assert '🙂' in pieces  # the four bytes of the emoji came out as one piece
    assert not any('\ufffd' in p for p in pieces)


def test_text_stream_pieces_carry_the_tokens_generated_so_far() -> None:
    """A piece may stand for several tokens (é: 2 bytes, 🙂: 4) or follow one that made none
    (the leading space): the count is of tokens, as the answer's ``tokens`` counts them."""
    seen: list[tuple[str, int]] = []
    stream = TextStream(ByteTokenizer(), lambda piece, tokens: seen.append((piece, tokens)))
    for b in ' café 🙂!'.encode():
        stream.push(b)
    stream.finish()
    assert seen == [('c', 2), ('a', 3), ('f', 4), ('é', 6), (' ', 7), ('🙂', 11), ('!', 12)]
    assert seen[-1][1] == len(stream.ids) == 12


def test_pick_token_greedy_and_nucleus() -> None:
    logits = torch.tensor([0.0, 5.0, 4.9, -3.0])
    assert pick_token(logits, GenerationRequest(temperature=0.0)) == 1
    torch.manual_seed(0)
    picks = {pick_token(logits, GenerationRequest(temperature=1.0, top_p=0.5)) for _ in range(50)}
    assert picks == {1}  # token 1 alone holds more than half of the mass
    picks = {
        pick_token(logits, GenerationRequest(temperature=1.0, top_p=0.99)) for _ in range(200)
    }
    assert picks >= {1, 2}
    assert 3 not in picks


def test_preprocess_resizes_crops_and_normalises() -> None:
    spec = ImageSpec(size=224, crop=224)
    grey = np.full((480, 640, 3), 128, dtype=np.uint8)
    small = np.full((20, 10, 3), 255, dtype=np.uint8)
    pixels = preprocess([grey, small], spec, CPU, torch.float32)
    assert pixels.shape == (2, 3, 224, 224)
    mean, std = torch.tensor(CLIP_MEAN), torch.tensor(CLIP_STD)
    expected = (128 / 255 - mean) / std
    assert torch.allclose(pixels[0].mean(dim=(1, 2)), expected, atol=1e-4)
    assert torch.allclose(pixels[1].mean(dim=(1, 2)), (1 - mean) / std, atol=1e-3)


def test_preprocess_center_crop_keeps_the_middle() -> None:
    frame = np.zeros((100, 300, 3), dtype=np.uint8)
    frame[:, 100:200] = 255  # only the middle third is white
    pixels = preprocess(
        [frame], ImageSpec(size=50, crop=50, mean=(0, 0, 0), std=(1, 1, 1)), CPU, torch.float32
    )
    # resized to 50x150, the 50x50 crop is the white middle (edges blur with antialiasing)
    assert pixels[..., 2:-2].min() > 0.99
    assert pixels.min() > 0.9


@pytest.mark.parametrize(
    'bad',
    [
        np.zeros((10, 10), np.uint8),
        np.zeros((10, 10, 4), np.uint8),
        np.zeros((0, 10, 3), np.uint8),
        np.zeros((10, 10, 3), np.float32),
        'not an image',
    ],
)
def test_preprocess_rejects_bad_frames(bad: object) -> None:
    with pytest.raises(BadFrameError, match='RGB uint8'):
        preprocess([bad], ImageSpec(224, 224), CPU, torch.float32)  # type: ignore[list-item]
    with pytest.raises(BadFrameError, match='no frames'):
        preprocess([], ImageSpec(224, 224), CPU, torch.float32)


def test_device_and_dtype_resolution(caplog: pytest.LogCaptureFixture) -> None:
    auto = resolve_device('auto')
    assert auto.type == ('cuda' if torch.cuda.is_available() else 'cpu')
    assert resolve_dtype('auto', CPU) == torch.float32
    assert resolve_dtype('auto', torch.device('cuda')) == torch.float16
    assert resolve_dtype('bfloat16', CPU) == torch.bfloat16
    assert 'slower' in caplog.text
    with pytest.raises(ConfigError, match='not a torch device'):
        resolve_device('gpu0')


def test_a_transformers_that_refuses_this_torch_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import transformers.utils

    from flash_vstream_ros.models import load_model, require_transformers_torch

    require_transformers_torch()  # the installed pair works
    monkeypatch.setattr(transformers.utils, 'is_torch_available', lambda: False)
    with pytest.raises(ConfigError, match=r'transformers>=4\.56,<5'):
        load_model(ModelConfig(family='tiny'))
