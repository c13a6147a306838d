"""The typed batch that flows from the data layer through encoder, block and decoder."""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch


@dataclass
class Batch:
    """Images of one size with their fixations, padded to the batch's longest list.

    Coordinates are in pixels of ``image`` (the resized model input), 0-based. ``original_size``
    keeps each stimulus' (height, width) so predictions can be taken back to it.

    The optional fields are present only when the data configuration provides them (parts that
    need them declare it in ``requires``, checked when the model is built):

    - ``segments``: segment label map per image (``DATA.SEGMENTS``), labels 0..K-1.
    - ``history``/``history_mask``: for scanpath samples (``DATA.SAMPLES.NAME: scanpath``), the
      fixations before each fixation of ``fixations``, most recent first, masked where the
      scanpath had fewer.
    - ``fixation_rows``: each fixation's row in its data set's fixation table (-1 on padding), so
      evaluation can score the fixation at its exact original coordinates.
    """

    image: torch.Tensor  # (B, 3, H, W) float in [0, 1]
    fixations: torch.Tensor  # (B, N, 2) float, (x, y)
    fixation_mask: torch.Tensor  # (B, N) bool, False on padding
    centerbias: torch.Tensor  # (B, H, W) float, log-density of the centre-bias baseline
    image_index: torch.Tensor  # (B,) int64, index of the stimulus in its data set
    original_size: torch.Tensor  # (B, 2) int64, (height, width)
    segments: torch.Tensor | None = None  # (B, H, W) int64 segment labels
    history: torch.Tensor | None = None  # (B, N, k, 2) float, (x, y), most recent first
    history_mask: torch.Tensor | None = None  # (B, N, k) bool, False where there was none
    fixation_rows: torch.Tensor | None = None  # (B, N) int64, -1 on padding

    def to(self, device: torch.device | str) -> Batch:
        return Batch(
            **{
                f.name: None if value is None else value.to(device, non_blocking=True)
                for f in fields(self)
                for value in [getattr(self, f.name)]
            }
        )

    def __len__(self) -> int:
        return self.image.shape[0]
