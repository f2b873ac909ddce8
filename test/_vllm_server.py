"""A real vLLM OpenAI server on 127.0.0.1, started from the vllm venv (FVS_VLLM_PYTHON).

Used by test_remote_vllm.py and benchmarks/bench_remote.py. The served model is the language
model exported from a tiny Flash-VStream v1 checkpoint whose attention heads are 32 wide
(vLLM's CPU attention takes head sizes 32, 64, 80, ...; the default tiny model's 16 kills the
engine at the first request). The server process is stopped by its PID only; its caches live
in the given folder.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request

HEAD32 = {'num_attention_heads': 2, 'num_key_value_heads': 2}  # hidden 64 / 2 = head_dim 32
SERVED = 'tiny-lm'
START_S = 400.0  # start-up: ~60 s with --enforce-eager on an idle 2-core machine


def vllm_python() -> str:
    return os.environ.get('FVS_VLLM_PYTHON', '')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return int(s.getsockname()[1])


def build_models(root: Path) -> tuple[Path, Path]:
    """(the tiny v1 checkpoint with head_dim 32, its exported language model) under root."""
    from flash_vstream_ros.models.lm_export import export_lm
    from flash_vstream_ros.models.tiny import write_tiny_v1

    checkpoint, lm = root / 'v1_head32', root / 'v1_head32_lm'
    if not checkpoint.is_dir():
        write_tiny_v1(checkpoint, lm_overrides=HEAD32)
    if not lm.is_dir():
        export_lm(checkpoint, lm)
    return checkpoint, lm


class VllmServer:
    """``python -m vllm.entrypoints.openai.api_server`` for ``model`` on 127.0.0.1:port."""

    def __init__(
        self, model: Path, workdir: Path, port: int | None = None, max_model_len: int = 512
    ) -> None:
        self.model, self.workdir, self.max_model_len = model, workdir, max_model_len
        self.port = port or free_port()
        self.url = f'http://127.0.0.1:{self.port}'
        self.popen: subprocess.Popen[bytes] | None = None
        self.log = workdir / f'vllm_{self.port}.log'
        self.starts = 0

    def command(self) -> list[str]:
        return [
            vllm_python(),
            '-m',
            'vllm.entrypoints.openai.api_server',
            '--model',
            str(self.model),
            '--served-model-name',
            SERVED,
            '--host',
            '127.0.0.1',
            '--port',
            str(self.port),
            '--enable-prompt-embeds',
            '--dtype',
            'float32',
            '--max-model-len',
            str(self.max_model_len),
            '--enforce-eager',
        ]

    def env(self) -> dict[str, str]:
        cache = self.workdir / 'cache'
        cache.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        for name in ('PYTHONPATH', 'VIRTUAL_ENV', 'LD_LIBRARY_PATH', 'AMENT_PREFIX_PATH'):
            env.pop(name, None)  # the main venv's paths must not leak into vLLM's
        env.update(
            {
                'VLLM_HOST_IP': '127.0.0.1',
                'VLLM_CACHE_ROOT': str(cache / 'vllm'),
                'XDG_CACHE_HOME': str(cache),
                'HF_HOME': str(cache / 'hf'),
                'TORCHINDUCTOR_CACHE_DIR': str(cache / 'inductor'),
                'HF_HUB_OFFLINE': '1',
                'TRANSFORMERS_OFFLINE': '1',
                'VLLM_NO_USAGE_STATS': '1',
                'DO_NOT_TRACK': '1',
                'VLLM_CPU_KVCACHE_SPACE': '1',  # GiB
                'VLLM_LOGGING_LEVEL': 'INFO',
            }
        )
        return env

    def start(self) -> None:
        assert self.popen is None or self.popen.poll() is not None, 'already running'
        self.starts += 1
        with self.log.open('ab') as out:
            out.write(f'\n=== start {self.starts}\n'.encode())
            out.flush()
            self.popen = subprocess.Popen(
                self.command(),
                cwd=self.workdir,
                env=self.env(),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its engine core child goes with its group
            )

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f'{self.url}/v1/models', timeout=2.0) as r:
                return SERVED in json.loads(r.read()).get('data', [{}])[0].get('id', '')
        except (OSError, ValueError, urllib.error.URLError, IndexError):
            return False

    def wait_ready(self, timeout: float = START_S) -> float:
        """Seconds until /v1/models answers; AssertionError with the log's tail otherwise."""
        t0 = time.monotonic()
        while not self.ready():
            if self.popen is not None and self.popen.poll() is not None:
                raise AssertionError(f'vLLM exited ({self.popen.returncode}):\n{self.tail()}')
            if time.monotonic() - t0 > timeout:
                raise AssertionError(f'vLLM not ready after {timeout} s:\n{self.tail()}')
            time.sleep(0.5)
        return time.monotonic() - t0

    def running_requests(self) -> float:
        """vllm:num_requests_running from /metrics (-1 when unreadable)."""
        try:
            with urllib.request.urlopen(f'{self.url}/metrics', timeout=2.0) as r:
                text = r.read().decode()
        except (OSError, urllib.error.URLError):
            return -1.0
        for line in text.splitlines():
            if line.startswith('vllm:num_requests_running'):
                return float(line.rsplit(' ', 1)[1])
        return -1.0

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """``sig`` to the server's process group (it and its engine core), then wait."""
        if self.popen is None or self.popen.poll() is not None:
            return
        os.killpg(self.popen.pid, sig)
        try:
            self.popen.wait(30.0)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(30.0)

    def stop(self) -> None:
        self.kill(signal.SIGTERM)

    def tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors='replace')[-chars:] if self.log.is_file() else ''
