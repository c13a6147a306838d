"""From configuration to batches: splits, the LMDB cache path, shape-aware loaders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from code.config import load_config
from code.data.build import (
    build_loader,
    build_samples,
    build_splits,
    fit_centerbias,
    gaze_dataset,
    load_dataset,
)
from code.data.samples import ImageSamples
from code.models.segmenters import KMeansSegmenter

QUICKSTART = Path("configs/quickstart.yaml")


def test_cached_samples_equal_fresh_ones_and_batch_alike(tmp_path: Path) -> None:
    opts = ["DATA.DATASET.GENERATED.NUM_IMAGES", "40", "DATA.CACHE.DIR", str(tmp_path)]
    cfg = load_config(QUICKSTART, opts)
    splits = build_splits(cfg, gaze_dataset(cfg))
    centerbias = fit_centerbias(cfg, splits.train)
    cached = build_samples(cfg, splits.train, "train", centerbias, None, transformed=True)
    fresh = build_samples(
        load_config(QUICKSTART, opts[:2]),
        splits.train,
        "train",
        centerbias,
        None,
        transformed=True,
    )
    assert len(list(tmp_path.glob("generated-train-*.lmdb"))) == 1
    assert len(cached) == len(fresh) == len(splits.train.stimuli)
    for index in (0, len(fresh) - 1):
        for key, value in fresh[index].items():
            assert np.array_equal(cached[index][key], value), key
    batches = list(build_loader(cfg, cached, train=True))
    assert sum(len(b) for b in batches) == len(cached)
    assert batches[0].input.shape[1:] == (3, 72, 96)


def test_splits_are_disjoint_and_cover_every_image() -> None:
    cfg = load_config(QUICKSTART, ["DATA.DATASET.GENERATED.NUM_IMAGES", "50"])
    splits = build_splits(cfg, load_dataset(cfg))
    ids = [{s.id for s in part.stimuli} for part in (splits.train, splits.val, splits.test)]
    assert sum(len(i) for i in ids) == len(set.union(*ids)) == 50


def test_command_line_takes_the_loaders_own_typed_options(capsys) -> None:
    from code.data.__main__ import main

    argv = ["summary", "--dataset", "generated", "--num-images", "4", "--height", "30"]
    argv += ["--width", "40", "--num-subjects", "2", "--fixations-per-scanpath", "3", "--seed", "1"]
    assert main([*argv, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["images"] == 4 and summary["fixations"] == 4 * 2 * 3


def test_a_cache_is_keyed_by_the_settings_and_the_code_version_of_each_step(
    tmp_path: Path, monkeypatch
) -> None:
    """Two image sizes × two versions of the resize code, in one folder: four caches, and a
    rerun of one combination reuses its cache."""
    base = ["DATA.DATASET.GENERATED.NUM_IMAGES", "12", "DATA.CACHE.DIR", str(tmp_path)]

    def build(size: str) -> None:
        cfg = load_config(QUICKSTART, [*base, "DATA.IMAGE_SIZE", size])
        splits = build_splits(cfg, gaze_dataset(cfg))
        centerbias = fit_centerbias(cfg, splits.train)
        build_samples(cfg, splits.train, "train", centerbias, None, transformed=False)

    for version in (1, 2):
        monkeypatch.setattr(ImageSamples, "VERSION", version)
        for size in ("[24, 32]", "[36, 48]"):
            build(size)
    build("[36, 48]")
    assert len(list(tmp_path.glob("generated-train-*.lmdb"))) == 4


def test_kmeans_segments_are_keyed_by_the_encoders_initial_weights() -> None:
    """Code that initialises the encoder differently (same configuration) makes other segments,
    so it must make another cache key."""

    class Encoder:
        def __init__(self, seed: int) -> None:
            self.seed = seed

        def __call__(self) -> torch.nn.Module:
            torch.manual_seed(self.seed)
            return torch.nn.Conv2d(3, 4, 3)

        def __repr__(self) -> str:
            return "the same configuration"

    keys = [KMeansSegmenter(4, 2, Encoder(seed)).content_key() for seed in (0, 0, 1)]
    assert keys[0] == keys[1] != keys[2]
    assert keys[0]["encoder"] == keys[2]["encoder"] and keys[0]["version"] == 1
