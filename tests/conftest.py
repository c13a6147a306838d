"""Shared test fixtures: the real eye-tracking data, loaded once per session."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from benchmarks.osie import data_root, read_osie

REAL_DATA = ("osie", "scene500")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real eye-tracking data (``$SACCADE_DATA`` or ``../shared/data``).

    A user without it sees the tests that need it skipped, with the reason; under ``CI=true``
    its absence fails them, so CI can never pass by skipping.
    """
    root = data_root()
    missing = [name for name in REAL_DATA if not (root / name).is_dir()]
    if missing:
        message = f"real eye-tracking data not found: {', '.join(str(root / m) for m in missing)}"
        message += " (set SACCADE_DATA to the folder holding osie/ and scene500/)"
        if os.environ.get("CI", "").lower() in ("1", "true"):
            pytest.fail(f"{message}; CI needs it")
        pytest.skip(message)
    return root


@pytest.fixture(scope="session")
def osie(shared_data: Path):
    """All of OSIE through the framework's loader."""
    from code.data.loaders.osie import load_osie

    return load_osie(str(shared_data / "osie"))


@pytest.fixture(scope="session")
def scene500(shared_data: Path):
    from code.data.loaders.scene500 import load_scene500

    return load_scene500(str(shared_data / "scene500"))


@pytest.fixture(scope="session")
def osie_csv(shared_data: Path):
    """The first 30 OSIE images with their fixations, read from the release's fixations.csv."""
    return read_osie(30)


@pytest.fixture(scope="session")
def osie_log_densities(osie_csv):
    """Smooth random log-densities, one per image (stored as float32, like a model's output)."""
    from scipy.ndimage import gaussian_filter
    from scipy.special import logsumexp

    rng = np.random.default_rng(0)
    result = []
    for h, w in osie_csv.sizes:
        m = gaussian_filter(rng.normal(size=(h, w)), 25) * 60
        result.append((m - logsumexp(m)).astype(np.float32).astype(np.float64))
    return result


@pytest.fixture
def docs_example(tmp_path: Path):
    """Runs a worked example of docs/extending.md by name (``tests/docs_examples.py``): its
    modules imported, its parts registered for this test only, its configs under ``tmp_path``."""
    from tests.docs_examples import examples_in

    with examples_in(tmp_path) as run:
        yield run
