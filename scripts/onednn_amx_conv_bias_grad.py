"""Reproduction of the oneDNN bf16 AMX convolution bug that ``code/engine/precision.py`` works
around: the weight and bias gradients of a bf16 convolution with more than 2048 input channels
and fewer than 16 output channels corrupt the heap on CPUs with AMX-BF16 (torch 2.15).

    uv run python -m scripts.onednn_amx_conv_bias_grad            # aborts on an AMX CPU
    uv run python -m scripts.onednn_amx_conv_bias_grad --apart    # the workaround: passes
    ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16 uv run python -m scripts.onednn_amx_conv_bias_grad

The shape is DinoGaze's first readout layer on a ViT-B: a 1×1 convolution from three
concatenated layers (2304 channels) to 8, on a batch of 4 maps of 2×3 tokens. Measured on a
2-core Xeon with AMX: it aborts (``free(): invalid next size``, ``corrupted double-linked list``
or SIGSEGV) with 2049 or more input channels and 1 to 15 output channels, for 1×1 and 3×3
kernels, in any memory layout; 2048 input or 16 output channels pass, as do the input or the
weight gradient alone, and the same step without AMX. Exit status 0 means it survived.
"""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path

import torch

from code.engine.precision import ConvolutionBiasApart


def build_parser() -> argparse.ArgumentParser:
    """The command line, apart from ``main`` so that documented commands can be checked."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--apart", action="store_true", help="add the bias after the convolution")
    parser.add_argument("--in-channels", type=int, default=2304)
    parser.add_argument("--out-channels", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=30)
    return parser


def main() -> None:
    args = build_parser().parse_args()
    cpuinfo = Path("/proc/cpuinfo")
    flags = cpuinfo.read_text().split() if cpuinfo.exists() else []
    print(f"torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}, "
          f"AMX-BF16: {'amx_bf16' in flags}", flush=True)  # fmt: skip
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(args.in_channels, args.out_channels, 1)
    for _ in range(args.repeats):
        x = torch.randn(4, args.in_channels, 2, 3)
        mode = ConvolutionBiasApart() if args.apart else contextlib.nullcontext()
        with torch.autocast("cpu", dtype=torch.bfloat16), mode:
            y = conv(x)
        y.float().square().sum().backward()
    print("survived")


if __name__ == "__main__":
    main()
