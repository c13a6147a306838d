"""The typed batch that flows from the data layer through input stage, encoder, block and decoder,
and how a list of samples becomes one.

A sample is a dict of numpy arrays (what the LMDB cache stores). Each ``Batch`` attribute is made
from one sample entry by a ``BatchField``, declared once by the part that provides it (the
per-image samples, the segments, the scanpath items, ...) in its ``fields``. The data pipeline's
fields are what a run's batches hold; parts declare what they read in ``requires``, and the
model refuses to build when the data does not provide it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, fields

import numpy as np
import torch

Sample = dict[str, np.ndarray]


@dataclass
class Batch:
    """Items of one image size. Coordinates are in pixels of ``input``, 0-based;
    ``original_size`` keeps each stimulus' (height, width) so predictions can be taken back.

    Only ``input``, ``image_index`` and ``original_size`` are always there; the others are
    present when the run's data provides them (``None`` otherwise).
    """

    input: torch.Tensor  # (B, 3, H, W) float in [0, 1]: what the encoder sees
    image_index: torch.Tensor  # (B,) int64, index of the stimulus in its data set
    original_size: torch.Tensor  # (B, 2) int64, (height, width)
    target: torch.Tensor | None = None  # (B, 3, H, W) the clean image, for reconstruction
    fixations: torch.Tensor | None = None  # (B, N, 2) float, (x, y)
    fixation_mask: torch.Tensor | None = None  # (B, N) bool, False on padding
    centerbias: torch.Tensor | None = None  # (B, H, W) float, centre-bias log-density
    segments: torch.Tensor | None = None  # (B, H, W) int64 segment labels 0..K-1
    history: torch.Tensor | None = None  # (B, N, k, 2) float, (x, y), most recent first
    history_mask: torch.Tensor | None = None  # (B, N, k) bool, False where there was none
    fixation_rows: torch.Tensor | None = None  # (B, N) int64 row in the fixation table, -1 pad
    scanpaths: torch.Tensor | None = None  # (B, S, L, 2) float, (x, y): each scanpath
    scanpath_mask: torch.Tensor | None = None  # (B, S, L) bool, False on padding
    foreground: torch.Tensor | None = None  # (B, H, W) float weight of the reconstruction loss
    label: torch.Tensor | None = None  # (B,) int64 class of each image
    points: torch.Tensor | None = None  # (B, P, 2) float, (x, y): points to classify
    point_labels: torch.Tensor | None = None  # (B, P) float, 1 fixated, 0 not
    # (B, 1, H, W) float, 1 where a reconstruction loss applies (set by a masking input stage)
    loss_mask: torch.Tensor | None = None

    def to(self, device: torch.device | str) -> Batch:
        return self.map(lambda value: value.to(device, non_blocking=True))

    def first(self, count: int) -> Batch:
        """The batch of its first ``count`` items."""
        return self.map(lambda value: value[:count])

    def item(self, index: int) -> Batch:
        """The batch of item ``index`` alone."""
        return self.map(lambda value: value[index : index + 1])

    @staticmethod
    def cat(batches: Sequence[Batch]) -> Batch:
        """Batches of one image size (holding the same fields) as one, item after item."""
        return Batch(
            **{
                f.name: None if values[0] is None else torch.cat(values)
                for f in fields(Batch)
                for values in [[getattr(batch, f.name) for batch in batches]]
            }
        )

    def map(self, function: Callable[[torch.Tensor], torch.Tensor]) -> Batch:
        """``function`` applied to every tensor the batch holds."""
        return Batch(
            **{
                f.name: None if value is None else function(value)
                for f in fields(self)
                for value in [getattr(self, f.name)]
            }
        )

    def __len__(self) -> int:
        return self.input.shape[0]


@dataclass(frozen=True)
class BatchField:
    """The ``Batch`` attribute ``name``, made from the samples' entry ``key`` by ``collate``."""

    name: str
    key: str
    collate: Callable[[list[np.ndarray]], torch.Tensor]


def stack(arrays: list[np.ndarray], dtype: type | None) -> torch.Tensor:
    """Arrays of one shape stacked along a new first axis (cast to ``dtype`` if given)."""
    stacked = np.stack(arrays)
    return torch.from_numpy(stacked if dtype is None else stacked.astype(dtype))


def pad(arrays: list[np.ndarray], fill: float | bool) -> torch.Tensor:
    """Arrays of one rank stacked along a new first axis, each axis padded with ``fill`` to the
    longest (e.g. fixations (N, 2), or scanpaths (S, L, 2) of different counts and lengths)."""
    shape = np.max([a.shape for a in arrays], axis=0)
    out = np.full((len(arrays), *shape), fill, dtype=arrays[0].dtype)
    for i, a in enumerate(arrays):
        out[(i, *(slice(0, n) for n in a.shape))] = a
    return torch.from_numpy(out)


def lengths_mask(arrays: list[np.ndarray]) -> torch.Tensor:
    """(B, longest) bool: True where ``pad`` put a real entry."""
    return pad([np.ones(len(a), dtype=bool) for a in arrays], False)


def images(arrays: list[np.ndarray]) -> torch.Tensor:
    """(H, W, 3) uint8 images -> (B, 3, H, W) float in [0, 1]."""
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float().div(255)


def stacked(name: str, key: str, dtype: type | None) -> BatchField:
    return BatchField(name, key, functools.partial(stack, dtype=dtype))


def padded(name: str, key: str, fill: float | bool) -> BatchField:
    return BatchField(name, key, functools.partial(pad, fill=fill))


Fields = dict[str, BatchField]


def with_fields(upstream: Fields, *added: BatchField) -> Fields:
    """``upstream`` plus ``added`` (a field declared again replaces the earlier one)."""
    return {**upstream, **{field.name: field for field in added}}


class Collate:
    """Samples of one image size -> a ``Batch`` holding ``fields``.

    Fields made from the same entry the same way share one tensor (``target`` is ``input``
    until an input stage changes the input).
    """

    def __init__(self, batch_fields: Iterable[BatchField]) -> None:
        self.fields = list(batch_fields)

    def __call__(self, samples: list[Sample]) -> Batch:
        sizes = {s["image"].shape for s in samples}
        if len(sizes) > 1:
            raise ValueError(f"a batch must hold images of one size, got {sorted(sizes)}")
        made: dict[tuple, torch.Tensor] = {}
        values = {}
        for field in self.fields:
            how = (field.key, field.collate)
            if how not in made:
                made[how] = field.collate([s[field.key] for s in samples])
            values[field.name] = made[how]
        return Batch(**values)
