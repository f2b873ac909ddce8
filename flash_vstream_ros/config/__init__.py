"""Settings and what they cost: the configuration tree, model sizes, the GPU budget.

* :mod:`.fields`: declared fields, validation, dict/YAML/ROS-parameter conversions.
* :mod:`.settings`: the tree (``AppConfig`` and its sections; the model's in
  :mod:`.model_settings`).
* :mod:`.model_specs`: shapes of the known encoders and language models.
* :mod:`.budget`: the GPU memory estimate of a configuration, checked at configure.

Importing this package stays light (no torch, no rclpy); ``budget`` is imported on use.
"""

from flash_vstream_ros.config.fields import (
    LEAF_TYPES,
    ConfigNode,
    ParamSpec,
    dump_ros_params,
    flatten,
    from_dict,
    param,
    section,
    to_dict,
    unflatten,
    with_overrides,
)
from flash_vstream_ros.config.model_settings import (
    MIN_TEMPERATURE,
    GenerationConfig,
    GgufConfig,
    ModelConfig,
    RemoteConfig,
    check_temperature,
)
from flash_vstream_ros.config.settings import (
    AppConfig,
    EngineConfig,
    GpuConfig,
    MemoryConfig,
    PersistenceConfig,
    RosConfig,
    StarConfig,
    SynopsisConfig,
    TimelineConfig,
    describe,
    load_yaml,
)

__all__ = [
    'LEAF_TYPES',
    'MIN_TEMPERATURE',
    'AppConfig',
    'ConfigNode',
    'EngineConfig',
    'GenerationConfig',
    'GgufConfig',
    'GpuConfig',
    'MemoryConfig',
    'ModelConfig',
    'ParamSpec',
    'PersistenceConfig',
    'RemoteConfig',
    'RosConfig',
    'StarConfig',
    'SynopsisConfig',
    'TimelineConfig',
    'check_temperature',
    'describe',
    'dump_ros_params',
    'flatten',
    'from_dict',
    'load_yaml',
    'param',
    'section',
    'to_dict',
    'unflatten',
    'with_overrides',
]
