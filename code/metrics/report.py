"""The saliency report: what ``code.evaluate saliency`` writes as ``result.json`` and a density
run as ``metrics.json``, as typed records, written and read here only; and, read here, the
report of a ``scanpath_generation`` run (``ScanpathGenerationReport``).

The JSON layout (format version 2) is that of the records, in this order: ``metrics``,
``n_images``, ``n_fixations``, ``baseline`` (how the baselines were made), ``baselines``
(their metrics), ``settings``, ``map_density`` (when maps were converted), ``dataset``,
``uncertainty`` (bootstrap mean, s.e. and 95 % interval per model and metric), ``per_image``,
``provenance``; other keys a run adds (e.g. ``checkpoint``) are kept as they are. Files of
version 1 (no ``provenance``; older ones without per-image values or intervals) still load.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FORMAT_VERSION = 2


@dataclass(frozen=True)
class Interval:
    """A metric's bootstrap mean, standard error and 95 % percentile interval."""

    mean: float
    se: float
    ci95: tuple[float, float]

    @classmethod
    def of(cls, data: dict[str, Any]) -> Interval:
        """From :func:`code.metrics.uncertainty.bootstrap`'s (or the file's) dict."""
        return cls(data["mean"], data["se"], tuple(data["ci95"]))


@dataclass
class PerImage:
    """Each scored image's id, fixation count and, per model (``model``, a baseline), every
    metric's value on it: what intervals and paired comparisons are computed from."""

    image: list[str]
    n_fixations: list[int]
    values: dict[str, dict[str, list[float]]]


@dataclass
class SaliencyReport:
    """Every number of one evaluation (see the module docstring for the layout)."""

    metrics: dict[str, float]
    n_images: int
    n_fixations: int
    baseline: dict[str, Any]
    baselines: dict[str, dict[str, float]]
    settings: dict[str, Any] = field(default_factory=dict)
    dataset: str | None = None
    map_density: dict[str, Any] | None = None
    uncertainty: dict[str, dict[str, Interval]] = field(default_factory=dict)
    per_image: PerImage | None = None
    format_version: int = FORMAT_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The report as the JSON object the files hold."""
        result: dict[str, Any] = {
            "metrics": self.metrics,
            "n_images": self.n_images,
            "n_fixations": self.n_fixations,
            "baseline": self.baseline,
            "baselines": self.baselines,
            "settings": self.settings,
            **({"map_density": self.map_density} if self.map_density is not None else {}),
            "dataset": self.dataset,
            "uncertainty": {
                name: {m: _interval_json(i) for m, i in intervals.items()}
                for name, intervals in self.uncertainty.items()
            },
        }
        if self.per_image is not None:
            result["per_image"] = {
                "image": self.per_image.image,
                "n_fixations": self.per_image.n_fixations,
                **self.per_image.values,
            }
        result["provenance"] = {"format_version": self.format_version}
        return {**result, **self.extra}

    @classmethod
    def from_json(cls, data: dict[str, Any], source: str) -> SaliencyReport:
        """A report from its JSON object (any format version); ``source`` names it in errors."""
        if not isinstance(data, dict):
            raise ValueError(f"{source}: not a saliency result (not a JSON object)")
        missing = [k for k in ("metrics", "n_images", "n_fixations", "baselines") if k not in data]
        if missing:
            raise ValueError(f"{source}: not a saliency result (no {', '.join(missing)})")
        rest = dict(data)
        per_image = rest.pop("per_image", None)
        version = rest.pop("provenance", {"format_version": 1})["format_version"]
        if version > FORMAT_VERSION:
            raise ValueError(f"{source}: format version {version}, newer than this code's")
        return cls(
            metrics=rest.pop("metrics"),
            n_images=rest.pop("n_images"),
            n_fixations=rest.pop("n_fixations"),
            baseline=rest.pop("baseline", {}),
            baselines=rest.pop("baselines"),
            settings=rest.pop("settings", {}),
            dataset=rest.pop("dataset", None),
            map_density=rest.pop("map_density", None),
            uncertainty={
                name: {metric: Interval.of(i) for metric, i in per.items()}
                for name, per in rest.pop("uncertainty", {}).items()
            },
            per_image=None if per_image is None else _per_image(per_image),
            format_version=version,
            extra=rest,
        )


def _interval_json(interval: Interval) -> dict[str, Any]:
    return {"mean": interval.mean, "se": interval.se, "ci95": list(interval.ci95)}


def _per_image(data: dict[str, Any]) -> PerImage:
    values = {k: v for k, v in data.items() if k not in ("image", "n_fixations")}
    return PerImage(list(data["image"]), list(data["n_fixations"]), values)


def read_json(path: Path, what: str) -> Any:
    """The JSON in ``path``, or an error naming the file and ``what`` it was read as."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: cannot read as a {what}: {err}") from err


def read_report(path: Path) -> SaliencyReport:
    """The report in ``path``, or an error naming the file."""
    return SaliencyReport.from_json(read_json(path, "result.json"), str(path))


def write_report(path: Path, report: SaliencyReport) -> None:
    path.write_text(json.dumps(report.to_json(), indent=2))


@dataclass(frozen=True)
class ScanpathGenerationReport:
    """What a ``scanpath_generation`` run writes as ``metrics.json``: per generator (``NeVA``,
    ``samples``, ``random``, ``centre``, ``wta``, ``humans``) and scanpath metric, the mean,
    s.e. and image count over the test images (``metrics``); the same of each generator minus
    the random scanpaths, image by image (``versus_random``: all but ``random`` and
    ``humans``); a probabilistic generator's conditional scores (``conditional``: its density
    at the human fixations given the ones before; absent in runs before it was reported); the
    downstream loss after each fixation (``utility``: mean and s.e. over images per t)."""

    metrics: dict[str, dict[str, dict[str, float]]]
    versus_random: dict[str, dict[str, dict[str, float]]]
    conditional: dict[str, dict[str, Any]]
    utility: dict[str, dict[str, list[float]]]
    n_images: int
    length: int

    @classmethod
    def from_json(cls, data: dict[str, Any], source: str) -> ScanpathGenerationReport:
        """A report from its JSON object; ``source`` names it in errors."""
        keys = ("metrics", "versus_random", "utility", "n_images", "length")
        missing = [k for k in keys if not isinstance(data, dict) or k not in data]
        if missing:
            raise ValueError(
                f"{source}: not a scanpath_generation report (no {', '.join(missing)})"
            )
        return cls(data["metrics"], data["versus_random"], data.get("conditional", {}),
                   data["utility"], data["n_images"], data["length"])  # fmt: skip

    def information_gain(self, generator: str) -> float | None:
        """``generator``'s conditional IG in bits/fixation over the centre bias; None without
        a density of its own."""
        scores = self.conditional.get(generator)
        return None if scores is None else scores["metrics"]["IG"]


def read_scanpath_generation(path: Path) -> ScanpathGenerationReport:
    """The ``scanpath_generation`` report in ``path``, or an error naming the file."""
    return ScanpathGenerationReport.from_json(read_json(path, "metrics.json"), str(path))
