"""From the configuration to data loaders: load, split by image, fit the centre bias."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from yacs.config import CfgNode

from code.data.gaze import GazeDataset
from code.data.samples import SaliencySamples, collate
from code.metrics.baselines import CenterBias
from code.registry import DATASETS
from code.utils import distributed as dist
from code.utils.logging import get_logger


@dataclass
class DataSplits:
    """The train/val/test subsets and the centre bias fitted on the training images."""

    train: GazeDataset
    val: GazeDataset
    test: GazeDataset
    centerbias: CenterBias


def split_images(
    num_images: int, val_fraction: float, test_fraction: float, seed: int
) -> dict[str, np.ndarray]:
    """Disjoint image indices for train/val/test, shuffled deterministically by ``seed``."""
    if val_fraction < 0 or test_fraction < 0 or val_fraction + test_fraction >= 1:
        raise ValueError(
            f"split fractions val={val_fraction}, test={test_fraction} leave no training images"
        )
    order = np.random.default_rng(seed).permutation(num_images)
    n_val, n_test = round(val_fraction * num_images), round(test_fraction * num_images)
    return {
        "val": np.sort(order[:n_val]),
        "test": np.sort(order[n_val : n_val + n_test]),
        "train": np.sort(order[n_val + n_test :]),
    }


def build_splits(cfg: CfgNode) -> DataSplits:
    dataset = DATASETS.build(cfg.DATA.DATASET)
    split = cfg.DATA.SPLIT
    indices = split_images(
        len(dataset.stimuli), split.VAL_FRACTION, split.TEST_FRACTION, split.SEED
    )
    parts = {name: dataset.subset(idx) for name, idx in indices.items()}
    centerbias = CenterBias(cfg.DATA.CENTERBIAS.BANDWIDTH, cfg.DATA.CENTERBIAS.UNIFORM_WEIGHT)
    centerbias.fit(parts["train"])
    get_logger().info(
        "data set %s: %s",
        dataset.name,
        ", ".join(
            f"{name} {len(p.stimuli)} images / {len(p.fixations)} fixations"
            for name, p in parts.items()
        ),
    )
    return DataSplits(**parts, centerbias=centerbias)


def build_loader(
    cfg: CfgNode, samples: SaliencySamples, train: bool, seed: int
) -> torch.utils.data.DataLoader:
    """A loader over this rank's share of ``samples``.

    Training shards are shuffled per epoch (``sampler.set_epoch``) and padded to equal length;
    evaluation shards are disjoint and unpadded, so every image is scored exactly once.
    """
    if train:
        sampler = torch.utils.data.DistributedSampler(
            samples, num_replicas=dist.world_size(), rank=dist.rank(), shuffle=True, seed=seed
        )
    else:
        sampler = list(range(dist.rank(), len(samples), dist.world_size()))
    return torch.utils.data.DataLoader(
        samples,
        batch_size=cfg.DATA.BATCH_SIZE,
        sampler=sampler,
        num_workers=cfg.DATA.NUM_WORKERS,
        collate_fn=collate,
        persistent_workers=cfg.DATA.NUM_WORKERS > 0,
    )


def build_samples(cfg: CfgNode, dataset: GazeDataset, centerbias: CenterBias) -> SaliencySamples:
    height, width = cfg.DATA.IMAGE_SIZE
    return SaliencySamples(dataset, (height, width), centerbias.log_density)
