"""A Gaussian blur whose width can be learned, applied separably to (B, C, H, W) maps."""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

TRUNCATE = 3.0  # kernel radius in units of the initial sigma


class GaussianBlur(nn.Module):
    """Blur with standard deviation ``sigma`` (pixels of the map it is applied to).

    The kernel radius is fixed at construction, by default from the initial sigma (``TRUNCATE``
    sigmas), so a learned sigma that grows far beyond its start is truncated; ``radius`` sets it
    instead (a kernel of 2·radius + 1 taps, e.g. NeVA's 5 px kernel of σ 5). Borders replicate
    the edge by default, so the blur does not darken the image's rim (which would act as a hidden
    centre bias); ``padding="reflect"`` mirrors it.
    """

    def __init__(
        self,
        sigma: float,
        learnable: bool,
        radius: int | None = None,
        padding: Literal["replicate", "reflect"] = "replicate",
    ) -> None:
        super().__init__()
        if sigma <= 0:
            raise ValueError(f"blur sigma must be positive, got {sigma}")
        if radius is not None and radius < 0:
            raise ValueError(f"blur radius must not be negative, got {radius}")
        self.radius = max(1, math.ceil(TRUNCATE * sigma)) if radius is None else radius
        self.padding = padding
        log_sigma = torch.tensor(math.log(sigma))
        if learnable:
            self.log_sigma = nn.Parameter(log_sigma)
        else:
            self.register_buffer("log_sigma", log_sigma)

    @property
    def sigma(self) -> torch.Tensor:
        return self.log_sigma.exp()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels = x.shape[1]
        offsets = torch.arange(-self.radius, self.radius + 1, device=x.device, dtype=x.dtype)
        kernel = torch.exp(-0.5 * (offsets / self.sigma.to(x.dtype)) ** 2)
        kernel = kernel / kernel.sum()
        x = F.pad(x, (self.radius, self.radius, self.radius, self.radius), mode=self.padding)
        x = F.conv2d(x, kernel.view(1, 1, 1, -1).expand(channels, 1, 1, -1), groups=channels)
        return F.conv2d(x, kernel.view(1, 1, -1, 1).expand(channels, 1, -1, 1), groups=channels)


class GaussianPrefilter(nn.Module):
    """A learnable Gaussian pre-filter of (B, C, H, W) images: a ``kernel_size`` square kernel
    of σ = ``sqrt_sigma``² (the square keeps σ positive; it is floored at ``MIN_SIGMA`` so the
    kernel stays finite), borders replicated so the size is kept.

    ``mixing``: ``depthwise`` blurs each channel alone; ``channels`` makes every output channel
    the sum of all blurred input channels (a C→C convolution with the Gaussian in every kernel).
    ``normalisation``: ``sum`` scales each output channel's weights to sum to one (a proper
    average: the image's brightness is kept); ``l2`` to unit L2 norm.
    """

    MIN_SIGMA = 1e-3

    def __init__(
        self,
        kernel_size: int,
        sqrt_sigma: float,
        mixing: Literal["depthwise", "channels"],
        normalisation: Literal["sum", "l2"],
    ) -> None:
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"pre-filter kernel size must be odd and positive, got {kernel_size}")
        if sqrt_sigma <= 0:
            raise ValueError(f"pre-filter sqrt(sigma) must be positive, got {sqrt_sigma}")
        self.kernel_size = kernel_size
        self.mixing = mixing
        self.normalisation = normalisation
        self.sqrt_sigma = nn.Parameter(torch.tensor(float(sqrt_sigma)))

    @property
    def sigma(self) -> torch.Tensor:
        return self.sqrt_sigma.square().clamp(min=self.MIN_SIGMA)

    def kernel(self, channels: int, dtype: torch.dtype) -> torch.Tensor:
        """The convolution weight: (C, 1, k, k) depthwise, (C, C, k, k) mixing channels."""
        radius = self.kernel_size // 2
        offsets = torch.arange(-radius, radius + 1, device=self.sqrt_sigma.device, dtype=dtype)
        squared = offsets[:, None] ** 2 + offsets[None, :] ** 2
        gaussian = torch.exp(-0.5 * squared / self.sigma.to(dtype) ** 2)
        inputs = 1 if self.mixing == "depthwise" else channels
        weight = gaussian.expand(channels, inputs, -1, -1)
        flat = weight.flatten(1)
        norm = flat.sum(dim=1) if self.normalisation == "sum" else flat.norm(dim=1)
        return weight / norm.view(-1, 1, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels, radius = x.shape[1], self.kernel_size // 2
        x = F.pad(x, (radius, radius, radius, radius), mode="replicate")
        groups = channels if self.mixing == "depthwise" else 1
        return F.conv2d(x, self.kernel(channels, x.dtype), groups=groups)
