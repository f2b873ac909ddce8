"""The engine on the real tiny Flash-VStream model and the real STAR / synopsis memories."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
import threading
import time

import numpy as np
import pytest
import torch

from flash_vstream_ros.config import AppConfig, ModelConfig, with_overrides
from flash_vstream_ros.engine import Engine, Question
from flash_vstream_ros.errors import BadQuestionError, MemoryFileError
from flash_vstream_ros.io.persistence import load_file
from flash_vstream_ros.memory.base import TimeWindow
from flash_vstream_ros.models import load_model
from flash_vstream_ros.models.base import VisionLanguageModel
from flash_vstream_ros.stamps import to_ns

pytestmark = pytest.mark.model


@pytest.fixture(scope='module')
def model(tiny_cache_dir: Path) -> Iterator[VisionLanguageModel]:
    torch.set_num_threads(1)
    loaded = load_model(ModelConfig(family='tiny', cache_dir=str(tiny_cache_dir)))
    yield loaded
    loaded.close()


def make_engine(model: VisionLanguageModel, **flat: object) -> Engine:
    base: dict[str, object] = {'engine.ingest_rate_hz': 0.0, 'engine.frame_queue_size': 1000}
    base.update(flat)
    eng = Engine(with_overrides(AppConfig(), base), model)
    eng.start()
    return eng


def frames(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (48, 64, 3), dtype=np.uint8) for _ in range(n)]


def feed(eng: Engine, stamps: list[float], camera: str = 'front', seed: int = 0) -> None:
    for img, s in zip(frames(len(stamps), seed), stamps, strict=True):
        eng.submit_frame(img, to_ns(s), camera)
    assert eng.wait_idle(120.0)


def test_concurrent_ingest_and_questions_real_model(model: VisionLanguageModel) -> None:
    """Two cameras write while two askers and an invariant checker read: no deadlock, no torn
    snapshot (every view's readouts agree with their own part counts and fill), monotonic
    counters, every answer well-formed."""
    eng = make_engine(model, **{'engine.question_queue_size': 4, 'engine.frame_queue_size': 16})
    errors: list[BaseException] = []
    stop = threading.Event()
    images = frames(8)

    def writer(camera: str, offset: float) -> None:
        for i in range(120):
            eng.submit_frame(images[i % 8], to_ns(offset + i * 0.5), camera)
            time.sleep(0.002)

    def asker() -> None:
        while not stop.is_set():
            try:
                ans = eng.ask(Question('What happened?', max_new_tokens=4))
            except BadQuestionError:
                continue  # nothing ingested yet
            assert ans.answer_tokens <= 4
            assert ans.visual_tokens <= 681
            assert ans.evidence

    def checker() -> None:
        last: tuple[int, ...] | None = None
        while not stop.is_set():
            view = eng._current()
            for _, snap in view.snapshots:
                ro = snap.readout()
                assert ro.tokens.shape[0] == sum(n for _, n in ro.parts)
                fill = snap.fill()
                for part, n in ro.parts:
                    assert fill[part][0] == n, (part, n, fill)
                span = snap.span()
                assert span is not None
                assert span[0] <= span[1]
            st = eng.status()
            now = (
                st.frames_received,
                st.frames_ingested,
                st.frames_dropped_queue,
                st.questions_answered,
            )
            if last is not None:
                assert all(a <= b for a, b in zip(last, now, strict=True)), (last, now)
            last = now

    def guarded(fn, *args):  # type: ignore[no-untyped-def]
        try:
            fn(*args)
        except BaseException as exc:
            errors.append(exc)
            stop.set()

    writers = [
        threading.Thread(target=guarded, args=(writer, c, o))
        for c, o in (('front', 0.0), ('back', 0.25))
    ]
    readers = [threading.Thread(target=guarded, args=(f,)) for f in (asker, asker, checker)]
    for t in writers + readers:
        t.start()
    for t in writers:
        t.join(120.0)
    assert eng.wait_idle(120.0)
    time.sleep(0.2)
    stop.set()
    for t in readers:
        t.join(120.0)
    alive = [t.name for t in writers + readers if t.is_alive()]
    st = eng.status()
    eng.stop()
    assert not alive, f'deadlock: {alive}'
    assert not errors, errors
    assert st.frames_received == 240
    assert st.frames_ingested + st.frames_dropped_queue == 240
    assert st.questions_answered > 0
    assert st.cameras == ('back', 'front')


def test_cancel_mid_answer(model: VisionLanguageModel) -> None:
    eng = make_engine(model)
    try:
        feed(eng, [float(i) for i in range(5)])
        cancel = threading.Event()
        seen: list[str] = []

        def on_token(tok: str, tokens: int) -> None:
            seen.append(tok)
            if len(seen) == 3:
                cancel.set()

        ans = eng.ask(Question('Describe everything.', max_new_tokens=64), on_token, cancel)
        after = eng.ask(Question('And now?', max_new_tokens=2))
    finally:
        eng.stop()
    assert ans.stop_reason == 'cancelled'
    assert 3 <= ans.answer_tokens < 64
    assert after.stop_reason in ('length', 'eos')


def test_window_uses_only_matching_evidence(model: VisionLanguageModel) -> None:
    eng = make_engine(model)
    try:
        feed(eng, [float(i) for i in range(40)])
        window = TimeWindow(to_ns(10.0), to_ns(20.0))
        ans = eng.ask(Question('What happened?', window=window, max_new_tokens=2))
        last = eng.ask(Question('What happened?', last_s=5.0, max_new_tokens=2))
        full = eng.ask(Question('What happened?', max_new_tokens=2))
        with pytest.raises(BadQuestionError, match='no memory matches window'):
            eng.ask(Question('q', window=TimeWindow(to_ns(100.0), to_ns(200.0))))
    finally:
        eng.stop()
    assert ans.evidence
    assert all(window.overlaps(e.start, e.end) for e in ans.evidence)
    assert ans.visual_tokens < full.visual_tokens
    assert all(e.end >= 34.0 for e in last.evidence)


@pytest.mark.parametrize('per_camera', [True, False])
def test_camera_filter(model: VisionLanguageModel, per_camera: bool) -> None:
    eng = make_engine(model, **{'memory.per_camera': per_camera})
    try:
        feed(eng, [float(i) for i in range(12)], 'front', seed=1)
        feed(eng, [float(i) + 0.5 for i in range(12)], 'back', seed=2)
        back = eng.ask(Question('What is behind?', cameras=('back',), max_new_tokens=2))
        both = eng.ask(Question('What happened?', max_new_tokens=2))
        with pytest.raises(BadQuestionError, match=r"unknown camera\(s\) \['left'\]"):
            eng.ask(Question('q', cameras=('left',)))
    finally:
        eng.stop()
    assert back.evidence
    assert all('back' in e.camera.split(',') for e in back.evidence)
    if per_camera:
        assert {e.camera for e in back.evidence} == {'back'}
    cams = {c for e in both.evidence for c in e.camera.split(',')}
    assert cams == {'front', 'back'}
    assert both.visual_tokens <= 681  # two cameras share one readout's budget


@pytest.mark.parametrize('kind', ['star', 'synopsis'])
def test_persistence_round_trip_exact(
    model: VisionLanguageModel, tmp_path: Path, kind: str
) -> None:
    flat: dict[str, object] = {'memory.kind': kind}
    if kind == 'synopsis':
        flat.update({'memory.synopsis.clusters': 6, 'memory.synopsis.detail_frames': 2})
    eng = make_engine(model, **flat)
    path = str(tmp_path / 'mem.fvsm')
    try:
        feed(eng, [float(i) for i in range(30)], 'front')
        feed(eng, [float(i) for i in range(7)], 'back', seed=3)
        before = {k: s.state() for k, s in eng._current().snapshots}
        q = Question('What happened?', max_new_tokens=6)
        answer_before = eng.ask(q)
        info = eng.save_memory(path)
        eng.reset_memory()
        eng.load_memory(path)
        after = {k: s.state() for k, s in eng._current().snapshots}
        answer_after = eng.ask(q)
    finally:
        eng.stop()
    assert info.frames == 37
    assert before.keys() == after.keys() == {'front', 'back'}
    for key, (tensors, meta) in before.items():
        assert after[key][1] == meta
        assert after[key][0].keys() == tensors.keys()
        for name, t in tensors.items():
            assert torch.equal(after[key][0][name], t), (key, name)
    assert answer_after.text == answer_before.text  # greedy on identical memory
    assert answer_after.evidence == answer_before.evidence


def test_truncated_real_file_refused_and_memory_kept(
    model: VisionLanguageModel, tmp_path: Path
) -> None:
    eng = make_engine(model)
    path = tmp_path / 'mem.fvsm'
    try:
        feed(eng, [float(i) for i in range(10)])
        eng.save_memory(str(path))
        blob = path.read_bytes()
        feed(eng, [10.0, 11.0])
        for tenth in range(10):
            cut = tmp_path / f'cut{tenth}.fvsm'
            cut.write_bytes(blob[: len(blob) * tenth // 10])
            with pytest.raises(MemoryFileError):
                eng.load_memory(str(cut))
        st = eng.status()
    finally:
        eng.stop()
    assert st.newest_stamp == to_ns(11.0)  # the live memory is untouched by refused files
    assert load_file(path).info['frames'] == 10


def test_key_frames_have_thumbnails(model: VisionLanguageModel) -> None:
    eng = make_engine(model)
    try:
        feed(eng, [float(i) for i in range(30)])
        keys = eng.key_frames()
        stamps = {
            e.stamp
            for e in eng.ask(Question('q', max_new_tokens=1)).evidence
            if e.part in ('retrieved', 'spatial')
        }
    finally:
        eng.stop()
    assert keys
    assert {s for _, s, _ in keys} == stamps
    assert all(img.dtype == np.uint8 and img.shape[2] == 3 for _, _, img in keys)


def test_file_with_other_memory_sizes_refused(model: VisionLanguageModel, tmp_path: Path) -> None:
    path = str(tmp_path / 'mem.fvsm')
    eng = make_engine(model)
    try:
        feed(eng, [float(i) for i in range(30)])
        eng.save_memory(path)
    finally:
        eng.stop()
    smaller = make_engine(
        model, **{'memory.star.temporal_clusters': 10, 'memory.use_checkpoint_sizes': False}
    )
    try:
        with pytest.raises(
            MemoryFileError, match=r"incompatible: it holds sizes=.*'temporal_clusters': 25"
        ):
            smaller.load_memory(path)
    finally:
        smaller.stop()
