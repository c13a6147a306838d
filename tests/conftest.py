import numpy as np
import pytest

from benchmarks.osie import data_root, osie_dataset, read_osie


@pytest.fixture(scope="session")
def osie():
    """The first 30 OSIE images with their fixations (read from ../shared/data)."""
    if not (data_root() / "osie" / "fixations.csv").exists():
        pytest.skip(f"OSIE data not found under {data_root()} (set SACCADE_DATA)")
    return read_osie(30)


@pytest.fixture(scope="session")
def osie_gaze(osie):
    return osie_dataset(osie)


@pytest.fixture(scope="session")
def osie_log_densities(osie):
    """Smooth random log-densities, one per image (stored as float32, like a model's output)."""
    from scipy.ndimage import gaussian_filter
    from scipy.special import logsumexp

    rng = np.random.default_rng(0)
    result = []
    for h, w in osie.sizes:
        m = gaussian_filter(rng.normal(size=(h, w)), 25) * 60
        result.append((m - logsumexp(m)).astype(np.float32).astype(np.float64))
    return result
