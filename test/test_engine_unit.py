"""Engine behaviour on a fake model and memory: ingest, questions, errors, concurrency."""

from __future__ import annotations

from collections.abc import Iterator
import threading
import time
from typing import Any

from _engine_fakes import FakeModel, fake_build_memory
import numpy as np
import pytest
import torch

from flash_vstream_ros.config import AppConfig, with_overrides
from flash_vstream_ros.engine import Engine, Question
from flash_vstream_ros.errors import (
    BadFrameError,
    BadQuestionError,
    BusyError,
    ConfigError,
    ModelError,
    NotReadyError,
)
from flash_vstream_ros.memory.base import TimeWindow
from flash_vstream_ros.stamps import to_ns

pytestmark = pytest.mark.unit


def make_engine(model: FakeModel | None = None, /, **overrides: Any) -> Engine:
    flat: dict[str, object] = {'engine.ingest_rate_hz': 0.0, 'engine.frame_queue_size': 1000}
    flat.update(overrides)
    cfg = with_overrides(AppConfig(), flat)
    return Engine(cfg, model or FakeModel(), memory_factory=fake_build_memory)


@pytest.fixture
def engine() -> Iterator[Engine]:
    eng = make_engine()
    eng.start()
    yield eng
    eng.stop()


def frame(value: int = 0) -> np.ndarray:
    return np.full((12, 16, 3), value % 256, np.uint8)


def feed(eng: Engine, stamps: list[float], camera: str = 'cam') -> None:
    for s in stamps:
        eng.submit_frame(frame(int(s * 7)), to_ns(s), camera)
    assert eng.wait_idle(10.0)


def test_ingest_counts_and_status(engine: Engine) -> None:
    feed(engine, [float(i) for i in range(10)])
    st = engine.status()
    assert (st.frames_received, st.frames_ingested, st.frames_rejected) == (10, 10, 0)
    assert st.cameras == ('cam',)
    assert (st.oldest_stamp, st.newest_stamp) == (0, to_ns(9.0))
    assert st.state == 'running'
    assert st.memory_bytes > 0
    assert {p: u for p, u, _ in st.fill} == {'temporal': 12, 'spatial': 4}


def test_rate_sampling_uses_stamps() -> None:
    eng = make_engine(**{'engine.ingest_rate_hz': 2.0})
    eng.start()
    try:
        # 10 Hz for 2 s
        accepted = [eng.submit_frame(frame(), to_ns(i * 0.1), 'a') for i in range(20)]
        accepted_b = eng.submit_frame(frame(), to_ns(0.05), 'b')  # other camera samples on its own
        assert eng.wait_idle(5.0)
        st = eng.status()
    finally:
        eng.stop()
    assert sum(accepted) == 4  # stamps 0.0, 0.5, 1.0, 1.5
    assert accepted_b
    assert st.frames_skipped_rate == 16
    assert st.frames_ingested == 5


def test_queue_drops_oldest_and_never_blocks() -> None:
    model = FakeModel()
    gate = threading.Event()
    original = model.encode

    def slow_encode(frames):  # type: ignore[no-untyped-def]
        gate.wait(5.0)
        return original(frames)

    model.encode = slow_encode  # type: ignore[method-assign]
    eng = make_engine(model, **{'engine.frame_queue_size': 3, 'engine.max_encode_batch': 1})
    eng.start()
    try:
        t0 = time.monotonic()
        for i in range(50):
            eng.submit_frame(frame(i), to_ns(float(i)), 'cam')
        submit_s = time.monotonic() - t0
        gate.set()
        assert eng.wait_idle(10.0)
        st = eng.status()
    finally:
        eng.stop()
    assert submit_s < 5.0  # would be >= 5 s if submit waited for the blocked worker
    assert st.frames_dropped_queue >= 46
    assert st.frames_ingested + st.frames_dropped_queue == 50
    assert st.newest_stamp == to_ns(49.0)  # the newest frames survive


def test_batches_when_behind() -> None:
    model = FakeModel()
    sizes: list[int] = []
    original = model.encode

    def record(frames):  # type: ignore[no-untyped-def]
        sizes.append(len(frames))
        time.sleep(0.05)
        return original(frames)

    model.encode = record  # type: ignore[method-assign]
    eng = make_engine(model, **{'engine.max_encode_batch': 4})
    eng.start()
    try:
        feed(eng, [float(i) for i in range(17)])
    finally:
        eng.stop()
    assert max(sizes) == 4
    assert sum(sizes) == 17


@pytest.mark.parametrize(
    'bad',
    [
        np.zeros((10, 10), np.uint8),
        np.zeros((10, 10, 4), np.uint8),
        np.zeros((10, 10, 3), np.float32),
        np.zeros((0, 10, 3), np.uint8),
        np.zeros((9000, 1, 3), np.uint8),
        'not an image',
    ],
)
def test_bad_frames_rejected_and_counted(engine: Engine, bad: object) -> None:
    with pytest.raises(BadFrameError):
        engine.submit_frame(bad, to_ns(1.0), 'cam')  # type: ignore[arg-type]
    assert engine.status().frames_rejected == 1


def test_bad_stamp_and_camera_rejected(engine: Engine) -> None:
    with pytest.raises(BadFrameError, match='stamp'):
        engine.submit_frame(frame(), float('nan'), 'cam')  # type: ignore[arg-type]
    with pytest.raises(BadFrameError, match='camera'):
        engine.submit_frame(frame(), to_ns(1.0), '')
    engine.submit_frame(frame(), to_ns(5.0), 'cam')
    with pytest.raises(BadFrameError, match='older'):
        engine.submit_frame(frame(), to_ns(4.0), 'cam')
    engine.reject_frame('corrupt jpeg')
    assert engine.status().frames_rejected == 4


def test_a_clock_that_restarts_is_followed_not_refused(engine: Engine) -> None:
    engine.submit_frame(frame(), to_ns(100.0), 'cam')
    with pytest.raises(BadFrameError, match='older'):  # jitter: a little back is refused
        engine.submit_frame(frame(), to_ns(99.0), 'cam')
    assert engine.submit_frame(frame(), to_ns(1.0), 'cam')  # far back: a sim reset or a bag loop
    assert engine.submit_frame(frame(), to_ns(2.0), 'cam')  # sampling goes on from the new clock
    assert engine.wait_idle(10.0)
    status = engine.status()
    assert (status.frames_ingested, status.frames_rejected) == (3, 1)


def test_not_ready_before_start() -> None:
    eng = make_engine()
    with pytest.raises(NotReadyError):
        eng.submit_frame(frame(), to_ns(0.0), 'cam')
    with pytest.raises(NotReadyError):
        eng.ask(Question('what?'))


@pytest.mark.parametrize(
    ('question', 'match'),
    [
        (Question(''), 'empty'),
        (Question('   \n\t'), 'empty'),
        (Question('x' * 2001), 'limit is 2000'),
        (Question('what\x00 is it'), 'control'),
        (Question('what\x1b[31m'), 'control'),
        (Question('q', window=TimeWindow(to_ns(5.0), to_ns(1.0))), 'reversed'),
        (Question('q', window=TimeWindow(float('nan'), 1)), 'integer nanoseconds'),  # type: ignore[arg-type]
        (Question('q', window=TimeWindow(1.5, None)), 'integer nanoseconds'),  # type: ignore[arg-type]
        (Question('q', last_s=-1.0), 'last_s'),
        (Question('q', max_new_tokens=-3), 'max_new_tokens'),
        (Question('q', temperature=-0.5), 'temperature'),
        (Question('q', temperature=5e-324), 'use 0 for greedy'),
        (Question('q', cameras=('nope',)), r"unknown camera\(s\) \['nope'\].*'cam'"),
        (Question('q', window=TimeWindow(to_ns(100.0), to_ns(200.0))), 'no memory matches'),
        (Question('q', window=TimeWindow(None, to_ns(-5.0))), 'no memory matches'),
    ],
)
def test_bad_questions(engine: Engine, question: Question, match: str) -> None:
    feed(engine, [0.0, 1.0, 2.0])
    with pytest.raises(BadQuestionError, match=match):
        engine.ask(question)
    assert engine.status().questions_failed == 1


def test_empty_memory_is_refused(engine: Engine) -> None:
    with pytest.raises(BadQuestionError, match='no memory matches: the memory is empty'):
        engine.ask(Question('what did you see?'))


def test_answer_streams_tokens_and_clamps(engine: Engine) -> None:
    feed(engine, [0.0, 1.0])
    tokens: list[str] = []
    ans = engine.ask(
        Question('what?', max_new_tokens=100_000), on_token=lambda p, n: tokens.append(p)
    )
    assert ans.answer_tokens == 128  # generation.max_new_tokens
    assert tokens == ans.text.split()
    assert ans.stop_reason == 'length'
    assert ans.visual_tokens == 8  # 2 temporal elements x 2 + spatial 4
    assert ans.status.questions_answered == 1
    assert ans.latency_s > 0
    assert {e.stamp for e in ans.evidence} == {0, to_ns(1.0)}


def test_window_and_last_s_use_only_matching_evidence(engine: Engine) -> None:
    feed(engine, [float(i) for i in range(6)])
    ans = engine.ask(Question('q', window=TimeWindow(to_ns(1.5), to_ns(3.5)), max_new_tokens=1))
    assert ans.evidence
    assert all(e.start >= to_ns(1.5) and e.end <= to_ns(3.5) for e in ans.evidence)
    ans = engine.ask(Question('q', last_s=2.0, max_new_tokens=1))
    assert all(e.end >= to_ns(3.0) for e in ans.evidence)
    assert min(e.start for e in ans.evidence) == to_ns(3.0)


def test_cameras_per_camera_memories() -> None:
    eng = make_engine()
    eng.start()
    try:
        feed(eng, [0.0, 1.0, 2.0], 'left')
        feed(eng, [0.5, 1.5], 'right')
        st = eng.status()
        left = eng.ask(Question('q', cameras=('left',), max_new_tokens=1))
        both = eng.ask(Question('q', max_new_tokens=1))
    finally:
        eng.stop()
    assert st.cameras == ('left', 'right')
    assert {e.camera for e in left.evidence} == {'left'}
    assert {e.camera for e in both.evidence} == {'left', 'right'}
    # per-camera readouts are cut to an equal share of one memory's readout (16 tokens)
    assert both.visual_tokens <= 16
    cams = [e.camera for e in both.evidence]
    assert cams == sorted(cams)  # fixed (sorted) camera order


def test_cameras_shared_memory() -> None:
    eng = make_engine(**{'memory.per_camera': False})
    eng.start()
    try:
        feed(eng, [0.0, 1.0, 2.0], 'left')
        feed(eng, [3.5], 'right')
        right = eng.ask(Question('q', cameras=('right',), max_new_tokens=1))
        with pytest.raises(BadQuestionError, match='unknown camera'):
            eng.ask(Question('q', cameras=('middle',)))
    finally:
        eng.stop()
    assert right.evidence
    assert all('right' in e.camera.split(',') for e in right.evidence)


def test_cancel_mid_answer() -> None:
    model = FakeModel(token_delay_s=0.01)
    eng = make_engine(model)
    eng.start()
    try:
        feed(eng, [0.0])
        cancel = threading.Event()
        seen: list[str] = []

        def on_token(tok: str, tokens: int) -> None:
            seen.append(tok)
            if len(seen) == 5:
                cancel.set()

        ans = eng.ask(Question('q', max_new_tokens=1000), on_token=on_token, cancel=cancel)
    finally:
        eng.stop()
    assert ans.stop_reason == 'cancelled'
    assert ans.answer_tokens == 5


def test_questions_in_flight_counts_answering_and_waiting() -> None:
    model = FakeModel(token_delay_s=0.02)
    eng = make_engine(model, **{'engine.question_queue_size': 1})
    eng.start()
    try:
        feed(eng, [0.0])
        assert eng.questions_in_flight() == 0
        askers = [
            threading.Thread(target=eng.ask, args=(Question('q', max_new_tokens=100),))
            for _ in range(2)
        ]
        for asker in askers:
            asker.start()
        deadline = time.monotonic() + 10.0
        while eng.questions_in_flight() < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert eng.questions_in_flight() == 2
        assert eng._gate.full()
        for asker in askers:
            asker.join(30.0)
        assert eng.questions_in_flight() == 0
        assert not eng._gate.full()
    finally:
        eng.stop()


def test_busy_when_queue_full() -> None:
    model = FakeModel(token_delay_s=0.02)
    eng = make_engine(model, **{'engine.question_queue_size': 1})
    eng.start()
    try:
        feed(eng, [0.0])
        results: list[object] = []

        def ask() -> None:
            try:
                results.append(eng.ask(Question('q', max_new_tokens=50)))
            except BusyError as exc:
                results.append(exc)

        first = threading.Thread(target=ask)
        first.start()
        assert model.started.wait(5.0)
        second = threading.Thread(target=ask)
        second.start()
        deadline = time.monotonic() + 5.0
        while eng._gate.waiting < 1 and time.monotonic() < deadline:
            time.sleep(0.005)
        with pytest.raises(BusyError, match='question_queue_size=1'):
            eng.ask(Question('q'))
        first.join()
        second.join()
    finally:
        eng.stop()
    assert all(not isinstance(r, Exception) for r in results)
    assert len(results) == 2


def test_model_errors_become_model_error(engine: Engine) -> None:
    feed(engine, [0.0])
    model = engine._model
    assert isinstance(model, FakeModel)
    model.fail_next = RuntimeError('CUDA out of memory. Tried to allocate 2.00 GiB')
    with pytest.raises(ModelError, match='out of memory'):
        engine.ask(Question('q'))
    model.fail_next = torch.cuda.OutOfMemoryError('boom')
    with pytest.raises(ModelError, match='out of memory'):
        engine.ask(Question('q'))
    model.fail_next = ValueError('weird')
    with pytest.raises(ModelError, match='ValueError: weird'):
        engine.ask(Question('q'))
    assert engine.ask(Question('q', max_new_tokens=2)).text == 'w0 w1'  # still usable
    st = engine.status()
    assert (st.questions_failed, st.questions_answered) == (3, 1)


def test_generation_settings_change_while_running(engine: Engine) -> None:
    feed(engine, [0.0])
    assert engine.set_generation({'max_new_tokens': 3, 'temperature': 1}).temperature == 1.0
    assert engine.ask(Question('q')).answer_tokens == 3
    before = engine.config
    with pytest.raises(ConfigError, match='use 0 for greedy'):
        engine.set_generation({'max_new_tokens': 7, 'temperature': 1e-9})
    with pytest.raises(ConfigError, match='unknown parameter'):
        engine.set_generation({'max_tokens': 7})
    assert engine.config is before
    assert engine.ask(Question('q')).answer_tokens == 3


def test_callback_errors_pass_through(engine: Engine) -> None:
    feed(engine, [0.0])

    def broken(tok: str, tokens: int) -> None:
        raise KeyError('publisher gone')

    with pytest.raises(KeyError, match='publisher gone'):
        engine.ask(Question('q'), on_token=broken)
    assert engine.ask(Question('q', max_new_tokens=1)).answer_tokens == 1


def test_key_frames_and_reset(engine: Engine) -> None:
    feed(engine, [0.0, 1.0, 2.0])
    keys = engine.key_frames()
    assert [(c, s) for c, s, _ in keys] == [('cam', to_ns(2.0))]  # the spatial (newest) frame
    assert keys[0][2].shape[2] == 3
    assert max(keys[0][2].shape[:2]) <= 96
    engine.reset_memory()
    assert engine.status().cameras == ()
    assert engine.key_frames() == []
    feed(engine, [0.5])  # sampling stamps reset too: an earlier stamp is accepted
    assert engine.status().newest_stamp == to_ns(0.5)


def test_concurrent_ingest_and_questions() -> None:
    """Writers, askers and a status reader at once: no deadlock, consistent views, monotonic."""
    model = FakeModel(token_delay_s=0.001)
    eng = make_engine(model, **{'engine.question_queue_size': 8})
    eng.start()
    errors: list[BaseException] = []
    stop = threading.Event()

    def writer(camera: str, offset: float) -> None:
        for i in range(300):
            eng.submit_frame(frame(i), to_ns(offset + i), camera)
            if i % 25 == 0:
                time.sleep(0.001)

    def asker() -> None:
        while not stop.is_set():
            try:
                ans = eng.ask(Question('q', max_new_tokens=3, last_s=50.0))
                assert ans.answer_tokens == 3
                assert ans.visual_tokens == model.last_tokens.shape[0]  # type: ignore[union-attr]
            except BadQuestionError:
                pass  # nothing ingested yet
            except BaseException as exc:
                errors.append(exc)

    def reader() -> None:
        last = None
        while not stop.is_set():
            view = eng._current()
            for _, snap in view.snapshots:
                ro = snap.readout()
                assert ro.tokens.shape[0] == sum(n for _, n in ro.parts)
                assert snap.frames_seen >= len([e for e in ro.evidence if e.part == 'spatial'])
            st = eng.status()
            now = (st.frames_received, st.frames_ingested, st.questions_answered)
            if last is not None:
                assert all(a <= b for a, b in zip(last, now, strict=True)), (last, now)
            last = now

    def guarded(fn, *args):  # type: ignore[no-untyped-def]
        try:
            fn(*args)
        except BaseException as exc:
            errors.append(exc)

    writers = [
        threading.Thread(target=guarded, args=(writer, c, o)) for c, o in (('a', 0.0), ('b', 0.5))
    ]
    others = [threading.Thread(target=guarded, args=(f,)) for f in (asker, asker, reader)]
    for t in writers + others:
        t.start()
    for t in writers:
        t.join(30.0)
    assert eng.wait_idle(30.0)
    stop.set()
    for t in others:
        t.join(30.0)
    assert not any(t.is_alive() for t in writers + others), 'deadlock'
    st = eng.status()
    eng.stop()
    assert not errors, errors
    assert st.frames_received == 600
    assert st.frames_ingested + st.frames_dropped_queue == 600
    assert st.questions_answered > 0


def test_stop_releases_waiting_question() -> None:
    model = FakeModel(token_delay_s=0.01)
    eng = make_engine(model)
    eng.start()
    feed(eng, [0.0])
    outcome: list[object] = []

    def ask(n: int) -> None:
        try:
            outcome.append(eng.ask(Question('q', max_new_tokens=n)).stop_reason)
        except NotReadyError as exc:
            outcome.append(exc)

    first = threading.Thread(target=ask, args=(200,))
    first.start()
    assert model.started.wait(5.0)
    second = threading.Thread(target=ask, args=(5,))
    second.start()
    time.sleep(0.05)
    eng.stop()
    first.join(10.0)
    second.join(10.0)
    assert not first.is_alive()
    assert not second.is_alive()
    assert 'cancelled' in outcome


def test_encode_failure_counts_rejected_and_recovers(engine: Engine) -> None:
    model = engine._model
    assert isinstance(model, FakeModel)
    original = model.encode
    calls = {'n': 0}

    def flaky(frames):  # type: ignore[no-untyped-def]
        calls['n'] += 1
        if calls['n'] == 1:
            raise RuntimeError('CUDA error: device-side assert (simulated)')
        return original(frames)

    model.encode = flaky  # type: ignore[method-assign]
    engine.submit_frame(frame(1), to_ns(0.0), 'cam')
    assert engine.wait_idle(5.0)
    feed(engine, [1.0, 2.0])
    st = engine.status()
    assert st.frames_rejected == 1
    assert st.frames_ingested == 2


def test_failed_start_is_reported() -> None:
    model = FakeModel()
    model.memory_overrides = lambda: {'memory.kind': 'nonsense'}  # type: ignore[method-assign]
    eng = make_engine(model, **{'memory.use_checkpoint_sizes': True})
    with pytest.raises(ConfigError, match=r'MemoryConfig\.kind'):
        eng.start()
    assert eng.status().state == 'failed'


def test_last_seconds_count_from_the_cameras_asked_about() -> None:
    eng = make_engine()
    eng.start()
    try:
        feed(eng, [0.0, 1.0, 2.0, 3.0], 'left')
        feed(eng, [500.0], 'right')  # another clock, far ahead
        left = eng.ask(Question('q', last_s=1.5, cameras=('left',), max_new_tokens=1))
        huge = eng.ask(Question('q', last_s=1e300, cameras=('left',), max_new_tokens=1))
    finally:
        eng.stop()
    assert left.evidence
    assert all(e.start >= to_ns(1.5) for e in left.evidence)
    assert huge.evidence  # from the beginning: no overflow of the int64 stamps


def test_stamps_outside_int64_are_refused(engine: Engine) -> None:
    with pytest.raises(BadFrameError, match='int64'):
        engine.submit_frame(frame(), 2**63, 'cam')
    with pytest.raises(BadQuestionError, match='int64'):
        engine.ask(Question('q', window=TimeWindow(-(2**64), None)))


def test_stamp_types_and_camera_names(engine: Engine) -> None:
    """numpy integer stamps are stamps; bools and floats are not (a float second would lose
    its last digits); camera names that would read back as two cameras are refused."""
    assert engine.submit_frame(frame(), np.int64(5 * 10**9), 'cam')
    for stamp in (True, np.float32(2.5), 6.0):
        with pytest.raises(BadFrameError, match='integer nanoseconds'):
            engine.submit_frame(frame(), stamp, 'cam')  # type: ignore[arg-type]
    for name in ('a,b', 'a\x00b'):
        with pytest.raises(BadFrameError, match='camera'):
            engine.submit_frame(frame(), 7 * 10**9, name)
    assert engine.wait_idle(10.0)
    assert engine.status().cameras == ('cam',)
