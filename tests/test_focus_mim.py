"""Masked image modelling across eye movements: the seed's autoencoder and its masked loss."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from code.data.batch import Batch
from code.main import main
from code.models.decoders.conv_reconstruction import ConvReconstructionDecoder
from code.models.decoders.reconstruction import masked_squared_error
from code.models.encoders.masked_convnet import MaskedConvNetEncoder
from code.models.input_stages.masking import Periphery, RandomPatches
from code.models.layers.gaussian_blur import GaussianBlur


def _batch(image: torch.Tensor, mask: torch.Tensor | None = None) -> Batch:
    n = len(image)
    return Batch(input=image, image_index=torch.arange(n),
                 original_size=torch.tensor([list(image.shape[-2:])] * n),
                 target=image.clone(), loss_mask=mask)  # fmt: skip


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
        mask = stage.draw(height, width, torch.Generator().manual_seed(0))
        grid = (height // 8) * (width // 8)
        assert mask.sum() == math.floor(grid * 0.6) * 64
        patches = mask[: height // 8 * 8, : width // 8 * 8].unfold(0, 8, 8).unfold(1, 8, 8)
        assert set(patches.reshape(grid, 64).mean(1).tolist()) == {0.0, 1.0}  # whole patches
        assert mask[height // 8 * 8 :].sum() == 0 and mask[:, width // 8 * 8 :].sum() == 0
    first, second = stage.draw(96, 96, None), stage.draw(96, 96, None)
    assert not torch.equal(first, second)  # redrawn per item in training


def test_periphery_leaves_a_central_disc_of_the_exact_radius_visible() -> None:
    stage = Periphery(ratio=0.8, fill="mean", blur_sigma=1.0)
    radius = math.sqrt(96 * 96 * 0.2 / math.pi)
    assert stage.radius(96, 96) == pytest.approx(radius, rel=1e-12)
    mask = stage.draw(96, 96, None)
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
         "OUTPUT_DIR", str(tmp_path / "run"), "TRAIN.EPOCHS", str(epochs), "TRAIN.LR", "2e-3"]
    )  # fmt: skip


def test_mim_pretraining_runs_through_the_entry_point(tmp_path: Path) -> None:
    report = _pretrain(tmp_path, images=40, epochs=1)
    assert report["input_stage"] == "random_patches" and report["n_images"] == 8
    assert report["metrics"]["masked_mse"] > 0 and report["metrics"]["fill_mse"] > 0
    epochs = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    assert "val_fill_mse" in next(r for r in epochs if r["kind"] == "epoch")
    assert len(list((tmp_path / "run" / "overlays").glob("*_reconstruction.png"))) == 2
    plain = _pretrain(tmp_path / "plain", images=40, epochs=1, stage="identity")
    assert plain["metrics"]["fill_mse"] == 0  # nothing hidden: the loss is over the whole image


@pytest.mark.slow
def test_mim_pretraining_reconstructs_hidden_patches_better_than_the_fill(tmp_path: Path) -> None:
    metrics = _pretrain(tmp_path, images=200, epochs=12)["metrics"]
    assert metrics["masked_mse"] < 0.85 * metrics["fill_mse"], metrics  # it learned
