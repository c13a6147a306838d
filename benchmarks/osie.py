"""OSIE fixations read straight from ``fixations.csv`` (for tests and benchmarks; the real
loaders live in :mod:`code.data`), plus the pysaliency 0.2.22 objects used as the reference."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from code.data.gaze import Fixations, GazeDataset, Stimulus

REPO = Path(__file__).resolve().parents[1]


def data_root() -> Path:
    """``$SACCADE_DATA``, else ``../shared/data`` beside the repository."""
    return Path(os.environ.get("SACCADE_DATA", REPO.parent / "shared" / "data"))


@dataclass
class OsieFixations:
    stems: list[str]  # image file stems, in image-index order
    sizes: np.ndarray  # (n_images, 2) height, width
    x: np.ndarray  # 0-based pixels
    y: np.ndarray
    image: np.ndarray  # index into stems
    subject: np.ndarray
    fix_index: np.ndarray
    duration_ms: np.ndarray

    def of(self, image: int) -> tuple[np.ndarray, np.ndarray]:
        rows = self.image == image
        return self.x[rows], self.y[rows]


def read_osie(n_images: int | None = None) -> OsieFixations:
    """The first ``n_images`` OSIE images (sorted by name) and their fixations."""
    table = np.genfromtxt(
        data_root() / "osie" / "fixations.csv",
        delimiter=",",
        names=True,
        dtype=None,
        encoding="utf-8",
        usecols=("image", "subject", "fix_index", "x", "y", "duration_ms", "img_w", "img_h"),
    )
    names, image = np.unique(table["image"], return_inverse=True)
    keep = np.arange(len(names) if n_images is None else n_images)
    rows = np.isin(image, keep)
    sizes = np.zeros((len(keep), 2), dtype=np.int64)
    sizes[image[rows]] = np.column_stack([table["img_h"], table["img_w"]])[rows]
    return OsieFixations(
        stems=[Path(n).stem for n in names[keep]],
        sizes=sizes,
        x=table["x"][rows].astype(np.float64),
        y=table["y"][rows].astype(np.float64),
        image=image[rows].astype(np.int64),
        subject=table["subject"][rows].astype(np.int64),
        fix_index=table["fix_index"][rows].astype(np.int64),
        duration_ms=table["duration_ms"][rows].astype(np.float64),
    )


def osie_dataset(osie: OsieFixations) -> GazeDataset:
    """The fixations as the framework's internal :class:`GazeDataset` (no image files)."""
    nan = np.full(len(osie.x), np.nan)
    fixations = Fixations(
        x=osie.x,
        y=osie.y,
        image=osie.image,
        subject=osie.subject,
        train=osie.image * (osie.subject.max() + 1) + osie.subject,
        index=osie.fix_index,
        onset_ms=nan,
        duration_ms=osie.duration_ms,
    )
    stimuli = [
        Stimulus(f"{stem}.jpg", int(h), int(w), None)
        for stem, (h, w) in zip(osie.stems, osie.sizes, strict=True)
    ]
    return GazeDataset("osie", stimuli, fixations)


def pysaliency_reference(osie: OsieFixations, maps: list[np.ndarray], log_densities: bool):
    """(stimuli, fixations, model) for pysaliency: in-memory stimuli (distinct content, so
    distinct ids) and a model that returns ``maps[i]`` for stimulus i."""
    import pysaliency

    if not hasattr(np, "trapz"):  # pysaliency 0.2.22 calls np.trapz, removed in numpy 2.4
        np.trapz = np.trapezoid
    arrays = []
    for i, (h, w) in enumerate(osie.sizes):
        a = np.zeros((h, w), dtype=np.uint8)
        a.flat[:4] = np.frombuffer(np.int32(i).tobytes(), dtype=np.uint8)
        arrays.append(a)
    stimuli = pysaliency.Stimuli(arrays)
    index = {sid: i for i, sid in enumerate(stimuli.stimulus_ids)}
    fixations = pysaliency.Fixations.create_without_history(
        osie.x, osie.y, osie.image, subjects=osie.subject
    )
    base = pysaliency.Model if log_densities else pysaliency.SaliencyMapModel

    class ArrayModel(base):
        def _lookup(self, stimulus):
            return maps[index[pysaliency.datasets.get_image_hash(stimulus)]]

        _log_density = _lookup
        _saliency_map = _lookup

    return stimuli, fixations, ArrayModel(caching=False)


def pysaliency_metrics(stimuli, fixations, saliency_map_model, model, baseline, sigma, jitter):
    """Every saliency metric by pysaliency itself: the reference our metrics must reproduce.

    ``saliency_map_model`` scores the map-based metrics (against fixation maps blurred with
    ``sigma`` px), ``model`` and ``baseline`` (probabilistic models) LL and IG.
    """
    import pysaliency

    gold = pysaliency.FixationMap(stimuli, fixations, kernel_size=sigma)
    eps = 2.2204e-16  # MIT's KL-divergence regularisation
    return {
        "AUC": saliency_map_model.AUC(stimuli, fixations),
        "sAUC": saliency_map_model.sAUC(stimuli, fixations),
        "AUC_Judd": saliency_map_model.AUC_Judd(stimuli, fixations, jitter=jitter),
        "NSS": saliency_map_model.NSS(stimuli, fixations),
        "CC": saliency_map_model.CC(stimuli, gold),
        "KLDiv": saliency_map_model.image_based_kl_divergence(
            stimuli, gold, minimum_value=0, log_regularization=eps, quotient_regularization=eps
        ),
        "SIM": saliency_map_model.SIM(stimuli, gold),
        "LL": model.log_likelihood(stimuli, fixations),
        "IG": model.information_gain(stimuli, fixations, baseline),
    }
