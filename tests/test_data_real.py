"""The loaders on the real OSIE and Scene500 releases (../shared/data)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import scipy.io

from benchmarks.osie import REPO, data_root
from code.config import load_config
from code.data.build import gaze_dataset
from code.data.gaze import GazeDataset
from code.data.loaders.csv_layout import load_csv_layout
from code.data.summary import summarize


def test_osie_counts(osie):
    s = summarize(osie)
    assert (s["images"], s["subjects"], s["scanpaths"], s["fixations"]) == (700, 15, 10500, 98321)
    assert s["image_sizes"]["distinct"] == 1 and s["image_sizes"]["most_common_hw"] == [600, 800]
    assert not osie.skipped and not osie.adjusted


def test_scene500_counts(scene500):
    s = summarize(scene500)
    assert (s["images"], s["fixations"]) == (500, 43894)
    assert s["skipped"] == {"empty cell (subject without data for the image)": 52}
    assert sum(s["adjusted"].values()) == 6  # 1-based values in (0, 1), see the loader
    assert s["image_sizes"]["distinct"] == 130 and s["image_sizes"]["most_common_count"] == 311


def test_scene500_sizes_match_imginfo(scene500):
    info = scipy.io.loadmat(
        data_root() / "scene500" / "tidy" / "imgInfo.mat", squeeze_me=True, struct_as_record=False
    )["imgInfo"]
    np.testing.assert_array_equal(np.array([s.size for s in scene500.stimuli]), info.size)


def _csv_rows(name: str) -> list[dict[str, str]]:
    with (data_root() / name / "fixations.csv").open() as file:
        return list(csv.DictReader(file))


def _lookup(dataset, row):
    image = [s.id for s in dataset.stimuli].index(row["image"])
    fix = dataset.fixations
    hit = (fix.image == image) & (fix.subject == int(row["subject"]))
    hit &= fix.index == int(row["fix_index"])
    assert hit.sum() == 1
    return np.flatnonzero(hit)[0]


def test_osie_coordinates_match_csv(osie):
    rows = _csv_rows("osie")
    for row in rows[:: len(rows) // 7]:
        i = _lookup(osie, row)
        assert abs(osie.fixations.x[i] - float(row["x"])) < 0.006
        assert abs(osie.fixations.y[i] - float(row["y"])) < 0.006
        assert osie.fixations.duration_ms[i] == float(row["duration_ms"])
        assert np.isnan(osie.fixations.onset_ms[i])


def test_scene500_coordinates_and_times_match_csv(scene500):
    rows = _csv_rows("scene500")
    for row in rows[:: len(rows) // 7]:
        i = _lookup(scene500, row)
        assert abs(scene500.fixations.x[i] - float(row["x"])) < 0.006
        assert abs(scene500.fixations.y[i] - float(row["y"])) < 0.006
        assert abs(scene500.fixations.onset_ms[i] - float(row["onset_ms"])) < 0.51
        assert abs(scene500.fixations.duration_ms[i] - float(row["duration_ms"])) < 0.51


def test_generic_csv_layout_reads_osie_like_the_mat_loader(osie):
    generic = load_csv_layout(str(data_root() / "osie"), "error")
    assert len(generic.fixations) == len(osie.fixations)
    np.testing.assert_allclose(np.sort(generic.fixations.x), np.sort(osie.fixations.x), atol=0.006)
    assert set(generic.subjects) == set(osie.subjects)


def test_summary_command_json(shared_data):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "code.data",
            "summary",
            "--dataset",
            "scene500",
            "--root",
            str(data_root() / "scene500"),
            "--json",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    summary = json.loads(out)
    assert summary["images"] == 500 and summary["fixations"] == 43894
    assert sum(summary["skipped"].values()) == 52


def test_missing_real_data_is_a_skip_for_users_and_a_failure_under_ci(tmp_path):
    def run(ci: str) -> subprocess.CompletedProcess:
        env = {**os.environ, "SACCADE_DATA": str(tmp_path / "absent"), "CI": ci}
        test = "tests/test_data_real.py::test_osie_counts"
        command = [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", test]
        return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)

    user = run("")
    assert user.returncode == 0 and "1 skipped" in user.stdout
    assert f"real eye-tracking data not found: {tmp_path / 'absent' / 'osie'}" in user.stdout
    ci = run("true")
    assert ci.returncode != 0 and "CI needs it" in ci.stdout


def test_the_csv_example_config_reads_scene500s_csv_export_like_its_own_loader(scene500):
    """Scene500's fixations.csv has 6 fixations up to 0.38 px outside their image (1-based
    values in (0, 1)): `clip` reads it as the built-in loader does, `drop` leaves them out,
    `error` names the first."""

    def load(policy: str) -> GazeDataset:
        root = str(data_root() / "scene500")
        opts = ["DATA.DATASET.CSV.ROOT", root, "DATA.DATASET.CSV.OUT_OF_IMAGE", policy]
        return gaze_dataset(load_config("configs/own_data/csv_saliency.yaml", opts))

    clipped = load("clip")
    assert len(clipped.fixations) == len(scene500.fixations) == 43894
    assert sum(clipped.adjusted.values()) == sum(scene500.adjusted.values()) == 6
    for axis in ("x", "y"):
        got, want = getattr(clipped.fixations, axis), getattr(scene500.fixations, axis)
        np.testing.assert_allclose(np.sort(got), np.sort(want), atol=0.006)
    dropped = load("drop")
    assert len(dropped.fixations) == 43894 - 6 and sum(dropped.skipped.values()) == 6
    with pytest.raises(ValueError, match=r"6 fixation\(s\) outside .*y=-0\.38"):
        load("error")
