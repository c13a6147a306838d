"""The typed saliency report: files of every format version load, and write back unchanged."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from code.metrics.report import FORMAT_VERSION, Interval, SaliencyReport, read_report

# A result.json as this project wrote it before the report had a format version (version 1):
# two images, a run's extra key (checkpoint). Its numbers are arbitrary but consistent.
VERSION_1 = {
    "metrics": {"AUC": 0.75, "NSS": 1.5, "LL": -10.0, "IG": 0.5},
    "n_images": 2,
    "n_fixations": 5,
    "baseline": {
        "information_gain_over": "center_bias",
        "center_bias": {"bandwidth": 0.05, "uniform_weight": 0.01, "folds": 2},
        "gold_standard": {"bandwidth": 0.02, "uniform_weight": 0.001},
    },
    "baselines": {
        "uniform": {"AUC": 0.5, "NSS": 0.0, "LL": -11.0, "IG": -0.2},
        "center_bias": {"AUC": 0.6, "NSS": 0.4, "LL": -10.8, "IG": 0.0},
        "gold_standard": {"LL": -9.5, "IG": 0.9},
    },
    "settings": {
        "kind": "log-density", "protocol": "raw", "fixation_map_sigma": 24.0,
        "judd_jitter_seed": 42,
    },
    "dataset": "osie",
    "uncertainty": {"model": {"IG": {"mean": 0.5, "se": 0.1, "ci95": [0.3, 0.7]}}},
    "per_image": {
        "image": ["a.jpg", "b.jpg"],
        "n_fixations": [2, 3],
        "model": {"AUC": [0.7, 0.7833333333333333], "IG": [0.4, 0.5666666666666667]},
    },
    "checkpoint": "output/run/best.pt",
}  # fmt: skip


def test_a_version_1_file_loads_and_writes_back_with_its_version(tmp_path: Path) -> None:
    """Every field read into its record (a key read from the wrong place, an interval's bounds
    swapped or an extra key dropped fails), and written back key for key."""
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps(VERSION_1))
    report = read_report(path)
    assert report.format_version == 1
    assert report.metrics["IG"] == 0.5 and report.baselines["gold_standard"]["LL"] == -9.5
    assert report.uncertainty["model"]["IG"] == Interval(0.5, 0.1, (0.3, 0.7))
    assert report.per_image.image == ["a.jpg", "b.jpg"]
    assert report.per_image.n_fixations == [2, 3]
    assert report.per_image.values["model"]["AUC"] == [0.7, 0.7833333333333333]
    assert report.extra == {"checkpoint": "output/run/best.pt"}
    written = report.to_json()
    assert written.pop("provenance") == {"format_version": 1}
    assert written == VERSION_1 and list(written) == list(VERSION_1)


def test_older_files_without_intervals_or_per_image_values_load() -> None:
    old = {k: v for k, v in VERSION_1.items() if k not in ("uncertainty", "per_image")}
    report = SaliencyReport.from_json(old, "old.json")
    assert report.uncertainty == {} and report.per_image is None


def test_new_reports_carry_the_format_version() -> None:
    report = SaliencyReport.from_json(copy.deepcopy(VERSION_1), "x")
    report.format_version = FORMAT_VERSION
    again = SaliencyReport.from_json(json.loads(json.dumps(report.to_json())), "x")
    assert again == report and again.format_version == FORMAT_VERSION == 2


def test_files_that_are_no_report_are_refused_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"x\.json: not a saliency result \(no n_fixations"):
        SaliencyReport.from_json({k: v for k, v in VERSION_1.items() if k != "n_fixations"},
                                 "x.json")  # fmt: skip
    with pytest.raises(ValueError, match=r"y\.json: format version 3, newer"):
        SaliencyReport.from_json({**VERSION_1, "provenance": {"format_version": 3}}, "y.json")
    (tmp_path / "z.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"z\.json: cannot read as a result\.json"):
        read_report(tmp_path / "z.json")
