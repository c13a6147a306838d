"""The hierarchical transformer encoder: the maps it announces are the maps it makes, on any input
size; every attention mechanism trains through it; it feeds the DeepGaze readout; blocks know
their depth (``stage_idx``) and alternate plain and shifted windows; bad settings name the key."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch
from yacs.config import CfgNode

from code.config import ConfigError, flat_keys, load_config
from code.data.batch import Batch
from code.models.attention import ShiftedWindowAttention, WindowAttention
from code.models.build import build_model
from code.models.encoders.hierarchical_transformer import (
    HierarchicalTransformerEncoder,
    PatchMerging,
)
from code.models.layers.transformer import TransformerBlock
from code.registry import ATTENTIONS, ENCODERS

KEY = "MODEL.ENCODER.HIERARCHICAL_TRANSFORMER"
ABLATIONS = Path("configs/06_attention/cpu_osie")
# Each mechanism's keys, small enough for windows and reductions to act on 37x53 inputs.
MECHANISMS = {
    "global": {},
    "window": {"WINDOW_SIZE": 3},
    "shifted_window": {"WINDOW_SIZE": 3},
    "spatial_reduction": {"RATIO": 2, "POOL_SIZE": None},
    "linear": {},
    "cross_covariance": {},
}


def settings(stages: int, attention: str = "global", **changes: object) -> dict:
    """The encoder's keys for ``stages`` small stages (depths 1, 2, 1, 2), with ``changes``."""
    node = {
        "PATCH_EMBED": "nonoverlapping",
        "PATCH_SIZE": 4,
        "DEPTHS": [1, 2, 1, 2][:stages],
        "WIDTHS": [8, 16, 24, 32][:stages],
        "HEADS": [1, 2, 3, 4][:stages],
        "MLP_RATIO": 2.0,
        "FFN": "mlp",
        "ATTENTION": {"NAME": attention, attention.upper(): MECHANISMS[attention]},
        "OUTPUTS": list(range(stages)),
    }
    return {**node, **changes}


def encoder(node: dict) -> HierarchicalTransformerEncoder:
    return ENCODERS.build(CfgNode({"NAME": "hierarchical_transformer", KEY.split(".")[-1]: node}))


def blocks(model: HierarchicalTransformerEncoder) -> list[TransformerBlock]:
    return [m for m in model.modules() if isinstance(m, TransformerBlock)]


@pytest.mark.parametrize("embed", ["nonoverlapping", "overlapping"])
@pytest.mark.parametrize("stages", [1, 2, 3, 4])
@pytest.mark.parametrize("size", [(37, 53), (64, 48), (5, 3)])
def test_maps_are_as_announced_and_cover_the_image_rounded_up(
    embed: str, stages: int, size: tuple[int, int]
) -> None:
    model = encoder(settings(stages, PATCH_EMBED=embed, FFN="mix_ffn"))
    features = model(torch.rand(2, 3, *size))
    assert list(features) == [f"stage{i}" for i in range(stages)] == list(model.output_shapes)
    for i, (name, spec) in enumerate(model.output_shapes.items()):
        assert spec.stride == 4 * 2**i and spec.channels == [8, 16, 24, 32][i]
        expected = (
            2,
            spec.channels,
            math.ceil(size[0] / spec.stride),
            math.ceil(size[1] / spec.stride),
        )
        assert tuple(features[name].shape) == expected


def test_outputs_choose_the_announced_stages_and_later_stages_are_not_built() -> None:
    model = encoder(settings(4, OUTPUTS=[0, 2]))
    assert list(model.output_shapes) == ["stage0", "stage2"] and len(model.stages) == 3
    features = model(torch.rand(1, 3, 37, 53))
    assert {name: tuple(x.shape[-3:]) for name, x in features.items()} == {
        "stage0": (8, 10, 14),
        "stage2": (24, 3, 4),
    }


def test_patch_size_sets_the_first_stride_for_both_embeddings() -> None:
    for embed in ("nonoverlapping", "overlapping"):
        model = encoder(settings(2, PATCH_EMBED=embed, PATCH_SIZE=2))
        assert [s.stride for s in model.output_shapes.values()] == [2, 4]
        assert [tuple(x.shape[-2:]) for x in model(torch.rand(1, 3, 37, 53)).values()] == [
            (19, 27),
            (10, 14),
        ]
    overlapping = encoder(settings(2, PATCH_EMBED="overlapping", PATCH_SIZE=4))
    convs = [stage.embed.proj for stage in overlapping.stages]  # PVT v2's 7/4/3 and 3/2/1
    assert [(c.kernel_size, c.stride, c.padding) for c in convs] == [
        ((7, 7), (4, 4), (3, 3)),
        ((3, 3), (2, 2), (1, 1)),
    ]


def test_patch_merging_concatenates_neighbours_in_swins_order_and_pads_odd_grids() -> None:
    merging = PatchMerging(3, 5)
    x = torch.randn(2, 3, 5, 7)
    tokens, grid = merging(x)
    assert grid == (3, 4) and tokens.shape == (2, 12, 5)
    padded = torch.nn.functional.pad(x, (0, 1, 0, 1)).permute(0, 2, 3, 1)  # (B, H, W, C)
    neighbours = [padded[:, 0::2, 0::2], padded[:, 1::2, 0::2], padded[:, 0::2, 1::2],
                  padded[:, 1::2, 1::2]]  # fmt: skip
    expected = merging.reduction(merging.norm(torch.cat(neighbours, -1).flatten(1, 2)))
    torch.testing.assert_close(tokens, expected)


@pytest.mark.parametrize("ffn", ["mlp", "mix_ffn"])
@pytest.mark.parametrize("mechanism", list(MECHANISMS))
def test_every_mechanism_trains_through_the_encoder(mechanism: str, ffn: str) -> None:
    """A smoke test over mechanisms and feed-forward layers, on purpose: gradients reach every
    parameter and the blocks hold the chosen mechanism."""
    torch.manual_seed(0)
    model = encoder(settings(3, mechanism, FFN=ffn, PATCH_EMBED="overlapping"))
    features = model(torch.rand(2, 3, 37, 53))
    loss = sum((x**2).mean() for x in features.values())
    loss.backward()
    assert torch.isfinite(loss)
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name
    # The blocks hold the chosen mechanism.
    assert {type(block.attention) for block in blocks(model)} == {ATTENTIONS.get(mechanism)}


def _batch(height: int, width: int) -> Batch:
    return Batch(
        input=torch.rand(2, 3, height, width),
        image_index=torch.arange(2),
        original_size=torch.tensor([[height, width]] * 2),
        fixations=torch.tensor([[[3.5, 4.2], [width - 0.5, height - 0.5]], [[40.0, 20.0], [0, 0]]]),
        fixation_mask=torch.tensor([[True, True], [True, False]]),
        centerbias=torch.full((2, height, width), -math.log(height * width)),
    )


@pytest.mark.parametrize("path", sorted(ABLATIONS.glob("*.yaml")), ids=lambda p: p.stem)
def test_each_ablation_model_takes_a_finite_training_step(path: Path) -> None:
    """A smoke test over the ablation files, on purpose: each model's density is normalised
    and two optimizer steps change its loss."""
    torch.manual_seed(0)
    cfg = load_config(path, [])
    model = build_model(cfg)
    assert cfg.MODEL.DECODER.NAME == "saliency"
    assert isinstance(model.encoder, HierarchicalTransformerEncoder)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.TRAIN.LR)
    batch = _batch(75, 100)  # any size: half OSIE's 150x200, not a multiple of the strides
    losses = []
    for _ in range(2):
        prediction, seen = model(batch)
        assert prediction.shape == (2, 75, 100)
        total = prediction.flatten(1).logsumexp(1)
        torch.testing.assert_close(total, torch.zeros_like(total), atol=1e-4, rtol=0)
        loss_sum, count = model.loss(prediction, seen)
        loss = loss_sum / count
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses) and losses[1] != losses[0]
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_ablation_files_change_only_the_attention_mechanism() -> None:
    reference = flat_keys(load_config(ABLATIONS / "global.yaml", []))
    files = sorted(ABLATIONS.glob("*.yaml"))
    assert {p.stem for p in files} == set(MECHANISMS)
    for path in files:
        cfg = flat_keys(load_config(path, []))
        changed = {k for k in reference.keys() | cfg.keys() if reference.get(k) != cfg.get(k)}
        assert cfg[f"{KEY}.ATTENTION.NAME"] == path.stem
        assert cfg["OUTPUT_DIR"].endswith(f"06_attention/cpu_osie/{path.stem}")
        allowed = {"OUTPUT_DIR", f"{KEY}.ATTENTION.NAME"}
        assert {k for k in changed if not k.startswith(f"{KEY}.ATTENTION.")} <= allowed, path


def test_blocks_see_their_stage_index_in_order() -> None:
    model = encoder(settings(4))
    seen: list[int] = []
    for block in blocks(model):
        block.register_forward_pre_hook(lambda module, args: seen.append(module.stage_idx))
    model(torch.rand(1, 3, 37, 53))
    assert seen == [0, 1, 1, 2, 3, 3]  # depths 1, 2, 1, 2
    for i, stage in enumerate(model.stages):
        assert [block.stage_idx for block in stage.blocks] == [i] * len(stage.blocks)
    assert "stage_idx=3" in repr(model.stages[3].blocks[0])


def test_shifted_windows_alternate_with_plain_ones_inside_each_stage() -> None:
    model = encoder(settings(2, "shifted_window", DEPTHS=[3, 2], PATCH_SIZE=2))
    grids: dict[TransformerBlock, tuple[int, int]] = {}

    def record(module: TransformerBlock, args: tuple) -> None:
        grids[module] = args[1]

    for block in blocks(model):
        block.register_forward_pre_hook(record)
    model(torch.rand(1, 3, 37, 53))
    for stage in model.stages:
        for j, block in enumerate(stage.blocks):
            attention = block.attention
            assert isinstance(attention, ShiftedWindowAttention) and attention.window_size == 3
            assert attention.shift_size == (1 if j % 2 else 0)
            # on the grid the block saw (19x27, then 10x14), odd blocks shift by window // 2
            window, shift = attention.windows(grids[block])
            assert window == (3, 3) and shift == ((1, 1) if j % 2 else (0, 0))
    assert sorted(set(grids.values())) == [(10, 14), (19, 27)]
    plain = encoder(settings(2, "window", DEPTHS=[3, 2]))
    assert all(
        type(b.attention) is WindowAttention and b.attention.shift_size == 0 for b in blocks(plain)
    )


def test_each_block_has_its_own_mechanism_with_its_width_and_heads() -> None:
    model = encoder(settings(3, "cross_covariance"))
    mechanisms = [block.attention for block in blocks(model)]
    assert len({id(m) for m in mechanisms}) == len(mechanisms)
    assert [(m.channels, m.num_heads) for m in mechanisms] == [(8, 1), (16, 2), (16, 2), (24, 3)]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"HEADS": [1, 3]}, f"{KEY}.HEADS[1] 3 does not divide WIDTHS[1] 16"),
        ({"HEADS": [0, 2]}, f"{KEY}.HEADS[0] 0 does not divide WIDTHS[0] 8"),
        (
            {"DEPTHS": [1]},
            f"{KEY}.DEPTHS, WIDTHS and HEADS give one entry per stage, at least one stage: got "
            "1 entries in DEPTHS, 2 entries in WIDTHS, 2 entries in HEADS",
        ),
        ({"WIDTHS": [8, 16, 32]}, "3 entries in WIDTHS"),
        ({"DEPTHS": [], "WIDTHS": [], "HEADS": [], "OUTPUTS": []}, "0 entries in DEPTHS"),
        ({"DEPTHS": [1, 0]}, f"{KEY}.DEPTHS[1] is 0: every stage needs a block"),
        ({"PATCH_SIZE": 0}, f"{KEY}.PATCH_SIZE must be at least 1, got 0"),
        ({"MLP_RATIO": 0.1}, f"{KEY}.MLP_RATIO 0.1 leaves no hidden channel at WIDTHS[0] 8"),
        ({"OUTPUTS": [2]}, f"{KEY}.OUTPUTS [2]: ascending stage indices in 0..1"),
        ({"OUTPUTS": [1, 0]}, f"{KEY}.OUTPUTS [1, 0]"),
    ],
)
def test_bad_stage_settings_are_refused_naming_the_key(changes: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        encoder(settings(2, **changes))


def test_unknown_embedding_or_ffn_is_refused_when_the_config_loads() -> None:
    opts = ["MODEL.ENCODER.HIERARCHICAL_TRANSFORMER.FFN", "conv"]
    with pytest.raises(
        ConfigError, match=rf"{re.escape(KEY)}\.FFN: expected one of 'mlp', 'mix_ffn'"
    ):
        load_config(ABLATIONS / "global.yaml", opts)
    opts = ["MODEL.ENCODER.HIERARCHICAL_TRANSFORMER.PATCH_EMBED", "overlap"]
    with pytest.raises(ConfigError, match=rf"{re.escape(KEY)}\.PATCH_EMBED: expected one of"):
        load_config(ABLATIONS / "global.yaml", opts)
