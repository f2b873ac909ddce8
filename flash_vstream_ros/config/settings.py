"""The one configuration tree of the package: validated dataclasses, one per section.

Fields are declared with :func:`~flash_vstream_ros.config.fields.param` (description, range,
choices); see :mod:`flash_vstream_ros.config.fields` for what is derived from them. No
parameter is written by hand twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from flash_vstream_ros.config import fields
from flash_vstream_ros.config.fields import ConfigNode, ParamSpec, param, section
from flash_vstream_ros.config.model_settings import (
    GenerationConfig,
    ModelConfig,
)
from flash_vstream_ros.errors import ConfigError

T = TypeVar('T', bound=ConfigNode)


@dataclass(frozen=True)
class StarConfig(ConfigNode):
    """STAR memory of Flash-VStream v1 (defaults: the paper and the released checkpoint)."""

    spatial_frames: int = param(
        1, 'Spatial memory: newest frames kept (FIFO, N_spa)', low=1, high=64
    )
    spatial_size: int = param(
        8, 'Spatial memory: side of the pooled map (8 -> 8x8 tokens)', low=1, high=64
    )
    recent_frames: int = param(
        0,
        'Recent frames: newest frames read out at recent_size, after the spatial part '
        "(0 = none, the paper's memory)",
        low=0,
        high=64,
    )
    recent_size: int = param(
        16, 'Recent frames: side of a recent frame map (16 -> 256 tokens)', low=1, high=128
    )
    temporal_clusters: int = param(25, 'Temporal memory: k-means clusters (K)', low=1, high=1024)
    temporal_size: int = param(4, 'Temporal memory: side of each centroid map', low=1, high=64)
    abstract_slots: int = param(25, 'Abstract memory: semantic slots', low=0, high=1024)
    abstract_size: int = param(1, 'Abstract memory: side of each slot map', low=1, high=64)
    abstract_alpha: float = param(
        0.2, 'Abstract memory: update rate a of M <- (1-a)M + a.attn', low=0.0, high=1.0
    )
    abstract_chunk: int = param(
        0,
        'Abstract memory: frames per update; their tokens are the keys of one attention '
        'step (0 = as many as abstract_slots, the research code; 1 = every frame)',
        low=0,
        high=1024,
    )
    abstract_seed_cosine: float = param(
        0.9,
        'Abstract memory: while slots are free, a frame becomes a new slot only when its '
        'cosine to every slot is below this (distinct seeds: slots seeded on one scene stay '
        'one vector); 1.0 = the research code (the first frames as they come)',
        low=0.0,
        high=1.0,
    )
    long_term_after_recent: bool = param(
        True,
        'Temporal and abstract memory take a frame when it leaves the spatial (recent) part, '
        'as the research code leaves the current frame out of them (False: at once)',
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
        small = max(self.temporal_size, self.abstract_size)
        if self.long_term_after_recent and small > self.spatial_size:
            raise ConfigError(
                f'StarConfig.long_term_after_recent feeds temporal/abstract memory from the '
                f'spatial maps: spatial_size ({self.spatial_size}) must be >= temporal_size '
                f'and abstract_size ({small})'
            )

    @property
    def chunk_frames(self) -> int:
        """Frames per abstract update (abstract_chunk, 0 resolved to abstract_slots)."""
        return self.abstract_chunk or max(1, self.abstract_slots)

    @property
    def token_count(self) -> int:
        """Visual tokens of a full readout (681 with the defaults)."""
        return (
            self.abstract_slots * self.abstract_size**2
            + self.temporal_clusters * self.temporal_size**2
            + self.retrieved_frames * self.retrieved_size**2
            + self.spatial_frames * self.spatial_size**2
            + self.recent_frames * self.recent_size**2
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
    recent_frames: int = param(
        0, 'Recent frames: newest frames read out in full (0 = none, as v2)', low=0, high=64
    )
    recent_size: int = param(
        16, 'Recent frames: side of a recent frame map (16 -> 256 tokens)', low=1, high=128
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
        return (
            self.clusters * self.cluster_size**2
            + self.detail_frames * self.detail_size**2
            + self.recent_frames * self.recent_size**2
        )


@dataclass(frozen=True)
class TimelineConfig(ConfigNode):
    """The timeline: contiguous time segments that window questions read (both memory kinds)."""

    segments: int = param(
        64,
        'Timeline segments kept (runs of consecutive frames of one camera); 0 = off, the '
        "paper's memory: window questions then select elements by their mean stamp",
        low=0,
        high=4096,
    )
    segment_size: int = param(
        4, 'Timeline: side of a segment mean map (4 -> 16 tokens)', low=1, high=64
    )
    frame_size: int = param(
        8, "Timeline: side of a segment's representative frame (8 -> 64 tokens)", low=1, high=64
    )


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
    timeline: TimelineConfig = section(TimelineConfig, 'Timeline of segments (window questions)')


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


def describe(cls: type[ConfigNode] = AppConfig, prefix: str = '') -> list[ParamSpec]:
    """Every leaf parameter of ``cls`` (default: the whole tree) with its type and range."""
    return fields.describe(cls, prefix)


def load_yaml(path: str | Path, cls: type[T] = AppConfig) -> T:  # type: ignore[assignment]
    """Load a config (default: the whole tree) from YAML; see :func:`fields.load_yaml`."""
    return fields.load_yaml(path, cls)
