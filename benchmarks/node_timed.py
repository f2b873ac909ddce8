"""The flash_vstream node, unchanged, with its image callback timed (for bench_ros_ingest.py).

    NODE_TIMING_OUT=cb.json python benchmarks/node_timed.py --ros-args --params-file p.yaml

Wraps ``FlashVStreamNode._on_image`` (convert + hand to the engine) with a timer and writes the
callback durations' count, mean and percentiles to ``$NODE_TIMING_OUT`` every few seconds and at
exit. When the node has no such method the node runs untimed and the file says so.
"""

from __future__ import annotations

import atexit
import json
import os
from pathlib import Path
import statistics
import threading
import time
from typing import Any

import flash_vstream_ros.ros.node as node_module

TIMES_MS: list[float] = []
LOCK = threading.Lock()
METHOD = '_on_image'


def summary() -> dict[str, Any]:
    with LOCK:
        times = sorted(TIMES_MS)
    if not times:
        return {'method': METHOD, 'count': 0}
    return {
        'method': METHOD,
        'count': len(times),
        'mean_ms': statistics.fmean(times),
        'p50_ms': times[len(times) // 2],
        'p95_ms': times[int(0.95 * (len(times) - 1))],
        'p99_ms': times[int(0.99 * (len(times) - 1))],
        'max_ms': times[-1],
    }


def write(path: Path, extra: dict[str, Any] | None = None) -> None:
    tmp = path.with_suffix('.tmp')
    tmp.write_text(json.dumps({**summary(), **(extra or {})}))
    tmp.replace(path)


def install(path: Path) -> bool:
    """Time the node's image callback; False when the node has no such method."""
    cls = node_module.FlashVStreamNode
    original = getattr(cls, METHOD, None)
    if original is None:
        write(path, {'unavailable': f'FlashVStreamNode has no {METHOD}'})
        return False

    def timed(self: Any, *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return original(self, *args, **kwargs)
        finally:
            elapsed = 1e3 * (time.perf_counter() - start)
            with LOCK:
                TIMES_MS.append(elapsed)

    setattr(cls, METHOD, timed)
    atexit.register(write, path)

    def periodic() -> None:
        while True:
            time.sleep(5.0)
            write(path)

    threading.Thread(target=periodic, daemon=True, name='callback-timing').start()
    return True


def main() -> int:
    out = os.environ.get('NODE_TIMING_OUT', '')
    if out:
        install(Path(out))
    return node_module.main()


if __name__ == '__main__':
    raise SystemExit(main())
