"""Shared test fixtures: the real eye-tracking data, loaded once per session."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.osie import data_root, read_osie


@pytest.fixture(scope="session")
def osie():
    """All of OSIE through the framework's loader."""
    from code.data.loaders.osie import load_osie

    return load_osie(str(data_root() / "osie"))


@pytest.fixture(scope="session")
def scene500():
    from code.data.loaders.scene500 import load_scene500

    return load_scene500(str(data_root() / "scene500"))


@pytest.fixture(scope="session")
def osie_csv():
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
