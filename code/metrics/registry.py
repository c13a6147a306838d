"""The metric registry: every metric the project reports is one :class:`Metric` record.

A record says what the metric reads, how its data-set value averages (per fixation, per image,
per scanpath pair), which map the benchmark protocol derives for it, which way is better, and
its function. The evaluators, the bootstrap, the paired comparison, the tables and
``code.report`` iterate over the registry, so a new metric is one :func:`register` call:

    register(Metric("MAX", averaging="image", higher_is_better=True, map="auc",
                    function=lambda saliency_map, image: saliency_map.max().item()))

Saliency metrics are registered here, scanpath metrics in :mod:`code.metrics.scanpath` beside
their functions (imported the first time the registry is asked for them).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

import numpy as np
import torch

from code.metrics import saliency as M
from code.metrics.protocol import MAP_NAMES, MetricMaps

Averaging = Literal["fixation", "image", "pair"]
AVERAGINGS = ("fixation", "image", "pair")
# What a metric may read beyond the prediction's map and the fixations: the log-density itself
# (not a saliency map's), the baseline log-density of IG, sAUC's shuffled negatives, and for
# scanpath metrics the fixations' durations.
INPUTS = frozenset({"log-density", "baseline", "shuffled", "durations"})
LOCATIONS = ("code.metrics.scanpath",)  # modules that register metrics beside their functions


@dataclass(frozen=True)
class Metric:
    """One metric, all the project knows of it.

    ``function(map, image)`` for a saliency metric: ``map`` is the protocol's map named by
    ``map`` (None for metrics of the log-density alone), ``image`` the :class:`ImageInputs`;
    it returns the image's sum over its fixations (``averaging="fixation"``) or the image's
    value (``"image"``). ``function(pair)`` for a scanpath metric (``"pair"``): the value of
    one (predicted, human) pair, a :class:`code.metrics.scanpath.PairInputs`.
    ``report_order``: its column in ``code.report``'s tables (the README's order).
    """

    name: str
    averaging: Averaging
    higher_is_better: bool
    function: Callable[..., float]
    map: str | None = None
    reads: frozenset[str] = field(default_factory=frozenset)
    report_order: int = 100

    @property
    def weighted(self) -> bool:
        """Whether an image weighs its count (fixations, pairs) in the data-set value."""
        return self.averaging != "image"


METRICS: dict[str, Metric] = {}
_loaded = False


def register(metric: Metric) -> Metric:
    """Add ``metric`` to the registry (after the ones before it); returns it."""
    problems = []
    if metric.name in METRICS:
        problems.append("its name is registered already")
    if metric.averaging not in AVERAGINGS:
        problems.append(f"averaging {metric.averaging!r} is not one of {AVERAGINGS}")
    if metric.map is not None and metric.map not in MAP_NAMES:
        problems.append(f"map {metric.map!r} is not one of {MAP_NAMES}")
    if not metric.reads <= INPUTS:
        problems.append(f"reads {sorted(metric.reads - INPUTS)}, not among {sorted(INPUTS)}")
    if problems:
        raise ValueError(f"metric {metric.name!r}: " + "; ".join(problems))
    METRICS[metric.name] = metric
    return metric


def _all() -> dict[str, Metric]:
    global _loaded
    if not _loaded:
        _loaded = True
        for module in LOCATIONS:
            importlib.import_module(module)
    return METRICS


def metric(name: str) -> Metric:
    """The record of ``name``, or an error naming the registered ones."""
    if name not in _all():
        raise KeyError(f"unknown metric {name!r}; registered: {', '.join(METRICS)}")
    return METRICS[name]


def saliency_metrics() -> list[Metric]:
    """Every metric of a saliency map or density, in registration order."""
    return [m for m in _all().values() if m.averaging != "pair"]


def scanpath_metrics() -> list[Metric]:
    """Every metric of a (predicted, human) scanpath pair, in registration order."""
    return [m for m in _all().values() if m.averaging == "pair"]


def report_order(names: Any) -> list[str]:
    """``names`` (registered metrics) in ``code.report``'s column order."""
    position = {name: k for k, name in enumerate(_all())}
    return sorted(names, key=lambda n: (metric(n).report_order, position[n]))


@dataclass
class ImageInputs:
    """One image's prediction and fixations, as every saliency metric reads them; what several
    metrics derive (sorted maps, densities, the empirical map) is computed once, when first
    asked. ``xs, ys``: pixel indices; ``maps``: the protocol's map of each metric."""

    maps: MetricMaps
    xs: torch.Tensor
    ys: torch.Tensor
    sigma: float | None  # of the empirical map; None where no metric reads it
    log_density: torch.Tensor | None = None
    baseline_log_density: M.ArrayLike | None = None
    shuffled_xs: M.ArrayLike | None = None
    shuffled_ys: M.ArrayLike | None = None
    judd_jitter: np.ndarray | None = None
    empirical_map: torch.Tensor | None = None
    _derived: dict = field(default_factory=dict, repr=False)

    @property
    def n(self) -> int:
        return len(self.xs)

    def available(self) -> frozenset[str]:
        """The inputs of :data:`INPUTS` this image has."""
        present = {
            "log-density": self.log_density is not None,
            "baseline": self.baseline_log_density is not None,
            "shuffled": self.shuffled_xs is not None and self.maps.sauc is not None,
        }
        return frozenset(name for name, there in present.items() if there)

    def value(self, metric: Metric) -> float:
        """``metric``'s function on this image, given the protocol's map it names."""
        saliency_map = None if metric.map is None else getattr(self.maps, metric.map)
        return metric.function(saliency_map, self)

    def _once(self, key: tuple, compute: Callable[[], Any]) -> Any:
        if key not in self._derived:
            self._derived[key] = compute()
        return self._derived[key]

    def sorted_values(self, saliency_map: torch.Tensor) -> torch.Tensor:
        """``saliency_map``'s :func:`code.metrics.saliency.sorted_values`, once per map."""
        return self._once(("sorted", id(saliency_map)), lambda: M.sorted_values(saliency_map))

    def density(self, saliency_map: torch.Tensor) -> torch.Tensor:
        """``saliency_map`` normalised to sum 1, once per map."""
        return self._once(("density", id(saliency_map)), lambda: M.to_density(saliency_map))

    @cached_property
    def empirical(self) -> torch.Tensor:
        """The blurred fixation map (σ = ``sigma``), unless given."""
        if self.empirical_map is not None:
            return self.empirical_map
        if self.sigma is None:
            raise ValueError("an empirical fixation map is read, but no σ was given")
        height, width = self.maps.auc.shape
        return M.empirical_saliency_map(self.xs, self.ys, height, width, self.sigma, self.xs.device)

    def sorting_for_auc(self, saliency_map: torch.Tensor) -> torch.Tensor | None:
        """The sorted map for :func:`code.metrics.saliency.auc`; None (count by comparison,
        not sort) for a few fixations, e.g. a scanpath model's one, unless sorted already."""
        key = ("sorted", id(saliency_map))
        few = self.n <= M.COUNT_UP_TO_POSITIVES and key not in self._derived
        return None if few else self.sorted_values(saliency_map)


# --------------------------------------------------------------------------- saliency metrics

register(Metric(
    "AUC", "fixation", True, map="auc", report_order=3,
    function=lambda m, im: M.auc(m, im.xs, im.ys, im.sorting_for_auc(m)).item() * im.n,
))  # fmt: skip
register(Metric(
    "sAUC", "fixation", True, map="sauc", reads=frozenset({"shuffled"}), report_order=4,
    function=lambda m, im: M.shuffled_auc(
        m, im.xs, im.ys, im.shuffled_xs, im.shuffled_ys
    ).item() * im.n,
))  # fmt: skip
register(Metric(
    "AUC_Judd", "image", True, map="auc", report_order=5,
    function=lambda m, im: M.auc_judd(
        m, im.xs, im.ys, im.judd_jitter, im.sorted_values(m)
    ).item(),
))  # fmt: skip
register(Metric(
    "NSS", "fixation", True, map="auc", report_order=2,
    function=lambda m, im: M.nss(m, im.xs, im.ys).sum().item(),
))  # fmt: skip
register(Metric(
    "CC", "image", True, map="fixation_map", report_order=6,
    function=lambda m, im: M.cc(m, im.empirical).item(),
))  # fmt: skip
register(Metric(
    "KLDiv", "image", False, map="fixation_map", report_order=7,
    function=lambda m, im: M.kl_div_of_densities(
        im.density(m), im.density(im.empirical)
    ).item(),
))  # fmt: skip
register(Metric(
    "SIM", "image", True, map="sim", report_order=8,
    function=lambda m, im: M.sim_of_densities(im.density(m), im.density(im.empirical)).item(),
))  # fmt: skip
register(Metric(
    "LL", "fixation", True, reads=frozenset({"log-density"}), report_order=1,
    function=lambda _, im: M.log_likelihoods(im.log_density, im.xs, im.ys).sum().item(),
))  # fmt: skip
register(Metric(
    "IG", "fixation", True, reads=frozenset({"log-density", "baseline"}), report_order=0,
    function=lambda _, im: M.information_gains(
        im.log_density, im.baseline_log_density, im.xs, im.ys
    ).sum().item(),
))  # fmt: skip
