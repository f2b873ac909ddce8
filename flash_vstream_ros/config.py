"""The one configuration tree of the package: validated dataclasses.

Every field is declared with :func:`param`, which records a description, a range or a set of
choices. From that single declaration come the validation (``__post_init__``), the ROS
parameters (``ros/params.py`` declares one parameter per leaf, dotted names such as
``memory.star.temporal_clusters``), the YAML files in ``config/`` and the README's tables.
No parameter is written by hand twice.

This module imports nothing of ours and nothing heavy (no torch, no rclpy).
"""

from __future__ import annotations

import builtins
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
import typing
from typing import Any, TypeVar

import yaml

from flash_vstream_ros.errors import ConfigError

T = TypeVar('T', bound='ConfigNode')

LEAF_TYPES = (bool, int, float, str)


def param(
    default: Any,
    description: str,
    *,
    low: float | None = None,
    high: float | None = None,
    choices: tuple[str, ...] | None = None,
) -> Any:
    """Declare a config field with its description and its valid range or choices."""
    meta = {'description': description, 'low': low, 'high': high, 'choices': choices}
    if isinstance(default, list):
        frozen = tuple(default)
        return field(default_factory=lambda: list(frozen), metadata=meta)
    return field(default=default, metadata=meta)


def section(cls: type[T], description: str) -> Any:
    """Declare a nested config section."""
    return field(default_factory=cls, metadata={'description': description})


@dataclass(frozen=True)
class ParamSpec:
    """One leaf of the configuration tree, as ROS parameters and documentation see it."""

    name: str  # dotted, e.g. 'memory.star.temporal_clusters'
    type: builtins.type  # bool, int, float, str or list
    item_type: builtins.type | None  # element type of a list field
    default: Any
    description: str
    low: float | None
    high: float | None
    choices: tuple[str, ...] | None


class ConfigNode:
    """Mixin that validates every field of a config dataclass after construction."""

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = _coerce(type(self).__name__, f.name, hints[f.name], getattr(self, f.name))
            object.__setattr__(self, f.name, value)
            _check_range(type(self).__name__, f, value)
        self.validate()

    def validate(self) -> None:
        """Cross-field checks; subclasses override and raise ConfigError."""


def _is_section(hint: Any) -> bool:
    return isinstance(hint, type) and issubclass(hint, ConfigNode)


def _coerce(owner: str, name: str, hint: Any, value: Any) -> Any:
    where = f'{owner}.{name}'
    if _is_section(hint):
        if not isinstance(value, hint):
            raise ConfigError(f'{where} must be a {hint.__name__}, got {value!r}')
        return value
    origin = typing.get_origin(hint)
    if origin is list:
        (item,) = typing.get_args(hint)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f'{where} must be a list of {item.__name__}, got {value!r}')
        return [_coerce_leaf(where, item, v) for v in value]
    return _coerce_leaf(where, hint, value)


def _coerce_leaf(where: str, hint: type, value: Any) -> Any:
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is int and isinstance(value, bool):
        raise ConfigError(f'{where} must be an int, got {value!r}')
    if not isinstance(value, hint):
        raise ConfigError(f'{where} must be {hint.__name__}, got {value!r}')
    return value


def _check_range(owner: str, f: dataclasses.Field[Any], value: Any) -> None:
    meta = f.metadata
    values = value if isinstance(value, list) else [value]
    for v in values:
        if meta.get('low') is not None and v < meta['low']:
            raise ConfigError(f'{owner}.{f.name} must be >= {meta["low"]}, got {v!r}')
        if meta.get('high') is not None and v > meta['high']:
            raise ConfigError(f'{owner}.{f.name} must be <= {meta["high"]}, got {v!r}')
        if meta.get('choices') and v not in meta['choices']:
            choices = list(meta['choices'])
            raise ConfigError(f'{owner}.{f.name} must be one of {choices}, got {v!r}')


# --------------------------------------------------------------------------- the tree


@dataclass(frozen=True)
class StarConfig(ConfigNode):
    """STAR memory of Flash-VStream v1 (defaults: the paper and the released checkpoint)."""

    spatial_frames: int = param(
        1, 'Spatial memory: newest frames kept (FIFO, N_spa)', low=1, high=64
    )
    spatial_size: int = param(
        8, 'Spatial memory: side of the pooled map (8 -> 8x8 tokens)', low=1, high=64
    )
    temporal_clusters: int = param(25, 'Temporal memory: k-means clusters (K)', low=1, high=1024)
    temporal_size: int = param(4, 'Temporal memory: side of each centroid map', low=1, high=64)
    abstract_slots: int = param(25, 'Abstract memory: semantic slots', low=0, high=1024)
    abstract_size: int = param(1, 'Abstract memory: side of each slot map', low=1, high=64)
    abstract_alpha: float = param(
        0.2, 'Abstract memory: update rate a of M <- (1-a)M + a.attn', low=0.0, high=1.0
    )
    abstract_projection: str = param(
        'auto',
        'Abstract q/k projections: learned (from the checkpoint), identity '
        '(parameter-free dot product), auto (learned when the model has them)',
        choices=('auto', 'learned', 'identity'),
    )
    retrieved_frames: int = param(
        3, 'Retrieved memory: key frames (largest clusters)', low=0, high=256
    )
    retrieved_size: int = param(
        8, 'Retrieved memory and feature buffer: side of a frame map', low=1, high=64
    )
    buffer_frames: int = param(
        300, 'Feature buffer: frames kept for retrieval (N_buff)', low=1, high=1_000_000
    )
    buffer_capped: bool = param(
        True,
        'Cap the feature buffer at buffer_frames (False: the '
        'released code, which grows without bound)',
    )
    kmeans_weighted: bool = param(
        True,
        'Weight centroids by cluster size (paper; exact: one '
        'merge per frame); False: the released code (Lloyd k-means '
        'of unit-weight points)',
    )
    kmeans_init: str = param(
        'deterministic',
        'Lloyd start (kmeans_weighted=False only): '
        'deterministic (farthest points: same stream, same memory) or '
        'random (released code; seeded by seed)',
        choices=('deterministic', 'random'),
    )
    kmeans_iters: int = param(10, 'K-means: maximum Lloyd iterations', low=1, high=1000)
    kmeans_tol: float = param(1e-4, 'K-means: convergence tolerance', low=0.0)
    retrieval: str = param(
        'paper',
        'Key-frame retrieval: paper (nearest buffered frame to each '
        'largest centroid) or released (indexes frames by cluster id)',
        choices=('paper', 'released'),
    )
    seed: int = param(0, 'Seed of the random k-means start (kmeans_init=random)', low=0)

    def validate(self) -> None:
        if self.retrieved_frames > self.temporal_clusters:
            raise ConfigError(
                f'StarConfig.retrieved_frames ({self.retrieved_frames}) must be <= '
                f'temporal_clusters ({self.temporal_clusters})'
            )

    @property
    def token_count(self) -> int:
        """Visual tokens of a full readout (681 with the defaults)."""
        return (
            self.abstract_slots * self.abstract_size**2
            + self.temporal_clusters * self.temporal_size**2
            + self.retrieved_frames * self.retrieved_size**2
            + self.spatial_frames * self.spatial_size**2
        )


@dataclass(frozen=True)
class SynopsisConfig(ConfigNode):
    """Flash Memory of Flash-VStream v2 (context synopsis + detail augmentation)."""

    clusters: int = param(
        60, 'Context synopsis: weighted k-means clusters, ordered by time', low=1, high=4096
    )
    cluster_size: int = param(
        8, 'Context synopsis: side of each cluster map (8 -> 64 tokens)', low=1, high=64
    )
    detail_frames: int = param(
        30, 'Detail augmentation: full-resolution key frames (0 = off)', low=0, high=1024
    )
    detail_size: int = param(
        16, 'Detail augmentation: side of a key frame map (16 -> 256)', low=1, high=128
    )
    buffer_frames: int = param(
        300, 'Frames kept at detail resolution for key-frame retrieval', low=1, high=1_000_000
    )
    kmeans_weighted: bool = param(
        True,
        'Weight centroids by cluster size (exact: one merge '
        'per frame); False: Lloyd k-means of unit-weight points',
    )

    def validate(self) -> None:
        if self.detail_frames > self.clusters:
            raise ConfigError(
                f'SynopsisConfig.detail_frames ({self.detail_frames}) must be <= clusters '
                f'({self.clusters})'
            )

    @property
    def token_count(self) -> int:
        """Visual tokens of a full readout (11,520 with the defaults)."""
        return self.clusters * self.cluster_size**2 + self.detail_frames * self.detail_size**2


@dataclass(frozen=True)
class MemoryConfig(ConfigNode):
    """Which streaming memory to keep, and its sizes."""

    kind: str = param(
        'star',
        'Memory kind: star (Flash-VStream v1) or synopsis (v2)',
        choices=('star', 'synopsis'),
    )
    per_camera: bool = param(
        True, 'One memory per camera (True) or one shared memory with camera provenance (False)'
    )
    use_checkpoint_sizes: bool = param(
        True, 'Take memory sizes from the checkpoint (compress_*/video_* keys) when it has them'
    )
    star: StarConfig = section(StarConfig, 'STAR memory (kind=star)')
    synopsis: SynopsisConfig = section(SynopsisConfig, 'Synopsis memory (kind=synopsis)')


@dataclass(frozen=True)
class ModelConfig(ConfigNode):
    """The vision-language model."""

    family: str = param(
        'tiny',
        'Model family: tiny (random, offline), flash_vstream (v1 '
        'checkpoint), llava (transformers LLaVA-style models)',
        choices=('tiny', 'flash_vstream', 'llava'),
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
        'family=tiny: which real format the tiny random model is built in and loaded through',
        choices=('flash_vstream', 'llava'),
    )
    offline: bool = param(False, 'Never contact a model hub (local files only)')
    compile: bool = param(False, 'torch.compile the vision encoder (CUDA only)')


@dataclass(frozen=True)
class GenerationConfig(ConfigNode):
    """Defaults for answering; a request may lower them."""

    max_new_tokens: int = param(128, 'Largest answer length in tokens', low=1, high=4096)
    temperature: float = param(0.0, 'Sampling temperature (0 = greedy)', low=0.0, high=5.0)
    top_p: float = param(1.0, 'Nucleus sampling mass (temperature > 0)', low=0.0, high=1.0)
    max_question_chars: int = param(2000, 'Longest question accepted', low=1, high=100_000)


@dataclass(frozen=True)
class EngineConfig(ConfigNode):
    """Real-time ingest and answering."""

    ingest_rate_hz: float = param(
        1.0,
        'Frames folded into memory per second, per camera (the paper: 1 fps); 0 = every frame',
        low=0.0,
        high=1000.0,
    )
    frame_queue_size: int = param(
        8, 'Frames waiting for the ingest worker (drop-oldest)', low=1, high=10_000
    )
    max_encode_batch: int = param(
        4, 'Frames encoded together when ingest is behind', low=1, high=256
    )
    question_queue_size: int = param(
        2, 'Questions waiting while one is answered; more are refused', low=0, high=1000
    )
    max_image_side: int = param(
        8192, 'Largest accepted image width or height (pixels)', low=1, high=65_536
    )
    max_visual_tokens: int = param(
        0,
        'Visual tokens given to the language model per question, '
        'shared equally by the cameras asked about (0 = one full '
        'memory readout)',
        low=0,
        high=1_000_000,
    )


@dataclass(frozen=True)
class PersistenceConfig(ConfigNode):
    """Saving and restoring the memory across restarts."""

    path: str = param('', 'Memory file ("" = no persistence)')
    autosave_period_s: float = param(0.0, 'Save the memory every N seconds (0 = off)', low=0.0)
    restore_on_start: bool = param(False, 'Load the memory file at start when it exists')
    save_on_shutdown: bool = param(True, 'Save the memory at shutdown when a path is set')


@dataclass(frozen=True)
class GpuConfig(ConfigNode):
    """GPU memory budget."""

    max_gpu_memory_mb: int = param(
        0,
        'Refuse to configure when model + memory + generation '
        'need more GPU memory than this, in MiB (0 = no limit but '
        'the device size)',
        low=0,
    )
    overhead_mb: int = param(
        768,
        'CUDA context, cuBLAS workspace and allocator slack that the '
        'estimate adds to weights, memory, KV cache and activations (MiB)',
        low=0,
        high=1_000_000,
    )


@dataclass(frozen=True)
class RosConfig(ConfigNode):
    """The ROS adapter (read by ros/ only; plain data here)."""

    image_topics: list[str] = param(['image_raw'], 'sensor_msgs/Image topics to remember')
    compressed_topics: list[str] = param([], 'sensor_msgs/CompressedImage topics to remember')
    qos_reliability: str = param(
        'best_effort', 'Camera subscription reliability', choices=('best_effort', 'reliable')
    )
    qos_depth: int = param(5, 'Camera subscription queue depth', low=1, high=1000)
    status_period_s: float = param(
        1.0, 'Period of ~/memory_status and /diagnostics', low=0.05, high=3600.0
    )
    frames_period_s: float = param(
        5.0, 'Period of the ~/memory_frames montage (0 = off)', low=0.0, high=3600.0
    )
    warn_throttle_s: float = param(5.0, 'Least time between two warnings of one kind', low=0.0)
    autostart: bool = param(True, 'Configure and activate the lifecycle node at start')


@dataclass(frozen=True)
class AppConfig(ConfigNode):
    """Everything the node, the engine and the CLI are configured with."""

    model: ModelConfig = section(ModelConfig, 'Vision-language model')
    generation: GenerationConfig = section(GenerationConfig, 'Answer generation defaults')
    memory: MemoryConfig = section(MemoryConfig, 'Streaming visual memory')
    engine: EngineConfig = section(EngineConfig, 'Ingest and answering')
    persistence: PersistenceConfig = section(PersistenceConfig, 'Memory persistence')
    gpu: GpuConfig = section(GpuConfig, 'GPU memory budget')
    ros: RosConfig = section(RosConfig, 'ROS adapter')


# --------------------------------------------------------------------------- conversions


def to_dict(cfg: ConfigNode) -> dict[str, Any]:
    """Nested plain dict (lists copied), ready for YAML or JSON."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cfg):  # type: ignore[arg-type]
        value = getattr(cfg, f.name)
        out[f.name] = (
            to_dict(value)
            if isinstance(value, ConfigNode)
            else (list(value) if isinstance(value, list) else value)
        )
    return out


def from_dict(cls: type[T], data: dict[str, Any], *, where: str = '') -> T:
    """Build ``cls`` from a nested dict; unknown keys are an error naming the valid ones."""
    if not isinstance(data, dict):
        raise ConfigError(f'{where or cls.__name__} must be a mapping, got {data!r}')
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(
            f'unknown config key(s) {unknown} in {where or "<root>"}; valid: {sorted(names)}'
        )
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        hint = hints[key]
        path = f'{where}.{key}' if where else key
        kwargs[key] = from_dict(hint, value, where=path) if _is_section(hint) else value
    return cls(**kwargs)


def flatten(cfg: ConfigNode, prefix: str = '') -> dict[str, Any]:
    """Dotted leaf names to values: {'memory.star.temporal_clusters': 25, ...}."""
    out: dict[str, Any] = {}
    for key, value in to_dict(cfg).items():
        _flatten_into(out, f'{prefix}{key}', value)
    return out


def _flatten_into(out: dict[str, Any], name: str, value: Any) -> None:
    if isinstance(value, dict):
        for key, sub in value.items():
            _flatten_into(out, f'{name}.{key}', sub)
    else:
        out[name] = value


def unflatten(flat: dict[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`flatten` on plain dicts."""
    nested: dict[str, Any] = {}
    for name, value in flat.items():
        node = nested
        *parents, leaf = name.split('.')
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return nested


def with_overrides(cfg: T, flat: dict[str, Any]) -> T:
    """A new validated config with dotted-name overrides applied."""
    merged = flatten(cfg)
    unknown = sorted(set(flat) - set(merged))
    if unknown:
        raise ConfigError(f'unknown parameter(s) {unknown}')
    merged.update(flat)
    return from_dict(type(cfg), unflatten(merged))


def describe(cls: type[ConfigNode] = AppConfig, prefix: str = '') -> list[ParamSpec]:
    """Every leaf parameter of ``cls`` with its type, default, description and range."""
    specs: list[ParamSpec] = []
    hints = typing.get_type_hints(cls)
    default = cls()
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        hint = hints[f.name]
        name = f'{prefix}{f.name}'
        if dataclasses.is_dataclass(hint):
            specs.extend(describe(hint, f'{name}.'))  # type: ignore[arg-type]
            continue
        is_list = typing.get_origin(hint) is list
        specs.append(
            ParamSpec(
                name=name,
                type=list if is_list else hint,
                item_type=typing.get_args(hint)[0] if is_list else None,
                default=getattr(default, f.name),
                description=f.metadata['description'],
                low=f.metadata['low'],
                high=f.metadata['high'],
                choices=f.metadata['choices'],
            )
        )
    return specs


def load_yaml(path: str | Path, cls: type[T] = AppConfig) -> T:  # type: ignore[assignment]
    """Load a config from YAML: a plain nested mapping, or a ROS 2 params file.

    A ROS params file (``node_name: {ros__parameters: {...}}`` or ``/**: ...``) is accepted so
    that the node and the CLI read the same files in ``config/``. Parameters not in the
    configuration tree (``use_sim_time``) are ignored there.
    """
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f'cannot read config file {path}: {exc}') from exc
    return from_dict(cls, _strip_ros_wrapper(data), where=str(path))


def _strip_ros_wrapper(data: Any) -> Any:
    if not isinstance(data, dict) or len(data) != 1:
        return data
    (inner,) = data.values()
    if isinstance(inner, dict) and 'ros__parameters' in inner:
        params = dict(inner['ros__parameters'] or {})
        params.pop('use_sim_time', None)  # a ROS parameter of every node, not ours
        return unflatten(params)  # accepts nested and dotted names alike
    return data


def dump_ros_params(cfg: ConfigNode, node_name: str = '/**') -> str:
    """The config as a ROS 2 params YAML (what ``config/default.yaml`` holds)."""
    return yaml.safe_dump(
        {node_name: {'ros__parameters': to_dict(cfg)}}, sort_keys=False, default_flow_style=False
    )
