"""Masked image modelling across eye movements: the seed's autoencoder and its masked loss."""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from code.config import ConfigError, flat_keys, load_config
from code.data.batch import Batch, Collate
from code.data.gaze import Fixations, GazeDataset, Scanpath, Stimulus
from code.data.samples import ImageSamples, ImageTargets
from code.data.transforms import RandomResizedCrop
from code.engine.checkpoint import Checkpointer, load_checkpoint
from code.main import main
from code.metrics.representation import CodeStatistics
from code.models.decoders.conv_reconstruction import ConvReconstructionDecoder
from code.models.decoders.reconstruction import masked_squared_error
from code.models.encoders.masked_convnet import MaskedConvNetEncoder
from code.models.input_stages.masking import (
    FixationDiscs,
    Foveate,
    Periphery,
    RandomPatches,
    central_disc_radius,
    outside_central_disc,
)
from code.models.layers.gaussian_blur import GaussianBlur
from code.predict import main as predict


def _batch(image: torch.Tensor, mask: torch.Tensor | None = None) -> Batch:
    n = len(image)
    return Batch(input=image, image_index=torch.arange(n),
                 original_size=torch.tensor([list(image.shape[-2:])] * n),
                 target=image.clone(), loss_mask=mask)  # fmt: skip


def _draw(stage, height: int, width: int, generator: torch.Generator | None) -> torch.Tensor:
    return stage.draw(_batch(torch.zeros(1, 3, height, width)), 0, generator)


def test_the_seed_autoencoder_maps_96_pixels_to_a_128x12x12_code_and_back() -> None:
    encoder = MaskedConvNetEncoder(channels=[32, 64, 128], blocks=3, outputs=[2])
    decoder = ConvReconstructionDecoder(encoder.output_shapes, channels=[128, 64, 32], blocks=2)
    image = torch.rand(2, 3, 96, 96)
    code = encoder(image)
    assert list(code) == ["stage2"] and code["stage2"].shape == (2, 128, 12, 12)
    assert isinstance(decoder.project, torch.nn.Identity)  # the code feeds the decoder as it is
    output = decoder(code, _batch(image))
    assert output.shape == (2, 3, 96, 96) and output.min() > 0 and output.max() < 1
    # residual blocks: 3 per stage, the first of each with a 1x1 skip (channels and stride change)
    skips = [m.skip for stage in encoder.stages for m in stage]
    assert [s is not None for s in skips] == [True, False, False] * 3
    odd = torch.rand(1, 3, 50, 70)  # any size: cropped back to the image
    assert decoder(encoder(odd), _batch(odd)).shape == (1, 3, 50, 70)


def test_masked_loss_is_the_mean_squared_error_where_the_mask_is_one() -> None:
    target = torch.zeros(1, 3, 2, 2)
    prediction = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]]).expand(1, 3, 2, 2)
    mask = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]]])
    batch = _batch(target, mask)
    total, count = masked_squared_error(prediction, batch)
    assert total.item() == 3 * (1 + 16) and count.item() == 3 * 2  # by hand: (1² + 4²) per channel
    total, count = masked_squared_error(prediction, _batch(target))
    assert total.item() == 3 * (1 + 4 + 9 + 16) and count.item() == 12


def test_random_patches_hide_exactly_the_floor_of_ratio_times_the_patch_grid() -> None:
    stage = RandomPatches(ratio=0.6, patch_size=8, fill="mean", blur_sigma=1.0).train()
    for height, width in ((96, 96), (100, 70)):  # 100x70: 12 x 8 whole patches, rest visible
        mask = _draw(stage, height, width, torch.Generator().manual_seed(0))
        grid = (height // 8) * (width // 8)
        assert mask.sum() == math.floor(grid * 0.6) * 64
        patches = mask[: height // 8 * 8, : width // 8 * 8].unfold(0, 8, 8).unfold(1, 8, 8)
        assert set(patches.reshape(grid, 64).mean(1).tolist()) == {0.0, 1.0}  # whole patches
        assert mask[height // 8 * 8 :].sum() == 0 and mask[:, width // 8 * 8 :].sum() == 0
    first, second = _draw(stage, 96, 96, None), _draw(stage, 96, 96, None)
    assert not torch.equal(first, second)  # redrawn per item in training


def test_periphery_leaves_a_central_disc_of_the_exact_radius_visible() -> None:
    stage = Periphery(ratio=0.8, fill="mean", blur_sigma=1.0)
    radius = math.sqrt(96 * 96 * 0.2 / math.pi)
    assert central_disc_radius(96, 96, 0.8) == pytest.approx(radius, rel=1e-12)
    mask = _draw(stage, 96, 96, None)
    visible = 1 - mask
    assert visible.sum().item() == pytest.approx(math.pi * radius**2, rel=0.02)
    assert visible[48, 48] == 1 and mask[0, 0] == 1
    assert visible[48, 48 + int(radius) - 1] == 1 and mask[48, 48 + int(radius) + 1] == 1


def test_masks_are_fixed_per_image_in_evaluation_and_the_blur_fill_survives() -> None:
    ys, xs = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    image = torch.stack([xs / 63, ys / 63, (xs + ys) / 126])[None].expand(2, 3, 64, 64)
    batch = _batch(image.contiguous())
    stage = RandomPatches(ratio=0.5, patch_size=8, fill="blur", blur_sigma=2.0).eval()
    once, again = stage(batch), stage(batch)
    assert torch.equal(once.loss_mask, again.loss_mask)
    assert not torch.equal(once.loss_mask[0], once.loss_mask[1])  # another image, another mask
    hidden = once.loss_mask.expand_as(image).bool()
    blurred = GaussianBlur(2.0, learnable=False)(image)
    assert torch.allclose(once.input[hidden], blurred[hidden])  # what the encoder sees there
    assert torch.equal(once.input[~hidden], image[~hidden]) and torch.equal(once.target, image)
    mean_fill = Periphery(ratio=0.5, fill="mean", blur_sigma=2.0).eval()(batch)
    hidden = mean_fill.loss_mask.expand_as(image).bool()
    colour = image.mean(dim=(2, 3), keepdim=True).expand_as(image)
    assert torch.allclose(mean_fill.input[hidden], colour[hidden])
    with pytest.raises(ValueError, match=r"RATIO must be in \[0, 1\), got 1\.0"):
        Periphery(ratio=1.0, fill="mean", blur_sigma=1.0)


GENERATED = [
    "DATA.DATASET.NAME", "generated",
    "DATA.DATASET.GENERATED.HEIGHT", "48",
    "DATA.DATASET.GENERATED.WIDTH", "48",
    "DATA.DATASET.GENERATED.NUM_SUBJECTS", "2",
    "DATA.DATASET.GENERATED.FIXATIONS_PER_SCANPATH", "2",
    "DATA.DATASET.GENERATED.SEED", "0",
    "DATA.CACHE.DIR", "null",
    "DATA.IMAGE_SIZE", "[48, 48]",
    "DATA.BATCH_SIZE", "8",
    "MODEL.ENCODER.MASKED_CONVNET.CHANNELS", "[16, 32, 32]",
    "MODEL.ENCODER.MASKED_CONVNET.BLOCKS", "2",
    "MODEL.DECODER.CONV_RECONSTRUCTION.CHANNELS", "[32, 32, 16]",
    "MODEL.DECODER.CONV_RECONSTRUCTION.BLOCKS", "1",
    "TRACKING.WANDB.ENABLED", "false",
    "EVAL.NUM_OVERLAYS", "2",
]  # fmt: skip


def _pretrain(tmp_path: Path, images: int, epochs: int, stage: str = "random_patches") -> dict:
    opts = [*GENERATED, "DATA.DATASET.GENERATED.NUM_IMAGES", str(images)]
    if stage == "identity":
        opts += ["MODEL.INPUT_STAGE.NAME", "identity"]
    return main(
        ["--cfg", "configs/04_focus_mim/cpu_osie/random_patches.yaml", "--opts", *opts,
         "OUTPUT_DIR", str(tmp_path / "run"), "TRAIN.EPOCHS", str(epochs)]
    )  # fmt: skip


def test_mim_pretraining_runs_through_the_entry_point(tmp_path: Path) -> None:
    report = _pretrain(tmp_path, images=40, epochs=1)
    assert report["input_stage"] == "random_patches" and report["n_images"] == 8
    assert report["metrics"]["masked_mse"] > 0 and report["metrics"]["fill_mse"] > 0
    # the mean fill is the image's mean colour: the two baselines agree
    assert report["metrics"]["mean_colour_mse"] == pytest.approx(report["metrics"]["fill_mse"])
    epochs = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    assert "val_fill_mse" in next(r for r in epochs if r["kind"] == "epoch")
    assert len(list((tmp_path / "run" / "overlays").glob("*_reconstruction.png"))) == 2
    plain = _pretrain(tmp_path / "plain", images=40, epochs=1, stage="identity")
    assert plain["metrics"]["fill_mse"] == 0  # nothing hidden: the loss is over the whole image
    # too few images for a validation split: refused, naming the key, before any training
    with pytest.raises(ConfigError, match=r"the val split is empty; raise DATA\.SPLIT\.VAL_"):
        _pretrain(tmp_path / "few", images=5, epochs=1)
    assert not Checkpointer(tmp_path / "few" / "run").last.exists()


@pytest.mark.slow
def test_mim_pretraining_reconstructs_hidden_patches_better_than_the_fill(tmp_path: Path) -> None:
    # at the config's LR (the seed's 5e-4); 2e-3 leaves this small model at the mean colour
    metrics = _pretrain(tmp_path, images=200, epochs=30)["metrics"]
    assert metrics["masked_mse"] < 0.85 * metrics["fill_mse"], metrics  # it learned


def _scanpath_batch(paths: list[list[tuple[float, float]]], size: int = 48) -> Batch:
    """One image with the given scanpaths, padded as the data layer pads them."""
    longest = max(len(p) for p in paths)
    points = torch.zeros(1, len(paths), longest, 2)
    valid = torch.zeros(1, len(paths), longest, dtype=torch.bool)
    for s, path in enumerate(paths):
        points[0, s, : len(path)] = torch.tensor(path)
        valid[0, s, : len(path)] = True
    batch = _batch(torch.rand(1, 3, size, size))
    return dataclasses.replace(batch, scanpaths=points, scanpath_mask=valid)


def test_fixation_discs_show_the_first_fixations_of_one_recorded_scanpath() -> None:
    stage = FixationDiscs(count=2, radius=5.0, fill="mean", blur_sigma=1.0)
    # scanpath 0 is padding only; scanpath 1 has three fixations, the third beyond ``count``
    batch = _scanpath_batch([[(0.0, 0.0)], [(10.5, 10.5), (30.5, 20.5), (40.5, 40.5)]])
    batch.scanpath_mask[0, 0] = False
    mask = stage.draw(batch, 0, None)
    ys, xs = torch.meshgrid(torch.arange(48) + 0.5, torch.arange(48) + 0.5, indexing="ij")
    near = lambda x, y: torch.hypot(xs - x, ys - y) <= 5.0  # noqa: E731
    assert torch.equal(mask == 0, near(10.5, 10.5) | near(30.5, 20.5))  # exact discs, first two
    assert mask[40, 40] == 1 and mask[0, 0] == 1
    # several scanpaths: each item shows one of them, chosen anew in training
    batch = _scanpath_batch([[(10.5, 10.5)], [(37.5, 37.5)]])
    shown = {int(stage.draw(batch, 0, None)[37, 37].item()) for _ in range(40)}
    assert shown == {0, 1}
    # none left (a crop moved every fixation out): nothing is visible
    batch.scanpath_mask[:] = False
    assert stage.draw(batch, 0, None).min() == 1


def test_foveation_draws_each_pixel_from_the_pyramid_level_of_its_eccentricity() -> None:
    stage = Foveate(ratio=0.9, levels=3, sigma=1.0, pixels_per_degree=4.0, alpha=2.0)
    image = torch.rand(1, 3, 64, 64)
    batch = stage(_batch(image))
    radius = central_disc_radius(64, 64, 0.9)
    inside = torch.equal(batch.loss_mask[0, 0] == 0, outside_central_disc(64, 64, 0.9) == 0)
    assert inside and torch.equal(batch.input[..., 32, 32], image[..., 32, 32])
    # level 1 at θ = α (R = 1/2), α · 4 px beyond the disc's edge; just beyond it, straight right
    level = stage.level(64, 64)
    pyramid = stage.pyramid(image)
    column = next(c for c in range(32, 64) if 1 <= level[32, c].item() < 1.3)
    weight = level[32, column] - 1  # between levels 1 and 2
    expected = pyramid[1, ..., 32, column] * (1 - weight) + pyramid[2, ..., 32, column] * weight
    assert torch.allclose(batch.input[..., 32, column], expected, atol=1e-6)
    beyond = math.hypot(column + 0.5 - 32, 0.5) - radius
    assert level[32, column].item() == pytest.approx(math.log2(1 + beyond / 4.0 / 2.0), abs=1e-5)
    assert torch.allclose(batch.input[..., 0, 0], pyramid[2, ..., 0, 0])  # clipped: coarsest
    # the pyramid: each level is the previous one blurred and halved
    halved = GaussianBlur(1.0, learnable=False)(image)[..., ::2, ::2]
    assert torch.allclose(
        pyramid[1], torch.nn.functional.interpolate(halved, size=(64, 64), mode="bilinear")
    )


def test_foreground_weights_scale_the_masked_loss() -> None:
    target = torch.zeros(1, 3, 2, 2)
    prediction = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]]).expand(1, 3, 2, 2)
    batch = dataclasses.replace(
        _batch(target, torch.tensor([[[[1.0, 1.0], [0.0, 1.0]]]])),
        foreground=torch.tensor([[[0.5, 0.0], [1.0, 1.0]]]),
    )
    total, count = masked_squared_error(prediction, batch)
    # weights m·w = (0.5, 0, 0, 1): (0.5·1 + 1·16) per channel over (0.5 + 1) per channel
    assert total.item() == pytest.approx(3 * 16.5) and count.item() == pytest.approx(3 * 1.5)


def test_code_statistics_match_a_direct_computation() -> None:
    code = torch.rand(6, 4, 3, 2) * (torch.rand(6, 4, 3, 2) > 0.5)
    code[:, 3] = 0.0  # a channel that never responds: left out of the correlations
    statistics = CodeStatistics(4, 3, 2)
    for part in code.split([2, 4]):  # two batches add up like one
        statistics.update(part)
    measured = statistics.compute(statistics.state())
    r = code.double().flatten(1).numpy()  # images x units
    n, d = r.shape

    def vinje_gallant(x: np.ndarray, count: int) -> float:
        return (1 - x.mean() ** 2 / (x**2).mean()) / (1 - 1 / count)

    units = [vinje_gallant(r[:, u], n) for u in range(d) if (r[:, u] ** 2).sum() > 0]
    assert measured["unit_sparsity"] == pytest.approx(np.mean(units))
    population = [vinje_gallant(r[i], d) for i in range(n)]
    assert measured["population_sparsity"] == pytest.approx(np.mean(population))
    samples = code.double().permute(0, 2, 3, 1).reshape(-1, 4)[:, :3].numpy()
    correlation = np.corrcoef(samples.T)
    off = correlation[~np.eye(3, dtype=bool)]
    assert measured["decorrelation"] == pytest.approx(np.mean(off**2))


def _viewed_images(tmp_path: Path) -> GazeDataset:
    """Three 40x60 images; the first two viewed by two subjects, the third by none."""

    def picture(i: int) -> np.ndarray:
        return np.full((40, 60, 3), 50 * i, dtype=np.uint8)

    stimuli = [Stimulus(f"im{i}.png", 40, 60, None, generate=functools.partial(picture, i))
               for i in range(3)]  # fmt: skip

    def scanpath(image: int, subject: int, x: list[float], y: list[float]) -> Scanpath:
        unknown = np.full(len(x), np.nan)
        return Scanpath(image, subject, np.array(x), np.array(y), unknown, unknown)

    paths = [scanpath(0, 0, [10.0, 20.0], [5.0, 30.0]), scanpath(0, 1, [59.0], [39.0]),
             scanpath(1, 0, [1.0], [2.0])]  # fmt: skip
    return GazeDataset("viewed", stimuli, Fixations.from_scanpaths(paths))


def test_image_items_carry_scanpaths_and_foreground_weights_and_count_what_they_leave_out(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = _viewed_images(tmp_path)
    images = ImageSamples(data, (20, 30))  # half size: points scale by 1/2
    items = ImageTargets(images, data, scanpaths=True, foreground_dir=None,
                         drop_without_foreground=False)  # fmt: skip
    assert len(items) == 2 and "1 image(s) without a scanpath left out" in caplog.text
    first = items[0]
    np.testing.assert_allclose(first["scanpaths"], [[[5, 2.5], [10, 15]], [[29.5, 19.5], [0, 0]]])
    np.testing.assert_array_equal(first["scanpath_mask"], [[True, True], [True, False]])
    batch = Collate(items.fields.values())([items[0], items[1]])
    assert batch.scanpaths.shape == (2, 2, 2, 2) and batch.scanpath_mask[1].sum() == 1
    folder = tmp_path / "foreground"
    folder.mkdir()
    weights = np.zeros((4, 6), np.float32)
    weights[:2, :3] = 1.0  # the top-left quarter
    np.save(folder / "im0.npy", weights)
    Image.fromarray(np.full((80, 120), 255, np.uint8)).save(folder / "im2.png")
    kept = ImageTargets(images, data, scanpaths=False, foreground_dir=str(folder),
                        drop_without_foreground=True)  # fmt: skip
    assert len(kept) == 2 and "1 image(s) without a foreground file" in caplog.text
    foreground = kept[0]["foreground"]
    assert foreground.shape == (20, 30) and foreground[2, 2] == 1 and foreground[18, 28] == 0
    assert kept[1]["foreground"].min() == 1  # the png, grey 255 -> 1
    weighted = ImageTargets(images, data, scanpaths=False, foreground_dir=str(folder),
                            drop_without_foreground=False)  # fmt: skip
    assert len(weighted) == 3 and weighted[1]["foreground"].min() == 1  # no file: weight 1
    np.save(folder / "im1.npy", np.ones((60, 40), np.float32))  # portrait: another image's
    with pytest.raises(ValueError, match=r"im1\.npy: 40x60 does not have the aspect of its image"):
        ImageTargets(images, data, False, str(folder), False)  # before any item is read
    upsampled = ImageSamples(data, (40, 61))  # one pixel wider than the 60x40 images
    with pytest.raises(ValueError, match=r"3 image\(s\) of viewed are smaller than "
                       r"DATA.IMAGE_SIZE \[40, 61\] \(first: 'im0.png', 60x40\)"):  # fmt: skip
        ImageTargets(upsampled, data, False, None, False)


def test_a_random_resized_crop_moves_scanpaths_and_foreground_with_the_image() -> None:
    image = np.zeros((40, 60, 3), np.uint8)
    image[20, 30] = 255  # one bright pixel, a fixation on it, the foreground there
    foreground = np.zeros((40, 60), np.float32)
    foreground[20, 30] = 1.0
    sample = {"image": image, "foreground": foreground,
              "scanpaths": np.array([[[30.5, 20.5], [1.0, 1.0]]], np.float32),
              "scanpath_mask": np.array([[True, True]])}  # fmt: skip
    crop = RandomResizedCrop(scale=[0.2, 0.3], ratio=[0.75, 1.33])
    seen_inside = 0
    for seed in range(20):
        rng = np.random.default_rng(seed)
        top, left, h, w = crop.box(40, 60, np.random.default_rng(seed))
        out = crop(sample, rng)
        inside = top <= 20.5 < top + h and left <= 30.5 < left + w
        corner = top <= 1 < top + h and left <= 1 < left + w
        assert out["scanpath_mask"][0].tolist() == [inside, corner]  # the rest masked out
        if inside:  # the point lands where the image's and the foreground's bright spot went
            seen_inside += 1
            x, y = out["scanpaths"][0, 0]
            bright = np.unravel_index(out["image"][..., 0].argmax(), (40, 60))
            spot = np.unravel_index(out["foreground"].argmax(), (40, 60))
            assert bright == spot
            assert abs(x - (bright[1] + 0.5)) <= 60 / w and abs(y - (bright[0] + 0.5)) <= 40 / h
    assert 0 < seen_inside < 20  # both cases were drawn


def _write_stl10(root: Path) -> None:
    """STL-10 binaries in the release's layout: class 0 images darker on the left, class 1 on
    the right (labels 1 and 2 on disk), plus unlabeled images."""
    rng = np.random.default_rng(0)

    def images(labels: np.ndarray) -> np.ndarray:
        pixels = rng.integers(60, 200, (len(labels), 96, 96, 3)).astype(np.int64)
        for i, label in enumerate(labels):
            side = slice(0, 48) if label == 0 else slice(48, 96)
            pixels[i, :, side] //= 3
        return pixels.astype(np.uint8)

    root.mkdir()
    for split, count in (("train", 60), ("test", 40), ("unlabeled", 48)):
        labels = rng.integers(0, 2, count)
        # column-major planes, as the release stores them: (n, c, col, row)
        images(labels).transpose(0, 3, 2, 1).tofile(root / f"{split}_X.bin")
        if split != "unlabeled":
            (labels + 1).astype(np.uint8).tofile(root / f"{split}_y.bin")


SMALL_MIM = ["MODEL.ENCODER.MASKED_CONVNET.CHANNELS", "[8, 16, 16]",
             "MODEL.ENCODER.MASKED_CONVNET.BLOCKS", "1",
             "MODEL.DECODER.NAME", "linear_probe",  # replaced below for pretraining
             "TRACKING.WANDB.ENABLED", "false", "DATA.NUM_WORKERS", "0",
             "DATA.BATCH_SIZE", "16", "TRAIN.PRECISION", "fp32"]  # fmt: skip


def test_the_stl10_pretraining_and_linear_probe_configs_run_and_the_probe_learns(
    tmp_path: Path,
) -> None:
    root = tmp_path / "stl10_binary"
    _write_stl10(root)
    data = ["DATA.DATASET.STL10.ROOT", str(root), "TRAIN.EPOCHS", "1"]
    pretrain = [*SMALL_MIM[:4], *SMALL_MIM[6:], *data, "OUTPUT_DIR", str(tmp_path / "mim"),
                "MODEL.DECODER.CONV_RECONSTRUCTION.CHANNELS", "[16, 16, 8]",
                "MODEL.DECODER.CONV_RECONSTRUCTION.BLOCKS", "1",
                "DATA.SPLIT.VAL_FRACTION", "0.1", "DATA.SPLIT.TEST_FRACTION", "0.1"]  # fmt: skip
    report = main(["--cfg", "configs/04_focus_mim/stl10/random_patches.yaml", "--opts", *pretrain])
    assert report["input_stage"] == "random_patches"
    probe = [*SMALL_MIM, *data, "TASK.LINEAR_PROBE.TEST_DATASET.STL10.ROOT", str(root),
             "MODEL.DECODER.LINEAR_PROBE.CODE_SIZE", "[12, 12]",
             "TRAIN.INIT.CHECKPOINT", str(Checkpointer(tmp_path / "mim").best)]  # fmt: skip
    for config, name in (("probe", "probe"), ("finetune", "finetune")):
        report = main(["--cfg", f"configs/04_focus_mim/stl10/{config}.yaml", "--opts", *probe,
                       "OUTPUT_DIR", str(tmp_path / name), "TRAIN.LR", "1e-2",
                       "TRAIN.EPOCHS", "20"])  # fmt: skip
        assert report["n_images"] == 40 and report["test_dataset"] == "stl10-test"
        assert report["metrics"]["accuracy"] > 0.75, report  # chance: 0.5
    probe = load_checkpoint(Checkpointer(tmp_path / "probe").best)["model"]
    encoder = {k: v for k, v in probe.items() if k.startswith("encoder.")}
    pretrained = load_checkpoint(Checkpointer(tmp_path / "mim").best)["model"]
    assert all(torch.equal(v, pretrained[k]) for k, v in encoder.items())  # frozen as loaded
    pictures = tmp_path / "pictures"
    pictures.mkdir()
    for side in ("left", "right"):  # dark on that side: class 0, class 1
        pixels = np.full((96, 96, 3), 150, np.uint8)
        (pixels[:, :48] if side == "left" else pixels[:, 48:])[:] = 40
        Image.fromarray(pixels).save(pictures / f"{side}.png")
    predict(["--checkpoint", str(Checkpointer(tmp_path / "probe").best), "--input", str(pictures),
             "--output", str(tmp_path / "classes")])  # fmt: skip
    rows = (tmp_path / "classes" / "classes.csv").read_text().splitlines()
    assert rows[0] == "image,class," + ",".join(f"p{k}" for k in range(10))
    assert [row.split(",")[:2] for row in sorted(rows[1:])] == [
        ["left.png", "0"],
        ["right.png", "1"],
    ]


def test_the_probe_stops_early_when_the_validation_loss_stops_improving(tmp_path: Path) -> None:
    root = tmp_path / "stl10_binary"
    _write_stl10(root)
    main(["--cfg", "configs/04_focus_mim/stl10/probe.yaml", "--opts", *SMALL_MIM,
          "DATA.DATASET.STL10.ROOT", str(root),
          "TASK.LINEAR_PROBE.TEST_DATASET.STL10.ROOT", str(root),
          "OUTPUT_DIR", str(tmp_path / "probe"), "TRAIN.LR", "0.0",
          "TRAIN.EPOCHS", "20", "TRAIN.PATIENCE", "2"])  # fmt: skip
    epochs = [json.loads(line) for line in (tmp_path / "probe" / "metrics.jsonl").open()]
    epochs = [row for row in epochs if row["kind"] == "epoch"]
    assert len(epochs) == 3  # the first sets the best; two more without improvement end it
    # at LR 0 nothing changes: every epoch's validation loss is the first's, which stays best
    first = epochs[0]["val_loss"]
    assert all(row["val_loss"] == row["best"] == first for row in epochs)


def test_the_saliency_probe_pipeline_reads_out_the_pretrained_encoder_frozen(
    tmp_path: Path,
) -> None:
    small = [*GENERATED[:18], "DATA.DATASET.GENERATED.NUM_IMAGES", "60",
             "TRACKING.WANDB.ENABLED", "false", "EVAL.NUM_OVERLAYS", "0",
             "TRACKING.VAL_OVERLAYS", "0", "EVAL.CENTERBIAS_FOLDS", "3",
             "TRAIN.EPOCHS", "1",
             "MODEL.ENCODER.MASKED_CONVNET.CHANNELS", "[8, 16, 16]"]  # fmt: skip
    out = tmp_path / "probe"
    main(["--cfg", "configs/04_focus_mim/saliency_probe.yaml", "--opts",
          "PIPELINE.OUTPUT_DIR", str(out), *small])  # fmt: skip
    pretrained = load_checkpoint(Checkpointer(out / "periphery").best)["model"]
    readout = load_checkpoint(Checkpointer(out / "readout").best)["model"]
    encoder = [key for key in readout if key.startswith("encoder.")]
    assert encoder and all(torch.equal(readout[k], pretrained[k]) for k in encoder)
    assert any(key.startswith("decoder.") and key not in pretrained for key in readout)
    result = json.loads((out / "readout" / "metrics.json").read_text())
    metrics, centre = result["metrics"], result["baselines"]["center_bias"]
    # IG in bits over the centre bias: the difference of the LLs (nats) on the same fixations
    assert metrics["IG"] == pytest.approx((metrics["LL"] - centre["LL"]) / math.log(2), abs=1e-9)


@pytest.mark.parametrize("path", sorted(Path("configs/04_focus_mim/stl10/grid").glob("*.yaml")))
def test_each_stl10_grid_file_changes_only_the_fill_and_crop_of_its_mask_file(path: Path) -> None:
    mask = next(m for m in ("random_patches", "periphery", "foveate", "none")
                if path.stem.startswith(m))  # fmt: skip
    corner = flat_keys(load_config(Path("configs/04_focus_mim/stl10") / f"{mask}.yaml", []))
    cell = flat_keys(load_config(path, []))
    changed = {key for key in corner.keys() | cell.keys() if corner.get(key) != cell.get(key)}
    fill = f"MODEL.INPUT_STAGE.{mask.upper()}.FILL"
    expected = {"OUTPUT_DIR"}
    if "_blur" in path.stem:
        assert cell[fill] == "blur" and corner[fill] == "mean"
        expected.add(fill)
    if path.stem.endswith("_no_crop"):
        assert cell["DATA.TRANSFORMS.NAMES"] == [] and corner["DATA.TRANSFORMS.NAMES"]
        expected |= {"DATA.TRANSFORMS.NAMES"}
        expected |= {key for key in corner if key.startswith("DATA.TRANSFORMS.RANDOM_RESIZED")}
    assert changed == expected
