"""DeepGaze's finalizer: turns any readout map into a proper log-density over the image."""

from __future__ import annotations

import torch
from torch import nn

from code.data.batch import Batch
from code.models.base import Decoder
from code.models.layers.feature_maps import upsample_to_stride
from code.models.layers.gaussian_blur import GaussianBlur
from code.models.shapes import PredictionKind


class Finalizer(nn.Module):
    """Blur the readout, upsample it to the image, add ``w`` x centre-bias, log-softmax over pixels.

    ``blur_sigma`` is in image pixels (the blur runs on the readout's grid, at sigma / stride);
    ``centerbias_weight`` is the initial value of the learned weight ``w``. The result is computed
    in float32 whatever the autocast setting: a log-softmax over 10^5 pixels needs the precision.
    """

    def __init__(
        self, stride: int, blur_sigma: float, learn_blur: bool, centerbias_weight: float
    ) -> None:
        super().__init__()
        self.stride = stride
        self.blur = GaussianBlur(blur_sigma / stride, learnable=learn_blur)
        self.centerbias_weight = nn.Parameter(torch.tensor(float(centerbias_weight)))

    def forward(self, readout: torch.Tensor, centerbias: torch.Tensor) -> torch.Tensor:
        """(B, 1, h, w) readout at ``stride``, (B, H, W) centre-bias log-density -> (B, H, W)."""
        with torch.autocast(readout.device.type, enabled=False):
            x = self.blur(readout.float())
            x = upsample_to_stride(x, self.stride, 1, tuple(centerbias.shape[-2:]))[:, 0]
            x = x + self.centerbias_weight * centerbias.float()
            return torch.log_softmax(x.flatten(1), dim=1).view_as(x)


class LogDensityDecoder(Decoder):
    """What the decoders ending in the finalizer share: they predict a log-density over the
    input's pixels and are trained by the negative log-likelihood of the batch's fixations, in
    bits per fixation."""

    prediction = PredictionKind.LOG_DENSITY
    requires = frozenset({"centerbias", "fixations", "fixation_mask"})

    def loss(self, prediction: torch.Tensor, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        return fixation_nll_bits(prediction, batch.fixations, batch.fixation_mask)


def fixation_nll_bits(
    log_density: torch.Tensor, fixations: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum over fixations of -log2 p(fixation), number of fixations) for (B, H, W) log-densities.

    A fixation at (x, y) is scored by the pixel (row ⌊y⌋, column ⌊x⌋) it lies in.
    """
    width = log_density.shape[-1]
    cols = fixations[..., 0].floor().long()
    rows = fixations[..., 1].floor().long()
    flat = (rows * width + cols).clamp(min=0) * mask  # padding rows point at pixel 0, masked below
    log_p = log_density.flatten(1).gather(1, flat)
    nll = -(log_p * mask).sum() / torch.log(torch.tensor(2.0, device=log_p.device))
    return nll, mask.sum()
