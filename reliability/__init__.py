"""Robustness suite of flash_vstream_ros: bad input, load, faults and a fast-forward long run.

Run it with ``python -m reliability.run`` (short, about as long as CI allows) or
``python -m reliability.run --long`` (by hand). It prints one table row per class of input or
fault: inputs tried, crashes, hangs, errors returned (success=false with a reason), kills
survived and data lost (must be 0), plus the figures of the load and long-run parts.
"""
