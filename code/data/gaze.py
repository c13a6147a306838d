"""The one internal form every eye-tracking data set is read into.

A ``GazeDataset`` is a list of stimuli plus a flat table of fixations (one row per fixation, like
pysaliency's ``FixationTrains``). Coordinates are 0-based pixels of the *original* image: x is the
column, y the row; a fixation at (x, y) lies in pixel (row ⌊y⌋, column ⌊x⌋). Times are in
milliseconds, NaN where the data set does not record them. Conversions from a release's own
conventions happen once, in its loader.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError


@dataclass(frozen=True)
class Stimulus:
    """One image. ``read`` returns it as an (H, W, 3) uint8 array; nothing is loaded before."""

    id: str
    height: int
    width: int
    path: Path | None
    generate: Callable[[], np.ndarray] | None = field(default=None, compare=False, repr=False)
    # The true log-density of fixations, known only for generated data (the oracle).
    true_log_density: Callable[[], np.ndarray] | None = field(
        default=None, compare=False, repr=False
    )
    label: int | None = None  # the image's class, for data sets that label them (STL-10)

    def read(self) -> np.ndarray:
        if self.generate is not None:
            return self.generate()
        if self.path is None:
            raise ValueError(f"stimulus {self.id!r} has neither a file nor a generator")
        return read_rgb(self.path)

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) of the original image."""
        return self.height, self.width


def read_rgb(path: Path) -> np.ndarray:
    """Decode an image file to (H, W, 3) uint8 RGB; the error names the file."""
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except FileNotFoundError as err:
        raise FileNotFoundError(f"image file not found: {path}") from err
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise OSError(f"cannot decode image {path}: {err}") from err


@dataclass
class Fixations:
    """A flat table of fixations; row i is fixation ``index[i]`` of scanpath ``train[i]``."""

    x: np.ndarray  # float64, column in original pixels, 0-based
    y: np.ndarray  # float64, row in original pixels, 0-based
    image: np.ndarray  # int64, index into the data set's stimuli
    subject: np.ndarray  # int64, subject id (stable across images within a data set)
    train: np.ndarray  # int64, scanpath id (unique per (image, subject) viewing)
    index: np.ndarray  # int64, position of the fixation within its scanpath, from 0
    onset_ms: np.ndarray  # float64, NaN when unknown
    duration_ms: np.ndarray  # float64, NaN when unknown

    def __post_init__(self) -> None:
        lengths = {f.name: len(getattr(self, f.name)) for f in fields(self)}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"fixation columns differ in length: {lengths}")

    def __len__(self) -> int:
        return len(self.x)

    def select(self, rows: np.ndarray) -> Fixations:
        """The fixations at ``rows`` (a boolean mask or index array)."""
        return Fixations(**{f.name: getattr(self, f.name)[rows] for f in fields(self)})

    def rows_by_image(self, n_images: int) -> list[np.ndarray]:
        """For each image index < ``n_images``, the rows of its fixations (ascending)."""
        order = np.argsort(self.image, kind="stable")
        bounds = np.searchsorted(self.image[order], np.arange(n_images + 1))
        return [order[start:stop] for start, stop in itertools.pairwise(bounds)]

    @staticmethod
    def concatenate(parts: Sequence[Fixations]) -> Fixations:
        return Fixations(
            **{
                f.name: np.concatenate([getattr(p, f.name) for p in parts])
                for f in fields(Fixations)
            }
        )

    @staticmethod
    def from_scanpaths(scanpaths: Sequence[Scanpath]) -> Fixations:
        """Build the table from scanpaths; their order defines the train ids."""
        rows = [
            Fixations(
                x=np.asarray(s.x, dtype=np.float64),
                y=np.asarray(s.y, dtype=np.float64),
                image=np.full(len(s.x), s.image, dtype=np.int64),
                subject=np.full(len(s.x), s.subject, dtype=np.int64),
                train=np.full(len(s.x), train, dtype=np.int64),
                index=np.arange(len(s.x), dtype=np.int64),
                onset_ms=np.asarray(s.onset_ms, dtype=np.float64),
                duration_ms=np.asarray(s.duration_ms, dtype=np.float64),
            )
            for train, s in enumerate(scanpaths)
        ]
        return Fixations.concatenate(rows) if rows else Fixations.empty()

    @staticmethod
    def empty() -> Fixations:
        f, i = np.zeros(0, np.float64), np.zeros(0, np.int64)
        return Fixations(x=f, y=f, image=i, subject=i, train=i, index=i, onset_ms=f, duration_ms=f)


@dataclass
class Scanpath:
    """One viewing of one image by one subject, fixations in temporal order."""

    image: int
    subject: int
    x: np.ndarray
    y: np.ndarray
    onset_ms: np.ndarray
    duration_ms: np.ndarray


@dataclass
class GazeDataset:
    """Stimuli and their fixations; ``skipped`` counts what a loader left out, by reason, and
    ``adjusted`` what it kept but changed (e.g. moved onto the image border), by reason.

    ``sources`` lists the annotation files the data set was read from (the stimuli are in
    ``stimuli``); together they fingerprint its content for caches. ``parts`` names the data
    sets a concatenation (``concat``) was made of, with their image counts, in order; empty for
    one data set (and for any subset, which keeps no such order).
    """

    name: str
    stimuli: list[Stimulus]
    fixations: Fixations
    skipped: Counter[str] = field(default_factory=Counter)
    adjusted: Counter[str] = field(default_factory=Counter)
    sources: list[Path] = field(default_factory=list)
    parts: list[tuple[str, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Every fixation must be finite, inside its image, and point at a real stimulus."""
        fix = self.fixations
        if self.parts and sum(n for _, n in self.parts) != len(self.stimuli):
            raise ValueError(f"{self.name}: its parts {self.parts} do not add up to its images")
        if len(fix) == 0:
            return
        if fix.image.min() < 0 or fix.image.max() >= len(self.stimuli):
            raise ValueError(f"{self.name}: fixation refers to an image index out of range")
        heights = np.array([s.height for s in self.stimuli])[fix.image]
        widths = np.array([s.width for s in self.stimuli])[fix.image]
        bad = ~(np.isfinite(fix.x) & np.isfinite(fix.y))
        bad |= (fix.x < 0) | (fix.y < 0) | (fix.x >= widths) | (fix.y >= heights)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            stim = self.stimuli[fix.image[i]]
            raise ValueError(
                f"{self.name}: {int(bad.sum())} fixation(s) outside their image or not finite; "
                f"first: image {stim.id!r} ({stim.width}x{stim.height}), subject "
                f"{fix.subject[i]}, fixation {fix.index[i]} at x={fix.x[i]}, y={fix.y[i]}"
            )

    def subset(self, images: Sequence[int]) -> GazeDataset:
        """The data set restricted to ``images`` (re-indexed in the given order)."""
        images = np.asarray(images, dtype=np.int64)
        new_index = np.full(len(self.stimuli), -1, dtype=np.int64)
        new_index[images] = np.arange(len(images))
        rows = new_index[self.fixations.image] >= 0
        fix = self.fixations.select(rows)
        fix.image = new_index[fix.image]
        return GazeDataset(
            name=self.name,
            stimuli=[self.stimuli[i] for i in images],
            fixations=fix,
            skipped=Counter(self.skipped),
            adjusted=Counter(self.adjusted),
            sources=list(self.sources),
        )

    def fixations_of(self, image: int) -> Fixations:
        return self.fixations.select(self.fixations.image == image)

    @property
    def subjects(self) -> np.ndarray:
        return np.unique(self.fixations.subject)


def stimulus_index(stimuli: Sequence[Stimulus]) -> dict[str, int]:
    """Stimulus position by name: its id, or its file stem where no other stimulus shares it."""
    stems = Counter(Path(s.id).stem for s in stimuli)
    index = {Path(s.id).stem: i for i, s in enumerate(stimuli) if stems[Path(s.id).stem] == 1}
    index.update({s.id: i for i, s in enumerate(stimuli)})
    return index
