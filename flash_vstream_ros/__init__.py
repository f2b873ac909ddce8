"""flash_vstream_ros: a fixed-size visual memory (Flash-VStream STAR) for ROS 2 robots.

Kept light on purpose: every import of a generated message type runs this file, so it must not
import rclpy, torch or transformers. ``extend_path`` lets Python started in the repository root
(which sees this source folder) still find the generated ``msg``/``srv``/``action`` modules of
the installed package.
"""

import pkgutil

__path__ = pkgutil.extend_path(__path__, __name__)

__version__ = '0.1.0'
