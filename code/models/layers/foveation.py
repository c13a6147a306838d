"""NeVA's differentiable foveation (Schwinn et al., 2022): sharp where the eye looks and has
looked, blurred elsewhere.

For an image x, its blur G∗x (a Gaussian of ``blur_sigma`` px, ``blur_kernel`` taps, separable,
depthwise, reflect padding) and a fixation f, the perceived image is

    x + (G∗x − x) · clip(1 − (M + g_f), 0, 1),    g_f(p) = a · exp(−‖p − f‖² / σ_f)

where M is the memory of earlier fixations. After a fixation the memory becomes ρ·M + g_f,
detached (``forgetting`` ρ: 0 forgets at once, 1 never). Positions are normalised so that the
shorter side of the image spans [−1, 1] and distances are isotropic in pixels: on a square image
these are the seed's coordinates, on a 4:3 one the fovea stays round. A fixation (x, y) is given
in the image's normalised [−1, 1] × [−1, 1] coordinates (−1: the left / top edge, 1: the right /
bottom edge), the same as ``grid_sample``'s with ``align_corners=False``.
"""

from __future__ import annotations

import torch
from torch import nn

from code.models.layers.gaussian_blur import GaussianBlur
from code.registry import ConfigError


class Foveation(nn.Module):
    """Perceived images for fixations, and the memory they leave (see the module docstring)."""

    def __init__(
        self,
        fovea_sigma: float,
        amplitude: float,
        blur_kernel: int,
        blur_sigma: float,
        forgetting: float,
    ) -> None:
        super().__init__()
        if fovea_sigma <= 0:
            raise ConfigError(f"must be positive, got {fovea_sigma}", key="FOVEA_SIGMA")
        if amplitude <= 0:
            raise ConfigError(f"must be positive, got {amplitude}", key="AMPLITUDE")
        if blur_kernel < 1 or blur_kernel % 2 == 0:
            raise ConfigError(f"must be odd and positive, got {blur_kernel}", key="BLUR_KERNEL")
        if blur_sigma <= 0:
            raise ConfigError(f"must be positive, got {blur_sigma}", key="BLUR_SIGMA")
        if not 0 <= forgetting <= 1:
            raise ConfigError(f"must lie in [0, 1], got {forgetting}", key="FORGETTING")
        self.fovea_sigma = fovea_sigma
        self.amplitude = amplitude
        self.forgetting = forgetting
        self.blur = GaussianBlur(blur_sigma, learnable=False, radius=blur_kernel // 2,
                                 padding="reflect")  # fmt: skip

    def residual(self, image: torch.Tensor) -> torch.Tensor:
        """G∗x − x of (B, C, H, W) images: what foveation takes away where it blurs; it does not
        depend on the fixation, so a scanpath computes it once."""
        return self.blur(image) - image

    def start(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """What a scanpath over (B, C, H, W) images starts from: their ``residual`` and an empty
        (B, H, W) memory."""
        return self.residual(image), image.new_zeros(len(image), *image.shape[-2:])

    def fovea(self, fixation: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """(B, H, W) g_f at the pixel centres for (B, 2) fixations (x, y), differentiable."""
        shorter = min(height, width)
        # pixel centres and fixations in units where the shorter side spans 2
        cols = (torch.arange(width, device=fixation.device, dtype=fixation.dtype) + 0.5) * 2
        rows = (torch.arange(height, device=fixation.device, dtype=fixation.dtype) + 0.5) * 2
        fx = (fixation[:, 0] + 1) * width / shorter
        fy = (fixation[:, 1] + 1) * height / shorter
        dx = cols / shorter - fx[:, None]
        dy = rows / shorter - fy[:, None]
        squared = dy[:, :, None] ** 2 + dx[:, None, :] ** 2
        return self.amplitude * torch.exp(-squared / self.fovea_sigma)

    def perceive(
        self,
        image: torch.Tensor,
        residual: torch.Tensor,
        memory: torch.Tensor,
        fixation: torch.Tensor,
    ) -> torch.Tensor:
        """(B, C, H, W) images as perceived at (B, 2) ``fixation`` given (B, H, W) ``memory``;
        ``residual`` is ``self.residual(image)``."""
        seen = memory + self.fovea(fixation, *image.shape[-2:])
        return image + residual * (1 - seen).clamp(0, 1)[:, None]

    def remember(self, memory: torch.Tensor, fixation: torch.Tensor) -> torch.Tensor:
        """The memory after ``fixation``: ρ·M + g_f, detached (no gradient flows to earlier
        fixations through it)."""
        height, width = memory.shape[-2:]
        return (self.forgetting * memory + self.fovea(fixation, height, width)).detach()

    def forward(
        self, image: torch.Tensor, fixation: torch.Tensor, memory: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(perceived image, memory after the fixation) for (B, C, H, W) images, (B, 2)
        fixations and (B, H, W) memories (zeros before the first fixation)."""
        perceived = self.perceive(image, self.residual(image), memory, fixation)
        return perceived, self.remember(memory, fixation)


def to_pixels(positions: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(..., 2) normalised positions (x, y) as 0-based pixel coordinates of an image of
    (height, width): −1 is the left / top edge, 1 the right / bottom edge."""
    size = positions.new_tensor([width, height])
    return (positions + 1) / 2 * size


def from_pixels(points: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """The inverse of ``to_pixels``."""
    size = points.new_tensor([width, height])
    return points / size * 2 - 1
