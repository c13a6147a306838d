"""Composition: every encoder x block x decoder the registries hold builds and runs forward."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch

from code.config import ConfigError, load_config
from code.data.batch import Batch
from code.models.build import build_model
from code.models.layers.gaussian_blur import GaussianBlur
from code.models.shapes import PredictionKind
from code.registry import BLOCKS, DECODERS, ENCODERS, INPUT_STAGES
from code.tasks.base import build_task

# The small Mr-CNN streams both multires encoders run (on crops around points, or as maps).
MULTIRES_STREAMS = {
    "RESOLUTIONS": "[30, 24]",
    "CROP_SIZE": "22",
    "STREAM.NAME": "mrcnn",
    "STREAM.MRCNN.CHANNELS": "[4, 4, 4]",
    "STREAM.MRCNN.KERNELS": "[3, 3, 3]",
    "STREAM.MRCNN.FC_CHANNELS": "8",
    "STREAM.MRCNN.DROPOUT": "0.0",
}
# A small configuration for every registered part; a part without one fails the coverage test.
PART_OPTS = {
    ("INPUT_STAGE", "identity"): {},
    ("INPUT_STAGE", "random_patches"): {
        "RATIO": "0.5",
        "PATCH_SIZE": "8",
        "FILL": "mean",
        "BLUR_SIGMA": "2.0",
    },
    ("INPUT_STAGE", "periphery"): {"RATIO": "0.6", "FILL": "blur", "BLUR_SIGMA": "2.0"},
    ("INPUT_STAGE", "fixations"): {
        "COUNT": "2",
        "RADIUS": "6.0",
        "FILL": "mean",
        "BLUR_SIGMA": "1.0",
    },
    ("INPUT_STAGE", "neva_foveation"): {
        "COUNT": "2",
        "FOVEATION.FOVEA_SIGMA": "0.2",
        "FOVEATION.AMPLITUDE": "1.0",
        "FOVEATION.BLUR_KERNEL": "5",
        "FOVEATION.BLUR_SIGMA": "2.0",
        "FOVEATION.FORGETTING": "0.5",
    },
    ("INPUT_STAGE", "foveate"): {
        "RATIO": "0.7",
        "LEVELS": "3",
        "SIGMA": "1.0",
        "PIXELS_PER_DEGREE": "5.0",
        "ALPHA": "2.5",
    },
    ("ENCODER", "convnet"): {"CHANNELS": "[8, 16]"},
    ("ENCODER", "masked_convnet"): {"CHANNELS": "[8, 16]", "BLOCKS": "2", "OUTPUTS": "[0, 1]"},
    ("ENCODER", "hierarchical_transformer"): {
        "PATCH_EMBED": "nonoverlapping",
        "PATCH_SIZE": "4",
        "DEPTHS": "[1, 2]",
        "WIDTHS": "[8, 16]",
        "HEADS": "[1, 2]",
        "MLP_RATIO": "2.0",
        "FFN": "mix_ffn",
        "ATTENTION.NAME": "shifted_window",  # stage 1: a plain and a shifted window block
        "ATTENTION.SHIFTED_WINDOW.WINDOW_SIZE": "3",
        "OUTPUTS": "[0, 1]",
    },
    ("ENCODER", "dinov2"): {
        "ARCH": "vit_small_patch14_dinov2",
        "LAYERS": "[1, 3]",
        "WEIGHTS": "null",
        "FREEZE": "true",
        "FINAL_NORM": "false",
    },
    ("ENCODER", "multires"): {  # vectors per point: for point readers alone
        **MULTIRES_STREAMS,
        "PREFILTER.NAME": "none",
        "MAX_NORM": "0.1",
    },
    ("ENCODER", "multires_dense"): {  # maps every block and decoder reads
        **MULTIRES_STREAMS,
        "PREFILTER.NAME": "gaussian",
        "PREFILTER.GAUSSIAN.KERNELS": "[3, 3]",
        "PREFILTER.GAUSSIAN.SQRT_SIGMAS": "[0.5, 1.0]",
        "PREFILTER.GAUSSIAN.MIXING": "channels",
        "PREFILTER.GAUSSIAN.NORMALISATION": "l2",
        "MAX_NORM": "0.1",
        "STRIDE": "4",
    },
    ("BLOCK", "identity"): {},
    ("BLOCK", "spade"): {"HIDDEN_CHANNELS": "8"},
    ("BLOCK", "spade_static"): {
        "HIDDEN_CHANNELS": "8",
        "NUM_SEGMENT_IDS": "4",
        "EMBEDDING_CHANNELS": "6",
    },
    ("BLOCK", "cross_attention"): {"NUM_HEADS": "2", "ATTENTION.NAME": "global"},
    ("DECODER", "unet_transformer"): {
        "DEPTHS": "[2]",  # a plain and a shifted window block, as the encoder's stage 1
        "HEADS": "[1]",
        "MLP_RATIO": "2.0",
        "FFN": "mlp",
        "BLUR_SIGMA": "3.0",
        "LEARN_BLUR": "true",
        "CENTERBIAS_WEIGHT": "1.0",
    },
    ("DECODER", "all_mlp"): {
        "EMBED_CHANNELS": "8",
        "BLUR_SIGMA": "3.0",
        "LEARN_BLUR": "true",
        "CENTERBIAS_WEIGHT": "1.0",
    },
    ("DECODER", "regression"): {},
    ("DECODER", "saliency"): {
        "HIDDEN_CHANNELS": "[8]",
        "BLUR_SIGMA": "3.0",
        "LEARN_BLUR": "true",
        "CENTERBIAS_WEIGHT": "1.0",
    },
    ("DECODER", "reconstruction"): {"HIDDEN_CHANNELS": "8"},
    ("DECODER", "conv_reconstruction"): {"CHANNELS": "[16, 8]", "BLOCKS": "1"},
    ("DECODER", "linear_probe"): {"CLASSES": "3", "CODE_SIZE": "[2, 3]"},
    ("DECODER", "point_classifier"): {"HIDDEN_CHANNELS": "8", "DROPOUT": "0.5"},
    ("DECODER", "scanpath"): {
        "SALIENCY_CHANNELS": "[8]",
        "HISTORY_LENGTH": "2",
        "HISTORY_CHANNELS": "[8]",
        "SELECTION_CHANNELS": "[8]",
        "BLUR_SIGMA": "3.0",
        "LEARN_BLUR": "true",
        "CENTERBIAS_WEIGHT": "1.0",
    },
}
# Data that provides every optional batch field (segments, scanpath histories): parts declare
# what they read in ``requires``, and with these every combination is allowed.
FULL_DATA_OPTS = [
    "DATA.SEGMENTS.NAME", "kmeans",
    "DATA.SEGMENTS.KMEANS.NUM_SEGMENTS", "3",
    "DATA.SEGMENTS.KMEANS.ITERATIONS", "5",
    "DATA.SAMPLES.NAME", "scanpath",
    "DATA.SAMPLES.SCANPATH.HISTORY_LENGTH", "3",
    "DATA.SAMPLES.SCANPATH.INCLUDE_FIRST", "false",
]  # fmt: skip
REGISTRIES = {
    "INPUT_STAGE": INPUT_STAGES,
    "ENCODER": ENCODERS,
    "BLOCK": BLOCKS,
    "DECODER": DECODERS,
}


def _opts(parts: dict[str, str]) -> list[str]:
    opts: list[str] = []
    for kind, name in parts.items():
        opts += [f"MODEL.{kind}.NAME", name]
        for key, value in PART_OPTS[(kind, name)].items():
            opts += [f"MODEL.{kind}.{name.upper()}.{key}", value]
    return opts


def _batch(height: int, width: int) -> Batch:
    centerbias = torch.full((2, height, width), -float(torch.log(torch.tensor(height * width))))
    segments = torch.zeros(2, height, width, dtype=torch.int64)
    segments[0, :, width // 3 :] = 1
    segments[0, height // 2 :, : width // 2] = 3  # label 2 absent: an empty segment
    history = torch.tensor([[5.0, 6.0], [20.0, 30.0], [0.0, 0.0]]).expand(2, 2, 3, 2)
    history_mask = torch.tensor([[True, True, False], [True, False, False]]).expand(2, 2, 3)
    return Batch(
        input=torch.rand(2, 3, height, width),
        fixations=torch.tensor(
            [[[3.5, 4.2], [width - 0.5, height - 0.5]], [[10.0, 1.0], [0.0, 0.0]]]
        ),
        fixation_mask=torch.tensor([[True, True], [True, False]]),
        centerbias=centerbias,
        image_index=torch.arange(2),
        original_size=torch.tensor([[height, width]] * 2),
        segments=segments,
        history=history.clone(),
        history_mask=history_mask.clone(),
        fixation_rows=torch.tensor([[0, 1], [2, -1]]),
        scanpaths=history.clone(),  # two scanpaths per image
        scanpath_mask=history_mask.clone(),
        label=torch.tensor([0, 2]),
        target=torch.rand(2, 3, height, width),
        points=torch.tensor([[[3.5, 4.2], [width - 0.5, height - 0.5], [0.0, 0.0]]] * 2),
        point_labels=torch.tensor([[1.0, 0.0, 0.0]] * 2),
    )


def test_every_registered_part_has_a_test_configuration() -> None:
    registered = {(kind, name) for kind, reg in REGISTRIES.items() for name in reg.names()}
    assert registered == set(PART_OPTS)


# Decoders whose blocks attend with the encoder's mechanism, and the encoders that announce one.
ATTENDING_DECODERS = {"unet_transformer"}
ATTENDING_ENCODERS = {"hierarchical_transformer"}
# Encoders of vectors per point (``PointSpec``), which pass the identity block to point readers.
POINT_ENCODERS = {"multires"}
ALL = [
    c
    for c in itertools.product(ENCODERS.names(), BLOCKS.names(), DECODERS.names())
    if c[0] not in POINT_ENCODERS or c[1:] == ("identity", "point_classifier")
]
COMBINATIONS = [c for c in ALL if c[2] not in ATTENDING_DECODERS or c[0] in ATTENDING_ENCODERS]


@pytest.mark.parametrize(("encoder", "block", "decoder"), COMBINATIONS)
def test_combination_builds_and_runs(encoder: str, block: str, decoder: str) -> None:
    """A smoke test over the grid of parts, on purpose: every combination builds, runs on a
    45x61 batch, gives a prediction of its kind's shape (densities normalised, padding not
    scored) and gradients. The parts' values are checked by their own tests."""
    cfg = load_config(
        Path("configs/quickstart.yaml"),
        _opts({"ENCODER": encoder, "BLOCK": block, "DECODER": decoder}) + FULL_DATA_OPTS,
    )
    model = build_model(cfg)
    batch = _batch(45, 61)  # not a multiple of any stride
    prediction, seen = model(batch)
    loss_sum, count = model.loss(prediction, seen)
    assert torch.isfinite(loss_sum) and count > 0
    shapes = {
        PredictionKind.LOG_DENSITY: (2, 45, 61),
        PredictionKind.CONDITIONAL_LOG_DENSITY: (2, 2, 45, 61),  # one density per fixation
        PredictionKind.IMAGE: (2, 3, 45, 61),
        PredictionKind.CLASS_LOGITS: (2, 3),
        PredictionKind.POINT_LOGITS: (2, 3),  # one per point
    }
    assert prediction.shape == shapes[model.prediction]
    if model.prediction.is_density:
        total = prediction.flatten(-2).logsumexp(dim=-1)
        assert torch.allclose(total, torch.zeros_like(total), atol=1e-5)
        assert count == 3  # masked padding is not scored
    (loss_sum / count).backward()
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert all(p.grad is not None for p in trainable)


@pytest.mark.parametrize(("encoder", "block", "decoder"), sorted(set(ALL) - set(COMBINATIONS)))
def test_a_decoder_that_attends_refuses_an_encoder_that_announces_no_mechanism(
    encoder: str, block: str, decoder: str
) -> None:
    cfg = load_config(
        Path("configs/quickstart.yaml"),
        _opts({"ENCODER": encoder, "BLOCK": block, "DECODER": decoder}) + FULL_DATA_OPTS,
    )
    with pytest.raises(ConfigError, match=rf"MODEL\.DECODER\.{decoder.upper()} .* announces none"):
        build_model(cfg)


@pytest.mark.parametrize(
    ("part", "message"),
    [
        (
            ["MODEL.BLOCK.NAME", "spade", "MODEL.BLOCK.SPADE.HIDDEN_CHANNELS", "8"],
            "MODEL.BLOCK.NAME 'spade' reads segments, .* Provided by: segments: "
            "DATA.SEGMENTS.NAME files or DATA.SEGMENTS.NAME kmeans",
        ),
        (
            ["MODEL.DECODER.NAME", "scanpath", *_opts({"DECODER": "scanpath"})[2:]],
            "MODEL.DECODER.NAME 'scanpath' reads history, history_mask, .* Provided by: "
            "history: DATA.SAMPLES.NAME scanpath",
        ),
        (
            [
                "MODEL.DECODER.NAME",
                "reconstruction",
                "MODEL.DECODER.RECONSTRUCTION.HIDDEN_CHANNELS",
                "8",
                "DATA.SAMPLES.NAME",
                "image",
                *("DATA.SAMPLES.IMAGE.SCANPATHS", "false", "DATA.SAMPLES.IMAGE.FOREGROUND_DIR"),
                *("null", "DATA.SAMPLES.IMAGE.DROP_WITHOUT_FOREGROUND", "false"),
            ],
            "task 'density' scores .*log-densities; MODEL.DECODER.NAME 'reconstruction' "
            "predicts image",
        ),
    ],
)
def test_part_needing_data_the_run_lacks_fails_naming_what_provides_it(
    part: list[str], message: str
) -> None:
    small = ["DATA.DATASET.GENERATED.NUM_IMAGES", "20", "EVAL.CENTERBIAS_FOLDS", "2"]
    task = build_task(load_config(Path("configs/quickstart.yaml"), [*small, *part]))
    task.prepare()
    with pytest.raises(ConfigError, match=message):
        task.build_model()


def test_nll_scores_the_pixel_a_fixation_lies_in() -> None:
    cfg = load_config(Path("configs/quickstart.yaml"), [])
    decoder = build_model(cfg).decoder
    log_density = torch.log_softmax(torch.randn(1, 5, 7).flatten(1), 1).view(1, 5, 7)
    fixations = torch.tensor([[[6.9, 4.99], [0.0, 0.0]]])
    batch = _batch(5, 7)
    batch.fixations, batch.fixation_mask = fixations, torch.tensor([[True, True]])
    nll, count = decoder.loss(log_density, batch)
    expected = -(log_density[0, 4, 6] + log_density[0, 0, 0]) / torch.log(torch.tensor(2.0))
    assert torch.isclose(nll, expected) and count == 2


def test_finalizer_adds_the_weighted_centre_bias_log_density() -> None:
    """The finalizer's output is log_softmax(blurred readout + w · log centre bias), w = 0.7,
    on a 6x10 image whose centre bias peaks off-centre. The reference takes the blurred readout
    from the same finalizer with a zero centre bias (log_softmax only shifts it) and adds
    0.7 · log centre bias by hand. Catches the centre bias subtracted, multiplied into the
    readout, added without its weight (w = 1) or left out, mirrored along either axis (a
    transposed one cannot even be added on a non-square image), and the readout dropped."""
    from code.models.decoders.finalizer import Finalizer

    torch.manual_seed(0)
    height, width, weight = 6, 10, 0.7
    finalizer = Finalizer(stride=2, blur_sigma=3.0, learn_blur=True, centerbias_weight=weight)
    readout = torch.randn(2, 1, 3, 5)
    rows = torch.arange(height, dtype=torch.float32)[:, None]
    cols = torch.arange(width, dtype=torch.float32)[None, :]
    bump = -0.5 * (rows - 1) ** 2 - 0.2 * (cols - 7) ** 2  # peak at row 1, column 7
    centerbias = torch.log_softmax(bump.flatten(), 0).view(height, width).expand(2, -1, -1)
    with torch.no_grad():
        without = finalizer(readout, torch.zeros(2, height, width))
        output = finalizer(readout, centerbias)
    expected = torch.log_softmax((without + weight * centerbias).flatten(1), 1).view_as(output)
    assert torch.allclose(output, expected, atol=1e-5)
    # the readout still shapes the result: a finalizer that dropped it would pass the above
    assert (
        output - torch.log_softmax(weight * centerbias.flatten(1), 1).view_as(output)
    ).abs().max() > 0.1
    assert torch.allclose(torch.logsumexp(output.flatten(1), 1), torch.zeros(2), atol=1e-5)


def test_gaussian_blur_matches_scipy_inside_the_image() -> None:
    from scipy.ndimage import gaussian_filter

    image = torch.rand(1, 1, 40, 40, dtype=torch.float64)
    blurred = GaussianBlur(2.0, learnable=False)(image)[0, 0].numpy()
    reference = gaussian_filter(image[0, 0].numpy(), sigma=2.0, truncate=3.0, mode="nearest")
    assert abs(blurred - reference).max() < 1e-6


@pytest.mark.parametrize("stage", INPUT_STAGES.names())
def test_every_input_stage_feeds_a_reconstruction_model(stage: str) -> None:
    """A smoke test over the input stages, on purpose: each feeds a reconstruction model, and
    the loss counts the pixels its mask leaves to score. What each stage shows is checked by
    its own tests."""
    parts = {"INPUT_STAGE": stage, "ENCODER": "convnet", "BLOCK": "identity"}
    cfg = load_config(
        Path("configs/quickstart.yaml"), _opts({**parts, "DECODER": "reconstruction"})
    )
    model = build_model(cfg)
    prediction, seen = model(_batch(45, 61))
    loss_sum, count = model.loss(prediction, seen)
    assert torch.isfinite(loss_sum) and prediction.shape == (2, 3, 45, 61)
    assert count == (
        2 * 3 * 45 * 61 if stage == "identity" else seen.loss_mask.expand(2, 3, 45, 61).sum()
    )
