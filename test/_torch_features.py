"""What the installed torch can do on the CPU, found by trying (never by version strings).

The model tier also runs on the lowest supported torch (CI's second venv): torch 2.2 has no
float16 LayerNorm kernel on the CPU (2.3 has), a limit of that torch on the CPU only (a GPU,
such as a Jetson's, runs float16 on every supported torch).
"""

from __future__ import annotations

import pytest
import torch


def cpu_layer_norm(dtype: torch.dtype) -> bool:
    """True when this torch runs LayerNorm in ``dtype`` on the CPU."""
    try:
        torch.nn.functional.layer_norm(torch.ones(1, 2, dtype=dtype), (2,))
    except RuntimeError:
        return False
    return True


def half_dtypes() -> list[object]:
    """float16 and bfloat16 as pytest params, float16 skipped where the CPU cannot run it."""
    skip = pytest.mark.skipif(
        not cpu_layer_norm(torch.float16), reason='this torch has no float16 LayerNorm on the CPU'
    )
    return [pytest.param(torch.float16, marks=skip), torch.bfloat16]
