"""The LMDB cache is keyed by every setting that changes a cached sample, and by nothing else.

The oracle is the data pipeline itself, run with the cache and without it. For each setting,
changed alone from a reference configuration:

- the items built through the cache must equal the items built without it: a setting missing
  from the cache key would find the reference's cache under the same name and serve its samples;
- a setting listed as changing the samples must change the items without the cache (checked, so
  each case means something);
- a setting listed as not changing them (training, batching, what comes after the cache: sample
  choice, transforms) must find the reference's cache and make no new one.

Which settings there are comes from the configuration schema: every leaf of the ``DATA`` node of
every configuration the cases build must be one of the cases (``DATA.CACHE.DIR``, the cache's
place, aside), so a new data setting fails here until it is classified.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from code.config import flat_keys, load_config
from code.data.build import build_samples, build_splits, fit_centerbias, gaze_dataset
from code.data.segments import Segmenter
from code.data.transforms import EpochSeeded
from code.models.build import build_segmenter
from tests.small_run import QUICKSTART

SPLITS = ("train", "val", "test")
Items = dict[str, list[dict[str, np.ndarray]]]

# The reference: 12 generated images of 36 x 48 pixels, resized to 24 x 32 (so resizing runs).
BASE = [
    "DATA.DATASET.GENERATED.NUM_IMAGES", "12",
    "DATA.DATASET.GENERATED.HEIGHT", "36",
    "DATA.DATASET.GENERATED.WIDTH", "48",
    "DATA.DATASET.GENERATED.NUM_SUBJECTS", "3",
    "DATA.DATASET.GENERATED.FIXATIONS_PER_SCANPATH", "4",
    "DATA.IMAGE_SIZE", "[24, 32]",
]  # fmt: skip
FOLDS = ["DATA.SPLIT.TEST_FRACTION", "0.0", "DATA.SPLIT.FOLDS", "3", "DATA.SPLIT.FOLD", "0"]
KMEANS = ["DATA.SEGMENTS.NAME", "kmeans", "DATA.SEGMENTS.KMEANS.NUM_SEGMENTS", "4",
          "DATA.SEGMENTS.KMEANS.ITERATIONS", "3"]  # fmt: skip
SCANPATH_ITEMS = ["DATA.SAMPLES.NAME", "scanpath", "DATA.SAMPLES.SCANPATH.HISTORY_LENGTH", "2",
                  "DATA.SAMPLES.SCANPATH.INCLUDE_FIRST", "true"]  # fmt: skip
HFLIP = ["DATA.TRANSFORMS.NAMES", "[hflip]", "DATA.TRANSFORMS.HFLIP.PROBABILITY", "0.5"]


@dataclass(frozen=True)
class Case:
    """``key`` changed by the --opts ``change``, from the reference ``BASE`` + ``context``;
    ``{csv_a}`` and the like name the folders made by the ``folders`` fixture."""

    key: str
    change: tuple[str, ...]
    context: tuple[str, ...] = ()


def csv_data(root: str) -> tuple[str, ...]:
    return ("DATA.DATASET.NAME", "csv", "DATA.DATASET.CSV.ROOT", root,
            "DATA.DATASET.CSV.OUT_OF_IMAGE", "clip")  # fmt: skip


# Two data sets read as one: generated images (as BASE's) and a CSV folder of OSIE images.
CONCAT = ("DATA.DATASET.NAME", "concat", "DATA.DATASET.CONCAT.DATASETS.NAMES", "[generated, csv]",
          "DATA.DATASET.CONCAT.DATASETS.GENERATED.NUM_IMAGES", "12",
          "DATA.DATASET.CONCAT.DATASETS.GENERATED.HEIGHT", "36",
          "DATA.DATASET.CONCAT.DATASETS.GENERATED.WIDTH", "48",
          "DATA.DATASET.CONCAT.DATASETS.GENERATED.NUM_SUBJECTS", "3",
          "DATA.DATASET.CONCAT.DATASETS.GENERATED.FIXATIONS_PER_SCANPATH", "4",
          "DATA.DATASET.CONCAT.DATASETS.GENERATED.SEED", "0",
          "DATA.DATASET.CONCAT.DATASETS.CSV.ROOT", "{csv_a}",
          "DATA.DATASET.CONCAT.DATASETS.CSV.OUT_OF_IMAGE", "clip")  # fmt: skip


def segment_files(folder: str) -> tuple[str, ...]:
    return "DATA.SEGMENTS.NAME", "files", "DATA.SEGMENTS.FILES.DIR", folder


# Each changes what the cache holds: the images, their fixations, the centre bias, the segments.
CHANGES_SAMPLES = [
    Case("DATA.DATASET.NAME", csv_data("{csv_a}")),
    *(Case(f"DATA.DATASET.GENERATED.{key}", (f"DATA.DATASET.GENERATED.{key}", value))
      for key, value in [("NUM_IMAGES", "13"), ("HEIGHT", "40"), ("WIDTH", "52"),
                         ("NUM_SUBJECTS", "4"), ("FIXATIONS_PER_SCANPATH", "5"), ("SEED", "1")]),
    Case("DATA.DATASET.CSV.ROOT", ("DATA.DATASET.CSV.ROOT", "{csv_b}"), csv_data("{csv_a}")),
    Case("DATA.DATASET.CSV.OUT_OF_IMAGE", ("DATA.DATASET.CSV.OUT_OF_IMAGE", "drop"),
         csv_data("{csv_a}")),
    Case("DATA.SPLIT.VAL_FRACTION", ("DATA.SPLIT.VAL_FRACTION", "0.3")),
    Case("DATA.SPLIT.TEST_FRACTION", ("DATA.SPLIT.TEST_FRACTION", "0.4")),
    Case("DATA.SPLIT.SEED", ("DATA.SPLIT.SEED", "1")),
    Case("DATA.SPLIT.FOLDS", ("DATA.SPLIT.FOLDS", "4"), tuple(FOLDS)),
    Case("DATA.SPLIT.FOLD", ("DATA.SPLIT.FOLD", "1"), tuple(FOLDS)),
    Case("DATA.SPLIT.EACH_DATASET", ("DATA.SPLIT.EACH_DATASET", "true"), CONCAT),
    *(Case(f"DATA.DATASET.CONCAT.DATASETS.{key}", (f"DATA.DATASET.CONCAT.DATASETS.{key}", value),
           CONCAT)
      for key, value in [("NAMES", "[csv, generated]"), ("GENERATED.NUM_IMAGES", "13"),
                         ("GENERATED.HEIGHT", "40"), ("GENERATED.WIDTH", "52"),
                         ("GENERATED.NUM_SUBJECTS", "4"), ("GENERATED.FIXATIONS_PER_SCANPATH", "5"),
                         ("GENERATED.SEED", "1"), ("CSV.ROOT", "{csv_b}"),
                         ("CSV.OUT_OF_IMAGE", "drop")]),
    Case("DATA.IMAGE_SIZE", ("DATA.IMAGE_SIZE", "[20, 28]")),
    Case("DATA.CENTERBIAS.BANDWIDTH", ("DATA.CENTERBIAS.BANDWIDTH", "0.1")),
    Case("DATA.CENTERBIAS.UNIFORM_WEIGHT", ("DATA.CENTERBIAS.UNIFORM_WEIGHT", "0.2")),
    Case("DATA.SEGMENTS.NAME", segment_files("{segments_a}")),
    Case("DATA.SEGMENTS.FILES.DIR", ("DATA.SEGMENTS.FILES.DIR", "{segments_b}"),
         segment_files("{segments_a}")),
    Case("DATA.SEGMENTS.KMEANS.NUM_SEGMENTS", ("DATA.SEGMENTS.KMEANS.NUM_SEGMENTS", "3"),
         tuple(KMEANS)),
    Case("DATA.SEGMENTS.KMEANS.ITERATIONS", ("DATA.SEGMENTS.KMEANS.ITERATIONS", "1"),
         tuple(KMEANS)),
    # k-means segments come from the model's encoder, initialised with the run's seed
    Case("SEED", ("SEED", "1"), tuple(KMEANS)),
    Case("MODEL.ENCODER.CONVNET.CHANNELS", ("MODEL.ENCODER.CONVNET.CHANNELS", "[8, 8, 8]"),
         tuple(KMEANS)),
]  # fmt: skip

# None of these changes a cached sample: the cache built for the reference must serve them.
KEEPS_SAMPLES = [
    Case("DATA.BATCH_SIZE", ("DATA.BATCH_SIZE", "2")),
    Case("DATA.NUM_WORKERS", ("DATA.NUM_WORKERS", "1")),
    Case("DATA.PIN_MEMORY", ("DATA.PIN_MEMORY", "true")),
    Case("DATA.PERSISTENT_WORKERS", ("DATA.PERSISTENT_WORKERS", "false")),
    Case("DATA.CACHE.REBUILD", ("DATA.CACHE.REBUILD", "true")),
    # what one item is, and the transforms: made from the cached samples, after the cache
    Case("DATA.SAMPLES.NAME", tuple(SCANPATH_ITEMS)),
    Case("DATA.SAMPLES.SCANPATH.HISTORY_LENGTH", ("DATA.SAMPLES.SCANPATH.HISTORY_LENGTH", "3"),
         tuple(SCANPATH_ITEMS)),
    Case("DATA.SAMPLES.SCANPATH.INCLUDE_FIRST", ("DATA.SAMPLES.SCANPATH.INCLUDE_FIRST", "false"),
         tuple(SCANPATH_ITEMS)),
    Case("DATA.TRANSFORMS.NAMES", tuple(HFLIP)),
    Case("DATA.TRANSFORMS.HFLIP.PROBABILITY", ("DATA.TRANSFORMS.HFLIP.PROBABILITY", "1.0"),
         tuple(HFLIP)),
    # without k-means segments, the model and the seed have nothing to do with the samples
    Case("SEED", ("SEED", "1")),
    Case("MODEL.ENCODER.CONVNET.CHANNELS", ("MODEL.ENCODER.CONVNET.CHANNELS", "[8, 8, 8]")),
    Case("TRAIN.LR", ("TRAIN.LR", "0.1")),
    Case("TRAIN.EPOCHS", ("TRAIN.EPOCHS", "1")),
    Case("EVAL.FIXATION_MAP_SIGMA", ("EVAL.FIXATION_MAP_SIGMA", "1.0")),
    Case("OUTPUT_DIR", ("OUTPUT_DIR", "elsewhere")),
]  # fmt: skip

NOT_CONTENT = {"DATA.CACHE.DIR"}  # where the cache lives (set by the test itself)


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> dict[str, str]:
    """Two CSV-layout data sets of real OSIE images (different images, same folder name, so
    only the cache key tells their caches apart), each with one fixation half a pixel outside
    its image (``OUT_OF_IMAGE`` decides its fate); two folders of segment label maps."""
    root = tmp_path_factory.mktemp("cache_key")
    osie = shared_data / "osie"
    lines = (osie / "fixations.csv").read_text().splitlines()
    header, rows = lines[0], lines[1:]
    names = sorted({row.split(",", 1)[0] for row in rows})
    made = {}
    for label, chosen in (("csv_a", names[:8]), ("csv_b", names[8:16])):
        folder = root / label / "osie_part"
        (folder / "stimuli").mkdir(parents=True)
        for name in chosen:
            shutil.copy(osie / "stimuli" / name, folder / "stimuli" / name)
        kept = [row for row in rows if row.split(",", 1)[0] in chosen]
        outside = f"{chosen[0]},99,0,-0.4,300.0,200,,800,600"  # the border noise
        (folder / "fixations.csv").write_text("\n".join([header, *kept, outside]) + "\n")
        made[label] = str(folder)
    for label, axis in (("segments_a", 0), ("segments_b", 1)):
        folder = root / label
        folder.mkdir()
        for index in range(16):
            labels = (np.indices((24, 32))[axis] * 3 // (24, 32)[axis]).astype(np.int32)
            np.save(folder / f"generated_{index:05d}.npy", labels)
        made[label] = str(folder)
    return made


def items(opts: list[str]) -> Items:
    """Every split's items as a run makes them (training items transformed, at epochs 0 and 1)."""
    cfg = load_config(QUICKSTART, opts)
    splits = build_splits(cfg, gaze_dataset(cfg))
    centerbias = fit_centerbias(cfg, splits.train)
    segmenter = build_segmenter(cfg)
    out = {}
    for name in SPLITS:
        samples = build_samples(cfg, getattr(splits, name), name, centerbias, segmenter,
                                transformed=name == "train")  # fmt: skip
        count = len(samples)
        keys: Any = range(count)
        if isinstance(samples, EpochSeeded):
            keys = [(epoch, index) for epoch in (0, 1) for index in range(count)]
        out[name] = [samples[key] for key in keys]
    return out


def same(a: Items, b: Items) -> bool:
    def equal(x: dict[str, np.ndarray], y: dict[str, np.ndarray]) -> bool:
        return x.keys() == y.keys() and all(
            x[k].dtype == y[k].dtype and np.array_equal(x[k], y[k]) for k in x
        )

    return all(
        len(a[s]) == len(b[s]) and all(equal(x, y) for x, y in zip(a[s], b[s], strict=True))
        for s in SPLITS
    )


class Pipeline:
    """Items of configurations with and without the cache in ``folder``; the uncached ones of
    each configuration computed once."""

    def __init__(self, folder: Path, names: dict[str, str]) -> None:
        self.folder = folder
        self.names = names
        self._fresh: dict[tuple[str, ...], Items] = {}

    def opts(self, *parts: tuple[str, ...]) -> list[str]:
        return [*BASE, *(o.format(**self.names) for part in parts for o in part)]

    def fresh(self, opts: list[str]) -> Items:
        if tuple(opts) not in self._fresh:
            self._fresh[tuple(opts)] = items([*opts, "DATA.CACHE.DIR", "null"])
        return self._fresh[tuple(opts)]

    def cached(self, opts: list[str]) -> tuple[Items, set[str]]:
        """The items through the cache, and the caches this made."""
        before = self.entries()
        served = items([*opts, "DATA.CACHE.DIR", str(self.folder)])
        return served, self.entries() - before

    def entries(self) -> set[str]:
        return {path.name for path in self.folder.glob("*.lmdb")}

    def data_keys(self, opts: list[str]) -> Iterator[str]:
        cfg = load_config(QUICKSTART, opts)
        yield from (f"DATA.{key}" for key in flat_keys(cfg.DATA))


def test_every_data_setting_is_classified_as_changing_the_cached_samples_or_not(
    folders: dict[str, str], tmp_path: Path
) -> None:
    """Catches a new ``DATA`` key (or one of a part's keys) that nobody decided about."""
    pipeline = Pipeline(tmp_path, folders)
    cases = CHANGES_SAMPLES + KEEPS_SAMPLES
    covered = {case.key for case in cases} | NOT_CONTENT
    seen: set[str] = set()
    for case in cases:
        for opts in (pipeline.opts(case.context), pipeline.opts(case.context, case.change)):
            seen |= set(pipeline.data_keys(opts))
    assert seen - covered == set(), "data settings no case changes"


@pytest.mark.parametrize(
    "cases", [CHANGES_SAMPLES, KEEPS_SAMPLES], ids=["changes_samples", "keeps_samples"]
)
def test_the_cache_serves_exactly_the_samples_of_the_settings_asked_for(
    cases: list[Case], folders: dict[str, str], tmp_path: Path
) -> None:
    """Catches a sample setting left out of the cache key (e.g. the image size, the data set's
    node, the split, the centre bias, the segments' node or the segmenter's own key, the seed of
    the encoder k-means runs): the changed setting would be served the reference's samples. Also
    catches a key holding a setting that comes after the cache (e.g. the whole ``DATA`` node, the
    transforms or ``SEED``): the reference's cache would not be reused."""
    pipeline = Pipeline(tmp_path, folders)
    for case in cases:
        reference = pipeline.opts(case.context)
        pipeline.cached(reference)  # the reference's cache, built (or found) first
        changed = pipeline.opts(case.context, case.change)
        served, made = pipeline.cached(changed)
        fresh = pipeline.fresh(changed)
        where = f"{case.key} ({' '.join(case.change)})"
        assert same(served, fresh), f"{where}: the cache served samples of other settings"
        if case in CHANGES_SAMPLES:
            assert not same(fresh, pipeline.fresh(reference)), f"{where} changes no sample"
            assert made, f"{where}: no cache was made for the new samples"
        else:
            assert not made, f"{where} changes no sample but made caches {made}"


def test_editing_a_data_file_in_place_changes_the_cache(
    folders: dict[str, str], tmp_path: Path
) -> None:
    """Catches a data-set fingerprint blind to the files' content: a stimulus replaced by another
    image, then one fixation moved by a pixel with the file's length unchanged (so only its
    modification time tells), must each be served fresh samples, not the cached ones."""
    root = tmp_path / "data" / "osie_part"
    shutil.copytree(folders["csv_a"], root)
    pipeline = Pipeline(tmp_path / "cache", folders)
    pipeline.folder.mkdir()
    opts = pipeline.opts(csv_data(str(root)))
    before = items([*opts, "DATA.CACHE.DIR", "null"])
    pipeline.cached(opts)
    first, other = sorted((root / "stimuli").iterdir())[0], next(Path(folders["csv_b"]).glob("*/*"))
    table = root / "fixations.csv"
    header, row, *rows = table.read_text().splitlines()
    x = row.split(",")[3]
    moved = row.replace(f",{x},", f",{float(x) + 1:.{len(x.split('.')[1])}f},", 1)
    assert len(moved) == len(row) and moved != row
    edits = {
        "a stimulus replaced": lambda: shutil.copyfile(other, first),
        "a fixation moved": lambda: table.write_text("\n".join([header, moved, *rows]) + "\n"),
    }
    for what, edit in edits.items():
        edit()
        fresh = items([*opts, "DATA.CACHE.DIR", "null"])
        assert not same(fresh, before), f"{what}: no sample changed"
        served, made = pipeline.cached(opts)
        assert same(served, fresh) and made, f"{what}: the cache served the old samples"
        before = fresh


def _versioned_steps(samples: Any) -> list[type]:
    """The classes with a code ``VERSION`` among the per-image steps below ``samples``."""
    steps, stack = [], [samples]
    while stack:
        step = stack.pop()
        if hasattr(type(step), "VERSION"):
            steps.append(type(step))
        stack += [v for k, v in vars(step).items() if k == "images" or isinstance(v, Segmenter)]
    return steps


@pytest.mark.parametrize(
    ("context", "expected"),
    [
        ((), {"ImageSamples", "FixationSamples"}),
        (segment_files("{segments_a}"),
         {"ImageSamples", "FixationSamples", "SegmentedSamples", "SegmentFiles"}),
        (tuple(KMEANS),
         {"ImageSamples", "FixationSamples", "SegmentedSamples", "KMeansSegmenter"}),
    ],
    ids=["fixations", "segment_files", "kmeans"],
)  # fmt: skip
def test_each_cached_steps_code_version_changes_the_cache(
    context: tuple[str, ...],
    expected: set[str],
    folders: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Catches the code versions left out of the key, or a step (resizing, fixations and centre
    bias, segments, a segmenter) whose version is not among them: bumping that step's
    ``VERSION``, as a change to its code must, has to make a new cache."""
    pipeline = Pipeline(tmp_path, folders)
    opts = pipeline.opts(context)
    cfg = load_config(QUICKSTART, [*opts, "DATA.CACHE.DIR", "null"])
    splits = build_splits(cfg, gaze_dataset(cfg))
    chain = build_samples(cfg, splits.train, "train", fit_centerbias(cfg, splits.train),
                          build_segmenter(cfg), transformed=False)  # fmt: skip
    steps = _versioned_steps(chain)
    assert {step.__name__ for step in steps} == expected
    pipeline.cached(opts)
    for step in steps:
        with monkeypatch.context() as patch:
            patch.setattr(step, "VERSION", step.VERSION + 1)
            _, made = pipeline.cached(opts)
        assert made, f"{step.__name__}.VERSION bumped, yet the old cache was served"
