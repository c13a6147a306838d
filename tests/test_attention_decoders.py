"""The decoders that read a hierarchical transformer: every embedding x attention mechanism x
decoder builds and trains on any image size; the U-shaped decoder attends with the encoder's
mechanism (one ATTENTION key per model) and continues its ``stage_idx``; the regression head
trains an autoencoder under the masked-image-modelling task; the ablation files at CPU and full
size change only what they say and take a training step."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
import torch

from code.config import ConfigError, flat_keys, load_config
from code.data.batch import Batch
from code.main import main
from code.models.build import GazeModel, build_model
from code.models.decoders.unet_transformer import PatchExpanding
from code.models.encoders.hierarchical_transformer import PatchMerging
from code.models.layers.transformer import TransformerBlock
from code.models.shapes import PredictionKind
from code.registry import ATTENTIONS
from tests.test_hierarchical_transformer import MECHANISMS
from tests.test_models import _batch

ATTENTION_CONFIGS = Path("configs/06_attention")
ENCODER_KEY = "MODEL.ENCODER.HIERARCHICAL_TRANSFORMER"
# Three small stages (strides 4, 8, 16); the depth-2 stage holds a plain and a shifted window.
ENCODER = {"PATCH_SIZE": 4, "DEPTHS": [1, 2, 1], "WIDTHS": [8, 16, 24], "HEADS": [1, 2, 3],
           "MLP_RATIO": 2.0, "FFN": "mlp", "OUTPUTS": [0, 1, 2]}  # fmt: skip
FINALIZER = {"BLUR_SIGMA": 3.0, "LEARN_BLUR": True, "CENTERBIAS_WEIGHT": 1.0}
DECODERS = {
    "saliency": {"HIDDEN_CHANNELS": [4], **FINALIZER},
    "unet_transformer": {
        "DEPTHS": [1, 2],
        "HEADS": [1, 2],
        "MLP_RATIO": 2.0,
        "FFN": "mix_ffn",
        **FINALIZER,
    },
    "all_mlp": {"EMBED_CHANNELS": 8, **FINALIZER},
    "regression": {},
}


def _opts(prefix: str, node: dict) -> list[str]:
    """--opts setting every key of ``node`` under ``prefix`` (JSON values are YAML)."""
    return [item for key, value in flat_keys(node, f"{prefix}.").items()
            for item in (key, json.dumps(value))]  # fmt: skip


def _attention(mechanism: str) -> dict:
    return {"ATTENTION": {"NAME": mechanism, mechanism.upper(): MECHANISMS[mechanism]}}


def _model(embed: str, mechanism: str, decoder: str) -> GazeModel:
    encoder = {"PATCH_EMBED": embed, **ENCODER, **_attention(mechanism)}
    opts = [*_opts(ENCODER_KEY, encoder), "MODEL.DECODER.NAME", decoder,
            *_opts(f"MODEL.DECODER.{decoder.upper()}", DECODERS[decoder])]  # fmt: skip
    return build_model(load_config(ATTENTION_CONFIGS / "cpu_osie/global.yaml", opts))


def _blocks(module: torch.nn.Module) -> list[TransformerBlock]:
    return [m for m in module.modules() if isinstance(m, TransformerBlock)]


def _assert_mechanism(model: torch.nn.Module, mechanism: str) -> None:
    """Every block holds ``mechanism``; under shifted_window, each stage's even blocks plain
    windows and its odd ones shifted windows (encoder and decoder stages alike)."""
    stages = [m for m in model.modules()
              if isinstance(m, torch.nn.ModuleList) and _blocks(m) == list(m)]  # fmt: skip
    assert sum(len(stage) for stage in stages) == len(_blocks(model)) > 0
    for stage in stages:
        assert all(type(block.attention) is ATTENTIONS.get(mechanism) for block in stage)
        if mechanism == "shifted_window":
            shifted = [b.attention.shift_size > 0 for b in stage]
            assert shifted == [j % 2 == 1 for j in range(len(stage))]


@pytest.mark.parametrize("decoder", list(DECODERS))
@pytest.mark.parametrize("mechanism", list(MECHANISMS))
@pytest.mark.parametrize("embed", ["nonoverlapping", "overlapping"])
def test_every_embedding_attention_and_decoder_trains_on_a_non_square_odd_image(
    embed: str, mechanism: str, decoder: str
) -> None:
    """A smoke test over embeddings, mechanisms and decoders, on purpose: densities
    normalised, images in [0, 1], gradients everywhere, the chosen mechanism in every
    block."""
    torch.manual_seed(0)
    model = _model(embed, mechanism, decoder)
    batch = _batch(70, 90)  # stage grids 18x23, 9x12, 5x6: odd ones to expand and crop
    prediction, seen = model(batch)
    if model.prediction is PredictionKind.LOG_DENSITY:
        assert prediction.shape == (2, 70, 90)
        total = prediction.flatten(1).logsumexp(1)
        torch.testing.assert_close(total, torch.zeros_like(total), atol=1e-4, rtol=0)
    else:
        assert model.prediction is PredictionKind.IMAGE and prediction.shape == (2, 3, 70, 90)
        assert prediction.min() >= 0 and prediction.max() <= 1
    loss_sum, count = model.loss(prediction, seen)
    (loss_sum / count).backward()
    assert torch.isfinite(loss_sum)
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name
    _assert_mechanism(model, mechanism)
    assert len(_blocks(model.decoder)) == (3 if decoder == "unet_transformer" else 0)


def test_changing_only_the_attention_name_switches_every_block_of_encoder_and_decoder() -> None:
    path = ATTENTION_CONFIGS / "cpu_osie/decoders/unet_transformer.yaml"
    reference = flat_keys(load_config(path, []))
    assert not any(".UNET_TRANSFORMER.ATTENTION" in key for key in reference)  # no key of its own
    for mechanism, settings in MECHANISMS.items():
        opts = _opts(ENCODER_KEY, _attention(mechanism))
        cfg = load_config(path, opts)
        keys = flat_keys(cfg)
        changed = {k for k in reference.keys() | keys.keys() if reference.get(k) != keys.get(k)}
        assert all(k.startswith(f"{ENCODER_KEY}.ATTENTION.") for k in changed), changed
        model = build_model(cfg)
        encoder, decoder = _blocks(model.encoder), _blocks(model.decoder)
        assert len(encoder) == 4 and len(decoder) == 2
        _assert_mechanism(model, mechanism)
        window = settings.get("WINDOW_SIZE")
        assert all(getattr(b.attention, "window_size", None) == window for b in encoder + decoder)


def test_the_unet_decoder_continues_the_encoders_stage_index_on_the_way_up() -> None:
    model = _model("nonoverlapping", "global", "unet_transformer")
    seen: list[int] = []
    for block in _blocks(model):
        block.register_forward_pre_hook(lambda module, args: seen.append(module.stage_idx))
    model(_batch(70, 90))
    assert seen == [0, 1, 1, 2, 1, 1, 0]  # encoder depths 1 2 1, decoder depths (fine first) 1 2


@pytest.mark.parametrize("size", [(5, 7), (6, 8), (1, 1), (9, 4)])
def test_patch_expanding_inverts_patch_merging_in_sizes_and_lays_out_each_neighbourhood(
    size: tuple[int, int],
) -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 6, *size)
    tokens, grid = PatchMerging(6, 12)(x)
    coarse = tokens.transpose(1, 2).reshape(2, 12, *grid)
    expanding = PatchExpanding(12, 6)
    up = expanding(coarse, size)
    assert up.shape == (2, size[0] * size[1], 6)
    # the token at (2y + dy, 2x + dx) is slice (dy, dx) of the linear map of token (y, x)
    linear = expanding.expand(tokens).view(2, *grid, 2, 2, 6)
    expected = expanding.norm(
        linear.permute(0, 1, 3, 2, 4, 5).reshape(2, 2 * grid[0], 2 * grid[1], 6)
    )
    torch.testing.assert_close(up.view(2, *size, 6), expected[:, : size[0], : size[1]])
    with pytest.raises(ValueError, match=re.escape(f"doubles a {grid[0]}x{grid[1]} grid")):
        expanding(coarse, (2 * grid[0] + 1, size[1]))


def _fixed_batch() -> Batch:
    """Two smooth images (ramps in each colour), their own targets."""
    rows = torch.linspace(0, 1, 40)[:, None].expand(40, 56)
    cols = torch.linspace(0, 1, 56)[None, :].expand(40, 56)
    image = torch.stack([torch.stack([rows, cols, 1 - rows]), torch.stack([cols, 1 - cols, rows])])
    return Batch(input=image, image_index=torch.arange(2),
                 original_size=torch.tensor([[40, 56]] * 2), target=image.clone())  # fmt: skip


MIM = ATTENTION_CONFIGS.parent / "04_focus_mim/cpu_osie/random_patches.yaml"
MIM_ENCODER = {"PATCH_EMBED": "overlapping", **ENCODER, **_attention("window")}
MIM_MODEL = ["MODEL.ENCODER.NAME", "hierarchical_transformer", *_opts(ENCODER_KEY, MIM_ENCODER),
             "MODEL.DECODER.NAME", "regression"]  # fmt: skip


def test_the_regression_head_trains_a_hierarchical_autoencoder_on_masked_images() -> None:
    torch.manual_seed(0)
    model = build_model(load_config(MIM, MIM_MODEL))
    model.eval()  # masks fixed per image: the same masked batch every step
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    batch, losses = _fixed_batch(), []
    for _ in range(30):
        prediction, seen = model(batch)
        # 21 of the 5 x 7 patches of 8 px (RATIO 0.6) hidden and scored in each image
        hidden = seen.loss_mask.flatten(1).float().mean(1)
        torch.testing.assert_close(hidden, torch.full((2,), 21 * 64 / (40 * 56)))
        loss_sum, count = model.loss(prediction, seen)
        optimizer.zero_grad()
        (loss_sum / count).backward()
        optimizer.step()
        losses.append((loss_sum / count).item())
    assert losses[-1] < 0.3 * losses[0], losses  # ramps are easy to regress


def test_the_regression_model_runs_through_the_mim_task(tmp_path: Path) -> None:
    data = ["DATA.DATASET.NAME", "generated", "DATA.DATASET.GENERATED.NUM_IMAGES", "20",
            "DATA.DATASET.GENERATED.HEIGHT", "40", "DATA.DATASET.GENERATED.WIDTH", "56",
            "DATA.DATASET.GENERATED.NUM_SUBJECTS", "2",
            "DATA.DATASET.GENERATED.FIXATIONS_PER_SCANPATH", "2",
            "DATA.DATASET.GENERATED.SEED", "0", "DATA.CACHE.DIR", "null",
            "DATA.IMAGE_SIZE", "[40, 56]", "DATA.BATCH_SIZE", "8", "DATA.NUM_WORKERS", "0",
            "TRACKING.WANDB.ENABLED", "false", "TRAIN.EPOCHS", "1",
            "OUTPUT_DIR", str(tmp_path / "run")]  # fmt: skip
    report = main(["--cfg", str(MIM), "--opts", *MIM_MODEL, *data])
    assert report["input_stage"] == "random_patches"
    assert 0 < report["metrics"]["masked_mse"] < 1 and report["metrics"]["fill_mse"] > 0


@pytest.mark.parametrize(
    ("opts", "message"),
    [
        (["MODEL.ENCODER.HIERARCHICAL_TRANSFORMER.OUTPUTS", "[0, 2]"],
         "MODEL.DECODER.UNET_TRANSFORMER needs at least two maps whose strides double from one "
         "to the next (an encoder's consecutive stages, e.g. its OUTPUTS [0, 1, 2]); it received "
         "stage0 (stride 4), stage2 (stride 16)"),
        (["MODEL.DECODER.UNET_TRANSFORMER.DEPTHS", "[1]"],
         "MODEL.DECODER.UNET_TRANSFORMER.DEPTHS and HEADS give one entry per map below the "
         "coarsest (2 for stage0 (stride 4), stage1 (stride 8), stage2 (stride 16)), got 1 and 2"),
        (["MODEL.DECODER.UNET_TRANSFORMER.HEADS", "[1, 3]"],
         "MODEL.DECODER.UNET_TRANSFORMER.HEADS[1] 3 does not divide the 64 channels of stage1"),
        (["MODEL.DECODER.UNET_TRANSFORMER.DEPTHS", "[1, -1]"],
         "MODEL.DECODER.UNET_TRANSFORMER.DEPTHS[1] is -1"),
        (["MODEL.ENCODER.NAME", "convnet", "MODEL.ENCODER.CONVNET.CHANNELS", "[8, 16]"],
         "MODEL.DECODER.UNET_TRANSFORMER attends with the encoder's mechanism "
         "(MODEL.ENCODER.<encoder>.ATTENTION), and this encoder announces none"),
    ],
)  # fmt: skip
def test_maps_and_settings_the_unet_decoder_cannot_use_are_refused_naming_the_key(
    opts: list[str], message: str
) -> None:
    cfg = load_config(ATTENTION_CONFIGS / "cpu_osie/decoders/unet_transformer.yaml", opts)
    with pytest.raises(ConfigError, match=re.escape(message)):
        build_model(cfg)


def test_an_all_mlp_decoder_without_channels_is_refused_naming_the_key() -> None:
    path = ATTENTION_CONFIGS / "cpu_osie/decoders/all_mlp.yaml"
    cfg = load_config(path, ["MODEL.DECODER.ALL_MLP.EMBED_CHANNELS", "0"])
    with pytest.raises(ConfigError, match=r"MODEL\.DECODER\.ALL_MLP\.EMBED_CHANNELS must be"):
        build_model(cfg)


@pytest.mark.parametrize("size", ["cpu_osie", "full"])
def test_decoder_files_change_only_the_decoder_and_mechanism_files_only_the_mechanism(
    size: str,
) -> None:
    folder = ATTENTION_CONFIGS / size
    reference = flat_keys(load_config(folder / "global.yaml", []))
    assert {p.stem for p in folder.glob("*.yaml")} == set(MECHANISMS)
    assert {p.stem for p in (folder / "decoders").glob("*.yaml")} == {"unet_transformer", "all_mlp"}
    for path in [*folder.glob("*.yaml"), *(folder / "decoders").glob("*.yaml")]:
        cfg = flat_keys(load_config(path, []))
        changed = {k for k in reference.keys() | cfg.keys() if reference.get(k) != cfg.get(k)}
        name = path.relative_to(folder).with_suffix("")
        assert cfg["OUTPUT_DIR"] == f"output/06_attention/{size}/{name}"
        decoder = path.parent.name == "decoders"
        allowed = "MODEL.DECODER." if decoder else f"{ENCODER_KEY}.ATTENTION."
        assert all(k.startswith(allowed) for k in changed - {"OUTPUT_DIR"}), (path, changed)
        if decoder:
            assert cfg["MODEL.DECODER.NAME"] == path.stem
        else:
            assert cfg[f"{ENCODER_KEY}.ATTENTION.NAME"] == path.stem


def test_the_full_size_encoder_is_swin_t_on_osie_at_full_resolution() -> None:
    cfg = load_config(ATTENTION_CONFIGS / "full/shifted_window.yaml", [])
    encoder = cfg.MODEL.ENCODER.HIERARCHICAL_TRANSFORMER
    assert (encoder.DEPTHS, encoder.WIDTHS, encoder.HEADS) == (
        [2, 2, 6, 2],
        [96, 192, 384, 768],
        [3, 6, 12, 24],
    )
    assert encoder.ATTENTION.SHIFTED_WINDOW.WINDOW_SIZE == 7 and encoder.PATCH_SIZE == 4
    assert cfg.DATA.DATASET.NAME == "osie" and cfg.DATA.IMAGE_SIZE == [600, 800]


FULL = ATTENTION_CONFIGS / "full"
# The full-size models (about 30 M parameters) take a few seconds each on a CPU.
STEP_FILES = [
    pytest.param(path, marks=[pytest.mark.slow] if path.is_relative_to(FULL) else [],
                 id=str(path.relative_to(ATTENTION_CONFIGS).with_suffix("")))
    for path in sorted([*ATTENTION_CONFIGS.glob("*/decoders/*.yaml"), *FULL.glob("*.yaml")])
]  # fmt: skip


@pytest.mark.parametrize("path", STEP_FILES)
def test_each_decoder_and_full_size_model_takes_a_finite_training_step(path: Path) -> None:
    """The files' models as they are (full size too), one step on a small odd-sized batch: a
    smoke test over the files, on purpose."""
    torch.manual_seed(0)
    cfg = load_config(path, [])
    model = build_model(cfg)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.TRAIN.LR)
    prediction, seen = model(_batch(45, 61))
    assert prediction.shape == (2, 45, 61)
    loss_sum, count = model.loss(prediction, seen)
    (loss_sum / count).backward()
    optimizer.step()
    assert math.isfinite(loss_sum.item())
    assert all(torch.isfinite(p).all() for p in model.parameters())
