"""Baseline models every gaze model is compared with: uniform, the centre bias cross-validated
over images (``code.data.centerbias.CenterBias`` per fold), the true density of generated data
(oracle), the model's maps converted to densities, and the leave-one-subject-out gold standard.

Each baseline scored like a prediction is a registered :class:`Baseline` with its own
log-density per image; :func:`build_baselines` builds those that apply once per evaluation.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch

from code.data.centerbias import CenterBias
from code.data.gaze import GazeDataset, Stimulus

if TYPE_CHECKING:
    from code.metrics.map_density import MapDensityFit


def uniform_log_density(height: int, width: int) -> np.ndarray:
    """log p for a density spread evenly over the image's pixels."""
    return np.full((height, width), -np.log(height * width))


class CrossValidatedCenterBias:
    """A :class:`CenterBias` for each image fitted only on *other* images.

    Images are dealt into ``folds`` folds by index (image i in fold i mod folds); the centre
    bias of an image is fitted on the fixations of every other fold, so an image never helps
    predict itself. ``folds = number of images`` is leave-one-image-out.
    """

    def __init__(self, bandwidth: float, uniform_weight: float, folds: int) -> None:
        if folds < 2:
            raise ValueError(f"cross-validation needs at least 2 folds, got {folds}")
        self.bandwidth = bandwidth
        self.uniform_weight = uniform_weight
        self.folds = folds
        self.models: list[CenterBias] = []

    def fit(self, dataset: GazeDataset) -> CrossValidatedCenterBias:
        n_images = len(dataset.stimuli)
        if n_images < self.folds:
            raise ValueError(f"{dataset.name}: {n_images} images cannot fill {self.folds} folds")
        fold_of_image = np.arange(n_images) % self.folds
        self.models = [
            CenterBias(self.bandwidth, self.uniform_weight).fit(
                dataset.subset(np.flatnonzero(fold_of_image != fold))
            )
            for fold in range(self.folds)
        ]
        return self

    def log_density(self, image: int, height: int, width: int) -> np.ndarray:
        """log p over image ``image`` (its index in the fitted data set), of the given size."""
        if not self.models:
            raise RuntimeError("CrossValidatedCenterBias.log_density called before fit")
        return self.models[image % self.folds].log_density(height, width)


class LeaveOneSubjectOutGoldStandard:
    """The "gold standard": each subject's fixations predicted from the *other* subjects'.

    For image i and subject s the density is a Gaussian kernel density of the other subjects'
    fixations on image i: fixation counts per pixel blurred with σ = ``bandwidth`` × max(H, W)
    pixels (borders reflected, as the empirical fixation maps), normalised, and mixed with a
    uniform density of weight ``uniform_weight`` so no pixel has probability 0:

        p_s = (1 − w) · blur(counts of others) / Σ blur(...) + w / (H·W).

    :meth:`fit` chooses (bandwidth, uniform_weight) maximising the leave-one-subject-out
    log-likelihood over the whole data set (as pysaliency's/the benchmark's gold standards
    are fitted by cross-validated likelihood). Only the density *at the held-out fixations* is
    needed, and blurring is linear, so each value is a sum of separable kernel weights between
    fixation pixels — no full maps are built.
    """

    BANDWIDTHS = np.geomspace(0.005, 0.1, 14)  # fractions of the larger image side, searched

    def __init__(self, bandwidth: float | None, uniform_weight: float | None) -> None:
        """Fixed parameters, or None for those :meth:`fit` should choose."""
        self.bandwidth = bandwidth
        self.uniform_weight = uniform_weight

    def fit(self, dataset: GazeDataset) -> LeaveOneSubjectOutGoldStandard:
        """Choose bandwidth (grid) and uniform weight (bounded 1-D search) by LOSO likelihood."""
        from scipy.optimize import minimize_scalar

        best = (-np.inf, None, None)
        for bandwidth in self.BANDWIDTHS if self.bandwidth is None else [self.bandwidth]:
            kernel = self._kernel_densities(dataset, bandwidth)

            def negative_ll(logit_w: float, kernel: np.ndarray = kernel) -> float:
                return -self._mixture_log_likelihoods(
                    dataset, kernel, 1 / (1 + np.exp(-logit_w))
                ).sum()

            if self.uniform_weight is None:
                result = minimize_scalar(negative_ll, bounds=(-12, 4), method="bounded")
                weight, ll = 1 / (1 + np.exp(-result.x)), -result.fun
            else:
                weight = self.uniform_weight
                ll = self._mixture_log_likelihoods(dataset, kernel, weight).sum()
            if ll > best[0]:
                best = (ll, bandwidth, weight)
        _, self.bandwidth, self.uniform_weight = best
        return self

    def log_likelihoods(self, dataset: GazeDataset) -> np.ndarray:
        """log p_s(fixation) (natural log) for every fixation of ``dataset``, in its order."""
        if self.bandwidth is None or self.uniform_weight is None:
            raise RuntimeError("LeaveOneSubjectOutGoldStandard needs fit() or both parameters")
        kernel = self._kernel_densities(dataset, self.bandwidth)
        return self._mixture_log_likelihoods(dataset, kernel, self.uniform_weight)

    @staticmethod
    def _kernel_densities(dataset: GazeDataset, bandwidth: float) -> np.ndarray:
        """Normalised LOSO kernel density at each fixation (NaN where no other subject looked)."""
        from code.metrics.saliency import blur_matrix

        fix = dataset.fixations
        result = np.full(len(fix), np.nan)
        for image, rows_of in enumerate(fix.rows_by_image(len(dataset.stimuli))):
            if len(rows_of) == 0:
                continue
            stim = dataset.stimuli[image]
            sigma = bandwidth * max(stim.height, stim.width)
            by = blur_matrix(stim.height, sigma, "cpu").numpy()
            bx = blur_matrix(stim.width, sigma, "cpu").numpy()
            r = fix.y[rows_of].astype(np.int64)
            c = fix.x[rows_of].astype(np.int64)
            # kernel[i, j]: mass that fixation j's pixel puts on fixation i's pixel
            kernel = by[np.ix_(r, r)] * bx[np.ix_(c, c)]
            mass = by[:, r].sum(0) * bx[:, c].sum(0)  # 1 unless the kernel leaves the image
            others = fix.subject[rows_of][:, None] != fix.subject[rows_of][None, :]
            with np.errstate(invalid="ignore", divide="ignore"):
                result[rows_of] = (kernel * others).sum(1) / (mass[None, :] * others).sum(1)
        return result

    @staticmethod
    def _mixture_log_likelihoods(
        dataset: GazeDataset, kernel: np.ndarray, weight: float
    ) -> np.ndarray:
        sizes = np.array([s.height * s.width for s in dataset.stimuli], dtype=np.float64)
        uniform = 1 / sizes[dataset.fixations.image]
        return np.log((1 - weight) * np.nan_to_num(kernel) + weight * uniform)


class Baseline(ABC):
    """A model scored beside every prediction, under the same protocol and metrics."""

    reported = True  # in the result's ``baselines`` (False: a variant of the model itself)

    @abstractmethod
    def log_density(
        self, image: int, stimulus: Stimulus, prediction: torch.Tensor
    ) -> np.ndarray | torch.Tensor:
        """log p over ``stimulus`` (image ``image`` of the data set); ``prediction``: the
        model's map of it, for baselines derived from the model."""

    def label(self, name: str, prediction_file: str) -> str:
        """How errors in this baseline's log-density name it (``name``: as registered)."""
        return name


@dataclass
class BaselineInputs:
    """What the baselines of one evaluation are built from."""

    dataset: GazeDataset
    center_bias: CrossValidatedCenterBias  # fitted
    map_density: MapDensityFit | None = None


class UniformBaseline(Baseline):
    def log_density(self, image: int, stimulus: Stimulus, prediction: torch.Tensor) -> np.ndarray:
        return uniform_log_density(stimulus.height, stimulus.width)


class CenterBiasBaseline(Baseline):
    """The cross-validated centre bias (IG is measured over it)."""

    def __init__(self, model: CrossValidatedCenterBias) -> None:
        self.model = model

    def log_density(self, image: int, stimulus: Stimulus, prediction: torch.Tensor) -> np.ndarray:
        return self.model.log_density(image, stimulus.height, stimulus.width)


class MapDensityBaseline(Baseline):
    """The model's saliency maps through a fitted map-to-density conversion: its LL and IG
    stand for the model's (:mod:`code.metrics.map_density`)."""

    reported = False

    def __init__(self, fit: MapDensityFit) -> None:
        self.fit = fit

    def log_density(self, image: int, stimulus: Stimulus, prediction: torch.Tensor) -> torch.Tensor:
        return self.fit.log_density(prediction)

    def label(self, name: str, prediction_file: str) -> str:
        return f"{prediction_file} (fitted density)"


class OracleBaseline(Baseline):
    """The true density of generated data: the best any model can do."""

    def log_density(self, image: int, stimulus: Stimulus, prediction: torch.Tensor) -> np.ndarray:
        return stimulus.true_log_density()


# name -> builder: the baseline, or None where it does not apply to the evaluation. Results
# list the baselines in this order.
BASELINES: dict[str, Callable[[BaselineInputs], Baseline | None]] = {}


def register_baseline(name: str, build: Callable[[BaselineInputs], Baseline | None]) -> None:
    """Score every later evaluation beside the baseline ``build`` makes (when not None)."""
    if name in BASELINES:
        raise ValueError(f"baseline {name!r} is registered twice")
    BASELINES[name] = build


register_baseline("uniform", lambda inputs: UniformBaseline())
register_baseline("center_bias", lambda inputs: CenterBiasBaseline(inputs.center_bias))
register_baseline(
    "map_density",
    lambda inputs: None if inputs.map_density is None else MapDensityBaseline(inputs.map_density),
)
register_baseline(
    "oracle",
    lambda inputs: (
        OracleBaseline()
        if all(s.true_log_density is not None for s in inputs.dataset.stimuli)
        else None
    ),
)


@dataclass
class EvaluationBaselines:
    """The baselines of one evaluation, built once: the centre bias IG is measured over, the
    gold standard (scored from its leave-one-subject-out likelihoods), and every registered
    baseline that applies, by name (``scored``)."""

    center_bias: CrossValidatedCenterBias
    gold_standard: LeaveOneSubjectOutGoldStandard
    scored: dict[str, Baseline] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        dataset: GazeDataset,
        center_bias: CrossValidatedCenterBias,
        gold_standard: LeaveOneSubjectOutGoldStandard,
        map_density: MapDensityFit | None = None,
    ) -> EvaluationBaselines:
        inputs = BaselineInputs(dataset, center_bias, map_density)
        built = {name: build(inputs) for name, build in BASELINES.items()}
        return cls(center_bias, gold_standard, {n: b for n, b in built.items() if b is not None})
