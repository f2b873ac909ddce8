"""``python -m flash_vstream_ros.cli``: the same as the ``flash-vstream`` script."""

import sys

from flash_vstream_ros.cli import main

sys.exit(main())
