"""DinoGaze-SPADE: every ablation config trains a few steps; segments, painting, scanpath items."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from code.config import load_config
from code.data.batch import Collate
from code.data.gaze import Fixations, GazeDataset, Scanpath, Stimulus
from code.data.samples import FixationSamples, ImageSamples, ScanpathSamples
from code.data.segments import SegmentedSamples, SegmentFiles
from code.engine.checkpoint import Checkpointer
from code.main import main
from code.models.layers.segments import segment_membership, semantic_painting
from code.models.segmenters import KMeansSegmenter
from code.models.shapes import ShapeSpec

ABLATIONS = sorted(
    p
    for p in Path("configs/01_dinogaze_spade").rglob("*.yaml")
    if "_base_" not in p.parts and p.name != "pipeline.yaml"
)

TINY_DATA = [
    "DATA.DATASET.NAME", "generated",
    "DATA.DATASET.GENERATED.NUM_IMAGES", "12",
    "DATA.DATASET.GENERATED.HEIGHT", "42",
    "DATA.DATASET.GENERATED.WIDTH", "56",
    "DATA.DATASET.GENERATED.NUM_SUBJECTS", "3",
    "DATA.DATASET.GENERATED.FIXATIONS_PER_SCANPATH", "4",
    "DATA.DATASET.GENERATED.SEED", "0",
    "DATA.SPLIT.TEST_FRACTION", "0.25",
    "DATA.SPLIT.FOLDS", "null",
    "DATA.SPLIT.FOLD", "null",
    "TRAIN.INIT.CHECKPOINT", "null",
    "DATA.IMAGE_SIZE", "[42, 56]",
    "DATA.BATCH_SIZE", "4",
    "DATA.NUM_WORKERS", "0",
    "TRAIN.EPOCHS", "1",
    "EVAL.CENTERBIAS_FOLDS", "2",
    "EVAL.NUM_OVERLAYS", "1",
]  # fmt: skip


def _tiny_opts(path: Path, tmp_path: Path) -> list[str]:
    """Shrink a config to seconds: tiny generated data, small ViT with random weights."""
    cfg = load_config(path, TINY_DATA)
    opts = [*TINY_DATA, "OUTPUT_DIR", str(tmp_path / "run"), "DATA.CACHE.DIR", str(tmp_path)]
    if cfg.MODEL.ENCODER.NAME == "dinov2":
        opts += [
            "MODEL.ENCODER.DINOV2.ARCH", "vit_small_patch14_dinov2",
            "MODEL.ENCODER.DINOV2.LAYERS", "[0, 1]",
            "MODEL.ENCODER.DINOV2.WEIGHTS", "null",
        ]  # fmt: skip
    if cfg.DATA.SEGMENTS.NAME == "files":  # no SAM files here: segments by k-means instead
        opts += [
            "DATA.SEGMENTS.NAME", "kmeans",
            "DATA.SEGMENTS.KMEANS.NUM_SEGMENTS", "4",
            "DATA.SEGMENTS.KMEANS.ITERATIONS", "3",
        ]  # fmt: skip
    return opts


@pytest.mark.parametrize("path", ABLATIONS, ids=[str(p.relative_to("configs")) for p in ABLATIONS])
def test_ablation_config_trains_and_evaluates(path: Path, tmp_path: Path) -> None:
    """A smoke test over the ablation configs, on purpose (tiny models, one short run each):
    each trains, evaluates to finite scores and caches its segments. The scores' values are
    checked by the metric and evaluation tests."""
    report = main(["--cfg", str(path), "--opts", *_tiny_opts(path, tmp_path)])
    assert np.isfinite(report["metrics"]["IG"]) and np.isfinite(report["metrics"]["LL"])
    assert Checkpointer(tmp_path / "run").best.is_file()
    if load_config(path, []).DATA.SEGMENTS.NAME != "none":
        assert list(tmp_path.glob("generated-train-*.lmdb"))  # segments cached with the data


def test_ablation_configs_cover_the_issue() -> None:
    cpu = {p.stem for p in ABLATIONS if p.parent.name == "cpu_osie"}
    assert cpu == {"no_injection", "spade", "spade_static", "cross_attention", "scanpath"}


def test_painting_fills_each_segment_with_its_mean_feature() -> None:
    segments = torch.zeros(1, 6, 8, dtype=torch.int64)
    segments[0, :, 4:] = 1  # left half 0, right half 1
    features = torch.arange(12.0).view(1, 1, 3, 4)  # stride 2: one position per 2x2 pixels
    membership = segment_membership(segments, 2, (3, 4))
    assert membership.shape == (1, 2, 3, 4) and torch.all(membership.sum(1) == 1)
    painted = semantic_painting(features, membership)[0, 0]
    left, right = features[0, 0, :, :2].mean(), features[0, 0, :, 2:].mean()
    assert torch.allclose(painted[:, :2], left.expand(3, 2), atol=1e-4)
    assert torch.allclose(painted[:, 2:], right.expand(3, 2), atol=1e-4)


def test_membership_counts_pixel_fractions_and_padding() -> None:
    segments = torch.tensor([[[0, 0, 1], [2, 2, 2]]])  # 2x3 image, stride 2 -> 1x2 grid
    membership = segment_membership(segments, 2, (1, 2))[0, :, 0]
    # cell 0 covers pixels (0,0),(0,1),(1,0),(1,1); cell 1 covers (0,2),(1,2) + 2 padding pixels
    assert membership.tolist() == [[0.5, 0.0], [0.0, 0.25], [0.5, 0.25]]


def _dataset(tmp_path: Path, sizes: list[tuple[int, int]]) -> GazeDataset:
    stimuli = []
    for i, (h, w) in enumerate(sizes):
        path = tmp_path / f"img{i}.png"
        Image.fromarray(np.full((h, w, 3), 60 * i, np.uint8)).save(path)
        stimuli.append(Stimulus(f"img{i}.png", h, w, path))

    def scanpath(image: int, subject: int, xs: list[float], ys: list[float]) -> Scanpath:
        times = np.full(len(xs), np.nan)
        return Scanpath(image, subject, np.array(xs), np.array(ys), times, times)

    scanpaths = [
        scanpath(0, 0, [1.0, 5.0, 9.0, 3.0], [2.0, 4.0, 6.0, 1.0]),
        scanpath(0, 1, [7.0], [7.0]),
        scanpath(1, 0, [2.0, 3.0], [2.0, 3.0]),
    ]
    return GazeDataset("toy", stimuli, Fixations.from_scanpaths(scanpaths), Counter(), Counter())


def _images(dataset: GazeDataset) -> FixationSamples:
    """Per-image samples at the 10 x 12 images' own size, with a flat centre bias."""
    flat = lambda h, w: np.full((h, w), -np.log(h * w))  # noqa: E731
    return FixationSamples(ImageSamples(dataset, (10, 12)), dataset, flat)


def test_scanpath_items_hold_each_fixation_with_its_history(tmp_path: Path) -> None:
    dataset = _dataset(tmp_path, [(10, 12), (10, 12)])
    samples = ScanpathSamples(_images(dataset), dataset, history_length=2, include_first=False)
    assert len(samples) == 2  # the one-fixation scanpath has nothing to predict
    batch = Collate(samples.fields.values())([samples[0], samples[1]])
    assert batch.fixations[0].tolist() == [[5.0, 4.0], [9.0, 6.0], [3.0, 1.0]]
    assert batch.history[0, 0].tolist() == [[1.0, 2.0], [0.0, 0.0]]
    assert batch.history_mask[0].tolist() == [[True, False], [True, True], [True, True]]
    assert batch.history[0, 2].tolist() == [[9.0, 6.0], [5.0, 4.0]]  # most recent first
    assert batch.fixation_mask[1].tolist() == [True, False, False]
    assert batch.fixation_rows[1].tolist() == [6, -1, -1]
    with_first = ScanpathSamples(_images(dataset), dataset, history_length=2, include_first=True)
    assert len(with_first) == 3 and not with_first[0]["history_mask"][0].any()


def test_segment_files_any_size_png_or_npy_with_a_counted_fallback(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    dataset = _dataset(tmp_path, [(10, 12), (10, 12), (10, 12)])
    folder = tmp_path / "segments"
    folder.mkdir()
    labels = np.zeros((5, 6), np.int64)
    labels[:, 3:] = 70  # SAM-style ids with gaps, at half resolution
    np.save(folder / "img0.npy", labels)
    Image.fromarray((labels * 2).astype(np.uint8)).save(folder / "img1.png")
    samples = SegmentedSamples(_images(dataset), dataset, SegmentFiles(str(folder)))
    assert samples.fallback_count == 1 and "1 of 3 images have no segment map" in caplog.text
    for i in (0, 1):
        seg = samples[i]["segments"]
        assert seg.shape == (10, 12) and seg[:, :6].max() == 0 and seg[:, 6:].min() == 1
    assert np.all(samples[2]["segments"] == 0)  # the fallback: one segment, the whole image


class _PixelEncoder(torch.nn.Module):
    """The image itself as a stride-1 feature map (k-means then clusters colours)."""

    def __init__(self) -> None:
        super().__init__()
        self.output_shapes = {"rgb": ShapeSpec(3, 1)}

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"rgb": image}


def test_kmeans_segments_separate_distinct_regions(tmp_path: Path) -> None:
    image = np.zeros((8, 10, 3), np.uint8)
    image[:, 5:] = 255
    image[6:, :5] = (255, 0, 0)
    labels = KMeansSegmenter(3, 10, _PixelEncoder)(image, None)
    assert len(np.unique(labels)) == 3
    assert len(np.unique(labels[:6, :5])) == len(np.unique(labels[:, 5:])) == 1
    assert labels[0, 0] != labels[0, 9] != labels[7, 0]


def test_predict_writes_densities_overlays_and_scanpaths_for_images_of_any_size(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from code.evaluate import main as evaluate
    from code.predict import main as predict

    config = Path("configs/01_dinogaze_spade/cpu_osie/scanpath.yaml")
    main(["--cfg", str(config), "--opts", *_tiny_opts(config, tmp_path)])
    images = tmp_path / "images"
    images.mkdir()
    # wide and wide2 have one input size: the model sees them in one batch
    sizes = {"wide.png": (30, 70), "tall.jpg": (64, 40), "tiny.png": (9, 11), "wide2.png": (30, 70)}
    rng = np.random.default_rng(0)
    for name, (h, w) in sizes.items():
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(images / name)
    (images / "broken.jpg").write_bytes(b"not a jpeg")
    (images / "notes.txt").write_text("not an image, not an input")
    out = tmp_path / "predictions"
    checkpoint = ["--checkpoint", str(Checkpointer(tmp_path / "run").best)]
    scanpath_options = ["--scanpaths", "3", "--scanpath-length", "4"]
    result = predict([*checkpoint, "--input", str(images), "--output", str(out), *scanpath_options])
    assert result["skipped"] == ["broken.jpg"] and sorted(result["written"]) == sorted(sizes)
    for name, size in sizes.items():
        stem = Path(name).stem
        log_density = np.load(out / "densities" / f"{stem}.npy")
        assert log_density.shape == size
        assert abs(np.logaddexp.reduce(log_density.astype(np.float64).ravel())) < 1e-3
        scanpaths = np.load(out / "scanpaths" / f"{stem}_scanpaths.npy")
        assert scanpaths.shape == (3, 4, 2)
        assert np.all((scanpaths >= 0) & (scanpaths < [size[1], size[0]]))
        assert np.allclose(scanpaths[:, 0], [size[1] / 2, size[0] / 2])  # OSIE-style start
        with Image.open(out / "scanpaths" / f"{stem}_scanpaths.png") as picture:
            assert picture.size == (size[1], size[0])
        with Image.open(out / "overlays" / f"{stem}_overlay.png") as picture:
            assert picture.size[1] == size[0] and picture.size[0] > size[1]  # + its colour bar
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match=r"empty: no image files"):
        predict([*checkpoint, "--input", str(empty), "--output", str(tmp_path / "none")])

    # predict -> evaluate on real OSIE images, the outputs taken as they are
    osie_images = tmp_path / "osie_images"
    osie_images.mkdir()
    names = ["1001.jpg", "1002.jpg", "1003.jpg"]
    for name in names:
        shutil.copy(shared_data / "osie" / "stimuli" / name, osie_images / name)
    (tmp_path / "images.txt").write_text("\n".join(names) + "\n")
    osie_out = tmp_path / "osie_predictions"
    predict(
        [*checkpoint, "--input", str(osie_images), "--output", str(osie_out), *scanpath_options]
    )
    dataset = ["--dataset", "osie", "--root", str(shared_data / "osie")]
    evaluate(["saliency", *dataset, "--predictions", str(osie_out / "densities"),
              "--images", str(tmp_path / "images.txt"), "--kind", "log-density",
              "--opts", "EVAL.CENTERBIAS_FOLDS", "3",
              "--out", str(tmp_path / "saliency.json")])  # fmt: skip
    saliency = json.loads((tmp_path / "saliency.json").read_text())
    assert saliency["per_image"]["image"] == names and np.isfinite(saliency["metrics"]["IG"])
    scanpaths = ["scanpaths", *dataset, "--predictions", str(osie_out / "scanpaths.csv"),
                 "--out", str(tmp_path / "scanpaths.json")]  # fmt: skip
    # the README's command as written: no durations, so no temporal bins, for the humans too
    evaluate(scanpaths)
    scored = json.loads((tmp_path / "scanpaths.json").read_text())
    assert scored["n_images"] == 3 and scored["n_pairs"] == 3 * 3 * 15  # 3 samples x 15 humans
    assert np.isfinite(scored["metrics"]["ScanMatch"]) and "MM_duration" not in scored["metrics"]
    assert scored["temporal_bin_ms"] == 0 and "MM_duration" not in scored["human_ceiling"]
    evaluate([*scanpaths, "--opts", "SCANPATH.TEMPORAL_BIN_MS", "0", "--overwrite"])
    assert json.loads((tmp_path / "scanpaths.json").read_text()) == scored


def test_predict_exit_status_says_images_were_skipped(tmp_path: Path) -> None:
    config = Path("configs/01_dinogaze_spade/cpu_osie/no_injection.yaml")
    main(["--cfg", str(config), "--opts", *_tiny_opts(config, tmp_path)])
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(np.zeros((20, 30, 3), dtype=np.uint8)).save(images / "fine.png")
    (images / "broken.jpg").write_bytes(b"not a jpeg")
    command = [sys.executable, "-m", "code.predict",
               "--checkpoint", str(Checkpointer(tmp_path / "run").best),
               "--input", str(images), "--output", str(tmp_path / "out")]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 3, done.stderr
    assert "skipped broken.jpg" in done.stderr and "1 unreadable skipped: broken.jpg" in done.stdout


def test_spatial_model_is_scored_on_the_scanpath_models_fixations(tmp_path: Path) -> None:
    config = Path("configs/01_dinogaze_spade/cpu_osie/spade.yaml")
    scanpath_items = [
        "DATA.SAMPLES.NAME", "scanpath",
        "DATA.SAMPLES.SCANPATH.HISTORY_LENGTH", "3",
        "DATA.SAMPLES.SCANPATH.INCLUDE_FIRST", "false",
    ]  # fmt: skip
    report = main(["--cfg", str(config), "--opts", *_tiny_opts(config, tmp_path), *scanpath_items])
    assert report["baseline"]["conditional"]
    assert report["n_fixations"] == 3 * 3 * 3  # 3 test images x 3 subjects x (4 - first)
    assert set(report["metrics"]) == {"LL", "IG", "NSS", "AUC"}


def test_sampled_scanpaths_follow_the_seed_and_stay_in_the_image() -> None:
    from test_models import FULL_DATA_OPTS, _batch, _opts

    from code.models.build import build_model
    from code.models.decoders.scanpath import sample_scanpaths

    parts = {"ENCODER": "convnet", "BLOCK": "spade", "DECODER": "scanpath"}
    cfg = load_config(Path("configs/quickstart.yaml"), _opts(parts) + FULL_DATA_OPTS)
    model = build_model(cfg).eval()
    batch = _batch(45, 61)
    one = batch.first(1)
    draws = [
        sample_scanpaths(model, one, 4, 5, False, torch.Generator().manual_seed(seed))
        for seed in (1, 1, 2)
    ]
    assert draws[0].shape == (4, 5, 2) and torch.equal(draws[0], draws[1])
    assert not torch.equal(draws[0], draws[2])
    assert torch.all((draws[0] >= 0) & (draws[0] < torch.tensor([61.0, 45.0])))


@pytest.mark.slow
def test_cpu_saliency_model_beats_the_centre_bias_on_held_out_osie(
    shared_data: Path, tmp_path: Path
) -> None:
    """Real fixations: the no-injection CPU config, briefly trained from scratch (the README's
    table comes from the full runs of scripts/dinogaze_osie.sh)."""
    report = main(
        [
            "--cfg", "configs/01_dinogaze_spade/cpu_osie/no_injection.yaml",
            "--opts",
            "OUTPUT_DIR", str(tmp_path / "run"),
            "DATA.DATASET.OSIE.ROOT", str(shared_data / "osie"),
            "DATA.CACHE.DIR", str(tmp_path),
            "TRAIN.EPOCHS", "3",
        ]
    )  # fmt: skip
    assert report["n_images"] == 140
    assert report["metrics"]["IG"] > 0.05, report["metrics"]


def test_conditional_evaluation_handles_scanpaths_of_different_lengths(tmp_path: Path) -> None:
    from code.data.build import build_loader, build_samples
    from code.data.centerbias import CenterBias
    from code.engine.model_scoring import evaluate_scanpath_model
    from code.models.build import build_model

    config = Path("configs/01_dinogaze_spade/cpu_osie/scanpath.yaml")
    cfg = load_config(
        config,
        [*_tiny_opts(config, tmp_path), "DATA.IMAGE_SIZE", "[10, 12]", "DATA.CACHE.DIR", "null",
         "EVAL.SCANPATH_IMAGES", "null", "MODEL.ENCODER.CONVNET.CHANNELS", "[4]"],
    )  # fmt: skip
    dataset = _dataset(tmp_path, [(10, 12), (10, 12)])  # 3 + 0 and 1 fixations to predict
    centerbias = CenterBias(0.1, 0.1).fit(dataset)
    loader = build_loader(
        cfg, build_samples(cfg, dataset, "test", centerbias, None, transformed=False), train=False
    )
    report = evaluate_scanpath_model(
        cfg, build_model(cfg).eval(), dataset, loader, torch.device("cpu")
    )
    assert report["n_fixations"] == 4 and np.isfinite(report["metrics"]["LL"])
