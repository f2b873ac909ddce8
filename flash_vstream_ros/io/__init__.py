"""What comes in from files and goes out to them, without ROS.

* :mod:`.sources`: frames from video files, image folders and rosbag2 bags (offline replay).
* :mod:`.persistence`: the memory file format (atomic writes, checked loads).
* :mod:`.image_header`: the pixel size a PNG or JPEG declares, read before decoding.
"""
