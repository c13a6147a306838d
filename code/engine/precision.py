"""The numeric precision of the forward pass (``TRAIN.PRECISION``), and what keeps bf16 on the
CPU safe.

oneDNN's AMX kernel for the weight and bias gradients of a bf16 convolution writes past its
buffer when the convolution has more than 2048 input channels and fewer than 16 output channels
(torch 2.15, measured on Xeons with AMX-BF16; ``scripts/onednn_amx_conv_bias_grad.py``
reproduces it): the heap is corrupted and the process aborts, e.g. at DinoGaze's 1×1 readout
from three concatenated ViT-B layers (2304 → 8 channels). Without the bias gradient the kernel
is sound, so under CPU bf16 autocast every convolution runs without its bias and the bias is
added after it: the same sum, its gradient a plain reduction, and AMX stays in use for the rest.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch.overrides import TorchFunctionMode

_CONVOLUTIONS = (torch.conv1d, torch.conv2d, torch.conv3d)


class ConvolutionBiasApart(TorchFunctionMode):
    """Convolutions with a bias run as the convolution without it plus the bias, broadcast over
    the spatial dimensions (in the convolution's output dtype, so autocast keeps bf16)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})  # the bias is taken out: the caller's dict stays as it was
        if func not in _CONVOLUTIONS:
            return func(*args, **kwargs)
        if "bias" in kwargs:
            bias = kwargs.pop("bias")
        elif len(args) > 2:
            bias, args = args[2], (*args[:2], None, *args[3:])
        else:
            bias = None
        output = func(*args, **kwargs)
        if bias is None:
            return output
        return output + bias.to(output.dtype).view(-1, *[1] * (output.dim() - 2))


class Precision:
    """Autocast dtype and gradient scaling for ``TRAIN.PRECISION`` on ``device``.

    bf16 needs no scaling (its exponent range is fp32's); fp16 does, and only CUDA runs it well.
    The model's finalizer and the loss stay in fp32 whatever is chosen here. On the CPU, bf16
    convolutions take their bias apart (see the module's docstring).
    """

    def __init__(self, precision: str, device: torch.device) -> None:
        if precision == "fp16" and device.type != "cuda":
            raise ValueError(
                f"TRAIN.PRECISION fp16 needs a CUDA device (this run is on {device.type}); "
                "use bf16 or fp32"
            )
        self.device_type = device.type
        self.dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
        self.scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        """The forward pass's context: autocast to ``dtype`` (none for fp32)."""
        if self.dtype is None:
            yield
            return
        cpu_bf16 = self.device_type == "cpu" and self.dtype == torch.bfloat16
        with (
            torch.autocast(self.device_type, dtype=self.dtype),
            ConvolutionBiasApart() if cpu_bf16 else contextlib.nullcontext(),
        ):
            yield
