"""GPU memory budget: estimate what a configuration needs and refuse one that cannot fit.

The estimate adds five parts (bytes):

* weights: parameter count x dtype bytes (a loaded model's ``parameter_bytes()`` when given);
* memory state: per memory (one per camera with ``memory.per_camera``) the stored maps and the
  feature buffer with its retrieval keys (:func:`memory_tokens`), x feature width x dtype bytes;
* KV cache of one answer: layers x 2 x KV heads x head dim x (visual tokens + prompt +
  ``generation.max_new_tokens``) x dtype bytes;
* activations: the encoder on a batch of ``engine.max_encode_batch`` frames (uploaded uint8
  frames of up to 1920x1080 and their float copies, hidden states and MLP of one layer) plus the
  language model's prefill workspace of one layer (hidden states and MLP over the whole
  sequence; attention through PyTorch SDPA, so no sequence^2 matrix; last-token logits in fp32);
* overhead: ``gpu.overhead_mb`` (CUDA context, cuBLAS workspace) plus 10 % of the dynamic parts
  for allocator fragmentation.

Encoding and answering run in different threads, so their activations are added, not maxed.

With ``model.decoder: gguf`` the language model is llama.cpp's: :mod:`.gguf_budget`.
The node calls :func:`enforce_budget` at configure; ``python -m flash_vstream_ros.config.profiles
--table`` prints the README's table of the profiles in ``config/profiles/``.
"""

from __future__ import annotations

from dataclasses import dataclass
import logging
from typing import Any

from flash_vstream_ros.config.budget_parts import (
    encoder_activation_bytes,
    kv_cache_bytes,
    prefill_activation_bytes,
    released_lm_bytes,
)
from flash_vstream_ros.config.model_configs import encoder_shape, find_spec, lm_shape
from flash_vstream_ros.config.model_specs import (
    EncoderShape,
    LanguageModelShape,
    ModelSpec,
)
from flash_vstream_ros.config.settings import AppConfig, MemoryConfig
from flash_vstream_ros.errors import ConfigError, GpuBudgetError

LOG = logging.getLogger(__name__)

MIB = 1 << 20
DTYPE_BYTES = {'float32': 4, 'float16': 2, 'bfloat16': 2}
PROMPT_TEMPLATE_TOKENS = 64  # system prompt, template and time/camera context
CHARS_PER_TOKEN = 4  # question text, rough for English with a BPE vocabulary
FRAGMENTATION = 0.10  # allocator slack on the dynamic parts


@dataclass(frozen=True)
class ModelInfo:
    """What the estimate needs to know about a model, loaded or not."""

    name: str
    parameter_bytes: int  # weights as loaded (or as they will be loaded)
    feature_dim: int  # width of the encoder maps the memory stores
    lm: LanguageModelShape
    encoder: EncoderShape
    measured: bool  # True when parameter_bytes came from a loaded model

    @classmethod
    def from_spec(cls, spec: ModelSpec, dtype_bytes: int) -> ModelInfo:
        return cls(
            spec.name,
            spec.parameters * dtype_bytes,
            spec.encoder.feature_dim,
            spec.lm,
            spec.encoder,
            measured=False,
        )

    @classmethod
    def for_config(cls, cfg: AppConfig, dtype_bytes: int) -> ModelInfo:
        """From the known spec of ``cfg.model`` (and its GGUF with decoder=gguf)."""
        spec = find_spec(cfg.model.family, cfg.model.path)
        if cfg.model.decoder == 'gguf':
            from flash_vstream_ros.config.gguf_budget import gguf_spec_info

            return gguf_spec_info(cfg, spec, dtype_bytes)
        return cls.from_spec(spec, dtype_bytes)

    @classmethod
    def from_model(cls, model: Any, cfg: AppConfig) -> ModelInfo:
        """A loaded VisionLanguageModel: measured weights; shapes from its transformers
        configs when it exposes them (the v1 and LLaVA backends do), else the known specs."""
        if cfg.model.decoder == 'gguf':
            from flash_vstream_ros.config.gguf_budget import gguf_model_info

            return gguf_model_info(model, cfg)
        configs = _hf_configs(model)
        if configs is not None:
            feature_dim = int(model.feature_dim)
            lm, encoder = lm_shape(configs[0]), encoder_shape(configs[1], feature_dim)
            name = str(getattr(model, 'name', '') or cfg.model.path or cfg.model.family)
        else:
            spec = find_spec(cfg.model.family, cfg.model.path)
            lm, encoder, name = spec.lm, spec.encoder, spec.name
        return cls(
            name, int(model.parameter_bytes()), int(model.feature_dim), lm, encoder, measured=True
        )


def _hf_configs(model: Any) -> tuple[Any, Any] | None:
    """(text config, vision config) of a loaded backend, None when it shows none."""
    modules = getattr(model, 'modules', None)  # FlashVStreamModel: V1Modules(lm, vision)
    if modules is not None and getattr(modules, 'vision', None) is not None:
        return modules.lm.config, modules.vision.config
    config = getattr(getattr(model, 'model', None), 'config', None)  # LlavaModel
    if config is not None and hasattr(config, 'text_config'):
        return config.text_config, config.vision_config
    return None


@dataclass(frozen=True)
class BudgetEstimate:
    """Expected GPU memory of a configuration, by part (bytes)."""

    model: str
    device: str  # 'cuda' or 'cpu' (then nothing is on a GPU)
    dtype: str
    weights: int
    memory_state: int
    kv_cache: int
    activations: int
    overhead: int
    visual_tokens: int  # largest readout one question may get
    context_tokens: int  # visual tokens + prompt + max_new_tokens
    max_context: int  # the language model's limit

    @property
    def total(self) -> int:
        return self.weights + self.memory_state + self.kv_cache + self.activations + self.overhead

    def parts(self) -> dict[str, int]:
        return {
            'weights': self.weights,
            'memory state': self.memory_state,
            'KV cache': self.kv_cache,
            'activations': self.activations,
            'overhead': self.overhead,
        }

    def describe(self) -> str:
        parts = ', '.join(f'{name} {_mib(value)}' for name, value in self.parts().items())
        return f'{self.model} {self.dtype} on {self.device}: {_mib(self.total)} ({parts})'


def _mib(n: int) -> str:
    return f'{n / MIB:,.0f} MiB'


# --------------------------------------------------------------------------- estimate


def resolve_device(device: str) -> str:
    """'cuda' or 'cpu' for a ModelConfig.device value ('auto' asks torch)."""
    if device == 'auto':
        import torch  # lazy: config tooling must not pay for torch

        return 'cuda' if torch.cuda.is_available() else 'cpu'
    return 'cuda' if device.startswith('cuda') else 'cpu'


def dtype_name(dtype: str, device: str) -> str:
    """The weights dtype a ModelConfig.dtype value means on ``device``."""
    if dtype == 'auto':
        return 'float16' if device == 'cuda' else 'float32'
    return dtype


def camera_count(cfg: AppConfig) -> int:
    return max(1, len(cfg.ros.image_topics) + len(cfg.ros.compressed_topics))


def memory_tokens(memory: MemoryConfig) -> tuple[int, int]:
    """(readout tokens, stored tokens) of one full memory.

    Stored, as the memories keep them: STAR holds the abstract, temporal and spatial maps, and
    per buffered frame its retrieval map (retrieved_size^2) and its key at temporal resolution
    (temporal_size^2); the retrieved key frames are buffer entries, not copies, and so are the
    spatial maps when they have the buffer's resolution. Synopsis holds
    its clusters, and per buffered frame the detail map and a key at cluster resolution.
    """
    if memory.kind == 'star':
        star = memory.star
        # The newest frames' maps are the buffer's own tensors when both have one resolution.
        shared = star.spatial_size == star.retrieved_size and star.spatial_frames <= (
            star.buffer_frames
        )
        parts = (
            star.abstract_slots * star.abstract_size**2
            + star.temporal_clusters * star.temporal_size**2
            + (0 if shared else star.spatial_frames * star.spatial_size**2)
        )
        parts += (star.chunk_frames - 1) * star.abstract_size**2  # the abstract's pending chunk
        parts += star.recent_frames * star.recent_size**2
        per_frame = star.retrieved_size**2 + star.temporal_size**2
        stored = parts + star.buffer_frames * per_frame + timeline_tokens(memory)
        return star.token_count, stored
    syn = memory.synopsis
    per_frame = syn.detail_size**2 + syn.cluster_size**2
    parts = syn.clusters * syn.cluster_size**2 + syn.recent_frames * syn.recent_size**2
    return syn.token_count, parts + syn.buffer_frames * per_frame + timeline_tokens(memory)


def timeline_tokens(memory: MemoryConfig) -> int:
    """Stored tokens of a full timeline: per segment its mean and its representative frame."""
    t = memory.timeline
    return t.segments * (t.segment_size**2 + t.frame_size**2)


def memory_state_bytes(
    memory: MemoryConfig, feature_dim: int, dtype_bytes: int, memories: int = 1
) -> int:
    """Bytes of ``memories`` full memories (what MemorySnapshot.nbytes reports when full)."""
    _, stored = memory_tokens(memory)
    return memories * stored * feature_dim * dtype_bytes


def remote_only(cfg: AppConfig) -> bool:
    """model.decoder=remote without a fallback: the robot keeps only the LM's embedding table
    (models/remote.py releases the rest after loading)."""
    return cfg.model.decoder == 'remote' and not cfg.model.remote.fallback


def estimate(
    cfg: AppConfig, model_info: ModelInfo | None = None, device: str | None = None
) -> BudgetEstimate:
    """Expected GPU memory of ``cfg`` (with ``model_info`` of a loaded model when given).

    ``device`` ('cuda' or 'cpu') overrides ``cfg.model.device``; with 'cpu' the parts are host
    memory and nothing is on a GPU.
    """
    dev = device or resolve_device(cfg.model.device)
    dtype = dtype_name(cfg.model.dtype, dev)
    nbytes = DTYPE_BYTES[dtype]
    info = model_info or ModelInfo.for_config(cfg, nbytes)
    cameras = camera_count(cfg)
    memories = cameras if cfg.memory.per_camera else 1
    readout, _ = memory_tokens(cfg.memory)
    visual = cfg.engine.max_visual_tokens or readout  # the engine's per-question token budget
    prompt = PROMPT_TEMPLATE_TOKENS + cfg.generation.max_question_chars // CHARS_PER_TOKEN
    context = visual + prompt + cfg.generation.max_new_tokens
    encoder_acts = encoder_activation_bytes(info.encoder, cfg.engine.max_encode_batch, nbytes)
    max_context = info.lm.max_context
    weights = info.parameter_bytes  # a loaded model's: already without what it released
    if cfg.model.decoder == 'gguf':
        from flash_vstream_ros.config.gguf_budget import gguf_context_bytes

        kv, compute, max_context = gguf_context_bytes(cfg, info.lm)
        acts = encoder_acts + compute
        dtype = f'{dtype} + GGUF {cfg.model.gguf.quant}'
    elif remote_only(cfg):  # a server runs the language model: no KV cache, no prefill here
        kv, acts = 0, encoder_acts
        if not info.measured:
            weights -= released_lm_bytes(info.lm, nbytes)
    else:
        kv = kv_cache_bytes(info.lm, context, nbytes)
        acts = encoder_acts + prefill_activation_bytes(info.lm, visual + prompt, nbytes)
    state = memory_state_bytes(cfg.memory, info.feature_dim, nbytes, memories)
    context_mib = cfg.gpu.overhead_mb if dev == 'cuda' else 0
    overhead = context_mib * MIB + int(FRAGMENTATION * (state + kv + acts))
    return BudgetEstimate(
        model=info.name,
        device=dev,
        dtype=dtype,
        weights=weights,
        memory_state=state,
        kv_cache=kv,
        activations=acts,
        overhead=overhead,
        visual_tokens=visual,
        context_tokens=context,
        max_context=max_context,
    )


# --------------------------------------------------------------------------- check


def budget_limit(cfg: AppConfig, device_total_bytes: int | None = None) -> int | None:
    """The bytes a configuration may use: the smaller of the configured limit and the device."""
    limits = [n for n in (cfg.gpu.max_gpu_memory_mb * MIB, device_total_bytes or 0) if n > 0]
    return min(limits) if limits else None


def check(cfg: AppConfig, est: BudgetEstimate, device_total_bytes: int | None = None) -> None:
    """Raise when ``est`` cannot run: a context too long, or more GPU memory than allowed.

    Raises ConfigError when the visual tokens, prompt and answer exceed the language model's
    context, and GpuBudgetError naming the largest part and the profiles that would fit when the
    estimate exceeds ``gpu.max_gpu_memory_mb`` or ``device_total_bytes``.
    """
    if est.context_tokens > est.max_context:
        raise ConfigError(
            f'{est.model} reads at most {est.max_context} tokens, but the memory gives '
            f'{est.visual_tokens} visual tokens (+ prompt and generation.max_new_tokens = '
            f'{est.context_tokens}): use a smaller memory budget or fewer cameras per memory'
            + (' or a larger model.gguf.n_ctx' if cfg.model.decoder == 'gguf' else '')
        )
    limit = budget_limit(cfg, device_total_bytes)
    if est.device != 'cuda' or limit is None or est.total <= limit:
        return
    largest = max(est.parts().items(), key=lambda kv: kv[1])
    raise GpuBudgetError(
        f'the configuration needs about {_mib(est.total)} of GPU memory but '
        f'{_mib(limit)} is allowed ({_limit_source(cfg, device_total_bytes, limit)}): '
        f'{est.describe()}; the largest part is {largest[0]} ({_mib(largest[1])}). '
        f'{_suggestion(limit)}'
    )


def _limit_source(cfg: AppConfig, device_total_bytes: int | None, limit: int) -> str:
    if cfg.gpu.max_gpu_memory_mb and cfg.gpu.max_gpu_memory_mb * MIB == limit:
        return f'gpu.max_gpu_memory_mb={cfg.gpu.max_gpu_memory_mb}'
    return f'device memory {_mib(device_total_bytes or 0)}'


def _suggestion(limit: int) -> str:
    from flash_vstream_ros.config.profiles import profile_estimates  # profiles import us

    fitting = [
        (name, est)
        for name, _, est in profile_estimates()
        if est.device == 'cuda' and est.total <= limit
    ]
    if not fitting:
        return 'No profile in config/profiles fits this budget.'
    fitting.sort(key=lambda item: item[1].total, reverse=True)
    names = ', '.join(f'{name} ({_mib(est.total)})' for name, est in fitting)
    return f'Profiles that fit, largest first: {names}; start with the first.'


# --------------------------------------------------------------------------- the node's entry


def enforce_budget(cfg: AppConfig, model: Any | None = None) -> BudgetEstimate | None:
    """Estimate ``cfg`` (with the loaded ``model`` when given), check it, log and return it.

    Call it at configure: once before loading the model (``model=None``: sizes from the known
    specs or the local checkpoint's config.json, so an impossible profile is refused before any
    weight is read; None when the model's size is unknown before loading) and once after, with
    the loaded model (measured weights). Raises GpuBudgetError or ConfigError.
    """
    device = _model_device(model) if model is not None else resolve_device(cfg.model.device)
    dtype_bytes = DTYPE_BYTES[dtype_name(cfg.model.dtype, device)]
    if model is not None:
        info = ModelInfo.from_model(model, cfg)
    else:
        try:
            info = ModelInfo.for_config(cfg, dtype_bytes)
        except ConfigError as exc:
            LOG.info('GPU budget checked after loading: %s', exc)
            return None
    est = estimate(cfg, info, device=device)
    total = device_total_memory() if device == 'cuda' else None
    check(cfg, est, device_total_bytes=total)
    limit = budget_limit(cfg, total)
    LOG.info(
        'GPU budget: %s; allowed %s',
        est.describe(),
        _mib(limit) if limit is not None else 'no limit',
    )
    return est


def _model_device(model: Any) -> str:
    return 'cuda' if str(model.device).startswith('cuda') else 'cpu'


# --------------------------------------------------------------------------- status helpers


def device_total_memory(index: int | None = None) -> int:
    """Bytes of the CUDA device (on Jetson: the memory shared with the CPU); 0 without CUDA."""
    import torch

    if not torch.cuda.is_available():
        return 0
    dev = torch.cuda.current_device() if index is None else index
    return int(torch.cuda.get_device_properties(dev).total_memory)
