"""One held-out synthetic run through the real engine, scored (flash_vstream_ros/sim/qa.py).

Used by the demo family's test and benchmarks/bench_accuracy.py.
"""

from __future__ import annotations

from collections.abc import Mapping

from flash_vstream_ros.config import AppConfig, with_overrides
from flash_vstream_ros.engine import Engine
from flash_vstream_ros.engine.questions import Question
from flash_vstream_ros.models.base import VisionLanguageModel
from flash_vstream_ros.sim.qa import Score, run_world, score_run, sightings
from flash_vstream_ros.sim.world import WorldConfig
from flash_vstream_ros.stamps import to_ns


def evaluate(
    model: VisionLanguageModel,
    seed: int,
    seconds: float = 120.0,
    step: float = 1.0,
    overrides: Mapping[str, object] | None = None,
    now_s: float = 3.0,
    colour_questions: bool = True,
    max_new_tokens: int = 48,
    seen_last_s: float | None = None,
    world_config: WorldConfig | None = None,
) -> tuple[list[Score], dict[str, str]]:
    """One held-out run through the real engine: feed the world's frames, ask, score.
    ``overrides``: flat config overrides (a memory variant); ``world_config``: the world's
    other fields (its seed is ``seed``)."""
    flat: dict[str, object] = {'engine.ingest_rate_hz': 0.0, 'engine.frame_queue_size': 10000}
    flat.update(overrides or {})
    engine = Engine(with_overrides(AppConfig(), flat), model)
    engine.start()
    try:
        world, times = run_world(seed, seconds, step, world_config)
        for t in times:
            engine.submit_frame(world.render(float(t)), to_ns(float(t)), 'front')
        if not engine.wait_idle(600.0):
            raise TimeoutError('the engine did not ingest the run in 600 s')

        def ask(question: str, last_s: float | None) -> str:
            q = Question(question, last_s=last_s or 0.0, max_new_tokens=max_new_tokens)
            return engine.ask(q).text

        sight = sightings(world, times.tolist())
        return score_run(ask, sight, now_s, colour_questions, seen_last_s)
    finally:
        engine.stop()
