"""model.decoder=remote against an in-process fake OpenAI server (no vLLM needed).

The fake answers with the same tiny language model, so the remote answer must equal the
local decoder's greedy answer token for token; the wire format, cancel, every failure mode,
the API key rules and the local fallback are checked here. The real vLLM server: see
test_remote_vllm.py (marker remote).
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
import dataclasses
import io
from pathlib import Path
import shutil
import ssl
import subprocess
import threading
import time

from _fake_openai import MODEL_NAME, FakeOpenAI
import pytest
import torch

from flash_vstream_ros.config import AppConfig, ModelConfig, RemoteConfig, with_overrides
from flash_vstream_ros.config.fields import describe
from flash_vstream_ros.engine import Engine, Question
from flash_vstream_ros.errors import ConfigError, ModelError
from flash_vstream_ros.models import load_model
from flash_vstream_ros.models.base import GenerationRequest, PromptContext
from flash_vstream_ros.models.decoder import TorchDecoder
from flash_vstream_ros.models.flash_vstream import FlashVStreamModel
from flash_vstream_ros.models.remote import RemoteDecoder, encode_embeds, read_api_key
from flash_vstream_ros.stamps import to_ns

pytestmark = pytest.mark.model

CONTEXT = PromptContext(span=(10 * 10**9, 40 * 10**9), frames_seen=31, cameras=('front',))
GREEDY = GenerationRequest(max_new_tokens=12)
SECRET = 'sk-test-0123456789-never-shown'


@pytest.fixture(scope='module')
def local(tiny_cache_dir: Path) -> Iterator[FlashVStreamModel]:
    torch.set_num_threads(1)
    model = load_model(ModelConfig(family='tiny', cache_dir=str(tiny_cache_dir), device='cpu'))
    assert isinstance(model, FlashVStreamModel)
    yield model
    model.close()


@pytest.fixture
def fake(local: FlashVStreamModel) -> Iterator[FakeOpenAI]:
    with FakeOpenAI(local.modules.lm, local.tokenizer) as server:
        yield server


def torch_decoder(model: FlashVStreamModel) -> TorchDecoder:
    decoder = model.decoder
    assert isinstance(decoder, TorchDecoder)
    return decoder


def remote(lm_owner: FlashVStreamModel, url: str, **settings: object) -> RemoteDecoder:
    base = {'url': url, 'model': MODEL_NAME, 'timeout_s': 5.0}
    base.update(settings)
    local = torch_decoder(lm_owner)
    return RemoteDecoder(RemoteConfig(**base), local.embed, local.eos_ids)  # type: ignore[arg-type]


def memory(n: int = 20, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 64, generator=torch.Generator().manual_seed(seed))  # (N, D)


def answer_with(model: FlashVStreamModel, decoder: object, request: GenerationRequest, **kw):  # type: ignore[no-untyped-def]
    """model.answer with ``decoder`` in place of the family's own, restored afterwards."""
    saved = model.decoder
    model.decoder = decoder  # type: ignore[assignment]
    try:
        return model.answer(memory(), 'What happened?', CONTEXT, request, **kw)
    finally:
        model.decoder = saved


def test_remote_tokens_equal_local_greedy(local: FlashVStreamModel, fake: FakeOpenAI) -> None:
    want = local.answer(memory(), 'What happened?', CONTEXT, GREEDY)
    pieces: list[tuple[str, int]] = []
    got = answer_with(
        local, remote(local, fake.url), GREEDY, on_token=lambda p, n: pieces.append((p, n))
    )
    assert (got.text, got.tokens, got.stop_reason) == (want.text, want.tokens, want.stop_reason)
    assert ''.join(p for p, _ in pieces) == got.text
    counts = [n for _, n in pieces]
    assert counts == sorted(counts)
    assert counts[-1] <= got.tokens
    body = fake.requests[-1]['body']
    assert body['stream'] is True
    assert body['stop_token_ids'] == sorted(local.eos_ids)
    assert body['temperature'] == 0.0
    assert body['max_tokens'] == GREEDY.max_new_tokens
    assert 'Authorization' not in fake.requests[-1]['headers']


def test_fixed_length_answers_ignore_eos(local: FlashVStreamModel, fake: FakeOpenAI) -> None:
    decoder = remote(local, fake.url)
    decoder.eos_ids = set()
    request = GenerationRequest(max_new_tokens=9)
    got = answer_with(local, decoder, request)
    assert (got.tokens, got.stop_reason) == (9, 'length')
    assert fake.requests[-1]['body']['ignore_eos'] is True
    assert 'stop_token_ids' not in fake.requests[-1]['body']


def test_prompt_embeds_on_the_wire(local: FlashVStreamModel, fake: FakeOpenAI) -> None:
    """The body carries the prompt as one (T, H) tensor: text rows from the LM's own table."""
    answer_with(local, remote(local, fake.url), GenerationRequest(max_new_tokens=1))
    sent = fake.requests[-1]['body']['prompt_embeds']
    tensor = torch.load(io.BytesIO(base64.b64decode(sent)), weights_only=True)
    before, after = local.prompt_ids('What happened?', CONTEXT)
    with torch.inference_mode():
        visual = local.modules.projector(memory())
    expected = torch_decoder(local).embed([before, visual, after])
    assert tensor.shape == (len(before) + 20 + len(after), 64)
    torch.testing.assert_close(tensor, expected, rtol=0, atol=0)
    half = encode_embeds(expected, torch.float16)
    assert len(half) < 0.6 * len(encode_embeds(expected))  # fp16 halves the payload
    view = torch.zeros(1000, 64)[:3]  # a view: its whole storage must not be sent
    assert len(encode_embeds(view)) < 4000


def test_model_name_asked_from_the_server(local: FlashVStreamModel, fake: FakeOpenAI) -> None:
    decoder = remote(local, fake.url + '/v1/', model='')
    answer_with(local, decoder, GenerationRequest(max_new_tokens=2))
    assert [r['path'] for r in fake.requests] == ['/v1/models', '/v1/completions']
    assert fake.requests[-1]['body']['model'] == MODEL_NAME
    assert decoder.name == f'remote:{fake.url}'


def test_cancel_closes_the_stream(local: FlashVStreamModel, fake: FakeOpenAI) -> None:
    fake.token_delay_s = 0.05
    decoder = remote(local, fake.url)
    decoder.eos_ids = set()
    seen: list[int] = []
    stop = threading.Event()

    def on_token(_piece: str, tokens: int) -> None:
        seen.append(tokens)
        if len(seen) == 3:
            stop.set()

    t0 = time.monotonic()
    got = answer_with(
        local,
        decoder,
        GenerationRequest(max_new_tokens=200),
        on_token=on_token,
        should_stop=stop.is_set,
    )
    assert got.stop_reason == 'cancelled'
    assert time.monotonic() - t0 < 3.0
    assert fake.client_gone.wait(3.0), 'the server never saw the client go'
    assert fake.tokens_sent < 50
    assert got.tokens < 50


def test_cancel_before_the_request(local: FlashVStreamModel, fake: FakeOpenAI) -> None:
    got = answer_with(local, remote(local, fake.url), GREEDY, should_stop=lambda: True)
    assert (got.text, got.tokens, got.stop_reason) == ('', 0, 'cancelled')
    assert fake.requests == []


@pytest.mark.parametrize(
    ('mode', 'match'),
    [
        ('garbage', 'not a server-sent event'),
        ('bad_json', 'not JSON'),
        ('die', 'ended the stream before the answer was complete'),
        ('http_error', 'HTTP 500.*engine dead'),
        ('error_event', 'failed mid-answer: out of KV cache'),
        ('slow', r'sent nothing for 0.3 s'),
    ],
)
def test_server_failures_are_model_errors(
    local: FlashVStreamModel, fake: FakeOpenAI, mode: str, match: str
) -> None:
    fake.mode, fake.delay_s = mode, 2.0
    t0 = time.monotonic()
    with pytest.raises(ModelError, match=match):
        answer_with(local, remote(local, fake.url, timeout_s=0.3), GREEDY)
    assert time.monotonic() - t0 < 2.0


def test_server_down(local: FlashVStreamModel, fake: FakeOpenAI) -> None:
    fake.stop()
    with pytest.raises(ModelError, match=r'cannot connect to .*is the server up'):
        answer_with(local, remote(local, fake.url), GREEDY)


def test_fallback_answers_locally_before_the_first_token(
    local: FlashVStreamModel, fake: FakeOpenAI
) -> None:
    want = local.answer(memory(), 'What happened?', CONTEXT, GREEDY)
    fake.stop()
    settings = RemoteConfig(url=fake.url, model=MODEL_NAME, fallback=True)
    decoder = RemoteDecoder(settings, torch_decoder(local).embed, local.eos_ids, local.decoder)
    got = answer_with(local, decoder, GREEDY)
    assert (got.text, got.tokens) == (want.text, want.tokens)


def test_no_fallback_once_the_answer_has_started(
    local: FlashVStreamModel, fake: FakeOpenAI
) -> None:
    fake.mode, fake.die_after = 'die', 2
    settings = RemoteConfig(url=fake.url, model=MODEL_NAME, fallback=True)
    decoder = RemoteDecoder(settings, torch_decoder(local).embed, set(), local.decoder)
    with pytest.raises(ModelError, match='ended the stream'):
        answer_with(local, decoder, GREEDY, on_token=lambda p, n: None)


def test_positions_refused(local: FlashVStreamModel, fake: FakeOpenAI) -> None:
    decoder = remote(local, fake.url)
    with pytest.raises(ModelError, match=r'M-RoPE.*positions cannot be sent'):
        decoder.generate([[1, 2]], GREEDY, positions=torch.zeros(3, 2, dtype=torch.long))
    assert fake.requests == []


def test_api_key_from_env_and_file(
    local: FlashVStreamModel, fake: FakeOpenAI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.api_key = SECRET
    with pytest.raises(ModelError, match='HTTP 401') as info:
        answer_with(local, remote(local, fake.url), GREEDY)
    assert SECRET not in str(info.value)
    monkeypatch.setenv('FVS_TEST_KEY', SECRET)
    by_env = remote(local, fake.url, api_key_env='FVS_TEST_KEY')
    assert answer_with(local, by_env, GREEDY).stop_reason in ('eos', 'length')
    assert fake.requests[-1]['headers']['Authorization'] == f'Bearer {SECRET}'
    key_file = tmp_path / 'key'
    key_file.write_text(SECRET + '\n')
    by_file = remote(local, fake.url, api_key_file=str(key_file))
    assert answer_with(local, by_file, GREEDY).stop_reason in ('eos', 'length')
    for shown in (repr(by_file.endpoint), by_file.name, repr(by_file.settings)):
        assert SECRET not in shown


def test_api_key_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv('FVS_TEST_KEY', raising=False)
    with pytest.raises(ConfigError, match="'FVS_TEST_KEY', which is not set"):
        read_api_key(RemoteConfig(url='http://127.0.0.1:1', api_key_env='FVS_TEST_KEY'))
    (tmp_path / 'empty').write_text('\n')
    with pytest.raises(ConfigError, match='is empty'):
        read_api_key(RemoteConfig(url='http://127.0.0.1:1', api_key_file=str(tmp_path / 'empty')))
    with pytest.raises(ConfigError, match='api_key_file'):
        read_api_key(RemoteConfig(url='http://127.0.0.1:1', api_key_file=str(tmp_path / 'none')))
    assert read_api_key(RemoteConfig(url='http://127.0.0.1:1')) is None


def test_the_key_is_never_a_parameter() -> None:
    """No parameter can hold a key: only where to read it from (ros2 param dump shows all)."""
    names = [s.name for s in describe(AppConfig)]
    remote_names = {n for n in names if n.startswith('model.remote.')}
    assert {'model.remote.api_key_env', 'model.remote.api_key_file'} <= remote_names
    assert not [n for n in names if n.endswith(('api_key', 'token', 'password', 'secret'))]
    fields = {f.name for f in dataclasses.fields(RemoteConfig)}
    assert 'api_key' not in fields


@pytest.mark.parametrize(
    ('overrides', 'match'),
    [
        ({'model.decoder': 'remote'}, 'model.remote.url is empty'),
        ({'model.remote.url': 'http://user:pw@host:8000'}, 'must not hold credentials'),
        ({'model.remote.url': 'ftp://host'}, r'must be http://HOST'),
        ({'model.remote.url': 'http://host:99999'}, 'Port out of range'),
        (
            {
                'model.decoder': 'remote',
                'model.remote.url': 'http://127.0.0.1:8000',
                'model.family': 'qwen2_vl',
            },
            'M-RoPE',
        ),
    ],
)
def test_config_errors(overrides: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        with_overrides(AppConfig(), overrides)


def test_engine_answers_again_once_the_server_is_back(
    tiny_cache_dir: Path, local: FlashVStreamModel
) -> None:
    """Server up, down (a ModelError with the reason), up again on the same port: answers."""
    first = FakeOpenAI(local.modules.lm, local.tokenizer).__enter__()
    port = first.port
    cfg = with_overrides(
        AppConfig(),
        {
            'model.family': 'tiny',
            'model.cache_dir': str(tiny_cache_dir),
            'model.device': 'cpu',
            'model.decoder': 'remote',
            'model.remote.url': first.url,
            'model.remote.model': MODEL_NAME,
            'model.remote.timeout_s': 2.0,
            'engine.ingest_rate_hz': 0.0,
        },
    )
    model = load_model(cfg.model)
    assert isinstance(model.decoder, RemoteDecoder)  # type: ignore[attr-defined]
    eng = Engine(cfg, model)
    eng.start()
    try:
        rng = torch.Generator().manual_seed(0)
        for i in range(3):
            frame = torch.randint(0, 256, (48, 64, 3), generator=rng, dtype=torch.uint8)
            eng.submit_frame(frame.numpy(), to_ns(float(i)), 'front')
        assert eng.wait_idle(60.0)
        question = Question('What happened?', max_new_tokens=4)
        assert eng.ask(question).stop_reason in ('eos', 'length')
        first.stop()
        with pytest.raises(ModelError, match='cannot connect'):
            eng.ask(question)
        with FakeOpenAI(local.modules.lm, local.tokenizer, port=port):
            assert eng.ask(question).stop_reason in ('eos', 'length')
    finally:
        eng.stop()
        model.close()


@pytest.mark.parametrize('family', ['flash_vstream', 'llava'])
def test_robot_keeps_only_the_embedding_table(
    tiny_cache_dir: Path, fake: FakeOpenAI, family: str
) -> None:
    """Without a fallback the robot releases the LM's layers and head; answers still come."""
    cfg = ModelConfig(
        family='tiny',
        tiny_family=family,
        cache_dir=str(tiny_cache_dir),
        device='cpu',
        decoder='remote',
        remote=RemoteConfig(url=fake.url, model=MODEL_NAME),
    )
    model = load_model(cfg)
    decoder = model.decoder  # type: ignore[attr-defined]
    assert isinstance(decoder, RemoteDecoder)
    assert decoder.fallback is None
    lm = model.decoder.embed.__self__.lm  # type: ignore[attr-defined]
    assert not lm.get_input_embeddings().weight.is_meta
    assert all(p.is_meta for p in lm.get_decoder().layers.parameters())
    assert lm.get_output_embeddings().weight.is_meta
    released = sum(p.numel() * 4 for p in lm.parameters() if p.is_meta)
    full = load_model(dataclasses.replace(cfg, decoder='torch'))
    assert full.parameter_bytes() - model.parameter_bytes() == released  # what the budget sees
    full.close()
    got = model.answer(memory(), 'What happened?', CONTEXT, GREEDY)
    assert got.stop_reason in ('eos', 'length')
    assert fake.requests[-1]['path'] == '/v1/completions'
    model.close()


def test_fallback_keeps_the_local_weights(tiny_cache_dir: Path, fake: FakeOpenAI) -> None:
    cfg = ModelConfig(
        family='tiny',
        cache_dir=str(tiny_cache_dir),
        device='cpu',
        decoder='remote',
        remote=RemoteConfig(url=fake.url, model=MODEL_NAME, fallback=True),
    )
    model = load_model(cfg)
    assert isinstance(model, FlashVStreamModel)
    assert not any(p.is_meta for p in model.modules.lm.parameters())
    model.close()


@pytest.fixture(scope='module')
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (openssl), and its key."""
    if shutil.which('openssl') is None:
        pytest.skip('needs the openssl command')
    folder = tmp_path_factory.mktemp('tls')
    cert, key = folder / 'cert.pem', folder / 'key.pem'
    subprocess.run(
        ['openssl', 'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2',
         '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1',
         '-keyout', str(key), '-out', str(cert)],
        capture_output=True, check=True, timeout=60,
    )  # fmt: skip
    return cert, key


def test_https_with_a_ca_file(local: FlashVStreamModel, certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(cert), str(key))
    with FakeOpenAI(local.modules.lm, local.tokenizer, tls=context) as server:
        assert server.url.startswith('https://')
        want = local.answer(memory(), 'What happened?', CONTEXT, GREEDY)
        got = answer_with(local, remote(local, server.url, ca_file=str(cert)), GREEDY)
        assert (got.text, got.tokens) == (want.text, want.tokens)
        with pytest.raises(ModelError, match=r'TLS handshake with https://127\.0\.0\.1'):
            answer_with(local, remote(local, server.url), GREEDY)  # the system store
        with pytest.raises(ModelError, match='CA file'):
            answer_with(local, remote(local, server.url, ca_file=str(key.parent / 'x')), GREEDY)
