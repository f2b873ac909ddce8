"""The remote tier: a real vLLM server on 127.0.0.1 answering for the engine and the node.

Skipped unless FVS_VLLM_PYTHON is the python of the vllm venv (scripts/setup_vllm_venv.sh;
.ci/run's remote step sets it). The server serves the language model exported from a tiny
Flash-VStream v1 checkpoint (head_dim 32, what vLLM's CPU attention takes); the robot side
loads the full checkpoint with model.decoder=remote. Tests run in file order on one server:

1. the node starts while the server is down and says so per question; once the server is up
   the same node answers, and its answer equals the local transformers decoder's greedy one
   for the same memory (a memory file) and the same question;
2. the token ids vLLM generates equal transformers' ``generate(inputs_embeds=...)``;
3. a cancel closes the stream and vLLM stops generating;
4. the server killed mid-answer: success=false with the reason within the timeout; the node
   answers again after the server restarts, without a node restart.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
import time
from typing import Any

from _vllm_server import SERVED, VllmServer, build_models, vllm_python
from action_msgs.msg import GoalStatus
import numpy as np
import pytest
from rclpy.action import ActionClient
from rclpy.qos import QoSProfile
import torch

from flash_vstream_ros.action import AskStream
from flash_vstream_ros.config import AppConfig, RemoteConfig, with_overrides
from flash_vstream_ros.engine import Engine, Question
from flash_vstream_ros.models.base import GenerationRequest, PromptContext
from flash_vstream_ros.models.decoder import TorchDecoder
from flash_vstream_ros.models.flash_vstream import FlashVStreamModel, load_flash_vstream
from flash_vstream_ros.models.remote import RemoteDecoder
from flash_vstream_ros.msg import MemoryStatus
from flash_vstream_ros.srv import Ask, MemoryFile
from flash_vstream_ros.stamps import to_ns

from _ros_node_helpers import Client, Proc, result_of, start_node, wait_for, write_params  # isort: skip

pytestmark = [
    pytest.mark.remote,
    pytest.mark.timeout(900),  # the first and the last test each start vLLM (60-150 s)
    pytest.mark.skipif(
        not vllm_python(),
        reason='FVS_VLLM_PYTHON is not set (the vllm venv: scripts/setup_vllm_venv.sh)',
    ),
]

DOMAIN_ID = 83
NODE = '/flash_vstream'
TIMEOUT_S = 10.0  # model.remote.timeout_s of the node
QUESTION = 'What happened in the video?'
LONG = 1500  # tokens: an answer that is still running when it is cancelled or cut


@pytest.fixture(scope='module')
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp('remote')


@pytest.fixture(scope='module')
def models(workdir: Path) -> tuple[Path, Path]:
    return build_models(workdir)


@pytest.fixture(scope='module')
def server(models: tuple[Path, Path], workdir: Path) -> Iterator[VllmServer]:
    # not started: the first test starts it; a context room for LONG answers
    srv = VllmServer(models[1], workdir, max_model_len=2048)
    try:
        yield srv
    finally:
        srv.stop()


def base_config(checkpoint: Path, **flat: object) -> AppConfig:
    values: dict[str, object] = {
        'model.family': 'flash_vstream',
        'model.path': str(checkpoint),
        'model.device': 'cpu',
        'engine.ingest_rate_hz': 0.0,
        'engine.question_queue_size': 0,
        'generation.max_new_tokens': 24,
        'ros.image_topics': [],
        'ros.compressed_topics': [],
        'ros.status_period_s': 0.5,
    }
    values.update(flat)
    return with_overrides(AppConfig(), values)


@pytest.fixture(scope='module')
def local_memory(models: tuple[Path, Path], workdir: Path) -> tuple[Path, Any]:
    """A memory file written by a local (torch) engine, and that engine's greedy answer."""
    torch.set_num_threads(1)
    cfg = base_config(models[0])
    from flash_vstream_ros.models import load_model

    model = load_model(cfg.model)
    eng = Engine(cfg, model)
    eng.start()
    try:
        rng = np.random.default_rng(0)
        for i in range(6):
            frame = rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)
            eng.submit_frame(frame, to_ns(100.0 + i), 'front')
        assert eng.wait_idle(120.0)
        path = workdir / 'memory.fvs'
        eng.save_memory(str(path))
        answer = eng.ask(Question(QUESTION, max_new_tokens=24))
    finally:
        eng.stop()
        model.close()
    return path, answer


@pytest.fixture(scope='module')
def node(models: tuple[Path, Path], server: VllmServer, workdir: Path) -> Iterator[Proc]:
    cfg_overrides = {
        'model.family': 'flash_vstream',
        'model.path': str(models[0]),
        'model.device': 'cpu',
        'model.decoder': 'remote',
        'model.remote.url': server.url,
        'model.remote.model': SERVED,
        'model.remote.timeout_s': TIMEOUT_S,
        'model.remote.connect_timeout_s': 2.0,
        'engine.ingest_rate_hz': 0.0,
        'engine.question_queue_size': 0,
        'generation.max_new_tokens': LONG,  # a request may lower it, never raise it
        'ros.image_topics': [],
        'ros.compressed_topics': [],
        'ros.status_period_s': 0.5,
    }
    params = write_params(workdir / 'params.yaml', cfg_overrides)
    proc = start_node(params, DOMAIN_ID, workdir / 'node.log')
    try:
        yield proc
    finally:
        proc.stop(timeout=10.0)


@pytest.fixture(scope='module')
def client(node: Proc) -> Iterator[Client]:
    c = Client(DOMAIN_ID)
    c.subscribe(MemoryStatus, f'{NODE}/memory_status')
    try:
        wait_for(
            lambda: any(m.state == 'active' for m in c.messages(f'{NODE}/memory_status')),
            240.0,
            f'the node active; log:\n{node.text()[-3000:]}',
        )
        yield c
    finally:
        c.close()


def ask(client: Client, question: str = QUESTION, **fields: Any) -> Any:
    request = Ask.Request(question=question, temperature=-1.0, max_new_tokens=24)
    for name, value in fields.items():
        setattr(request, name, value)
    return client.call(Ask, f'{NODE}/ask', request, timeout=120.0)


def action_client(client: Client) -> ActionClient[Any, Any, Any]:
    action: ActionClient[Any, Any, Any] = client.on_executor(
        lambda: ActionClient(
            client.node,
            AskStream,
            f'{NODE}/ask_stream',
            feedback_sub_qos_profile=QoSProfile(depth=256),
        )
    )
    assert action.wait_for_server(timeout_sec=30.0)
    return action


def start_long_goal(client: Client, feedback: list[Any]) -> Any:
    action = action_client(client)
    goal = AskStream.Goal(question='describe everything', max_new_tokens=LONG, temperature=0.0)
    handle = result_of(
        client.send_goal(action, goal, lambda f: feedback.append(f.feedback)), 30.0, 'goal'
    )
    assert handle.accepted
    wait_for(lambda: len(feedback) >= 3, 60.0, 'the first streamed tokens')
    return handle


def test_node_up_before_the_server_then_answers_as_the_local_decoder(
    client: Client, server: VllmServer, local_memory: tuple[Path, Any], node: Proc
) -> None:
    path, local = local_memory
    loaded = client.call(MemoryFile, f'{NODE}/load_memory', MemoryFile.Request(path=str(path)))
    assert loaded.success, loaded.message
    t0 = time.monotonic()
    down = ask(client)
    assert not down.success
    assert 'cannot connect' in down.error_message, down.error_message
    assert time.monotonic() - t0 < 30.0
    server.start()
    server.wait_ready()
    answer = ask(client)
    assert answer.success, f'{answer.error_message}\n{node.text()[-2000:]}'
    assert (answer.answer, answer.answer_tokens, answer.stop_reason) == (
        local.text,
        local.answer_tokens,
        local.stop_reason,
    )
    assert answer.visual_tokens == local.visual_tokens


def test_token_ids_equal_transformers_greedy(
    models: tuple[Path, Path], server: VllmServer
) -> None:
    """Token for token: vLLM's ids (return_token_ids) against transformers' generate."""
    assert server.ready()
    model: FlashVStreamModel = load_flash_vstream(models[0], torch.device('cpu'), torch.float32)
    local = model.decoder
    assert isinstance(local, TorchDecoder)
    settings = RemoteConfig(url=server.url, model=SERVED, timeout_s=TIMEOUT_S)
    remote = RemoteDecoder(settings, local.embed, set())  # no eos: a fixed length
    context = PromptContext(span=(0, 10**10), frames_seen=5, cameras=('front',))
    tokens = torch.randn(40, 64, generator=torch.Generator().manual_seed(1))  # (N, D)
    before, after = model.prompt_ids(QUESTION, context)
    with torch.inference_mode():
        visual = model.modules.projector(tokens)  # (N, H)
        embeds = local.embed([before, visual, after])  # (T, H)
        want = model.modules.lm.generate(
            inputs_embeds=embeds.unsqueeze(0),
            attention_mask=torch.ones(1, embeds.shape[0], dtype=torch.long),
            max_new_tokens=32,
            min_new_tokens=32,
            do_sample=False,
            eos_token_id=None,
            pad_token_id=0,
        )[0].tolist()
    got = remote.generate([before, visual, after], GenerationRequest(max_new_tokens=32))
    assert got.tokens == 32
    assert remote.last_token_ids == want
    model.close()


def test_cancel_closes_the_stream_and_vllm_stops(client: Client, server: VllmServer) -> None:
    feedback: list[Any] = []
    handle = start_long_goal(client, feedback)
    cancel = result_of(handle.cancel_goal_async(), 30.0, 'cancel response')
    assert len(cancel.goals_canceling) == 1
    response = result_of(handle.get_result_async(), 60.0, 'cancelled result')
    r = response.result
    assert response.status == GoalStatus.STATUS_CANCELED, (r.stop_reason, r.answer_tokens)
    assert response.result.stop_reason == 'cancelled'
    assert 3 <= response.result.answer_tokens < LONG
    wait_for(lambda: server.running_requests() == 0, 10.0, 'vLLM running no request')
    assert ask(client, max_new_tokens=2).success


def test_server_killed_mid_answer_then_back(
    client: Client, server: VllmServer, local_memory: tuple[Path, Any], node: Proc
) -> None:
    feedback: list[Any] = []
    handle = start_long_goal(client, feedback)
    t0 = time.monotonic()
    server.kill()  # SIGKILL to the server and its engine core
    response = result_of(handle.get_result_async(), TIMEOUT_S + 30.0, 'result after the kill')
    elapsed = time.monotonic() - t0
    r = response.result
    assert response.status == GoalStatus.STATUS_ABORTED, (r.stop_reason, r.answer_tokens)
    assert not response.result.success
    assert 'closed' in response.result.error_message or 'ended' in response.result.error_message
    assert elapsed < TIMEOUT_S + 5.0
    assert node.alive()
    down = ask(client)
    assert not down.success
    assert 'cannot connect' in down.error_message
    server.start()
    server.wait_ready()
    back = ask(client)
    assert back.success, back.error_message
    assert back.answer == local_memory[1].text
    assert node.alive()
