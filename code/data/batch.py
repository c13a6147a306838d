"""The typed batch that flows from the data layer through encoder, block and decoder."""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch


@dataclass
class Batch:
    """Images of one size with their fixations, padded to the batch's longest list.

    Coordinates are in pixels of ``image`` (the resized model input), 0-based. ``original_size``
    keeps each stimulus' (height, width) so predictions can be taken back to it.
    """

    image: torch.Tensor  # (B, 3, H, W) float in [0, 1]
    fixations: torch.Tensor  # (B, N, 2) float, (x, y)
    fixation_mask: torch.Tensor  # (B, N) bool, False on padding
    centerbias: torch.Tensor  # (B, H, W) float, log-density of the centre-bias baseline
    image_index: torch.Tensor  # (B,) int64, index of the stimulus in its data set
    original_size: torch.Tensor  # (B, 2) int64, (height, width)

    def to(self, device: torch.device | str) -> Batch:
        return Batch(
            **{f.name: getattr(self, f.name).to(device, non_blocking=True) for f in fields(self)}
        )

    def __len__(self) -> int:
        return self.image.shape[0]
