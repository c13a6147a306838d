"""Mr-CNN: the multi-resolution encoder's crops, streams and constraints, the patch items, the
momentum schedule, dense maps, and the patch_classification task end to end (tiny sizes)."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from yacs.config import CfgNode

from code.config import load_config
from code.data.batch import Batch
from code.data.build import build_samples, build_splits, gaze_dataset
from code.data.centerbias import CenterBias
from code.data.patches import fixation_map
from code.engine.checkpoint import Checkpointer
from code.engine.optim import LinearMomentum
from code.main import main
from code.metrics.map_density import MapDensityFit
from code.models.build import build_model
from code.models.encoders.multires import VGGStream, clip_filter_norms_, crops_at
from code.models.layers.gaussian_blur import GaussianPrefilter
from code.models.shapes import PointSpec
from code.predict import main as predict
from code.registry import ENCODERS, ConfigError
from code.tasks.base import build_task
from code.tasks.patch_classification import DenseSaliency
from tests.small_run import SMALL

FAITHFUL = Path("configs/03_mr_cnn/faithful.yaml")
# Tiny Mr-CNN streams (22x22 crops leave 1x1 after three valid convolutions and pools).
TINY_MODEL = [
    "MODEL.ENCODER.MULTIRES.RESOLUTIONS", "[30, 24, 22]",
    "MODEL.ENCODER.MULTIRES.CROP_SIZE", "22",
    "MODEL.ENCODER.MULTIRES.STREAM.MRCNN.CHANNELS", "[4, 4, 4]",
    "MODEL.ENCODER.MULTIRES.STREAM.MRCNN.KERNELS", "[3, 3, 3]",
    "MODEL.ENCODER.MULTIRES.STREAM.MRCNN.FC_CHANNELS", "8",
    "MODEL.DECODER.POINT_CLASSIFIER.HIDDEN_CHANNELS", "8",
]  # fmt: skip
# The quickstart's generated data shrunk (tests/small_run.py), as patch items.
TINY_DATA = [
    "DATA.DATASET.NAME", "generated",
    "DATA.DATASET.GENERATED.NUM_IMAGES", "46",
    "DATA.DATASET.GENERATED.HEIGHT", "36",
    "DATA.DATASET.GENERATED.WIDTH", "48",
    "DATA.DATASET.GENERATED.NUM_SUBJECTS", "3",
    "DATA.DATASET.GENERATED.FIXATIONS_PER_SCANPATH", "5",
    "DATA.DATASET.GENERATED.SEED", "0",
    "DATA.SAMPLES.PATCHES.POSITIVES", "2",
    "DATA.SAMPLES.PATCHES.NEGATIVES", "3",
    "DATA.SAMPLES.PATCHES.SIGMA", "3.0",
    "TASK.PATCH_CLASSIFICATION.GRID", "[3, 4]",
    *SMALL,
    "TRAIN.EPOCHS", "1",
]  # fmt: skip


def tiny_config(tmp_path: Path, *opts: str) -> CfgNode:
    output = ["OUTPUT_DIR", str(tmp_path / "run"), "DATA.CACHE.DIR", "null"]
    return load_config(FAITHFUL, [*TINY_DATA, *TINY_MODEL, *output, *opts])


def tiny_encoder(**keys: object) -> torch.nn.Module:
    node = {
        "RESOLUTIONS": [30, 24, 22],
        "CROP_SIZE": 22,
        "STREAM": {"NAME": "mrcnn", "MRCNN": {"CHANNELS": [4, 4, 4], "KERNELS": [3, 3, 3],
                                               "FC_CHANNELS": 8, "DROPOUT": 0.0}},
        "PREFILTER": {"NAME": "none", "NONE": {}},
        "MAX_NORM": 0.1,
        **keys,
    }  # fmt: skip
    name = "multires_dense" if "STRIDE" in keys else "multires"
    return ENCODERS.build(CfgNode({"NAME": name, name.upper(): node}))


def with_points(image: torch.Tensor, points: torch.Tensor) -> Batch:
    """The batch of ``image`` whose ``points`` a per-point encoder reads."""
    count, (height, width) = len(image), image.shape[-2:]
    return Batch(input=image, image_index=torch.arange(count),
                 original_size=torch.tensor([[height, width]] * count), points=points)  # fmt: skip


@pytest.mark.parametrize("size", [5, 4])
def test_a_crops_centre_pixel_is_the_point_and_borders_repeat_the_edge(size: int) -> None:
    image = torch.rand(2, 3, 11, 13)
    points = torch.tensor([[[6.7, 4.2], [0.0, 0.0]], [[12.9, 10.99], [3.0, 9.5]]])
    crops = crops_at(image, points, size).view(2, 2, 3, size, size)
    for b in range(2):
        for p in range(2):
            x, y = points[b, p].floor().long().tolist()
            assert torch.equal(crops[b, p, :, size // 2, size // 2], image[b, :, y, x])
    # (0, 0): everything above and left of the centre is the corner pixel
    corner = crops[0, 1, :, : size // 2 + 1, : size // 2 + 1]
    assert torch.equal(corner, image[0, :, :1, :1].expand_as(corner))
    # bottom-right corner point: rows and columns beyond the image repeat its last row/column
    last = crops[1, 0, :, size // 2 :, size // 2 :]
    assert torch.equal(last, image[1, :, -1:, -1:].expand_as(last))


def test_every_stream_crops_around_the_point_in_its_resized_image() -> None:
    encoder = tiny_encoder()
    x = torch.rand(1, 3, 36, 48)
    points = torch.tensor([[[47.5, 35.5], [0.2, 0.3], [20.0, 11.0]]])
    for index, size in enumerate(encoder.resolutions):
        resized = encoder.resized(x, index)
        crops = encoder.crops(x, points, index)
        for p, (px, py) in enumerate(points[0].tolist()):
            col, row = int(px * size / 48), int(py * size / 36)
            assert torch.equal(crops[p, :, 11, 11], resized[0, :, row, col])


def test_max_norm_rescales_only_the_filters_above_the_bound() -> None:
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(4, 3, 2, 2, generator=generator)
    norms = torch.tensor([0.05, 0.2, 1.0, 3.0])
    weight = weight / weight.flatten(1).norm(dim=1).view(-1, 1, 1, 1) * norms.view(-1, 1, 1, 1)
    # Filter 2 lies exactly on the bound (one non-zero weight, so its norm is exact): kept.
    weight[2] = 0.0
    weight[2, 0, 0, 0] = 0.1
    before = weight.clone()
    clip_filter_norms_(weight, 0.1)
    after = weight.flatten(1).norm(dim=1)
    assert torch.allclose(after, torch.tensor([0.05, 0.1, 0.1, 0.1]), atol=1e-7)
    assert torch.equal(weight[0], before[0]) and torch.equal(weight[2], before[2])
    direction = before[[1, 3]].flatten(1) / before[[1, 3]].flatten(1).norm(dim=1, keepdim=True)
    assert torch.allclose(weight[[1, 3]].flatten(1) / 0.1, direction, atol=1e-6)


def test_the_encoder_constrains_every_streams_first_layer() -> None:
    encoder = tiny_encoder()
    with torch.no_grad():
        for stream in encoder.streams:
            stream.first_conv.weight.mul_(100)
        encoder.constrain()
    for stream in encoder.streams:
        assert stream.first_conv.weight.flatten(1).norm(dim=1).max() <= 0.1 + 1e-6


def test_linear_momentum_hits_its_endpoints_and_resumes_exactly() -> None:
    schedule = LinearMomentum(total_steps=11, start=0.9, end=0.99)
    assert schedule.momentum(0) == 0.9 and schedule.momentum(10) == 0.99
    assert schedule.momentum(5) == pytest.approx(0.945, abs=1e-12)
    for start, end in ((1.0, 0.99), (0.9, 1.0), (-0.1, 0.9)):  # momentum 1 never forgets
        with pytest.raises(ValueError, match=r"must be in \[0, 1\)"):
            LinearMomentum(total_steps=11, start=start, end=end)

    def train(steps: range, state: dict | None) -> tuple[torch.Tensor, list[float], dict]:
        torch.manual_seed(0)
        weight = torch.nn.Parameter(torch.ones(3))
        optimizer = torch.optim.SGD([weight], lr=0.1, momentum=0.5)
        if state is not None:
            weight.data.copy_(state["weight"])
            optimizer.load_state_dict(state["optimizer"])
        momenta = []
        for step in steps:
            weight.grad = torch.sin(torch.arange(3.0) + step)
            schedule.apply(optimizer, step)
            momenta.append(optimizer.param_groups[0]["momentum"])
            optimizer.step()
        return weight.detach().clone(), momenta, {"weight": weight.detach().clone(),
                                                  "optimizer": optimizer.state_dict()}  # fmt: skip

    whole, momenta, _ = train(range(11), None)
    _, first, state = train(range(6), None)
    resumed, rest, _ = train(range(6, 11), state)
    assert first + rest == momenta and torch.equal(resumed, whole)


def test_patch_points_lie_above_and_below_the_thresholds_and_are_redrawn_each_epoch(
    tmp_path: Path,
) -> None:
    cfg = tiny_config(tmp_path, "DATA.SAMPLES.PATCHES.POSITIVES", "5",
                      "DATA.SAMPLES.PATCHES.NEGATIVES", "7")  # fmt: skip
    train = build_splits(cfg, gaze_dataset(cfg)).train
    samples = build_samples(
        cfg, train, "train", CenterBias(0.05, 0.01).fit(train), None, transformed=True
    )
    for index in range(3):
        sample = samples[(0, index)]
        density = fixation_map(sample["fixations"], 36, 48, 3.0)
        cols, rows = np.floor(sample["points"]).astype(int).T
        values = density[rows, cols]
        assert (values[:5] > 0.9).all() and (values[5:] < 0.1).all()
        assert sample["point_labels"].tolist() == [1.0] * 5 + [0.0] * 7
        assert np.array_equal(samples[(0, index)]["points"], sample["points"])  # seeded
        assert not np.array_equal(samples[(1, index)]["points"], sample["points"])  # redrawn
        assert np.array_equal(samples[index]["points"], sample["points"])  # eval: epoch 0


def test_dense_grid_equals_classifying_each_point_alone(tmp_path: Path) -> None:
    model = build_model(tiny_config(tmp_path)).eval()
    batch = dataclasses.replace(_image_batch(2, 36, 48), points=None)
    dense = DenseSaliency(model, [3, 4], None, points_per_pass=5)
    with torch.no_grad():
        maps = dense(batch)[0]
        grid = dense.grid_points(36, 48, torch.device("cpu"))
        single = torch.stack([
            torch.stack([
                model(dataclasses.replace(batch, points=grid[i, j].expand(2, 1, 2)))[0][:, 0]
                for j in range(4)
            ], 1)
            for i in range(3)
        ], 1).sigmoid()  # fmt: skip
    assert maps.shape == (2, 3, 4)
    assert torch.allclose(maps, single, atol=1e-5, rtol=0)


def _image_batch(size: int, height: int, width: int) -> Batch:
    torch.manual_seed(0)
    return Batch(
        input=torch.rand(size, 3, height, width),
        image_index=torch.arange(size),
        original_size=torch.tensor([[height, width]] * size),
    )


def test_vgg_streams_load_a_timm_vgg_checkpoint(tmp_path: Path) -> None:
    from timm.models.vgg import VGG, cfgs

    timm_vgg = VGG(cfgs["vgg11"], num_classes=2, mlp_ratio=1 / 4096)  # tiny head, same features
    path = tmp_path / "vgg11.pth"
    torch.save(timm_vgg.state_dict(), path)
    stream = VGGStream(32, "vgg11", False, 2, 8, 0.0, str(path))
    for name, value in stream.features.state_dict().items():
        assert torch.equal(value, timm_vgg.state_dict()[f"features.{name}"])
    vgg = {"NAME": "vgg", "VGG": {"ARCH": "vgg11", "BATCH_NORM": False, "STAGES": 2,
                                  "FC_CHANNELS": 8, "DROPOUT": 0.0,
                                  "WEIGHTS": str(tmp_path / "missing.pth")}}  # fmt: skip
    with pytest.raises(
        ConfigError, match=r"^MODEL\.ENCODER\.MULTIRES\.STREAM\.VGG\.WEIGHTS VGG weights not found"
    ):
        tiny_encoder(RESOLUTIONS=[32], CROP_SIZE=32, STREAM=vgg)
    with pytest.raises(ValueError, match="not the timm VGG layout"):
        VGGStream(32, "vgg11", True, 2, 8, 0.0, str(path))  # a BatchNorm layout


def test_dense_encoder_maps_are_the_crop_classifier_on_the_stream_lattice() -> None:
    """Dense position i of a stream is the crop centred on resized pixel stride·i."""
    encoder = tiny_encoder(STRIDE=4).eval()
    x = encoder.normalize(torch.rand(1, 3, 30, 30))
    stream, index = encoder.streams[0], 0
    before, after = 11, 10
    padded = torch.nn.functional.pad(encoder.resized(x, index), (before, after, before, after),
                                     mode="replicate")  # fmt: skip
    with torch.no_grad():
        dense = stream(padded)
        lattice = torch.tensor([[[8 * j + 0.5, 8 * i + 0.5] for i in range(4) for j in range(4)]])
        crops = crops_at(encoder.resized(x, index), lattice, 22)
        assert torch.allclose(stream(crops).view(4, 4, -1).permute(2, 0, 1), dense[0], atol=1e-5)


def _lattice_neighbours(
    centre: float, extent: int, size: int, stride: int
) -> list[tuple[float, float]]:
    """Where a dense cell centre ``centre`` (input px along an axis of ``extent`` px) falls
    between the crops a stride-``stride`` stream computes on its ``size``-px resized image:
    (input-px point whose crop it is, bilinear weight) for the one or two crops around it.

    From the module docstring: input px c is resized pixel index c·size/extent − 0.5 (pixel
    centres at integers); the stream's map holds the crops centred on resized pixels stride·i;
    the crop of a point is centred on the resized pixel holding it, so the point
    (k + 0.5)·extent/size has resized pixel k."""
    index = centre * size / extent - 0.5
    below = math.floor(index / stride) * stride
    weight = (index - below) / stride
    points = [((below + 0.5) * extent / size, 1 - weight)]
    if weight > 0:
        points.append(((below + stride + 0.5) * extent / size, weight))
    return points


def test_dense_encoder_cells_are_the_crop_encoders_outputs_at_their_centres() -> None:
    """Every cell (i, j) of the multires_dense (STRIDE 8) map of a 24x40 image against the
    multires encoder's crops (same weights) run on single points: at cells whose centre
    ((j + ½)·8, (i + ½)·8) px lands on the stream's lattice (resized pixel a multiple of its
    stride 2) the dense value is the crop encoder's output for the cell centre itself;
    elsewhere the bilinear mix of the crops either side (``_lattice_neighbours``). Two streams,
    15 and 45 px, put different cells on the lattice (15: rows 0, 2 × columns 1, 3; 45: row 1 ×
    columns 0, 2, 4), and their channels are concatenated in order.

    Fails for: cells read one cell off (centres (j + 1½)·8), half a cell off (centres j·8),
    half a stream stride off, without the half-pixel shift of the resized image, rows and
    columns swapped (the width's scale on rows), the replicate pad's before/after swapped,
    ``align_corners`` False on the stream map, the streams' channels in the other order."""
    keys = {
        "RESOLUTIONS": [15, 45],
        "CROP_SIZE": 8,
        "STREAM": {"NAME": "mrcnn", "MRCNN": {"CHANNELS": [6], "KERNELS": [3],
                                               "FC_CHANNELS": 16, "DROPOUT": 0.0}},
    }  # fmt: skip
    dense = tiny_encoder(STRIDE=8, **keys).double().eval()
    crops = tiny_encoder(**keys).double().eval()
    crops.load_state_dict(dense.state_dict())
    height, width, cell = 24, 40, 8
    image = torch.rand(1, 3, height, width, generator=torch.Generator().manual_seed(5),
                       dtype=torch.float64)  # fmt: skip
    with torch.no_grad():
        maps = dense(image)["multires"][0]  # (C, 3, 5)
    assert maps.shape[-2:] == (3, 5)
    on_lattice: dict[int, set[tuple[int, int]]] = {15: set(), 45: set()}
    channel = 0
    for size, stream in zip(keys["RESOLUTIONS"], dense.streams, strict=True):
        stop = channel + stream.channels
        cells = [(i, j) for i in range(3) for j in range(5)]
        mixes = []  # per cell: [(x, y, weight)] of the crops it mixes
        for i, j in cells:
            rows = _lattice_neighbours((i + 0.5) * cell, height, size, stream.stride)
            cols = _lattice_neighbours((j + 0.5) * cell, width, size, stream.stride)
            mixes.append([(x, y, wx * wy) for x, wx in cols for y, wy in rows])
        points = torch.tensor([[(x, y) for mix in mixes for x, y, _ in mix]], dtype=torch.float64)
        with torch.no_grad():  # all the points in one pass: (C, P)
            outputs = crops(image, with_points(image, points))["multires"][0, channel:stop].split(
                [len(mix) for mix in mixes], dim=1
            )
        for (i, j), mix, output in zip(cells, mixes, outputs, strict=True):
            weights = torch.tensor([w for _, _, w in mix], dtype=torch.float64)
            # 1e-6: the grid positions are computed in float32
            torch.testing.assert_close(maps[channel:stop, i, j], output @ weights, rtol=0,
                                       atol=1e-6, msg=f"{size} px, cell {i, j}")  # fmt: skip
            if len(mix) == 1:
                assert mix[0][:2] == ((j + 0.5) * cell, (i + 0.5) * cell)
                on_lattice[size].add((i, j))
        channel = stop
    assert on_lattice == {15: {(0, 1), (0, 3), (2, 1), (2, 3)}, 45: {(1, 0), (1, 2), (1, 4)}}


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        (
            {"RESOLUTIONS": [30, 20, 22]},
            r"^MODEL\.ENCODER\.MULTIRES\.RESOLUTIONS \[30, 20, 22\]: images resized to \[20\]",
        ),
        ({"MAX_NORM": 0.0}, r"^MODEL\.ENCODER\.MULTIRES\.MAX_NORM must be positive"),
        ({"STRIDE": 0}, r"^MODEL\.ENCODER\.MULTIRES_DENSE\.STRIDE must be positive, got 0"),
        (
            {"STREAM": {"NAME": "mrcnn", "MRCNN": {"CHANNELS": [4, 4, 4], "KERNELS": [3, 3, 9],
                                                   "FC_CHANNELS": 8, "DROPOUT": 0.0}}},
            r"^MODEL\.ENCODER\.MULTIRES\.STREAM\.MRCNN\.KERNELS \[3, 3, 9\]: the stream's "
            "layers leave nothing of a 22x22 crop",
        ),
        (
            {"PREFILTER": {"NAME": "gaussian", "GAUSSIAN": {
                "KERNELS": [7, 5], "SQRT_SIGMAS": [0.5, 0.75, 1.0], "MIXING": "depthwise",
                "NORMALISATION": "sum"}}},
            r"^MODEL\.ENCODER\.MULTIRES\.PREFILTER\.GAUSSIAN\.KERNELS \[7, 5\] .* one entry per "
            "stream",
        ),
    ],
)  # fmt: skip
def test_bad_encoder_settings_name_the_key(keys: dict, message: str) -> None:
    """Each part names its key in its own node; the registry makes it the full key."""
    with pytest.raises(ConfigError, match=message):
        tiny_encoder(**keys)


def test_a_bad_task_setting_names_its_full_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^TASK\.PATCH_CLASSIFICATION\.GRID must be \[rows"):
        build_task(tiny_config(tmp_path, "TASK.PATCH_CLASSIFICATION.GRID", "[0, 4]"))


def test_a_point_outside_the_image_is_named() -> None:
    encoder = tiny_encoder()
    points = torch.tensor([[[3.0, 4.0], [48.0, 2.0]]])
    image = torch.rand(1, 3, 36, 48)
    with pytest.raises(ValueError, match=r"point 1 of batch item 0, .* outside its 48x36 image"):
        encoder(image, with_points(image, points))


def test_the_per_point_encoder_reads_its_points_from_the_batch_and_map_readers_refuse_them(
    tmp_path: Path,
) -> None:
    """The one encoder contract, ``encoder(image, batch)``: the multires encoder takes the points
    from the batch (one vector per point, as for each point alone), refuses a call without them,
    and announces vectors per point, not a map, so a map decoder refuses it by name."""
    encoder = tiny_encoder().eval()
    assert isinstance(encoder.output_shapes["multires"], PointSpec)
    image, points = torch.rand(2, 3, 36, 48), torch.tensor([[[3.5, 4.0], [40.0, 30.0]]] * 2)
    with torch.no_grad():
        together = encoder(image, with_points(image, points))["multires"]
        alone = encoder(image, with_points(image, points[:, 1:]))["multires"]
    assert together.shape == (2, 24, 2)
    torch.testing.assert_close(together[..., 1:], alone, rtol=0, atol=1e-6)
    for batch in (None, with_points(image, None)):
        with pytest.raises(ValueError, match=r"multires encoder reads batch\.points"):
            encoder(image, batch)
    decoder = ["MODEL.DECODER.NAME", "saliency", "MODEL.DECODER.SALIENCY.HIDDEN_CHANNELS", "[4]",
               "MODEL.DECODER.SALIENCY.BLUR_SIGMA", "1.0",
               "MODEL.DECODER.SALIENCY.LEARN_BLUR", "false",
               "MODEL.DECODER.SALIENCY.CENTERBIAS_WEIGHT", "1.0"]  # fmt: skip
    with pytest.raises(ValueError, match=r"per point .* MODEL\.ENCODER\.NAME multires_dense"):
        build_model(tiny_config(tmp_path, *decoder))


def test_patch_classification_trains_and_scores_its_maps_beside_the_centre_bias(
    tmp_path: Path,
) -> None:
    blur = [
        "MODEL.ENCODER.MULTIRES.PREFILTER.NAME", "gaussian",
        "MODEL.ENCODER.MULTIRES.PREFILTER.GAUSSIAN.KERNELS", "[3, 3, 3]",
        "MODEL.ENCODER.MULTIRES.PREFILTER.GAUSSIAN.SQRT_SIGMAS", "[0.5, 0.75, 1.0]",
        "MODEL.ENCODER.MULTIRES.PREFILTER.GAUSSIAN.MIXING", "depthwise",
        "MODEL.ENCODER.MULTIRES.PREFILTER.GAUSSIAN.NORMALISATION", "sum",
    ]  # fmt: skip
    output = ["OUTPUT_DIR", str(tmp_path / "run"), "DATA.CACHE.DIR", "null"]
    report = main(["--cfg", str(FAITHFUL), "--opts", *TINY_DATA, *TINY_MODEL, *output, *blur])
    metrics = report["metrics"]
    assert {"AUC", "sAUC", "AUC_Judd", "NSS", "CC", "LL", "IG"} <= metrics.keys()
    assert report["settings"]["kind"] == "saliency-map"
    # LL and IG are the maps' as densities, fitted on the training images' maps
    fitted = report["map_density"]
    assert metrics["IG"] == fitted["metrics"]["IG"]
    # IG in bits over the centre bias, on the same fixations as the LLs (nats)
    centre_ll = report["baselines"]["center_bias"]["LL"]
    assert metrics["IG"] == pytest.approx((metrics["LL"] - centre_ll) / math.log(2), abs=1e-9)
    saved = MapDensityFit.load(tmp_path / "run" / "map_density.json")
    assert saved.describe() == fitted["parameters"]
    train = json.loads((tmp_path / "run" / "split.json").read_text())["train"]
    assert saved.training["images"] == len(train) and not (tmp_path / "run" / "train_maps").exists()
    assert "AUC_Judd" in report["baselines"]["center_bias"]
    assert len(report["prefilter_sigma"]) == 3
    epochs = (tmp_path / "run" / "metrics.jsonl").read_text()
    assert "val_auc" in epochs and "prefilter_sigma_2" in epochs
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(np.full((30, 40, 3), 128, np.uint8)).save(images / "grey.png")
    predict(["--checkpoint", str(Checkpointer(tmp_path / "run").best), "--input", str(images),
             "--output", str(tmp_path / "out")])  # fmt: skip
    # a flat image: every point's crops are the same grey, so is its map (no position enters)
    grey = np.load(tmp_path / "out" / "maps" / "grey.npy")
    assert grey.shape == (30, 40) and grey.min() > 0 and np.ptp(grey) < 1e-5
    assert (tmp_path / "out" / "overlays" / "grey_overlay.png").is_file()


@pytest.mark.parametrize("mixing", ["depthwise", "channels"])
@pytest.mark.parametrize("normalisation", ["sum", "l2"])
def test_prefilter_kernels_are_normalised_and_sigma_stays_positive(
    mixing: str, normalisation: str
) -> None:
    blur = GaussianPrefilter(5, 0.75, mixing, normalisation)
    assert blur.sigma.item() == pytest.approx(0.5625)
    weight = blur.kernel(3, torch.float64).flatten(1)
    norms = weight.sum(1) if normalisation == "sum" else weight.norm(dim=1)
    assert torch.allclose(norms, torch.ones(3, dtype=torch.float64))
    constant = torch.full((1, 3, 9, 9), 0.25)
    if (mixing, normalisation) == ("depthwise", "sum"):  # a proper blur keeps a flat image
        assert torch.allclose(blur(constant), constant)
    # sqrt(σ) at 0: σ is floored at MIN_SIGMA, where the kernel is a unit impulse (its
    # neighbours weigh exp(−0.5 / MIN_SIGMA²) = 0): depthwise, each channel as it is; mixing
    # channels, their sum over the 3 inputs' equal weights, 1/3 each (sum) or 1/√3 (l2)
    with torch.no_grad():
        blur.sqrt_sigma.zero_()
    assert blur.sigma.item() == pytest.approx(GaussianPrefilter.MIN_SIGMA) == 1e-3
    x = torch.rand(1, 3, 9, 9, generator=torch.Generator().manual_seed(0))
    if mixing == "depthwise":
        expected = x
    else:
        weight = 1 / 3 if normalisation == "sum" else 1 / 3**0.5
        expected = (weight * x.sum(1, keepdim=True)).expand_as(x)
    torch.testing.assert_close(blur(x), expected, rtol=0, atol=1e-6)


CONFIGS = sorted(p for p in Path("configs/03_mr_cnn").rglob("*.yaml") if "_base_" not in p.parts)


@pytest.mark.slow
@pytest.mark.parametrize("path", CONFIGS, ids=[str(p.relative_to("configs")) for p in CONFIGS])
def test_every_mr_cnn_config_trains_and_evaluates_at_its_own_size(
    path: Path, tmp_path: Path
) -> None:
    """Each config's model as configured (CPU or full size), on a few tiny generated images: a
    smoke test over the configs, on purpose (the scores' values are checked above)."""
    data = [
        *TINY_DATA[: TINY_DATA.index("DATA.SAMPLES.PATCHES.POSITIVES")],
        *SMALL,
        "DATA.DATASET.GENERATED.NUM_IMAGES", "16",
        "DATA.SPLIT.TEST_FRACTION", "0.25",
        "DATA.SPLIT.FOLDS", "null",
        "DATA.SPLIT.FOLD", "null",
        "DATA.NUM_WORKERS", "0",
        "TRAIN.EPOCHS", "1",
        "EVAL.CENTERBIAS_FOLDS", "2",
        "OUTPUT_DIR", str(tmp_path / "run"),
        "DATA.CACHE.DIR", "null",
    ]  # fmt: skip
    if load_config(path, data).TASK.NAME == "patch_classification":
        data += ["DATA.SAMPLES.PATCHES.POSITIVES", "1", "DATA.SAMPLES.PATCHES.NEGATIVES", "1",
                 "DATA.SAMPLES.PATCHES.SIGMA", "3.0",  # full-size sigmas blur 48 px all over
                 "TASK.PATCH_CLASSIFICATION.GRID", "[2, 2]"]  # fmt: skip
    report = main(["--cfg", str(path), "--opts", *data])
    assert np.isfinite(report["metrics"]["AUC"]) and Checkpointer(tmp_path / "run").best.is_file()
