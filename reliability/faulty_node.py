"""The node with a model that runs out of memory on request (fault injection for the suite).

    python -m reliability.faulty_node --ros-args ...   (same arguments as the node)

Wraps ``flash_vstream_ros.models.load_model`` so that the loaded model's ``answer`` raises
``torch.cuda.OutOfMemoryError`` whenever the question holds ``TRIGGER_OOM``; everything else is
the real node.
"""

from __future__ import annotations

import sys
from typing import Any

import torch

import flash_vstream_ros.models as models
from flash_vstream_ros.ros import node

TRIGGER = 'TRIGGER_OOM'
_load_model = models.load_model


def _faulty(answer: Any) -> Any:
    def wrapped(tokens: Any, text: str, *args: Any, **kwargs: Any) -> Any:
        if TRIGGER in text:
            raise torch.cuda.OutOfMemoryError('CUDA out of memory. Tried to allocate 9.00 GiB')
        return answer(tokens, text, *args, **kwargs)

    return wrapped


def load_model(*args: Any, **kwargs: Any) -> Any:
    model: Any = _load_model(*args, **kwargs)
    model.answer = _faulty(model.answer)
    return model


if __name__ == '__main__':
    models.load_model = load_model
    sys.exit(node.main())
