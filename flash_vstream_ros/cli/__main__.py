"""``python -m flash_vstream_ros.cli``: the same as the ``flash-vstream`` script."""

import sys

from flash_vstream_ros.cli import main

if __name__ == '__main__':  # importing this module (a test imports every module) runs nothing
    sys.exit(main())
