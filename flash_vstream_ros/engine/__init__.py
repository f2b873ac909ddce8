"""The runtime, free of ROS: frames in, answers out, memory files kept.

* :mod:`.engine`: :class:`Engine`, the facade the node, the CLI and users call.
* :mod:`.worker` (ingest thread, memories, views), :mod:`.answerer` (question gate, readout,
  generation), :mod:`.keeper` (memory files), sharing one :mod:`.runtime`.
* :mod:`.ingest` (frame checks, sampling, queue, thumbnails), :mod:`.questions` (what a
  question may ask), :mod:`.readouts` (cutting and joining readouts), :mod:`.status` (value
  types and counters), :mod:`.view` (what readers see).
"""

from flash_vstream_ros.engine.engine import Engine
from flash_vstream_ros.engine.status import Answer, EngineStatus, Question, SaveInfo

__all__ = ['Answer', 'Engine', 'EngineStatus', 'Question', 'SaveInfo']
