"""Shared test fixtures: where the real eye-tracking data lives, loaded once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def data_root() -> Path:
    """The real data sets: ``$SACCADE_DATA``, else ``../shared/data`` beside the repository."""
    return Path(os.environ.get("SACCADE_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def osie():
    from code.data.loaders.osie import load_osie

    return load_osie(str(data_root() / "osie"))


@pytest.fixture(scope="session")
def scene500():
    from code.data.loaders.scene500 import load_scene500

    return load_scene500(str(data_root() / "scene500"))
