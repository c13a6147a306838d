"""The DINOv2 encoder: local checkpoints in the official and timm layouts, token-map alignment."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from code.models.encoders.dinov2 import PATCH, DinoV2Encoder

SMALL = "vit_small_patch14_dinov2"
SMALL_REG = "vit_small_patch14_reg4_dinov2"
LAYERS = [0, 5, 11]


def _random_vit(arch: str, seed: int) -> torch.nn.Module:
    """timm's model with every parameter random (layer scales too, which start near zero)."""
    torch.manual_seed(seed)
    vit = timm.create_model(arch, pretrained=False, dynamic_img_size=True, num_classes=0)
    with torch.no_grad():
        for name, param in vit.named_parameters():
            if name.endswith((".gamma", "cls_token", "reg_token", "pos_embed")):
                param.normal_(0, 0.5)
    return vit.eval()


def official_layout(timm_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The same weights as facebookresearch/dinov2 ``DinoVisionTransformer`` stores them.

    Official: ``cls_token`` (1, 1, C), ``pos_embed`` (1, 1 + N, C) covering the class token,
    ``mask_token`` (1, C), ``register_tokens`` (1, R, C) for the reg4 models (no position
    embedding; timm instead folds the class token's position embedding into ``cls_token``),
    and the block keys timm shares (``blocks.0.attn.qkv.weight``, ``blocks.0.ls1.gamma``, ...).
    """
    state = dict(timm_state)
    channels = state["cls_token"].shape[-1]
    state["mask_token"] = torch.randn(1, channels)
    if "reg_token" in state:
        state["register_tokens"] = state.pop("reg_token")
        cls_pos = torch.randn(1, 1, channels)
        state["cls_token"] = state["cls_token"] - cls_pos
        state["pos_embed"] = torch.cat([cls_pos, state["pos_embed"]], dim=1)
    return state


def _reference_maps(vit: torch.nn.Module, image: torch.Tensor) -> list[torch.Tensor]:
    encoder_input = DinoV2Encoder(SMALL, [0], None, True, False).normalize(image)
    height, width = image.shape[-2:]
    padded = F.pad(encoder_input, (0, -width % PATCH, 0, -height % PATCH))
    return vit.forward_intermediates(
        padded, indices=LAYERS, intermediates_only=True, output_fmt="NCHW", norm=False
    )


@pytest.mark.parametrize(
    ("arch", "layout", "suffix"),
    [
        (SMALL, "official", ".pth"),
        (SMALL_REG, "official", ".pth"),
        (SMALL, "timm", ".pth"),
        (SMALL_REG, "timm", ".safetensors"),
    ],
)
def test_checkpoint_gives_the_features_of_timms_model_with_those_weights(
    arch: str, layout: str, suffix: str, tmp_path: Path
) -> None:
    reference = _random_vit(arch, seed=1)
    state = reference.state_dict()
    if layout == "official":
        state = official_layout(state)
        assert "mask_token" in state and "blocks.0.ls1.gamma" in state
    path = tmp_path / f"weights{suffix}"
    if suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save(state, path)
    encoder = DinoV2Encoder(arch, LAYERS, str(path), freeze=True, final_norm=False)
    image = torch.rand(2, 3, 45, 61)
    with torch.no_grad():
        maps = encoder(image)
        expected = _reference_maps(reference, image)
    assert list(maps) == [f"block{i}" for i in LAYERS]
    for got, want in zip(maps.values(), expected, strict=True):
        assert got.shape == (2, 384, 4, 5)  # ceil(45 / 14) x ceil(61 / 14)
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def test_missing_file_and_mismatched_checkpoint_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nope\.pth.*MODEL\.ENCODER\.DINOV2\.WEIGHTS"):
        DinoV2Encoder(SMALL, [0], str(tmp_path / "nope.pth"), True, False)
    state = official_layout(_random_vit(SMALL_REG, seed=0).state_dict())
    state.pop("blocks.3.attn.qkv.weight")
    torch.save(state, tmp_path / "broken.pth")
    with pytest.raises(ValueError, match=r"broken\.pth.*missing keys.*blocks\.3\.attn\.qkv"):
        DinoV2Encoder(SMALL_REG, [0], str(tmp_path / "broken.pth"), True, False)


@pytest.mark.parametrize("arch", [SMALL, SMALL_REG])
def test_token_map_position_is_the_patch_at_that_position(arch: str) -> None:
    """With attention/MLP switched off (layer scales 0) and no position embedding, block 0's map
    is the patch embedding; prefix tokens (class, registers) must not shift it by a patch."""
    encoder = DinoV2Encoder(arch, [0], None, freeze=True, final_norm=False)
    with torch.no_grad():
        for name, param in encoder.vit.named_parameters():
            if name.endswith(".gamma") or name == "pos_embed":
                param.zero_()
    image = torch.rand(1, 3, 5 * PATCH, 6 * PATCH)
    perturbed = image.clone()
    perturbed[..., 2 * PATCH : 3 * PATCH, 4 * PATCH : 5 * PATCH] = torch.rand(PATCH, PATCH)
    with torch.no_grad():
        before, after = encoder(image)["block0"], encoder(perturbed)["block0"]
        proj = encoder.vit.patch_embed.proj
        expected = F.conv2d(encoder.normalize(image), proj.weight, proj.bias, stride=PATCH)
    torch.testing.assert_close(before, expected, rtol=1e-5, atol=1e-5)
    changed = (after - before).abs().amax(dim=1)[0] > 1e-6
    assert changed.nonzero().tolist() == [[2, 4]]


def test_files_that_are_not_dinov2_weights_are_named_in_a_short_message(tmp_path: Path) -> None:
    (tmp_path / "config.pt").write_text("MODEL:\n  NAME: x\n")  # not torch.save's format
    with pytest.raises(ValueError, match=r"config\.pt: not a DINOv2 weight file \(MODEL\.ENCOD"):
        DinoV2Encoder(SMALL, [0], str(tmp_path / "config.pt"), True, False)
    torch.save({"epoch": 3, "lr": 0.1}, tmp_path / "log.pt")  # no tensors
    with pytest.raises(ValueError, match=r"log\.pt: .*a dict of tensors was expected, found"):
        DinoV2Encoder(SMALL, [0], str(tmp_path / "log.pt"), True, False)
    # ViT-B weights for a ViT-S: every block differs; the message names a few, not all
    torch.save(timm.create_model("vit_base_patch14_dinov2", pretrained=False,
                                 num_classes=0).state_dict(), tmp_path / "vitb.pt")  # fmt: skip
    with pytest.raises(ValueError) as refused:
        DinoV2Encoder(SMALL, [0], str(tmp_path / "vitb.pt"), True, False)
    message = str(refused.value)
    assert message.startswith(f"{tmp_path / 'vitb.pt'}: DINOv2 weights of another architecture")
    assert "cls_token (1, 1, 768) (model: (1, 1, 384))" in message and len(message) < 1000
