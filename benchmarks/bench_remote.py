"""Local vs remote answering (model.decoder=remote on a real vLLM server), and bytes per question.

    FVS_VLLM_PYTHON=/tmp/fvs_vllm_venv/bin/python python benchmarks/bench_remote.py \\
        [--visual-tokens 681] [--new-tokens 32] [--reps 5] [--out result.json]

The tiny Flash-VStream v1 model with head_dim 32 (what vLLM's CPU attention takes) answers the
same prompt (the vicuna prompt with ``--visual-tokens`` projected memory tokens, 681 = the
STAR memory's full readout) twice: with its own transformers language model (local) and with
the exported language model on a vLLM server on 127.0.0.1 (remote: prompt embeddings over
HTTP, the answer streamed back). Greedy, exactly ``--new-tokens`` tokens (eos off), the
fastest of ``--reps`` runs after one warm-up, one torch thread; compare the ratio, not the
times (the server runs on the same 2 cores here; on a robot it is another machine).

Bytes per question are measured on the wire: the client talks to the server through a
counting TCP relay on 127.0.0.1, so the figures include HTTP headers, JSON and base64. The
Flash-VStream-7b estimate encodes a (T, 4096) fp16 tensor of its prompt length (681 memory
tokens + the same text tokens) exactly as the decoder sends it and adds the same request
overhead; the transfer time is that over a 100 Mbit/s link (and 1 Gbit/s).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
from pathlib import Path
import socket
import sys
import tempfile
import threading
import time
from typing import Any

os.environ.setdefault('HF_HUB_OFFLINE', '1')
os.environ.setdefault('TRANSFORMERS_OFFLINE', '1')
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / 'test'))

import torch  # noqa: E402 (after the path set-up)

from flash_vstream_ros.config import RemoteConfig  # noqa: E402
from flash_vstream_ros.models.base import GenerationRequest, PromptContext  # noqa: E402
from flash_vstream_ros.models.decoder import TorchDecoder  # noqa: E402
from flash_vstream_ros.models.flash_vstream import load_flash_vstream  # noqa: E402
from flash_vstream_ros.models.remote import RemoteDecoder, encode_embeds  # noqa: E402

QUESTION = 'What happened in the video, and where is the red toolbox?'
HIDDEN_7B, FP16 = 4096, 2
LINKS_BPS = {'100 Mbit/s': 100e6, '1 Gbit/s': 1e9}


class CountingRelay:
    """127.0.0.1:port -> target: forwards both ways, counts the bytes of each direction."""

    def __init__(self, target_port: int) -> None:
        self.target = ('127.0.0.1', target_port)
        self.up = 0  # client -> server
        self.down = 0  # server -> client
        self._lock = threading.Lock()
        self._listener = socket.socket()
        self._listener.bind(('127.0.0.1', 0))
        self._listener.listen(8)
        self.port = self._listener.getsockname()[1]
        self.url = f'http://127.0.0.1:{self.port}'
        threading.Thread(target=self._accept, daemon=True).start()

    def reset(self) -> None:
        with self._lock:
            self.up = self.down = 0

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            threading.Thread(target=self._pump, args=(client, server, 'up'), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, 'down'), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, direction: str) -> None:
        try:
            while data := src.recv(65536):
                with self._lock:
                    setattr(self, direction, getattr(self, direction) + len(data))
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._listener.close()


def fastest(fn: Any, reps: int) -> tuple[float, Any]:
    fn()  # warm-up
    times, out = [], None
    for _ in range(reps):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from _vllm_server import SERVED, VllmServer, build_models, vllm_python

    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--visual-tokens', type=int, default=681)
    parser.add_argument('--new-tokens', type=int, default=32)
    parser.add_argument('--reps', type=int, default=5)
    parser.add_argument('--out', type=Path, default=None)
    args = parser.parse_args(argv)
    if not vllm_python():
        raise SystemExit(
            'set FVS_VLLM_PYTHON to the vllm venv python (scripts/setup_vllm_venv.sh)'
        )
    torch.set_num_threads(1)
    work = Path(tempfile.mkdtemp(prefix='bench_remote_'))
    checkpoint, lm = build_models(work)
    server = VllmServer(lm, work, max_model_len=2048)
    server.start()
    try:
        startup = server.wait_ready()
        result = run(args, checkpoint, server.port, SERVED)
        result['server_startup_s'] = round(startup, 1)
    finally:
        server.stop()
    print(table(result))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))
    return result


def run(args: argparse.Namespace, checkpoint: Path, port: int, served: str) -> dict[str, Any]:
    model = load_flash_vstream(checkpoint, torch.device('cpu'), torch.float32)
    local = model.decoder
    assert isinstance(local, TorchDecoder)
    local.eos_ids = set()  # exactly --new-tokens tokens
    context = PromptContext(span=(0, 60 * 10**9), frames_seen=300, cameras=('front',))
    memory = torch.randn(args.visual_tokens, 64, generator=torch.Generator().manual_seed(0))
    before, after = model.prompt_ids(QUESTION, context)
    with torch.inference_mode():
        visual = model.modules.projector(memory)  # (N, H)
    prompt = [before, visual, after]
    text_tokens = len(before) + len(after)
    request = GenerationRequest(max_new_tokens=args.new_tokens)
    relay = CountingRelay(port)
    out: dict[str, Any] = {
        'visual_tokens': args.visual_tokens,
        'text_tokens': text_tokens,
        'hidden': int(visual.shape[1]),
        'new_tokens': args.new_tokens,
    }
    t_local, g_local = fastest(lambda: local.generate(prompt, request), args.reps)
    out['local_s'] = t_local
    for wire in ('float32', 'float16'):
        settings = RemoteConfig(url=relay.url, model=served, timeout_s=60.0, dtype=wire)
        remote = RemoteDecoder(settings, local.embed, set())
        t_remote, g_remote = fastest(lambda r=remote: r.generate(prompt, request), args.reps)
        relay.reset()
        remote.generate(prompt, request)
        time.sleep(0.2)  # the relay's last bytes
        out[wire] = {
            'remote_s': t_remote,
            'ratio': t_remote / t_local,
            'same_text': g_remote.text == g_local.text,
            'same_tokens': g_remote.tokens == g_local.tokens,
            'request_body_bytes': remote.last_bytes_sent,
            'wire_up_bytes': relay.up,
            'wire_down_bytes': relay.down,
        }
    relay.close()
    model.close()
    out['estimate_7b'] = estimate_7b(out, text_tokens)
    return out


def estimate_7b(measured: dict[str, Any], text_tokens: int) -> dict[str, Any]:
    """Flash-VStream-7b: (681 + text) x 4096 fp16, encoded as the decoder sends it."""
    t = 681 + text_tokens
    raw = t * HIDDEN_7B * FP16
    payload = len(encode_embeds(torch.zeros(t, HIDDEN_7B, dtype=torch.float16)))
    tiny = measured['float16']
    overhead = tiny['wire_up_bytes'] - len(
        encode_embeds(torch.zeros(measured['visual_tokens'] + text_tokens, measured['hidden'],
                                  dtype=torch.float16))
    )  # fmt: skip
    wire = payload + overhead
    return {
        'prompt_tokens': t,
        'memory_raw_bytes': 681 * HIDDEN_7B * FP16,
        'prompt_raw_bytes': raw,
        'wire_bytes': wire,
        'seconds': {name: wire * 8 / bps for name, bps in LINKS_BPS.items()},
    }


def table(r: dict[str, Any]) -> str:
    lines = [
        f'tiny v1 (hidden {r["hidden"]}, head_dim 32), {r["visual_tokens"]} memory + '
        f'{r["text_tokens"]} text tokens, {r["new_tokens"]} new tokens, greedy; vLLM start-up '
        f'{r.get("server_startup_s", "?")} s',
        '',
        '| answering | wire dtype | latency (s) | remote/local | same tokens | '
        'sent per question (bytes, on the wire) | received (bytes) |',
        '|---|---|---|---|---|---|---|',
        f'| local (transformers) | - | {r["local_s"]:.3f} | 1.00 | - | - | - |',
    ]
    for wire in ('float32', 'float16'):
        w = r[wire]
        lines.append(
            f'| remote (vLLM, 127.0.0.1) | {wire} | {w["remote_s"]:.3f} | {w["ratio"]:.2f} | '
            f'{"yes" if w["same_text"] and w["same_tokens"] else "NO"} | '
            f'{w["wire_up_bytes"]:,} | {w["wire_down_bytes"]:,} |'
        )
    e = r['estimate_7b']
    secs = ', '.join(f'{v:.2f} s at {k}' for k, v in e['seconds'].items())
    lines += [
        '',
        f'Flash-VStream-7b estimate: memory 681 x 4096 x fp16 = {e["memory_raw_bytes"] / 1e6:.2f} '
        f'MB raw; the whole prompt ({e["prompt_tokens"]} tokens) {e["prompt_raw_bytes"] / 1e6:.2f}'
        f' MB raw, {e["wire_bytes"] / 1e6:.2f} MB on the wire (base64 + JSON + HTTP): {secs}.',
    ]
    return '\n'.join(lines)


if __name__ == '__main__':
    main()
