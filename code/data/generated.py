"""A generated data set whose fixation density is known exactly: the built-in default.

Each image is a textured grey background with a few coloured objects. Its fixation density is

    p = 0.55 * objects + 0.30 * centre + 0.15 * uniform

where ``objects`` is a mixture of Gaussians at the objects (width from the object's size), each
weighted by the object's colour saturation (vivid objects draw the eye, greyish ones barely do),
``centre`` an isotropic Gaussian at the image centre (σ = a quarter of the shorter side) and
``uniform`` spreads over all pixels. Every fixation is an independent draw from ``p``, so ``p`` is
the best any model can predict: the evaluation reports its score as the *oracle*.

Scanpaths get a plausible order without changing that density: a subject's draws are visited
starting with the one nearest the image centre, then always the nearest not yet visited (short
saccades), with gamma-distributed durations (mean 250 ms). Everything is a function of the seed
and the image index, so any image can be regenerated alone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache, partial

import numpy as np
from scipy.ndimage import gaussian_filter

from code.data.gaze import Fixations, GazeDataset, Scanpath, Stimulus
from code.registry import DATASETS

MIXTURE = {"objects": 0.55, "centre": 0.30, "uniform": 0.15}
OBJECTS_PER_IMAGE = (1, 4)
MEAN_DURATION_MS = 250.0
# Rendered images are kept in memory, up to this many bytes per data set (the quickstart's 300
# images of 72x96 take 6 MB): rendering one costs about as much as a training step's share of it.
RENDER_CACHE_BYTES = 512 * 2**20


@dataclass(frozen=True)
class SceneObject:
    row: float
    col: float
    radius: float
    rgb: tuple[float, float, float]
    saturation: float
    is_disk: bool


def _scene(seed: int, index: int, height: int, width: int) -> list[SceneObject]:
    rng = np.random.default_rng([seed, index, 0])
    objects = []
    for _ in range(rng.integers(OBJECTS_PER_IMAGE[0], OBJECTS_PER_IMAGE[1] + 1)):
        radius = rng.uniform(0.05, 0.13) * min(height, width)
        saturation = rng.uniform(0.05, 1.0)
        hue_rgb = rng.dirichlet(np.full(3, 0.3))  # a random vivid hue
        hue_rgb = hue_rgb / hue_rgb.max()
        grey = rng.uniform(0.35, 0.65)
        rgb = tuple(float(v) for v in (1 - saturation) * grey + saturation * hue_rgb)
        objects.append(
            SceneObject(
                row=rng.uniform(radius, height - radius),
                col=rng.uniform(radius, width - radius),
                radius=radius,
                rgb=rgb,
                saturation=saturation,
                is_disk=bool(rng.integers(2)),
            )
        )
    return objects


def _object_mask(obj: SceneObject, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    if obj.is_disk:
        return (rows - obj.row) ** 2 + (cols - obj.col) ** 2 <= obj.radius**2
    return (np.abs(rows - obj.row) <= obj.radius) & (np.abs(cols - obj.col) <= obj.radius)


def render_image(seed: int, index: int, height: int, width: int) -> np.ndarray:
    """The (height, width, 3) uint8 image: grey texture plus the scene's objects."""
    rng = np.random.default_rng([seed, index, 1])
    texture = gaussian_filter(rng.normal(size=(height, width)), sigma=min(height, width) / 16)
    texture = 0.5 + 0.12 * texture / (texture.std() + 1e-8)
    image = np.repeat(texture[..., None], 3, axis=2)
    image += 0.03 * rng.normal(size=image.shape)  # fine grain, so flat colour alone is not a cue
    rows, cols = np.mgrid[0:height, 0:width] + 0.5
    for obj in _scene(seed, index, height, width):
        image[_object_mask(obj, rows, cols)] = obj.rgb
    return (np.clip(image, 0, 1) * 255).round().astype(np.uint8)


def _renderer(seed: int, height: int, width: int) -> Callable[[int], np.ndarray]:
    """``render_image`` of image ``index``, kept once rendered (read-only, as it is shared)."""

    @lru_cache(maxsize=max(1, RENDER_CACHE_BYTES // (height * width * 3)))
    def render(index: int) -> np.ndarray:
        image = render_image(seed, index, height, width)
        image.flags.writeable = False
        return image

    return render


def true_density(seed: int, index: int, height: int, width: int) -> np.ndarray:
    """The (height, width) probability of a fixation landing in each pixel (sums to 1)."""
    rows, cols = np.mgrid[0:height, 0:width] + 0.5
    objects = np.zeros((height, width))
    for obj in _scene(seed, index, height, width):
        bump = np.exp(
            -((rows - obj.row) ** 2 + (cols - obj.col) ** 2) / (2 * (obj.radius / 1.5) ** 2)
        )
        objects += obj.saturation**2 * bump / bump.sum()
    sigma = min(height, width) / 4
    centre = np.exp(-((rows - height / 2) ** 2 + (cols - width / 2) ** 2) / (2 * sigma**2))
    density = (
        MIXTURE["objects"] * objects / objects.sum()
        + MIXTURE["centre"] * centre / centre.sum()
        + MIXTURE["uniform"] / (height * width)
    )
    return density / density.sum()


def true_log_density(seed: int, index: int, height: int, width: int) -> np.ndarray:
    return np.log(true_density(seed, index, height, width))


def _scanpath(
    density: np.ndarray, rng: np.random.Generator, image: int, subject: int, length: int
) -> Scanpath:
    height, width = density.shape
    pixels = rng.choice(density.size, size=length, p=density.ravel())
    # Uniform position within the pixel: fixations are continuous, the density piecewise constant.
    y = pixels // width + rng.uniform(size=length)
    x = pixels % width + rng.uniform(size=length)
    order = [int(np.argmin((x - width / 2) ** 2 + (y - height / 2) ** 2))]
    left = set(range(length)) - set(order)
    while left:
        last = order[-1]
        nearest = min(left, key=lambda j: (x[j] - x[last]) ** 2 + (y[j] - y[last]) ** 2)
        order.append(nearest)
        left.remove(nearest)
    durations = rng.gamma(shape=4.0, scale=MEAN_DURATION_MS / 4.0, size=length)
    onsets = np.concatenate([[0.0], np.cumsum(durations[:-1] + 30.0)])  # 30 ms saccades
    return Scanpath(image, subject, x[order], y[order], onsets, durations)


@DATASETS.register("generated")
def generated_dataset(
    num_images: int,
    height: int,
    width: int,
    num_subjects: int,
    fixations_per_scanpath: int,
    seed: int,
) -> GazeDataset:
    """``num_images`` generated scenes, each viewed by ``num_subjects`` subjects."""
    if min(num_images, height, width, num_subjects, fixations_per_scanpath) < 1:
        raise ValueError("every size of the generated data set must be at least 1")
    stimuli, scanpaths = [], []
    render = _renderer(seed, height, width)
    for index in range(num_images):
        args = (seed, index, height, width)
        stimuli.append(
            Stimulus(
                id=f"generated_{index:05d}",
                height=height,
                width=width,
                path=None,
                generate=partial(render, index),
                true_log_density=partial(true_log_density, *args),
            )
        )
        density = true_density(*args)
        rng = np.random.default_rng([seed, index, 2])
        scanpaths += [
            _scanpath(density, rng, index, subject, fixations_per_scanpath)
            for subject in range(num_subjects)
        ]
    return GazeDataset("generated", stimuli, Fixations.from_scanpaths(scanpaths))
