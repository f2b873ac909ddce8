"""Prompt token ids equal the research code's (v1) and the llava-hf processors' (LLaVA), BOS
included; the released v1 checkpoint's SentencePiece-only tokenizer loads offline."""

from __future__ import annotations

import io
import json
from pathlib import Path
import shutil
from typing import Any

import numpy as np
import pytest
import torch

from flash_vstream_ros.errors import CheckpointError
from flash_vstream_ros.models import chat_templates
from flash_vstream_ros.models import flash_vstream as fv
from flash_vstream_ros.models.base import PromptContext
from flash_vstream_ros.models.llava import load_llava
from flash_vstream_ros.models.prompt import context_sentence
from flash_vstream_ros.models.tiny import CORPUS, write_tiny_llava, write_tiny_v1

pytestmark = pytest.mark.model

CPU = torch.device('cpu')
CONTEXT = PromptContext(span=(0, 300 * 10**9), frames_seen=300, cameras=('front',))
QUESTIONS = ['What happened in the video?', 'Where is the red toolbox?\nAnswer briefly.']
IMAGE_INDEX = -200  # the research code's IMAGE_TOKEN_INDEX
SYSTEM = (  # conv_vicuna_v1.system of flash_vstream/conversation.py
    'A chat between a curious user and an artificial intelligence assistant. '
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)


def research_prompt(question: str) -> str:
    """conv_vicuna_v1 (SeparatorStyle.TWO, sep ' ', sep2 '</s>') with the eval scripts' turns:
    ('USER', '<image>\\n' + question), ('ASSISTANT', None)."""
    ret = SYSTEM + ' '
    ret += 'USER' + ': ' + '<image>\n' + question + ' '  # a message ends with sep (' ')
    return ret + 'ASSISTANT' + ':'  # no message yet: the role and ':'


def research_ids(prompt: str, tokenizer: Any) -> list[int]:
    """mm_utils.tokenizer_image_token: chunks tokenized with BOS, BOS kept once."""
    chunks = [tokenizer(c).input_ids for c in prompt.split('<image>')]
    offset = int(bool(chunks[0]) and chunks[0][0] == tokenizer.bos_token_id)
    ids = [chunks[0][0]] if offset else []
    separator = [IMAGE_INDEX] * (offset + 1)
    pieces = [x for chunk in chunks for x in (chunk, separator)][:-1]
    for piece in pieces:
        ids.extend(piece[offset:])
    return ids


def write_sentencepiece_tokenizer(folder: Path) -> None:
    """tokenizer.model (trained here) + tokenizer_config.json, as IVGSZ/Flash-VStream-7b has."""
    import sentencepiece as spm

    words = ' '.join(CORPUS).split()
    sentences = [' '.join(words[i : i + 9]) for i in range(len(words))] * 3  # a few hundred
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences),
        model_writer=model,
        vocab_size=400,
        model_type='bpe',
        byte_fallback=True,  # as Llama's: unknown characters become <0x..> byte pieces
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        character_coverage=1.0,
        minloglevel=2,
    )
    folder.mkdir(parents=True, exist_ok=True)
    (folder / 'tokenizer.model').write_bytes(model.getvalue())
    config = {
        'tokenizer_class': 'LlamaTokenizer',
        'add_bos_token': True,
        'add_eos_token': False,
        'bos_token': '<s>',
        'eos_token': '</s>',
        'unk_token': '<unk>',
        'pad_token': None,
        'legacy': False,
        'model_max_length': 2048,
        'padding_side': 'right',
        'clean_up_tokenization_spaces': False,
    }
    (folder / 'tokenizer_config.json').write_text(json.dumps(config, indent=2))


@pytest.fixture(scope='module')
def v1_model(tmp_path_factory: pytest.TempPathFactory) -> fv.FlashVStreamModel:
    folder = tmp_path_factory.mktemp('v1') / 'ckpt'
    write_tiny_v1(folder)
    return fv.load_flash_vstream(folder, CPU, torch.float32)


@pytest.fixture(scope='module')
def sentencepiece_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp('sp') / 'tokenizer'
    write_sentencepiece_tokenizer(folder)
    return folder


# --------------------------------------------------------------------------- v1


@pytest.mark.parametrize('kind', ['bpe', 'sentencepiece'])
@pytest.mark.parametrize('question', QUESTIONS)
def test_v1_prompt_ids_are_the_research_templates(
    v1_model: fv.FlashVStreamModel,
    sentencepiece_folder: Path,
    monkeypatch: pytest.MonkeyPatch,
    kind: str,
    question: str,
) -> None:
    if kind == 'sentencepiece':
        monkeypatch.setattr(v1_model, 'tokenizer', fv.load_tokenizer(sentencepiece_folder))
    before, after = v1_model.prompt_ids(question, CONTEXT)
    expected = research_ids(research_prompt(question), v1_model.tokenizer)
    assert [*before, IMAGE_INDEX, *after] == expected
    assert before[0] == v1_model.tokenizer.bos_token_id


def test_v1_time_context_is_opt_in(v1_model: fv.FlashVStreamModel) -> None:
    _, plain = v1_model.prompt_ids('What happened?', CONTEXT)
    _, timed = v1_model.prompt_ids('What happened?', CONTEXT, time_context=True)
    sentence = context_sentence(CONTEXT)
    assert sentence not in v1_model.tokenizer.decode(plain)
    assert sentence in v1_model.tokenizer.decode(timed)


# --------------------------------------------------------------------------- tokenizer


def test_sentencepiece_only_folder_loads_offline(
    sentencepiece_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    assert sorted(p.name for p in sentencepiece_folder.iterdir()) == [
        'tokenizer.model',
        'tokenizer_config.json',
    ]
    tok = fv.load_tokenizer(sentencepiece_folder)
    ids = tok('Where is the red toolbox?')['input_ids']
    assert ids[0] == 1
    assert tok.eos_token_id == 2
    assert tok.decode(ids, skip_special_tokens=True) == 'Where is the red toolbox?'
    assert tok.decode(tok('東京 🙂', add_special_tokens=False)['input_ids']) == '東京 🙂'


def test_missing_sentencepiece_is_named(
    sentencepiece_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from importlib import util

    real = util.find_spec
    hidden = {'sentencepiece', 'google.protobuf'}
    monkeypatch.setattr(util, 'find_spec', lambda n, *a: None if n in hidden else real(n, *a))
    with pytest.raises(CheckpointError, match=r'installed: sentencepiece, protobuf.*pip install'):
        fv.load_tokenizer(sentencepiece_folder)
    assert fv.missing_packages(fv.SENTENCEPIECE_PACKAGES) == ['sentencepiece', 'protobuf']


# --------------------------------------------------------------------------- llava


def processor_ids(folder: Path, text: str) -> list[int]:
    """What the model card's processor gives for one image and ``text`` (image run -> 1 id)."""
    from transformers import AutoProcessor

    from flash_vstream_ros.models.llava import find_chat_template
    from flash_vstream_ros.models.tiny import CLIP_PREPROCESSOR

    (folder / 'preprocessor_config.json').write_text(json.dumps(CLIP_PREPROCESSOR))
    (folder / 'processor_config.json').write_text(
        json.dumps({'processor_class': 'LlavaProcessor', 'patch_size': 14})
    )
    proc = AutoProcessor.from_pretrained(str(folder), local_files_only=True)
    proc.chat_template = find_chat_template(folder, proc.tokenizer)
    image = np.zeros((224, 224, 3), np.uint8)
    messages = [
        {
            'role': 'user',
            'content': [{'type': 'image', 'image': image}, {'type': 'text', 'text': text}],
        }
    ]
    out = proc.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=True, return_dict=True
    )
    image_id = proc.tokenizer.convert_tokens_to_ids('<image>')
    ids = [int(i) for i in np.asarray(out['input_ids']).reshape(-1)]
    return [t for j, t in enumerate(ids) if t != image_id or ids[j - 1] != image_id]


@pytest.fixture(scope='module')
def llava_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp('llava') / 'ckpt'
    write_tiny_llava(folder)
    return folder


@pytest.mark.parametrize('layout', sorted(chat_templates.TEMPLATES))
def test_llava_prompt_ids_are_the_processors(
    llava_folder: Path, tmp_path: Path, layout: str
) -> None:
    bos = layout == 'llava-1.5'  # Vicuna has BOS; the Qwen2 tokenizers have none
    folder = tmp_path / layout
    if bos:
        shutil.copytree(llava_folder, folder)
    else:
        write_tiny_llava(folder, chat_template=chat_templates.TEMPLATES[layout], bos=False)
    model = load_llava(folder, CPU, torch.float32)
    question = 'What happened in the video?'
    before, after = model.prompt_ids(question, CONTEXT)
    image_id = model.tokenizer.convert_tokens_to_ids('<image>')
    ours = [*before, image_id, *after]
    assert ours == processor_ids(folder, question)
    documented = chat_templates.DOCUMENTED[layout].format(text=question)
    assert ours == model.tokenizer(documented)['input_ids']
    assert (ours[0] == model.tokenizer.bos_token_id) is bos
