"""From the configuration to data loaders: load, split by image, make samples, cache, transform."""

from __future__ import annotations

import argparse
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from yacs.config import CfgNode

from code.data.batch import Collate
from code.data.cache import build_cache, content_hash, fingerprint_dataset
from code.data.centerbias import CenterBias
from code.data.gaze import GazeDataset
from code.data.sampler import ShapeAwareBatchSampler
from code.data.samples import FixationSamples, ImageSamples
from code.data.segments import SegmentedSamples, Segmenter
from code.data.splits import Split, kfold_by_image, split_indices
from code.data.transforms import (
    EpochIndexedBatches,
    EpochSeeded,
    TransformedSamples,
    build_transforms,
)
from code.registry import DATASETS, SAMPLES, Chain, Choice, ConfigError
from code.utils import distributed as dist
from code.utils.logging import get_logger

SPLITS = ("train", "val", "test")


@dataclass
class DataSplits:
    """The train/val/test subsets of a data set (split by image)."""

    train: Any
    val: Any
    test: Any


def load_dataset(cfg: CfgNode) -> GazeDataset:
    """The data set ``DATA.DATASET`` names: eye-tracking data, or images alone (no fixations)."""
    return DATASETS.build(cfg.DATA.DATASET)


def gaze_dataset(cfg: CfgNode) -> GazeDataset:
    """``load_dataset``, refusing data without fixations (for tasks that need them)."""
    dataset = load_dataset(cfg)
    if len(dataset.fixations) == 0:
        raise ValueError(
            f"DATA.DATASET.NAME {cfg.DATA.DATASET.NAME!r} gives {dataset.name}, images without "
            "fixations; it cannot train or score a gaze model"
        )
    return dataset


def build_splits(cfg: CfgNode, dataset: Any) -> DataSplits:
    """``dataset`` split by image (``DATA.SPLIT``); logs what each part holds and what the
    loader skipped or adjusted."""
    indices = split_images(cfg.DATA.SPLIT, dataset)
    parts = {name: dataset.subset(getattr(indices, name)) for name in SPLITS}

    def holds(part: Any) -> str:
        fixations = getattr(part, "fixations", None)
        counts = "" if fixations is None else f" / {len(fixations)} fixations"
        return f"{len(part.stimuli)} images{counts}"

    summary = ", ".join(f"{name} {holds(p)}" for name, p in parts.items())
    get_logger().info("data set %s: %s", dataset.name, summary)
    for reason, count in {**dataset.skipped, **dataset.adjusted}.items():
        get_logger().info("data set %s: %d x %s", dataset.name, count, reason)
    return DataSplits(**parts)


def split_sizes(splits: DataSplits) -> dict[str, int]:
    """Images per split, refused (naming the split and the key that fixes it) if one is empty:
    before any training, not when its first batch is wanted."""
    sizes = {name: len(getattr(splits, name).stimuli) for name in SPLITS}
    where = split_summary(sizes)
    for name, size in sizes.items():
        if size == 0:
            key = {"val": "VAL_FRACTION", "test": "TEST_FRACTION (or FOLDS)"}.get(name)
            fix = f"raise DATA.SPLIT.{key}" if key else "lower the val and test fractions"
            raise ConfigError(f"{where} images: the {name} split is empty; {fix}")
    return sizes


def split_summary(sizes: dict[str, int]) -> str:
    """What the split gives, for error messages."""
    return f"DATA.SPLIT gives {sizes['train']}/{sizes['val']}/{sizes['test']} train/val/test"


def fit_centerbias(cfg: CfgNode, train: GazeDataset) -> CenterBias:
    """The centre bias (``DATA.CENTERBIAS``) fitted on the training images' fixations."""
    return CenterBias(cfg.DATA.CENTERBIAS.BANDWIDTH, cfg.DATA.CENTERBIAS.UNIFORM_WEIGHT).fit(train)


def split_images(split: CfgNode, dataset: Any) -> Split:
    """Train/val/test image indices of ``dataset`` (``DATA.SPLIT``). With ``EACH_DATASET``,
    each data set of a concatenation is split on its own, so that each keeps exactly the
    train/val/test images a run on it alone has (e.g. OSIE's test images stay held out when
    training on OSIE and Scene500 together)."""
    if not split.EACH_DATASET:
        return _split_images(split, len(dataset.stimuli))
    parts = getattr(dataset, "parts", [])
    if not parts:
        raise ConfigError(
            f"DATA.SPLIT.EACH_DATASET splits each data set of a concatenation on its own, but "
            f"{dataset.name} is one data set: set it to false, or list data sets with "
            "DATA.DATASET.NAME: concat"
        )
    pieces, offset = [], 0
    for _, n_images in parts:
        piece = _split_images(split, n_images)
        pieces.append(Split(piece.train + offset, piece.val + offset, piece.test + offset))
        offset += n_images
    return Split(
        *(np.concatenate([getattr(p, side) for p in pieces]) for side in ("train", "val", "test"))
    )


def _split_images(split: CfgNode, n_images: int) -> Split:
    """Train/val/test image indices; with ``FOLDS``, test is fold ``FOLD`` of a k-fold split."""
    if split.FOLDS is None and split.FOLD is None:
        return split_indices(
            np.arange(n_images), split.VAL_FRACTION, split.TEST_FRACTION, split.SEED
        )
    if split.FOLDS is None or split.FOLD is None or not 0 <= split.FOLD < split.FOLDS:
        raise ValueError(
            f"DATA.SPLIT.FOLD must be in [0, FOLDS) with FOLDS set, got FOLDS={split.FOLDS}, "
            f"FOLD={split.FOLD} (both null: no cross-validation)"
        )
    if split.TEST_FRACTION != 0:
        raise ValueError(
            "DATA.SPLIT.TEST_FRACTION must be 0 with FOLDS: the test images are the fold"
        )
    train, test = kfold_by_image(n_images, split.FOLDS, split.SEED)[split.FOLD]
    rest = split_indices(train, split.VAL_FRACTION, 0.0, split.SEED)
    return Split(train=rest.train, val=rest.val, test=test)


def build_samples(
    cfg: CfgNode,
    dataset: Any,
    split: str,
    centerbias: CenterBias | None,
    segmenter: Segmenter | None,
    *,
    transformed: bool,
) -> torch.utils.data.Dataset:
    """Training/evaluation items of one split (``DATA.SAMPLES``) over the per-image samples.

    The per-image samples are the resized image, with the fixations and the centre bias when
    ``centerbias`` is given (tasks that use gaze) and the segments of ``segmenter``; they are
    read through the LMDB cache when DATA.CACHE.DIR is set (``split`` names the entry).
    ``transformed`` (training items): the items then pass through ``DATA.TRANSFORMS``. The
    result's ``fields`` are the ``Batch`` fields its batches hold.
    """
    height, width = cfg.DATA.IMAGE_SIZE
    images: Any = ImageSamples(dataset, (height, width))
    if centerbias is not None:
        images = FixationSamples(images, dataset, centerbias.log_density)
    if segmenter is not None:
        images = SegmentedSamples(images, dataset, segmenter)
    if cfg.DATA.CACHE.DIR is not None:
        key = {
            "dataset": fingerprint_dataset(dataset),
            "dataset_config": cfg.DATA.DATASET.dump(),
            "split": {"name": split, **dict(cfg.DATA.SPLIT)},
            "image_size": [height, width],
            "centerbias": None if centerbias is None else dict(cfg.DATA.CENTERBIAS),
            "code_versions": images.versions(),
        }
        if segmenter is not None:
            key["segments"] = {"config": cfg.DATA.SEGMENTS.dump(), **segmenter.content_key()}
        name = f"{dataset.name}-{split}-{content_hash(key)[:12]}.lmdb"
        cache = build_cache(Path(cfg.DATA.CACHE.DIR) / name, images, key, cfg.DATA.CACHE.REBUILD)
        images = _SizedCache(cache, images.sizes, images.fields)
    items = SAMPLES.build(cfg.DATA.SAMPLES, images=images, dataset=dataset, seed=cfg.SEED)
    if transformed and cfg.DATA.TRANSFORMS.NAMES:
        entries = {field.key for field in items.fields.values()}
        transforms = build_transforms(cfg.DATA.TRANSFORMS, entries)
        items = TransformedSamples(items, transforms, cfg.SEED)
    return items


class _SizedCache(torch.utils.data.Dataset):
    """A cache that also knows each sample's size (for shape-aware batching) and fields."""

    def __init__(
        self, cache: torch.utils.data.Dataset, sizes: list[tuple[int, int]], fields: Any
    ) -> None:
        self.cache = cache
        self.sizes = sizes
        self.fields = fields

    def __len__(self) -> int:
        return len(self.sizes)

    def __getitem__(self, index: int) -> dict:
        return self.cache[index]


def build_loader(
    cfg: CfgNode, samples: torch.utils.data.Dataset, train: bool
) -> torch.utils.data.DataLoader:
    """A loader of shape-homogeneous batches over this rank's share of ``samples``.

    Training: every rank gets the same number of batches, reshuffled per epoch via
    ``loader.batch_sampler.set_epoch``. Evaluation: each rank takes a disjoint, unpadded share
    (every image scored exactly once), batched by size on that rank.
    """
    collate = Collate(samples.fields.values())
    if train:
        sampler = ShapeAwareBatchSampler(
            samples.sizes, cfg.DATA.BATCH_SIZE, dist.world_size(), dist.rank(), cfg.SEED,
            shuffle=True, drop_last=False,
        )  # fmt: skip
        if isinstance(samples, EpochSeeded):  # its items are seeded per (epoch, index)
            sampler = EpochIndexedBatches(sampler)
    else:
        shard = list(range(dist.rank(), len(samples), dist.world_size()))
        samples = torch.utils.data.Subset(samples, shard)
        sizes = [samples.dataset.sizes[i] for i in shard]
        sampler = ShapeAwareBatchSampler(
            sizes, cfg.DATA.BATCH_SIZE, 1, 0, cfg.SEED, shuffle=False, drop_last=False
        )
    return torch.utils.data.DataLoader(
        samples,
        batch_sampler=sampler,
        num_workers=cfg.DATA.NUM_WORKERS,
        collate_fn=collate,
        # Its own generator: creating an iterator then draws no number from torch's global one,
        # so a run resumed mid-epoch draws the same random numbers as an uninterrupted run.
        generator=torch.Generator().manual_seed(cfg.SEED),
        persistent_workers=cfg.DATA.PERSISTENT_WORKERS and cfg.DATA.NUM_WORKERS > 0,
        pin_memory=cfg.DATA.PIN_MEMORY,
    )


def add_dataset_options(parser: argparse.ArgumentParser, argv: list[str]) -> None:
    """``--dataset NAME`` plus the chosen loader's own parameters as required options.

    The options are the keys a config sets under ``DATA.DATASET.<NAME>`` (``--root``,
    ``--split``, ...), typed as the loader declares them. Data sets made of other data sets
    (``concat``) need a config.
    """
    names = [
        name
        for name in DATASETS.names()
        if not any(isinstance(hint, Choice | Chain) for hint in DATASETS.schema(name).values())
    ]
    parser.add_argument("--dataset", required=True, choices=names,
                        help="registered data set, then its loader's options (below)")  # fmt: skip
    chosen = next((b for a, b in itertools.pairwise(argv) if a == "--dataset"), None)
    if chosen not in names:  # argparse reports the missing or unknown --dataset; help lists all
        sections = []
        for name in names:
            loader = argparse.ArgumentParser(add_help=False, usage=argparse.SUPPRESS)
            _add_loader_options(loader.add_argument_group(f"--dataset {name}"), name)
            sections.append(loader.format_help().strip())
        parser.formatter_class = argparse.RawDescriptionHelpFormatter
        parser.epilog = "\n\n".join(sections)
        return
    _add_loader_options(parser, chosen)


def _add_loader_options(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup, name: str
) -> None:
    for key, hint in DATASETS.schema(name).items():
        option = "--" + key.lower().replace("_", "-")
        parser.add_argument(option, dest=key.lower(), required=True, type=_option_type(hint),
                            metavar=_type_label(hint))  # fmt: skip


def dataset_from_options(args: argparse.Namespace) -> GazeDataset:
    """Load the data set chosen by :func:`add_dataset_options`."""
    params = {key.lower(): getattr(args, key.lower()) for key in DATASETS.schema(args.dataset)}
    return DATASETS.get(args.dataset)(**params)


def _type_label(hint: Any) -> str:
    return getattr(hint, "__name__", str(hint).replace("typing.", "")).upper()


def _option_type(hint: Any) -> Callable[[str], Any]:
    return hint if hint in (int, float, str) else yaml.safe_load
