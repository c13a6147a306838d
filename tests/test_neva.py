"""NeVA: the foveation layer, the position search, the baselines and the scanpath_generation
task through the entry point."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from yacs.config import CfgNode

from code.config import ConfigError, load_config
from code.data.batch import Batch
from code.data.gaze import Stimulus
from code.data.loaders.csv_layout import read_fixation_table
from code.engine.checkpoint import Checkpointer
from code.main import main
from code.models.build import build_model
from code.models.input_stages.masking import NeVAFoveation
from code.models.layers.foveation import Foveation, from_pixels, to_pixels
from code.models.neva import (
    Criterion,
    Downstream,
    Search,
    joint_scanpaths,
    sequential_scanpaths,
)
from code.models.scanpath_baselines import density_scanpaths, winner_take_all
from code.registry import CRITERIA, GENERATORS
from code.tasks.scanpath_generation import original_pixels, write_scanpath_table
from tests.killed_run import assert_same_ends, kill_and_resume


def _textured(height: int, width: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(1, 3, height, width, generator=torch.Generator().manual_seed(seed))


def test_foveation_is_sharp_at_the_fovea_blurred_far_away_and_forgets_exactly() -> None:
    foveation = Foveation(fovea_sigma=0.05, amplitude=1.0, blur_kernel=9, blur_sigma=3.0,
                          forgetting=0.5)  # fmt: skip
    image = _textured(40, 60)
    blurred = foveation.blur(image)
    fixation = torch.tensor([[-0.5, 0.0]])  # x = 15 px, y = 20 px
    memory = torch.zeros(1, 40, 60)
    perceived, after = foveation(image, fixation, memory)
    # at the fovea (g = 1 there, up to the half-pixel offset) the image itself ...
    assert torch.allclose(perceived[..., 19:21, 14:16], image[..., 19:21, 14:16], atol=0.02)
    # ... far away (g < 1e-30) its blur
    assert torch.allclose(perceived[..., :, 45:], blurred[..., :, 45:], atol=1e-6)
    # memory: rho * M + g, and a second fixation sees the first one's sharp region
    g1 = foveation.fovea(fixation, 40, 60)
    second = torch.tensor([[0.6, 0.5]])
    memory2 = foveation.remember(after, second)
    assert torch.allclose(after, g1)
    assert torch.allclose(memory2, 0.5 * g1 + foveation.fovea(second, 40, 60))
    assert not memory2.requires_grad
    again, _ = foveation(image, second, after)
    assert torch.allclose(again[..., 19:21, 14:16], image[..., 19:21, 14:16], atol=0.02)


def _bordered(height: int, width: int, seed: int) -> np.ndarray:
    """(3, H, W) float64 noise whose rim differs sharply from the rows and columns next to it,
    so that every border rule (zeros, edge repeated or not, mirrored about the edge or about the
    pixel) blurs the rim differently."""
    image = np.random.default_rng(seed).random((3, height, width))
    image[:, 0, :] += 4.0
    image[:, :, -1] -= 3.0
    image[:, 1, :] -= 2.0
    image[:, :, 1] += 1.5
    return image


@pytest.mark.parametrize(("kernel", "sigma"), [(9, 3.0), (41, 10.0), (5, 5.0)])
def test_the_foveation_blur_is_scipys_mirror_mode_gaussian(kernel: int, sigma: float) -> None:
    """G∗x is ``scipy.ndimage.gaussian_filter`` with σ = BLUR_SIGMA px and ``truncate`` =
    (BLUR_KERNEL // 2) / σ, so BLUR_KERNEL taps, and ``mode="mirror"``: torch's ``reflect``
    pads ``d c b | a b c d`` (the edge pixel not repeated), which scipy calls ``mirror``.
    scipy's own ``reflect`` (``c b a | a b c d``, numpy's ``symmetric``) is a different rule.

    Fails for: replicate, zero or scipy-``reflect`` borders (the rim differs by > 0.05 under
    each, checked below on the scipy side too), σ read as a variance or as 2σ, a kernel of
    BLUR_KERNEL taps each side."""
    from scipy.ndimage import gaussian_filter

    image = _bordered(48, 64, seed=1)
    foveation = Foveation(0.1, 1.0, kernel, sigma, 0.5).double()
    ours = foveation.blur(torch.from_numpy(image)[None])[0].numpy()
    radius = kernel // 2

    def scipy_blur(mode: str) -> np.ndarray:
        return gaussian_filter(image, sigma=(0, sigma, sigma), truncate=radius / sigma, mode=mode)

    # σ is held as a float32 log: 1e-7 of it
    np.testing.assert_allclose(ours, scipy_blur("mirror"), rtol=0, atol=1e-7)
    for other in ("reflect", "nearest", "constant"):  # the test tells these apart
        assert np.abs(scipy_blur(other) - ours).max() > 0.05, other


def _numpy_scanpath(
    image: np.ndarray,
    fixations: list[tuple[float, float]],
    amplitude: float,
    fovea_sigma: float,
    forgetting: float,
    blur_kernel: int,
    blur_sigma: float,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """NeVA's foveation re-derived in numpy for a (C, H, W) image: for each normalised fixation
    (x, y), the perceived image x + (G∗x − x)·clip(1 − (M + g), 0, 1) and the memory after it,
    M ← ρM + g, with g = a·exp(−d²/σ_f) at the pixel centres, d in units where the shorter side
    spans 2, and G∗x scipy's mirror-mode Gaussian."""
    from scipy.ndimage import gaussian_filter

    _, height, width = image.shape
    radius = blur_kernel // 2
    blurred = gaussian_filter(image, sigma=(0, blur_sigma, blur_sigma),
                              truncate=radius / blur_sigma, mode="mirror")  # fmt: skip
    rows, cols = np.mgrid[0:height, 0:width] + 0.5  # pixel centres, px
    unit = 2 / min(height, width)  # normalised units per px
    memory = np.zeros((height, width))
    perceived, memories = [], []
    for x, y in fixations:
        fx, fy = (x + 1) / 2 * width, (y + 1) / 2 * height  # px from the top-left corner
        squared = ((cols - fx) ** 2 + (rows - fy) ** 2) * unit**2
        g = amplitude * np.exp(-squared / fovea_sigma)
        perceived.append(image + (blurred - image) * np.clip(1 - (memory + g), 0, 1))
        memory = forgetting * memory + g
        memories.append(memory)
    return perceived, memories


def test_foveation_over_a_scanpath_matches_a_numpy_rederivation_of_the_formula() -> None:
    """Three fixations on a 30x44 image through ``forward`` (and through ``start`` /
    ``perceive`` / ``remember``, as the position search runs it) against ``_numpy_scanpath``:
    every pixel of each perceived image and each memory. The second fixation lies 5 px from the
    first, so M + g exceeds 1 there and the clip binds; the third sees ρ² of the first.

    Fails for: x and y swapped, fixations read without the half-pixel offset of the pixel
    centres, distances normalised by each side (an elliptic fovea), exp(−d²/(2σ_f)), the
    memory as M + g or ρ(M + g), no clip above 1 (negative blur weights), the residual's sign
    flipped (G∗x − x → x − G∗x)."""
    amplitude, fovea_sigma, forgetting, kernel, sigma = 0.8, 0.1, 0.6, 7, 2.0
    image = _bordered(30, 44, seed=2)
    fixations = [(-0.4, 0.3), (-0.2, 0.1), (0.5, -0.6)]
    expected, memories = _numpy_scanpath(image, fixations, amplitude, fovea_sigma, forgetting,
                                         kernel, sigma)  # fmt: skip
    assert (memories[0] + amplitude > 1.05).any()  # the clip binds at the second fixation
    foveation = Foveation(fovea_sigma, amplitude, kernel, sigma, forgetting).double()
    x = torch.from_numpy(image)[None]
    memory = torch.zeros(1, 30, 44, dtype=torch.float64)
    residual, searched = foveation.start(x)
    for t, (fixation, want, remembered) in enumerate(zip(fixations, expected, memories,
                                                         strict=True)):  # fmt: skip
        f = torch.tensor([fixation], dtype=torch.float64)
        perceived, memory = foveation(x, f, memory)
        np.testing.assert_allclose(perceived[0].numpy(), want, rtol=0, atol=1e-7, err_msg=str(t))
        np.testing.assert_allclose(memory[0].numpy(), remembered, rtol=0, atol=1e-12)
        seen = foveation.perceive(x, residual, searched, f)
        np.testing.assert_allclose(seen[0].numpy(), want, rtol=0, atol=1e-7, err_msg=str(t))
        searched = foveation.remember(searched, f)
        np.testing.assert_allclose(searched[0].numpy(), remembered, rtol=0, atol=1e-12)


def test_the_fovea_is_round_in_pixels_on_a_non_square_image() -> None:
    foveation = Foveation(0.1, 1.0, 3, 1.0, 0.0)
    g = foveation.fovea(torch.zeros(1, 2), 40, 80)[0]
    assert torch.allclose(g[20, 40 + 10], g[20 + 10, 40], atol=1e-6)  # 10 px right = 10 px down


def test_the_perceived_image_has_a_gradient_with_respect_to_the_fixation() -> None:
    """The gradient of a loss on the perceived image with respect to the fixation (x, y) is its
    central finite difference (float64, on a non-square image, with a memory). Fails for the
    fixation detached, or a gradient that is not the value's: e.g. the fovea snapped to the
    pixel grid with a straight-through gradient."""
    foveation = Foveation(0.1, 0.8, 9, 3.0, 0.1).double()
    image = _textured(24, 36).double()
    memory = 0.5 * foveation.fovea(torch.tensor([[0.1, -0.1]], dtype=torch.float64), 24, 36)

    def loss(fixation: torch.Tensor) -> torch.Tensor:
        perceived, _ = foveation(image, fixation, memory)
        return (perceived - image).pow(2).mean()

    fixation = torch.tensor([[0.2, -0.3]], dtype=torch.float64, requires_grad=True)
    loss(fixation).backward()
    step = 1e-6
    numeric = [
        (loss(fixation.detach() + step * e) - loss(fixation.detach() - step * e)) / (2 * step)
        for e in torch.eye(2, dtype=torch.float64)[:, None]
    ]
    assert fixation.grad.abs().min() > 1e-4  # not a flat spot
    torch.testing.assert_close(fixation.grad[0], torch.stack(numeric), rtol=1e-5, atol=1e-9)


def test_the_input_stage_shows_what_the_foveation_shows_after_recorded_fixations() -> None:
    """``neva_foveation`` as an input stage: the perceived image after the first two fixations
    of the item's scanpath, exactly as the layer computes it fixation by fixation."""
    foveation = Foveation(fovea_sigma=0.1, amplitude=1.0, blur_kernel=7, blur_sigma=2.0,
                          forgetting=0.5)  # fmt: skip
    stage = NeVAFoveation(count=2, foveation=lambda: foveation).eval()
    image = _textured(24, 32)
    pixels = torch.tensor([[[8.0, 6.0], [20.0, 18.0], [1.0, 1.0]]])  # (S=1, L=3, 2)
    batch = Batch(
        input=image,
        image_index=torch.zeros(1, dtype=torch.int64),
        original_size=torch.tensor([[24, 32]]),
        target=image,
        scanpaths=pixels[None],
        scanpath_mask=torch.ones(1, 1, 3, dtype=torch.bool),
    )
    seen = stage(batch)
    layer = stage.foveation
    fixations = from_pixels(pixels[0], 24, 32)
    memory = layer.remember(torch.zeros(1, 24, 32), fixations[:1])
    expected = layer.perceive(image, layer.residual(image), memory, fixations[1:2])
    assert torch.allclose(seen.input, expected, atol=1e-6)
    assert seen.loss_mask.min() < 0.05 and seen.loss_mask.max() > 0.99  # sharp and blurred parts


def test_pixel_coordinates_map_to_normalised_ones_and_back_exactly() -> None:
    corners = torch.tensor([[-1.0, -1.0], [1.0, 1.0], [0.0, 0.0]], dtype=torch.float64)
    assert to_pixels(corners, 600, 800).tolist() == [[0, 0], [800, 600], [400, 300]]
    points = torch.tensor([[123.25, 456.5], [0.5, 599.5]], dtype=torch.float64)
    assert torch.allclose(to_pixels(from_pixels(points, 600, 800), 600, 800), points,
                          rtol=0, atol=1e-12)  # fmt: skip
    # the centre of pixel (col 10, row 20) of a 96x128 image, in the 600x800 original
    centre = from_pixels(torch.tensor([[10.5, 20.5]], dtype=torch.float64), 96, 128)
    expected = torch.tensor([[10.5 * 800 / 128, 20.5 * 600 / 96]], dtype=torch.float64)
    assert torch.allclose(to_pixels(centre, 600, 800), expected, rtol=0, atol=1e-12)


class SharpnessAt(Criterion):
    """A toy downstream task with a known optimum: the squared error of the perceived image to
    the clean one, which only a bright textured patch has (the rest is flat grey)."""

    def __init__(self, images: torch.Tensor) -> None:
        self.images = images

    def __call__(self, perceived: torch.Tensor) -> torch.Tensor:
        return (perceived - self.images).pow(2).mean(dim=(1, 2, 3))


def _patch_images() -> tuple[torch.Tensor, list[tuple[float, float]]]:
    images = torch.full((2, 3, 48, 64), 0.5)
    texture = _textured(10, 10, seed=3)[0]
    images[0, :, 6:16, 44:54] = texture  # centre x = 49 px, y = 11 px
    images[1, :, 30:40, 8:18] = texture  # centre x = 13 px, y = 35 px
    return images, [(49.0, 11.0), (13.0, 35.0)]


@pytest.mark.parametrize("search", [sequential_scanpaths, joint_scanpaths])
def test_the_position_search_finds_the_one_informative_patch(search) -> None:
    images, centres = _patch_images()
    foveation = Foveation(0.05, 1.0, 9, 4.0, 0.0)
    positions, losses = search(SharpnessAt(images), foveation, 1,
                               Search(steps=40, lr=0.05, jitter=0.05),
                               torch.Generator().manual_seed(0))  # fmt: skip
    found = to_pixels(positions[:, 0], 48, 64)
    for item, (x, y) in enumerate(centres):
        assert math.dist(found[item].tolist(), (x, y)) < 4.0, (item, found[item])
    # the loss at the position found is the lowest the criterion gives on a grid of positions
    grid = torch.stack(
        torch.meshgrid(
            torch.linspace(-0.95, 0.95, 20), torch.linspace(-0.95, 0.95, 20), indexing="xy"
        ),
        -1,
    )
    memory = torch.zeros(2, 48, 64)
    residual = foveation.residual(images)
    on_grid = torch.stack([SharpnessAt(images)(foveation.perceive(
        images, residual, memory, p.expand(2, 2))) for p in grid.view(-1, 2)])  # fmt: skip
    assert (losses[:, 0] <= on_grid.min(dim=0).values + 1e-6).all()


def test_a_sequential_scanpath_does_not_return_where_memory_keeps_it_sharp() -> None:
    images, _ = _patch_images()
    images[:, :, 30:40, 44:54] = _textured(10, 10, seed=4)[0]  # a second patch: x 49, y 35
    # a fovea that sees a whole patch sharp (3 g > 1 within 8 px), remembered for good
    foveation = Foveation(0.1, 3.0, 9, 4.0, forgetting=1.0)
    positions, losses = sequential_scanpaths(SharpnessAt(images), foveation, 2,
                                             Search(40, 0.05, 0.05),
                                             torch.Generator().manual_seed(0))  # fmt: skip
    found = to_pixels(positions, 48, 64)
    assert math.dist(found[0, 0].tolist(), found[0, 1].tolist()) > 10  # the other patch next
    assert (losses[:, 1] < losses[:, 0]).all()


# Positions and losses of the generators on a tiny random autoencoder, recorded from the code
# before generators and criteria became registered parts (float32 values, exact).
RECORDED = {
    ("reconstruction", "sequential"): (
        [
            [
                [-0.10000000149011612, -0.10000000149011612],
                [0.20000000298023224, -0.20000000298023224],
                [0.20000000298023224, -0.20000000298023224],
            ],
            [
                [0.10000000149011612, 0.10000000149011612],
                [0.0, 0.20000000298023224],
                [0.10000000149011612, 0.10000000149011612],
            ],
        ],
        [
            [0.08210260421037674, 0.08210257440805435, 0.08210252225399017],
            [0.08440402150154114, 0.08440392464399338, 0.08440392464399338],
        ],
    ),
    ("reconstruction", "joint"): (
        [
            [
                [0.0, 0.0],
                [0.20000000298023224, -0.20000000298023224],
                [0.20000000298023224, -0.20000000298023224],
            ],
            [
                [0.10000000149011612, 0.10000000149011612],
                [0.10000000149011612, 0.10000000149011612],
                [0.10000000149011612, 0.10000000149011612],
            ],
        ],
        [
            [0.08210267871618271, 0.08210257440805435, 0.08210252970457077],
            [0.08440402150154114, 0.08440394699573517, 0.08440394699573517],
        ],
    ),
    ("embedding", "sequential"): (
        [
            [
                [0.0, 0.20000000298023224],
                [0.0, -0.20000000298023224],
                [-0.20000000298023224, -0.20000000298023224],
            ],
            [
                [0.0, 0.20000000298023224],
                [-0.20000000298023224, 0.20000000298023224],
                [-0.20000000298023224, 0.20000000298023224],
            ],
        ],
        [
            [0.004771590232849121, 0.00461125373840332, 0.004013955593109131],
            [0.0068135857582092285, 0.005096316337585449, 0.004634499549865723],
        ],
    ),
    ("embedding", "joint"): (
        [
            [
                [0.0, 0.20000000298023224],
                [0.0, -0.20000000298023224],
                [0.20000000298023224, -0.20000000298023224],
            ],
            [
                [0.0, 0.20000000298023224],
                [-0.20000000298023224, 0.20000000298023224],
                [-0.20000000298023224, 0.20000000298023224],
            ],
        ],
        [
            [0.004771590232849121, 0.00461125373840332, 0.004544377326965332],
            [0.0068135857582092285, 0.005096316337585449, 0.004634499549865723],
        ],
    ),
    ("attention_network",): (
        [
            [
                [0.010334868915379047, -0.061712846159935],
                [0.01833549328148365, -0.06706294417381287],
                [0.019449753686785698, -0.06758610904216766],
            ],
            [
                [0.009414111264050007, -0.061702530831098557],
                [0.01847616396844387, -0.06671925634145737],
                [0.019311225041747093, -0.06727100163698196],
            ],
        ],
        [
            [0.08210264891386032, 0.08210264891386032, 0.08210264891386032],
            [0.08440402895212173, 0.08440401405096054, 0.08440400660037994],
        ],
    ),
}


@pytest.mark.parametrize("case", list(RECORDED), ids=lambda case: "-".join(case))
def test_the_registered_generators_make_the_recorded_scanpaths_bitwise(case: tuple) -> None:
    """Each generator, built by name from its node with its criterion, gives the scanpaths and
    losses the functions gave before they were parts, bit for bit (the README's NeVA tables
    depend on it). Fails for: STEPS, LR and JITTER passed to the search in another order, a
    criterion registered under another's name, the attention network initialised from another
    seed than the run's or left computing with gradients in a different order."""
    cfg = load_config("configs/04_focus_mim/cpu_osie/none_no_crop.yaml", SMALL_AUTOENCODER)
    torch.manual_seed(0)
    downstream = Downstream(build_model(cfg), None, "test")
    images = torch.rand(2, 3, 32, 48, generator=torch.Generator().manual_seed(5))
    foveation = Foveation(0.2, 1.0, 9, 3.0, 0.1)
    criterion_name, name = case if len(case) == 2 else ("reconstruction", *case)
    keys = {"CHANNELS": [4, 8]} if name == "attention_network" else {"STEPS": 3, "LR": 0.1,
                                                                      "JITTER": 0.1}  # fmt: skip
    generator = GENERATORS.build(CfgNode({"NAME": name, name.upper(): keys}), seed=0).eval()
    if name == "attention_network":  # a head that moves the eye (it starts at zero)
        with torch.random.fork_rng():
            torch.manual_seed(1)
            torch.nn.init.normal_(generator.network.head.weight, std=0.5)
    criterion = CRITERIA.build(CfgNode({"NAME": criterion_name}), downstream=downstream,
                               images=images)  # fmt: skip
    positions, losses = generator(criterion, foveation, 3, torch.Generator().manual_seed(0))
    assert (positions.tolist(), losses.tolist()) == RECORDED[case]


def test_winner_take_all_visits_the_peaks_in_order_and_inhibits_return() -> None:
    log_density = torch.full((1, 30, 40), -10.0)
    log_density[0, 5, 30] = -1.0  # the highest peak
    log_density[0, 20, 10] = -2.0
    fixations = to_pixels(winner_take_all(log_density, 2, ior_sigma=0.2), 30, 40)
    assert fixations[0].tolist() == [[30.5, 5.5], [10.5, 20.5]]


def test_density_scanpaths_fall_in_the_pixels_the_density_allows() -> None:
    log_density = torch.full((10, 20), -math.inf)
    log_density[3, 7] = 0.0
    xy = to_pixels(density_scanpaths(log_density, 4, 5, torch.Generator().manual_seed(0)), 10, 20)
    assert ((xy[..., 0] >= 7) & (xy[..., 0] < 8) & (xy[..., 1] >= 3) & (xy[..., 1] < 4)).all()


def test_positions_on_the_far_edge_are_written_inside_the_image(tmp_path: Path) -> None:
    stimuli = [Stimulus("a.jpg", 600, 800, None)]
    positions = torch.tensor([[[1.0, 1.0], [-1.0, -1.0], [0.0, 0.5]]])
    pixels = original_pixels(positions, stimuli)
    assert (pixels[0, 0] < [800, 600]).all() and np.allclose(pixels[0, 0], [800, 600], atol=1e-3)
    assert pixels[0, 1:].tolist() == [[0, 0], [400, 450]]
    write_scanpath_table(tmp_path / "edge.csv", ["a.jpg"], "NeVA", pixels)
    assert len(read_fixation_table(tmp_path / "edge.csv", stimuli, "edge").fixations) == 3


def test_scanpath_tables_round_trip_through_the_generic_csv_loader(tmp_path: Path) -> None:
    stimuli = [Stimulus("a.jpg", 600, 800, None), Stimulus("b.jpg", 600, 800, None)]
    pixels = np.array([[[10.0, 20.0], [799.5, 0.25], [400.0, 300.0]],
                       [[1.125, 2.5], [3.0, 4.0], [5.0, 599.0]]])  # fmt: skip
    write_scanpath_table(tmp_path / "NeVA.csv", ["a.jpg", "b.jpg"], "NeVA", pixels)
    table = read_fixation_table(tmp_path / "NeVA.csv", stimuli, "predictions")
    for image in range(2):
        fix = table.fixations_of(image)
        order = np.argsort(fix.index)
        assert np.allclose(np.stack([fix.x[order], fix.y[order]], axis=1), pixels[image])
        assert np.isnan(fix.duration_ms).all()


# ------------------------------------------------------------------------ the task end to end

GENERATED = [
    "DATA.DATASET.NAME", "generated",
    "DATA.DATASET.GENERATED.NUM_IMAGES", "40",
    "DATA.DATASET.GENERATED.HEIGHT", "48",
    "DATA.DATASET.GENERATED.WIDTH", "64",
    "DATA.DATASET.GENERATED.NUM_SUBJECTS", "3",
    "DATA.DATASET.GENERATED.FIXATIONS_PER_SCANPATH", "4",
    "DATA.DATASET.GENERATED.SEED", "0",
    "DATA.CACHE.DIR", "null",
    "DATA.IMAGE_SIZE", "[48, 64]",
    "DATA.BATCH_SIZE", "8",
    "TRACKING.WANDB.ENABLED", "false",
    "EVAL.NUM_OVERLAYS", "2",
]  # fmt: skip
SMALL_AUTOENCODER = [
    "MODEL.ENCODER.MASKED_CONVNET.CHANNELS", "[8, 16, 16]",
    "MODEL.ENCODER.MASKED_CONVNET.BLOCKS", "1",
    "MODEL.DECODER.CONV_RECONSTRUCTION.CHANNELS", "[16, 16, 8]",
]  # fmt: skip
SMALL_SCANPATHS = [
    "TASK.SCANPATH_GENERATION.LENGTH", "3",
    "EVAL.CENTERBIAS_FOLDS", "2",  # the random and centre scanpaths' IG, on 8 test images
    "TASK.SCANPATH_GENERATION.FOVEATION.BLUR_KERNEL", "9",
    "TASK.SCANPATH_GENERATION.FOVEATION.BLUR_SIGMA", "3.0",
]  # fmt: skip
SMALL_NEVA = [*SMALL_SCANPATHS, "TASK.SCANPATH_GENERATION.GENERATOR.SEQUENTIAL.STEPS", "3"]
JOINT = [
    "TASK.SCANPATH_GENERATION.GENERATOR.NAME", "joint",
    "TASK.SCANPATH_GENERATION.GENERATOR.JOINT.STEPS", "3",
    "TASK.SCANPATH_GENERATION.GENERATOR.JOINT.LR", "0.1",
    "TASK.SCANPATH_GENERATION.GENERATOR.JOINT.JITTER", "0.1",
]  # fmt: skip
# the attention network of configs/05_neva/variants/attention_network.yaml, smaller: one epoch
# (on any downstream model's TRAIN: it validates on its loss alone)
SMALL_ATTENTION = [
    "TASK.SCANPATH_GENERATION.GENERATOR.NAME", "attention_network",
    "TASK.SCANPATH_GENERATION.GENERATOR.ATTENTION_NETWORK.CHANNELS", "[4, 8]",
    "TRAIN.EPOCHS", "1",
    "TRAIN.LR", "1.0e-3",
    "TRAIN.BEST_METRIC", "val_loss",
]  # fmt: skip


@pytest.fixture(scope="module")
def autoencoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A plain autoencoder trained one epoch on generated images (a real checkpoint)."""
    out = tmp_path_factory.mktemp("autoencoder") / "run"
    main(["--cfg", "configs/04_focus_mim/cpu_osie/none_no_crop.yaml", "--opts", *GENERATED,
          *SMALL_AUTOENCODER, "OUTPUT_DIR", str(out), "TRAIN.EPOCHS", "1"])  # fmt: skip
    return Checkpointer(out).best


@pytest.fixture(scope="module")
def saliency_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The OSIE CPU density model trained one epoch on the same images."""
    out = tmp_path_factory.mktemp("saliency") / "run"
    main(["--cfg", "configs/01_dinogaze_spade/cpu_osie/no_injection.yaml", "--opts", *GENERATED,
          "OUTPUT_DIR", str(out), "TRAIN.EPOCHS", "1", "EVAL.CENTERBIAS_FOLDS", "2"])  # fmt: skip
    return Checkpointer(out).best


def _neva(tmp_path: Path, checkpoint: Path, *opts: str, config: str = "reconstruction") -> dict:
    model = SMALL_AUTOENCODER if config == "reconstruction" else []
    return main(["--cfg", f"configs/05_neva/{config}.yaml", "--opts", *GENERATED, *model,
                 *SMALL_NEVA, "TASK.SCANPATH_GENERATION.DOWNSTREAM", str(checkpoint),
                 "TASK.SCANPATH_GENERATION.SALIENCY_CHECKPOINT", "null",
                 "OUTPUT_DIR", str(tmp_path / "neva"), *opts])  # fmt: skip


def test_the_task_writes_scored_scanpaths_of_every_generator(
    tmp_path: Path, autoencoder: Path, saliency_model: Path
) -> None:
    report = _neva(tmp_path, autoencoder,
                   "TASK.SCANPATH_GENERATION.SALIENCY_CHECKPOINT", str(saliency_model))  # fmt: skip
    out = tmp_path / "neva"
    generators = {"NeVA", "random", "centre", "wta"}
    assert set(report["metrics"]) == generators | {"humans"}
    assert set(report["utility"]) == generators | {"humans"}
    assert report["n_images"] == 8 and len(report["utility"]["NeVA"]["mean"]) == 3
    for name in generators:
        pixels = np.load(out / "scanpaths" / f"{name}.npy")
        assert pixels.shape == (8, 3, 2)
        assert ((pixels >= 0) & (pixels <= [64, 48])).all()  # the generated images' own size
        assert 0 <= report["metrics"][name]["ScanMatch"]["mean"] <= 1
    assert report["metrics"]["humans"]["ScanMatch"]["n"] == 8
    # the paired difference to random has the difference of the means (no image lacks a score)
    paired = report["versus_random"]["NeVA"]["ScanMatch"]["mean"]
    means = {name: report["metrics"][name]["ScanMatch"]["mean"] for name in ("NeVA", "random")}
    assert paired == pytest.approx(means["NeVA"] - means["random"])
    assert set(report["versus_random"]) == generators - {"random"}
    # NeVA's loss after each fixation is what its search found: never above the random one's
    # on average, from the first fixation on
    neva, random = report["utility"]["NeVA"]["mean"], report["utility"]["random"]["mean"]
    assert all(n <= r for n, r in zip(neva, random, strict=True))
    assert json.loads((out / "metrics.json").read_text())["criterion"] == "reconstruction"
    # NeVA places fixations: it has no density to score; the random and centre draws have theirs
    assert set(report["conditional"]) == {"random", "centre"}
    assert (out / "utility.png").is_file()
    assert len(list((out / "overlays").glob("*_scanpaths.png"))) == 2


def test_the_joint_search_and_the_attention_network_generate_too(
    tmp_path: Path, saliency_model: Path
) -> None:
    """With the saliency model downstream (whose KL responds to where the fovea goes; the
    one-epoch autoencoder's loss moves by 1e-8 between generators), the joint search's loss
    is below the random scanpaths' after every fixation (about 0.004-0.006 against
    0.007-0.008). The attention network, trained one epoch of a [4, 8] network, is not
    better than random at this size, so only its run is checked: three losses, and the
    humans' scanpaths scored exactly as in the joint run (the same fixations, foveation and
    downstream model)."""
    joint = _neva(tmp_path / "joint", saliency_model, *JOINT, config="saliency")
    neva, random = joint["utility"]["NeVA"]["mean"], joint["utility"]["random"]["mean"]
    assert len(neva) == 3 and all(n < r for n, r in zip(neva, random, strict=True))
    learned = _neva(tmp_path / "learned", saliency_model, *SMALL_ATTENTION,
                    config="saliency")  # fmt: skip
    assert len(learned["utility"]["NeVA"]["mean"]) == 3
    assert learned["utility"]["humans"] == joint["utility"]["humans"]


@pytest.mark.parametrize(
    ("opts", "message"),
    [
        (["TASK.SCANPATH_GENERATION.LENGTH", "0"],
         r"^TASK\.SCANPATH_GENERATION\.LENGTH must be at least 1"),
        (["TASK.SCANPATH_GENERATION.FOVEATION.FOVEA_SIGMA", "0.0"],
         r"^TASK\.SCANPATH_GENERATION\.FOVEATION\.FOVEA_SIGMA must be positive"),
        (["TASK.SCANPATH_GENERATION.FOVEATION.BLUR_SIGMA", "-1.0"],
         r"^TASK\.SCANPATH_GENERATION\.FOVEATION\.BLUR_SIGMA must be positive"),
        (["TASK.SCANPATH_GENERATION.CRITERION.NAME", "classification"],
         r"^TASK\.SCANPATH_GENERATION\.CRITERION\.NAME 'classification' compares class "
         r"logits; .* predicts image"),
        (["MODEL.ENCODER.MASKED_CONVNET.CHANNELS", "[8, 16, 32]"],
         r"^TASK\.SCANPATH_GENERATION\.DOWNSTREAM .* was trained with another MODEL"),
    ],
)  # fmt: skip
def test_bad_settings_are_refused_before_any_data_is_read(
    tmp_path: Path, autoencoder: Path, opts: list[str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        _neva(tmp_path, autoencoder, *opts)
    assert not (tmp_path / "neva" / "scanpaths").exists()


def test_data_without_human_scanpaths_is_refused_before_any_scanpath(
    tmp_path: Path, autoencoder: Path
) -> None:
    with pytest.raises(ConfigError, match=r"compares with the human scanpaths.*SAMPLES.NAME image"):
        _neva(tmp_path, autoencoder, "DATA.SAMPLES.IMAGE.SCANPATHS", "false")
    assert not (tmp_path / "neva" / "scanpaths").exists()


def test_a_saliency_model_can_be_the_downstream_model(tmp_path: Path, saliency_model: Path) -> None:
    report = _neva(tmp_path, saliency_model, config="saliency")
    assert report["criterion"] == "saliency"
    # the sequential search's KL is below the random scanpaths' after every fixation (about
    # 0.004-0.005 against 0.007-0.008)
    neva, random = report["utility"]["NeVA"]["mean"], report["utility"]["random"]["mean"]
    assert len(neva) == 3 and all(n < r for n, r in zip(neva, random, strict=True))
    # KL of the density on the perceived image from the clean one's: never negative
    assert min(report["utility"]["random"]["mean"]) >= 0


def test_a_missing_downstream_checkpoint_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"checkpoint not found: .*nothing\.pt"):
        _neva(tmp_path, tmp_path / "nothing.pt")


def test_the_printed_table_keeps_every_column_apart() -> None:
    from code.tasks.scanpath_generation import TABLE_METRICS, format_report

    cell = {"mean": -123.4567, "se": 9.876}
    report = {
        "metrics": {
            name: dict.fromkeys(TABLE_METRICS, cell) for name in ("NeVA", "winner-take-all")
        },
        "versus_random": {"NeVA": dict.fromkeys(TABLE_METRICS, cell)},
        "criterion": "reconstruction",
        "utility": {"NeVA": {"mean": [0.5, 0.25]}, "winner-take-all": {"mean": [0.5, 0.4]}},
    }
    lines = format_report(report).splitlines()
    assert lines[0].split() == ["generator", *TABLE_METRICS, "IG"]
    assert lines[2].split()[0] == "winner-take-all" and len(lines[2].split()) == 1 + 3 * 7 + 1
    assert lines[2].split()[-1] == "—"  # a report without conditional scores (older runs)


# One epoch of four steps (28 training images in batches of 8), last.pt after every step.
ATTENTION_RUN = [*GENERATED, *SMALL_AUTOENCODER, *SMALL_SCANPATHS,
                 "TASK.SCANPATH_GENERATION.GENERATOR.ATTENTION_NETWORK.CHANNELS", "[4, 8]",
                 "TASK.SCANPATH_GENERATION.SALIENCY_CHECKPOINT", "null",
                 "TRAIN.EPOCHS", "1", "TRAIN.CHECKPOINT_EVERY", "1"]  # fmt: skip


def test_a_killed_attention_network_training_resumes_to_the_uninterrupted_result(
    tmp_path: Path, autoencoder: Path
) -> None:
    """The attention network trains through the trainer: killed (SIGKILL) mid-epoch and resumed
    with ``--resume``, its run ends with the uninterrupted run's network, optimizer state,
    training log and scanpath report, bitwise. Catches a network trained outside the trainer
    (no last.pt to resume from), initial weights drawn from the process's random state instead
    of the run's seed (the resumed run's weights would differ), and a checkpoint that misses
    the network's or the optimizer's state."""
    config = "configs/05_neva/variants/attention_network.yaml"
    opts = [*ATTENTION_RUN, "TASK.SCANPATH_GENERATION.DOWNSTREAM", str(autoencoder)]
    runs = kill_and_resume(config, opts, tmp_path)
    saved = runs.saved_at_kill
    assert saved["epoch"] == 0 and saved["batches_consumed"] > 0, f"not mid-epoch: {saved}"
    assert_same_ends(runs)
    for key in ("metrics", "utility"):
        assert runs.whole_report[key] == runs.resumed_report[key]
