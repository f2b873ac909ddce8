#!/usr/bin/env python3
"""Export the language model of a Flash-VStream-7b (v1) or LLaVA-family checkpoint for vLLM.

    python scripts/export_lm.py CHECKPOINT OUT_DIR [--dtype float16]

OUT_DIR then holds a plain causal LM (config.json of LlamaForCausalLM / Qwen2ForCausalLM,
safetensors shards + index, tokenizer files) that a server runs with
``model.decoder=remote`` on the robot (README: "Answers from a vLLM server"):

    python -m vllm.entrypoints.openai.api_server --model OUT_DIR --enable-prompt-embeds ...

The robot keeps the full checkpoint (vision tower, projector, embedding table).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
import sys

REPO_ROOT = Path(__file__).resolve().parents[1]
DTYPES = ('float32', 'float16', 'bfloat16')


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('checkpoint', type=Path, help='Flash-VStream v1 or LLaVA-family folder')
    parser.add_argument('out', type=Path, help='new folder for the language model')
    parser.add_argument('--dtype', choices=DTYPES, default=None, help="default: the checkpoint's")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(message)s')
    sys.path.insert(0, str(REPO_ROOT))
    import torch

    from flash_vstream_ros.errors import FlashVStreamError
    from flash_vstream_ros.models.lm_export import export_lm

    dtype = getattr(torch, args.dtype) if args.dtype else None
    try:
        summary = export_lm(args.checkpoint, args.out, dtype)
    except FlashVStreamError as exc:
        print(f'export_lm: {exc}', file=sys.stderr)
        return 1
    print(json.dumps(summary))
    return 0


if __name__ == '__main__':
    sys.exit(main())
