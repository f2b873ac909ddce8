"""The node's question and memory interfaces: ``~/ask``, ``~/ask_stream`` and the memory services.

Every handler returns a response; none lets an exception out. Engine errors (bad question, not
ready, busy, model failure, memory file refused) become ``success=false`` with the error's
message; an unexpected exception is logged once with its traceback and reported the same way.

The action streams each generated piece of text as feedback. A cancel request sets the engine's
cancel event, so generation stops at the next token; the goal then ends cancelled with the
partial answer. Goals beyond what the engine can hold (one answering plus
``engine.question_queue_size`` waiting) are rejected when they arrive, with the reason logged:
the queue is shared with ``~/ask``, so its questions count too (``Engine.questions_in_flight``),
as do goals accepted but not yet at the engine. Between that check and the goal reaching the
engine another question can still take the last place; that goal is then aborted busy (rare:
accepted goals start at once).

A goal whose client has gone (exited, or killed: DDS notices within the client's lease) is
stopped like a cancelled one, so that the model is free for the next question; it ends aborted
and the log says why (flash_vstream_ros.ros.client_watch says how the client is looked for).
"""

from __future__ import annotations

from collections.abc import Callable
import threading
import time
import traceback
from typing import Any

from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import CallbackGroup
from rclpy.node import Node
from rclpy.qos import QoSProfile
from std_srvs.srv import Trigger

from flash_vstream_ros.action import AskStream
from flash_vstream_ros.engine import Engine
from flash_vstream_ros.errors import FlashVStreamError
from flash_vstream_ros.ros.client_watch import ClientWatch, feedback_topic
from flash_vstream_ros.ros.convert import fill_answer, fill_failure, to_question
from flash_vstream_ros.srv import Ask, MemoryFile

# Returns (engine, '') when questions can be answered, else (None, why not).
EngineGetter = Callable[[], tuple[Engine | None, str]]
FEEDBACK_DEPTH = 256  # a burst of fast tokens must not overwrite unsent feedback
# Requests queued for ~/ask (and responses not yet acknowledged): the services default of 10
# loses requests when more clients than that ask at once, and their callers wait forever.
ASK_QUEUE_DEPTH = 100
CANCEL_SETTLE_S = 1.0  # how long to wait for the action server to mark a goal canceling
# How long a goal waits for its feedback topic to have a subscriber before the first token: a
# client that sends its goal the moment it discovers the server may not be matched yet, and
# DDS does not keep feedback for late joiners (the first pieces were lost under load).
FEEDBACK_MATCH_S = 1.0
ACTION_NAME = '~/ask_stream'


class AskServer:
    """Creates and serves ~/ask, ~/ask_stream, ~/reset_memory, ~/save_memory, ~/load_memory."""

    def __init__(
        self,
        node: Node,
        group: CallbackGroup,
        engine: EngineGetter,
        state: Callable[[], str],
        memory: EngineGetter | None = None,
    ) -> None:
        """``engine``: the engine for questions; ``memory``: for the memory services (they
        also work while the node is inactive: the memory stays); default: ``engine``."""
        self._node = node
        self._engine = engine
        self._memory = memory or engine
        self._state = state
        self._log = node.get_logger()
        self._lock = threading.Lock()
        self._starting = 0  # accepted goals not yet handed to the engine (it counts the rest)
        self._cancels: dict[bytes, threading.Event] = {}
        node.create_service(
            Ask,
            '~/ask',
            self.on_ask,
            qos_profile=QoSProfile(depth=ASK_QUEUE_DEPTH),
            callback_group=group,
        )
        node.create_service(Trigger, '~/reset_memory', self.on_reset, callback_group=group)
        node.create_service(MemoryFile, '~/save_memory', self.on_save, callback_group=group)
        node.create_service(MemoryFile, '~/load_memory', self.on_load, callback_group=group)
        self._feedback_topic = feedback_topic(node, ACTION_NAME)
        self.action = ActionServer(
            node,
            AskStream,
            ACTION_NAME,
            self.execute,
            callback_group=group,
            goal_callback=self.on_goal,
            cancel_callback=self.on_cancel,
            feedback_pub_qos_profile=QoSProfile(depth=FEEDBACK_DEPTH),
        )

    # ------------------------------------------------------------------ service

    def on_ask(self, request: Any, response: Any) -> Any:
        engine, why = self._engine()
        if engine is None:
            return fill_failure(response, why, None, self._state())
        try:
            answer = engine.ask(to_question(request))
        except Exception as exc:
            return fill_failure(response, self._reason(exc, 'ask'), _status(engine), self._state())
        return fill_answer(response, answer, self._state())

    # ------------------------------------------------------------------ action

    def on_goal(self, goal_request: Any) -> GoalResponse:
        engine, why = self._engine()
        if engine is None:
            self._log.warning(f'ask_stream goal rejected: {why}')
            return GoalResponse.REJECT
        capacity = 1 + engine.config.engine.question_queue_size
        with self._lock:
            held = engine.questions_in_flight() + self._starting
            if held >= capacity:
                self._log.warning(
                    f'ask_stream goal rejected: busy, {held} questions answered or waiting '
                    f'(~/ask and ~/ask_stream; engine.question_queue_size={capacity - 1}); '
                    'retry later'
                )
                return GoalResponse.REJECT
            self._starting += 1
        return GoalResponse.ACCEPT

    def on_cancel(self, goal_handle: Any) -> CancelResponse:
        with self._lock:
            event = self._cancels.get(bytes(goal_handle.goal_id.uuid))
        if event is not None:
            event.set()
        return CancelResponse.ACCEPT

    def execute(self, goal_handle: Any) -> Any:
        key = bytes(goal_handle.goal_id.uuid)
        cancel = threading.Event()
        with self._lock:
            self._cancels[key] = cancel
            self._starting -= 1  # about to reach the engine, which counts it from now on
        try:
            if goal_handle.is_cancel_requested:
                cancel.set()
            gone = self._client_gone(key, cancel)
            with ClientWatch(self._node, self._feedback_topic, gone) as watch:
                return self._execute(goal_handle, cancel, watch)
        finally:
            with self._lock:
                self._cancels.pop(key, None)

    def _wait_for_feedback_subscriber(self) -> None:
        """Up to FEEDBACK_MATCH_S until the feedback topic has a subscriber (see there)."""
        deadline = time.monotonic() + FEEDBACK_MATCH_S
        while self._node.count_subscribers(self._feedback_topic) == 0:
            if time.monotonic() > deadline:
                return
            time.sleep(0.01)

    def _client_gone(self, key: bytes, cancel: threading.Event) -> Callable[[], None]:
        def gone() -> None:
            self._log.warning(
                f'ask_stream goal {key.hex()[:8]}: its client is gone (no action client that '
                'could have sent it is left); stopping the answer to free the model'
            )
            cancel.set()

        return gone

    def _execute(self, goal_handle: Any, cancel: threading.Event, watch: ClientWatch) -> Any:
        result = AskStream.Result()
        engine, why = self._engine()
        if engine is None:
            goal_handle.abort()
            return fill_failure(result, why, None, self._state())
        pieces: list[str] = []
        self._wait_for_feedback_subscriber()

        def on_token(text: str, tokens: int) -> None:
            pieces.append(text)  # answer_tokens: tokens generated, as in the result
            goal_handle.publish_feedback(
                AskStream.Feedback(text=text, partial_answer=''.join(pieces), answer_tokens=tokens)
            )

        try:
            answer = engine.ask(to_question(goal_handle.request), on_token, cancel)
        except Exception as exc:
            goal_handle.abort()
            return fill_failure(
                result, self._reason(exc, 'ask_stream'), _status(engine), self._state()
            )
        fill_answer(result, answer, self._state())
        _end_goal(goal_handle, result, cancel, watch.gone)
        return result

    # ------------------------------------------------------------------ memory services

    def on_reset(self, request: Any, response: Any) -> Any:
        engine, why = self._memory()
        if engine is None:
            response.success, response.message = False, why
            return response
        try:
            engine.reset_memory()
        except Exception as exc:
            response.success, response.message = False, self._reason(exc, 'reset_memory')
            return response
        response.success, response.message = True, 'memory reset'
        return response

    def on_save(self, request: Any, response: Any) -> Any:
        return self._memory_file('save', request, response)

    def on_load(self, request: Any, response: Any) -> Any:
        return self._memory_file('load', request, response)

    def _memory_file(self, verb: str, request: Any, response: Any) -> Any:
        engine, why = self._memory()
        if engine is None:
            response.success, response.message = False, why
            return response
        action = engine.save_memory if verb == 'save' else engine.load_memory
        try:
            info = action(request.path or None)
        except Exception as exc:
            response.success, response.message = False, self._reason(exc, f'{verb}_memory')
            response.path = request.path
            return response
        response.success = True
        done = 'saved to' if verb == 'save' else 'loaded from'
        response.message = f'memory {done} {info.path}: {info.frames} frames, {info.bytes} bytes'
        response.path, response.frames, response.bytes = info.path, info.frames, info.bytes
        return response

    # ------------------------------------------------------------------ errors

    def _reason(self, exc: Exception, where: str) -> str:
        """The message for the caller; unexpected exceptions are logged with a traceback."""
        if isinstance(exc, FlashVStreamError):
            return str(exc)
        self._log.error(f'{where} failed unexpectedly:\n{traceback.format_exc()}')
        return f'internal error in {where}: {type(exc).__name__}: {exc}'


def _status(engine: Engine) -> Any:
    try:
        return engine.status()
    except Exception:  # the status is a courtesy on a failure path; the failure is reported
        return None


def _end_goal(goal_handle: Any, result: Any, cancel: threading.Event, client_gone: bool) -> None:
    """Succeed, or cancelled when the client asked, or aborted when the client is gone."""
    if client_gone and not goal_handle.is_cancel_requested:
        goal_handle.abort()  # nobody is left to read it: it was stopped to free the model
        result.success = False
        result.error_message = (
            f'the action client is gone: answer stopped after {result.answer_tokens} tokens'
        )
    elif result.stop_reason == 'cancelled' and _settle_cancel(goal_handle, cancel):
        goal_handle.canceled()
    else:
        goal_handle.succeed()


def _settle_cancel(goal_handle: Any, cancel: threading.Event) -> bool:
    """True when the goal is marked canceling (the server marks it just after our callback)."""
    if not cancel.is_set():
        return False
    deadline = time.monotonic() + CANCEL_SETTLE_S
    while not goal_handle.is_cancel_requested and time.monotonic() < deadline:
        time.sleep(0.01)
    return bool(goal_handle.is_cancel_requested)
