"""A ROS-free synthetic camera world: renderer, ground-truth event log, bag writer."""

from flash_vstream_ros.sim.events import EventLog, read_events
from flash_vstream_ros.sim.world import Frame, Sighting, World, WorldConfig, frame_stamp_ns

__all__ = [
    'EventLog',
    'Frame',
    'Sighting',
    'World',
    'WorldConfig',
    'frame_stamp_ns',
    'read_events',
]
