"""Training-item transforms: what moves with the image, seeded per (seed, epoch, item), checked
against the samples before any work."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from code.config import ConfigError, load_config
from code.data.build import build_loader
from code.data.transforms import HorizontalFlip, RandomResizedCrop, build_transforms
from code.tasks.base import build_task
from tests.small_run import QUICKSTART, SMALL

FLIP = ["DATA.TRANSFORMS.NAMES", "[hflip]", "DATA.TRANSFORMS.HFLIP.PROBABILITY", "0.5"]


def test_a_flip_mirrors_the_image_its_maps_and_its_fixations_pixel_for_pixel() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (4, 5, 3), dtype=np.uint8)
    sample = {
        "image": image,
        "segments": np.arange(20).reshape(4, 5),
        "centerbias": np.arange(20.0).reshape(4, 5),
        "fixations": np.array([[0.0, 1.0], [4.75, 3.5], [2.0, 0.0]], np.float32),
        "history": np.array([[[1.25, 2.0], [0.0, 0.0]]], np.float32),
        "history_mask": np.array([[True, False]]),
    }
    flipped = HorizontalFlip(1.0)(sample, rng)
    assert np.array_equal(flipped["image"], image[:, ::-1])
    assert np.array_equal(flipped["segments"][:, 0], sample["segments"][:, 4])
    assert np.array_equal(flipped["centerbias"][:, 4], sample["centerbias"][:, 0])
    # pixel column c goes to 4 - c, the offset inside the pixel is kept; rows are unchanged
    assert flipped["fixations"].tolist() == [[4.0, 1.0], [0.75, 3.5], [2.0, 0.0]]
    assert flipped["history"].tolist() == [[[3.25, 2.0], [0.0, 0.0]]]  # padding stays zero
    assert HorizontalFlip(0.0)(sample, rng) is sample


def test_a_crop_keeps_the_size_and_refuses_samples_whose_fixations_it_cannot_move() -> None:
    crop = RandomResizedCrop([0.2, 0.5], [0.75, 1.33])
    image = np.random.default_rng(1).integers(0, 255, (30, 40, 3), dtype=np.uint8)
    out = crop({"image": image, "segments": np.zeros((30, 40), np.int64)}, np.random.default_rng(2))
    assert out["image"].shape == image.shape and out["segments"].shape == (30, 40)
    assert not np.array_equal(out["image"], image)
    node = "DATA.TRANSFORMS.RANDOM_RESIZED_CROP"
    crops = ["DATA.TRANSFORMS.NAMES", "[random_resized_crop]",
             f"{node}.SCALE", "[0.2, 1.0]", f"{node}.RATIO", "[0.75, 1.33]"]  # fmt: skip
    cfg = load_config(QUICKSTART, crops)
    with pytest.raises(ValueError, match="'random_resized_crop' cannot move the samples' "
                       "centerbias, fixations with the image"):  # fmt: skip
        build_transforms(cfg.DATA.TRANSFORMS, {"image", "fixations", "centerbias"})
    assert len(build_transforms(cfg.DATA.TRANSFORMS, {"image", "image_index"})) == 1


def _epoch_batches(opts: list[str], epoch: int) -> list[torch.Tensor]:
    task = build_task(load_config(QUICKSTART, [*SMALL, *FLIP, *opts]))
    task.prepare()
    loader = task.loaders["train"]
    loader.batch_sampler.set_epoch(epoch)
    return [torch.cat([b.input.flatten(1), b.fixations.flatten(1)], 1) for b in loader]


def test_transformed_items_depend_on_seed_epoch_and_item_only_not_on_workers() -> None:
    plain = _epoch_batches([], 0)
    assert all(torch.equal(a, b) for a, b in zip(plain, _epoch_batches([], 0), strict=True))
    workers = _epoch_batches(["DATA.NUM_WORKERS", "2"], 0)
    assert all(torch.equal(a, b) for a, b in zip(plain, workers, strict=True))
    later = _epoch_batches([], 1)  # another epoch: other flips (and another order)
    assert not all(torch.equal(a, b) for a, b in zip(plain, later, strict=True))


def test_evaluation_items_are_never_transformed() -> None:
    task = build_task(load_config(QUICKSTART, [*SMALL, *FLIP, "DATA.TRANSFORMS.HFLIP.PROBABILITY",
                                               "1.0"]))  # fmt: skip
    task.prepare()
    plain = build_task(load_config(QUICKSTART, SMALL))
    plain.prepare()
    assert torch.equal(
        next(iter(task.loaders["val"])).input, next(iter(plain.loaders["val"])).input
    )
    flipped = next(iter(build_loader(task.cfg, task.samples["train"], train=True)))
    assert flipped.input.shape[1:] == (3, 36, 48)


@pytest.mark.parametrize(
    ("opts", "message"),
    [
        (
            ["DATA.TRANSFORMS.NAMES", "[hflip]"],
            "DATA.TRANSFORMS.HFLIP: missing; transform 'hflip' takes PROBABILITY",
        ),
        (
            ["DATA.TRANSFORMS.NAMES", "[flip]"],
            "DATA.TRANSFORMS.NAMES: 'flip' is not registered "
            "in .*; registered transforms: hflip, random_resized_crop",
        ),
        ([*FLIP, "DATA.TRANSFORMS.NAMES", "[hflip, hflip]"], "names a transform twice"),
    ],
)
def test_a_wrong_transform_chain_is_a_config_error(opts: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(QUICKSTART, opts)


def test_a_sub_part_is_chosen_by_name_with_the_same_strictness(tmp_path: Path) -> None:
    from code.models.attention import GlobalAttention
    from code.models.build import build_model

    config = Path("configs/01_dinogaze_spade/cpu_osie/cross_attention.yaml").resolve()
    block = build_model(load_config(config, [])).block
    assert all(isinstance(a.attention, GlobalAttention) for a in block.attention.values())
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(f"_BASE_: [{config}]\nMODEL:\n  BLOCK:\n    CROSS_ATTENTION:\n"
                     "      ATTENTION:\n        NAME: windowed\n")  # fmt: skip
    message = (
        rf"MODEL.BLOCK.CROSS_ATTENTION.ATTENTION.NAME: 'windowed' is not registered in {wrong}; "
        "registered attentions: cross_covariance, global, linear, shifted_window, "
        "spatial_reduction, window"
    )
    with pytest.raises(ConfigError, match=message):
        load_config(wrong, [])
    unknown = "MODEL.BLOCK.CROSS_ATTENTION.ATTENTION.GLOBAL.DROPOUT"  # global takes no keys
    with pytest.raises(ConfigError, match=rf"--opts: unknown key {unknown}"):
        load_config(config, [unknown, "0.1"])
