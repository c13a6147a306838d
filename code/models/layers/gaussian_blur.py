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
