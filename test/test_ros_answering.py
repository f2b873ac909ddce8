"""The question and memory handlers with stub engines: nothing escapes, every failure says why."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
import itertools
import threading
from typing import Any

import pytest
import rclpy
from rclpy.action import CancelResponse, GoalResponse
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.context import Context
from rclpy.node import Node
from std_srvs.srv import Trigger

from flash_vstream_ros.action import AskStream
from flash_vstream_ros.config import AppConfig, with_overrides
from flash_vstream_ros.engine import Answer, Question
from flash_vstream_ros.errors import BusyError, MemoryFileError
from flash_vstream_ros.ros.answering import AskServer
from flash_vstream_ros.ros.client_watch import ClientWatch
from flash_vstream_ros.srv import Ask, MemoryFile

from _ros_node_helpers import engine_status, wait_for  # isort: skip

pytestmark = pytest.mark.ros

SERVERS = itertools.count()


class StubEngine:
    """Answers with three tokens, or raises what it is told to."""

    # (piece, tokens generated so far): ' red' took two tokens, and one more token at the end
    # made no text (an incomplete character), so the answer has 5 tokens in 3 pieces.
    PIECES = (('a', 1), (' red', 3), (' box', 4))
    TOKENS = 5

    def __init__(self, error: Exception | None = None, queue: int = 0) -> None:
        self.config = with_overrides(AppConfig(), {'engine.question_queue_size': queue})
        self.error = error
        self.questions: list[Question] = []
        self.in_flight = 0  # questions the engine holds from other callers (~/ask)

    def ask(
        self, question: Question, on_token: Any = None, cancel: threading.Event | None = None
    ) -> Answer:
        self.questions.append(question)
        if self.error is not None:
            raise self.error
        pieces, tokens = [], 0
        for piece, tokens in self.PIECES:
            if cancel is not None and cancel.is_set():
                break
            pieces.append(piece)
            if on_token is not None:
                on_token(piece, tokens)
        stop = 'cancelled' if cancel is not None and cancel.is_set() else 'eos'
        return Answer(
            text=''.join(pieces),
            evidence=(),
            latency_s=0.1,
            answer_tokens=self.TOKENS if stop == 'eos' else tokens,
            visual_tokens=10,
            stop_reason=stop,
            status=engine_status(),
        )

    def questions_in_flight(self) -> int:
        return self.in_flight

    def status(self) -> Any:
        if self.error is not None:
            raise RuntimeError('no status either')
        return engine_status()

    def reset_memory(self) -> None:
        if self.error is not None:
            raise self.error

    def save_memory(self, path: str | None = None) -> Any:
        raise MemoryFileError(f'cannot write {path}: disk full')

    load_memory = save_memory


@dataclass
class GoalId:
    uuid: bytes = b'0123456789abcdef'


@dataclass
class StubGoalHandle:
    request: Any
    goal_id: GoalId = field(default_factory=GoalId)
    is_cancel_requested: bool = False
    feedback: list[Any] = field(default_factory=list)
    ended: str = ''

    def publish_feedback(self, fb: Any) -> None:
        self.feedback.append(fb)

    def succeed(self) -> None:
        self.ended = 'succeeded'

    def abort(self) -> None:
        self.ended = 'aborted'

    def canceled(self) -> None:
        self.ended = 'canceled'


@pytest.fixture(scope='module')
def node() -> Iterator[Node]:
    ctx = Context()
    rclpy.init(context=ctx, domain_id=78)
    n = Node('answering_test', context=ctx)
    yield n
    n.destroy_node()
    rclpy.shutdown(context=ctx)


def server(node: Node, engine: StubEngine | None, why: str = '') -> AskServer:
    sub = Node(f'answering_{next(SERVERS)}', context=node.context)  # its own service names
    stub: Any = engine  # duck-typed stand-in for Engine
    return AskServer(sub, ReentrantCallbackGroup(), lambda: (stub, why), lambda: 'active')


def test_ask_answers_and_maps_the_request(node: Node) -> None:
    engine = StubEngine()
    request = Ask.Request(
        question='what?', window_last_s=5.0, max_new_tokens=3, temperature=-1.0, cameras=['front']
    )
    response = server(node, engine).on_ask(request, Ask.Response())
    assert response.success
    assert response.answer == 'a red box'
    assert engine.questions[0].cameras == ('front',)
    assert engine.questions[0].temperature is None


def test_unexpected_engine_errors_become_failures(node: Node) -> None:
    response = server(node, StubEngine(RuntimeError('boom'))).on_ask(
        Ask.Request(question='what?'), Ask.Response()
    )
    assert not response.success
    assert response.error_message == 'internal error in ask: RuntimeError: boom'
    assert response.memory.state == 'active'


def test_engine_errors_keep_their_message(node: Node) -> None:
    busy = BusyError('busy: one question is being answered')
    response = server(node, StubEngine(busy)).on_ask(Ask.Request(question='x'), Ask.Response())
    assert (response.success, response.error_message) == (False, str(busy))


def test_without_engine_the_reason_is_returned(node: Node) -> None:
    s = server(node, None, 'node /flash_vstream is inactive: activate it')
    response = s.on_ask(Ask.Request(question='x'), Ask.Response())
    assert response.error_message == 'node /flash_vstream is inactive: activate it'
    reset = s.on_reset(Trigger.Request(), Trigger.Response())
    assert (reset.success, reset.message) == (
        False,
        'node /flash_vstream is inactive: activate it',
    )
    assert s.on_goal(AskStream.Goal(question='x')) == GoalResponse.REJECT


def test_memory_file_errors_are_reported(node: Node) -> None:
    s = server(node, StubEngine())
    saved = s.on_save(MemoryFile.Request(path='/ro/m.fvs'), MemoryFile.Response())
    assert not saved.success
    assert saved.message == 'cannot write /ro/m.fvs: disk full'
    assert saved.path == '/ro/m.fvs'
    loaded = s.on_load(MemoryFile.Request(path=''), MemoryFile.Response())
    assert not loaded.success
    assert 'None' in loaded.message  # '' means the configured persistence.path


def test_goals_beyond_the_question_queue_are_rejected(node: Node) -> None:
    s = server(node, StubEngine(queue=1))
    goal = AskStream.Goal(question='x')
    assert s.on_goal(goal) == GoalResponse.ACCEPT
    assert s.on_goal(goal) == GoalResponse.ACCEPT
    assert s.on_goal(goal) == GoalResponse.REJECT  # one answering + one waiting


def test_questions_from_ask_count_against_the_goals(node: Node) -> None:
    """The engine's queue is shared with ~/ask: a goal that could only wait in a full queue
    is rejected when it arrives, not accepted and then aborted busy."""
    engine = StubEngine(queue=1)
    s = server(node, engine)
    goal = AskStream.Goal(question='x')
    engine.in_flight = 2  # ~/ask: one answered, one waiting
    assert s.on_goal(goal) == GoalResponse.REJECT
    engine.in_flight = 1
    assert s.on_goal(goal) == GoalResponse.ACCEPT
    assert s.on_goal(goal) == GoalResponse.REJECT  # the accepted goal holds the last place
    s.execute(StubGoalHandle(AskStream.Goal(question='what?')))
    assert s.on_goal(goal) == GoalResponse.ACCEPT  # the goal reached the engine: place freed


def test_action_streams_feedback_and_succeeds(node: Node) -> None:
    s = server(node, StubEngine())
    assert s.on_goal(AskStream.Goal(question='x')) == GoalResponse.ACCEPT
    handle = StubGoalHandle(AskStream.Goal(question='what?', temperature=-1.0))
    result = s.execute(handle)
    assert handle.ended == 'succeeded'
    assert [f.partial_answer for f in handle.feedback] == ['a', 'a red', 'a red box']
    assert result.answer == 'a red box'
    assert result.answer_tokens == StubEngine.TOKENS
    assert s.on_goal(AskStream.Goal(question='x')) == GoalResponse.ACCEPT  # slot released


def test_feedback_counts_tokens_not_pieces(node: Node) -> None:
    """Feedback answer_tokens is the tokens generated so far (as the result counts them), not
    the number of pieces: a piece may hold several tokens, and a token may make no text."""
    s = server(node, StubEngine())
    assert s.on_goal(AskStream.Goal(question='what?')) == GoalResponse.ACCEPT
    handle = StubGoalHandle(AskStream.Goal(question='what?'))
    result = s.execute(handle)
    assert [f.answer_tokens for f in handle.feedback] == [1, 3, 4]
    assert handle.feedback[-1].answer_tokens <= result.answer_tokens == 5


def test_a_goal_cancelled_before_it_runs_ends_cancelled(node: Node) -> None:
    s = server(node, StubEngine())
    handle = StubGoalHandle(AskStream.Goal(question='what?'), is_cancel_requested=True)
    assert s.on_cancel(handle) == CancelResponse.ACCEPT
    s.on_goal(AskStream.Goal(question='x'))
    result = s.execute(handle)
    assert handle.ended == 'canceled'
    assert result.stop_reason == 'cancelled'
    assert result.success


def test_a_failing_goal_is_aborted_with_the_reason(node: Node) -> None:
    s = server(node, StubEngine(RuntimeError('cuda out of memory')))
    s.on_goal(AskStream.Goal(question='x'))
    handle = StubGoalHandle(AskStream.Goal(question='what?'))
    result = s.execute(handle)
    assert handle.ended == 'aborted'
    assert not result.success
    assert 'cuda out of memory' in result.error_message


@dataclass
class Endpoint:
    endpoint_gid: bytes


class GraphStub:
    """The feedback subscribers each graph look sees, in turn (the last one repeats)."""

    def __init__(self, node: Node, *views: bytes) -> None:
        self.node = node
        self.views = list(views)
        self.looks = 0

    def get_subscriptions_info_by_topic(self, topic: str) -> list[Endpoint]:
        view = self.views[min(self.looks, len(self.views) - 1)]
        self.looks += 1
        return [Endpoint(bytes([gid])) for gid in view]

    def get_logger(self) -> Any:
        return self.node.get_logger()


def watch_until_seen(graph: GraphStub) -> list[str]:
    calls: list[str] = []
    stub: Any = graph  # duck-typed stand-in for the node's graph queries
    with ClientWatch(stub, '/x/_action/feedback', lambda: calls.append('gone'), 0.001) as watch:
        seen_all = lambda: bool(calls) or graph.looks > len(graph.views) + 2  # noqa: E731
        wait_for(seen_all, 10.0, 'every graph view (or the client gone)')
    assert watch.gone == bool(calls)
    return calls


@pytest.mark.parametrize(
    ('views', 'gone'),
    [
        ((b'', b'ab', b'bc', b'c'), True),  # a and b (there at the start) both left
        ((b'ab', b'b', b'bc'), False),  # b may have sent the goal: it stays
        ((b'ab', b'', b'ab'), True),  # nothing left at all: gone (a return is a new client)
        ((b'', b'', b''), False),  # never saw a client: nothing to tell
        ((b'a', b'ca', b'c'), True),  # c came later: it cannot have sent the goal
    ],
)
def test_client_watch_sees_the_goals_possible_senders_leave(
    node: Node, views: tuple[bytes, ...], gone: bool
) -> None:
    assert watch_until_seen(GraphStub(node, *views)) == (['gone'] if gone else [])
