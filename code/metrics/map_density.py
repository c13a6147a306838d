"""Saliency maps scored as densities: the MIT/Tübingen benchmark's conversion of a map model into
a probabilistic one (Kümmerer, Wallis & Bethge, "Information-theoretic model comparison unifies
saliency metrics", PNAS 2015; pysaliency's ``optimize_saliency_map_conversion``).

A map ``s`` of an image becomes the log-density

    x     = clip((s − lo) / (hi − lo), 0, 1)        lo, hi: min and max over the training maps
    b     = blur(x, σ)                              Gaussian, σ in pixels of the original image
    p_map = f(b) / Σ f(b)                           f: monotone piecewise linear, K knots on [0, 1]
    log p = log((1 − w) · p_map + w · p_centre)     p_centre: the training fixations' centre bias

and σ, f and w maximise the mean log-likelihood of the *training* images' fixations. The choices
and how they relate to pysaliency's:

- **Normalisation over all training maps**, as pysaliency (its ``saliency_min``/``saliency_max``
  are taken over every fitting stimulus), not per image: a map model whose values mean the same
  on every image (Mr-CNN's fixation probabilities) keeps that meaning, and maps already scaled
  per image (0..255 files) lose nothing. Test maps are clipped to the training range.
- **Blur before the nonlinearity**, as pysaliency. Borders replicate the edge pixel (a blur that
  darkened the rim would add a centre bias of its own).
- **f in density space with non-negative increments**: f(k/(K−1)) = a₀ + … + a_k with
  a = softmax(θ), so f is monotone by construction (pysaliency imposes monotonicity as SLSQP
  constraints), positive, and f(1) = 1 fixes the scale the normalisation would remove anyway.
  A map that is the density itself is then recovered exactly (f linear); pysaliency's default
  interpolates log-values instead, which bends f more cheaply but cannot be linear.
- **The centre bias as a mixture** with :class:`code.data.centerbias.CenterBias` (the baseline
  every model here is compared with), one weight w, instead of pysaliency's multiplicative
  radial centre-bias curve: a map without information gets w → 1 and scores as the centre bias.
- **Fitted at reduced resolution**: maps are area-averaged by ``downsample`` and fixations counted
  per coarse pixel (pysaliency fits at full resolution; the benchmark's cost is the reason to
  reduce). The fitted σ is in original pixels and :meth:`MapDensityFit.log_density` applies the
  conversion at the map's full resolution.
- **Mean over fixations** (every training fixation weighs the same, as LL and IG are averaged
  here), not pysaliency's default of every image weighing the same. pysaliency runs SLSQP on all
  parameters; here, for each σ tried, f and w come from LBFGS on per-image and per-fixation
  summaries of the blurred maps (exact, as f is linear in its values), and σ from a grid and
  a bounded scalar search: 700 OSIE images fit in well under a minute on one core.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from code.data.centerbias import CenterBias
from code.data.gaze import GazeDataset
from code.metrics.saliency import GAUSSIAN_TRUNCATE, ArrayLike, as_float64


@dataclass(frozen=True)
class MapDensityOptions:
    """How the conversion is fitted (pysaliency's default: 20 knots)."""

    knots: int  # points of the piecewise-linear nonlinearity f on [0, 1], ≥ 2
    downsample: int  # maps are area-averaged by this factor for fitting, ≥ 1
    iterations: int  # LBFGS iterations at most, for f and w at each σ tried, ≥ 1

    def check(self) -> None:
        """Raise ValueError naming the first option out of range."""
        for name, value, low in (
            ("knots", self.knots, 2),
            ("downsample", self.downsample, 1),
            ("iterations", self.iterations, 1),
        ):
            if not isinstance(value, int) or value < low:
                raise ValueError(f"map density option {name} must be an integer ≥ {low}: {value}")


@dataclass(frozen=True)
class MapDensityFit:
    """A fitted map-to-density conversion; :meth:`log_density` applies it to any map.

    ``values``: f at the knots ``k / (K − 1)`` (non-decreasing, last 1); ``sigma``: the blur in
    pixels of the original image; ``center_bias_weight``: w; ``map_range``: (lo, hi) of the
    training maps; ``training``: what it was fitted on (images, fixations, the information gain
    over the centre bias on the training fixations at the fitting resolution, in bits/fixation).
    """

    values: tuple[float, ...]
    sigma: float
    center_bias_weight: float
    map_range: tuple[float, float]
    center_bias: CenterBias
    options: MapDensityOptions
    training: dict

    def log_density(self, saliency_map: ArrayLike) -> torch.Tensor:
        """The natural-log density (float64, same size and device as the map) of a map of an
        image at its original resolution."""
        s = as_float64(saliency_map)
        if s.ndim != 2:
            raise ValueError(f"a saliency map must be 2-D (height, width), got {tuple(s.shape)}")
        if not torch.isfinite(s).all():
            raise ValueError("saliency map contains NaN or inf")
        lo, hi = self.map_range
        x = ((s - lo) / _span(lo, hi)).clamp(0, 1)
        height, width = s.shape
        center = as_float64(self.center_bias.log_density(height, width), s.device)
        sigma = torch.tensor(self.sigma, dtype=torch.float64, device=s.device)
        values = torch.tensor(self.values, dtype=torch.float64, device=s.device)
        weight = torch.tensor(self.center_bias_weight, dtype=torch.float64, device=s.device)
        return _log_density(x[None], values, sigma, sigma, weight, center)[0]

    def describe(self) -> dict:
        """The fitted parameters (small; for result files and logs)."""
        knots = np.linspace(0, 1, len(self.values))
        return {
            "nonlinearity": {"knots": knots.tolist(), "values": list(self.values)},
            "sigma": self.sigma,
            "center_bias_weight": self.center_bias_weight,
            "map_range": list(self.map_range),
            "center_bias": {
                "bandwidth": self.center_bias.bandwidth,
                "uniform_weight": self.center_bias.uniform_weight,
                "sha256": _fingerprint(self.center_bias.density),
            },
            "options": asdict(self.options),
            "training": self.training,
        }

    def save(self, path: Path) -> None:
        """Write :meth:`describe` and the centre bias's density grid as JSON (:meth:`load`)."""
        record = self.describe()
        record["center_bias"]["density"] = self.center_bias.density.tolist()
        path.write_text(json.dumps(record))

    @classmethod
    def load(cls, path: Path) -> MapDensityFit:
        """A fit written by :meth:`save`; errors name the file."""
        try:
            record = json.loads(path.read_text())
            bias = record["center_bias"]
            center_bias = CenterBias.from_density(
                bias["bandwidth"], bias["uniform_weight"], np.asarray(bias["density"], np.float64)
            )
            if _fingerprint(center_bias.density) != bias["sha256"]:
                raise ValueError("the centre-bias grid does not match its checksum")
            fit = cls(
                values=tuple(float(v) for v in record["nonlinearity"]["values"]),
                sigma=float(record["sigma"]),
                center_bias_weight=float(record["center_bias_weight"]),
                map_range=(float(record["map_range"][0]), float(record["map_range"][1])),
                center_bias=center_bias,
                options=MapDensityOptions(**record["options"]),
                training=dict(record["training"]),
            )
        except (OSError, ValueError, KeyError, TypeError, IndexError) as err:
            raise ValueError(f"{path}: not a map-density fit written by save(): {err}") from err
        return fit


def fit_map_density(
    dataset: GazeDataset,
    maps: Iterable[ArrayLike],
    center_bias: CenterBias,
    options: MapDensityOptions,
) -> MapDensityFit:
    """Fit the conversion on the training images ``dataset`` and their ``maps``.

    ``maps``: one (height, width) map per stimulus of ``dataset``, in its order, at the
    stimulus' original size (numpy or torch; read one at a time, so a generator keeps memory
    low). ``center_bias``: fitted on the same training images' fixations; it is part of the
    fitted model. Raises ValueError, naming the stimulus, for a map of the wrong size or with
    NaN/inf, and for an empty training set.

    For a given σ, f is linear in its knot values, so each image's normaliser Σ f(b) and f at
    each fixation are fixed combinations of the values (hat-function weights of the blurred
    maps): f and w are fitted by LBFGS on those few numbers, and σ by a search over a
    log-spaced grid refined by a bounded scalar search, each σ blurring the maps once.
    """
    from scipy.optimize import minimize_scalar

    options.check()
    if not dataset.stimuli or len(dataset.fixations) == 0:
        raise ValueError(
            f"{dataset.name}: no training images with fixations to fit a map density on"
        )
    coarse, low, high = _downsampled_maps(dataset, maps, options.downsample)
    span = _span(low, high)
    groups = [
        _FitGroup.of(dataset, images, [(coarse[i] - low) / span for i in images], center_bias)
        for images in _images_by_size(dataset).values()
    ]
    n_fix = sum(len(g.image_of_fixation) for g in groups)
    # warm-started from one σ to the next
    logits = torch.zeros(options.knots, dtype=torch.float64, requires_grad=True)
    weight_logit = torch.zeros((), dtype=torch.float64, requires_grad=True)
    best: dict = {"ll": -math.inf}

    def log_likelihood_at(log_sigma: float) -> float:
        statistics = [g.statistics(math.exp(log_sigma), options.knots) for g in groups]
        ll = _fit_nonlinearity(statistics, n_fix, logits, weight_logit, options.iterations)
        if ll > best["ll"]:
            best.update(ll=ll, log_sigma=log_sigma, logits=logits.detach().clone(),
                        weight_logit=weight_logit.detach().clone())  # fmt: skip
        return ll

    # from a blur far below a fitting pixel to one that flattens every map
    largest = max(max(s.size) for s in dataset.stimuli)
    grid = np.linspace(math.log(0.1 * options.downsample), math.log(largest / 2), SIGMA_GRID)
    scores = [log_likelihood_at(v) for v in grid]
    k = int(np.argmax(scores))
    minimize_scalar(
        lambda v: -log_likelihood_at(v),
        bounds=(grid[max(k - 1, 0)], grid[min(k + 1, len(grid) - 1)]),
        method="bounded",
        options={"xatol": SIGMA_TOLERANCE},
    )
    with torch.no_grad():
        values = best["logits"].softmax(0).cumsum(0)
        weight = best["weight_logit"].sigmoid()
    center_ll = sum(float(g.center_at_fixations.sum()) for g in groups) / n_fix
    if not math.isfinite(best["ll"]):
        raise ValueError(f"{dataset.name}: the map-density fit diverged")
    return MapDensityFit(
        values=tuple(values.tolist()),
        sigma=math.exp(best["log_sigma"]),
        center_bias_weight=float(weight),
        map_range=(low, high),
        center_bias=center_bias,
        options=options,
        training={
            "images": len(dataset.stimuli),
            "fixations": int(n_fix),
            "information_gain": (best["ll"] - center_ll) / math.log(2),
        },
    )


SIGMA_GRID = 8  # log-spaced σ tried before the bounded search refines the best
SIGMA_TOLERANCE = 0.02  # of the search, in log σ (2 %)


@dataclass
class _Statistics:
    """What the likelihood needs of one group's blurred maps: per image, the sum over pixels of
    each knot's hat function (B, K); per fixation, the hat functions at its pixel (N, K)."""

    pixel_sums: torch.Tensor
    at_fixations: torch.Tensor
    image_of_fixation: torch.Tensor
    center_at_fixations: torch.Tensor


def _fit_nonlinearity(
    statistics: list[_Statistics],
    n_fix: int,
    logits: torch.Tensor,
    weight_logit: torch.Tensor,
    iterations: int,
) -> float:
    """Fit f's knot values (softmax increments of ``logits``) and w (sigmoid of
    ``weight_logit``), in place, for one σ; the mean log-likelihood per fixation."""
    optimizer = torch.optim.LBFGS(
        [logits, weight_logit],
        lr=1,
        max_iter=iterations,
        # far below what a likelihood from ~1e5 fixations can resolve
        tolerance_grad=1e-7,
        tolerance_change=1e-10,
        history_size=20,
        line_search_fn="strong_wolfe",
    )

    def mean_log_likelihood() -> torch.Tensor:
        values, weight = logits.softmax(0).cumsum(0), weight_logit.sigmoid()
        total = torch.zeros((), dtype=torch.float64)
        for st in statistics:
            log_map = (st.at_fixations @ values).log()
            log_map = log_map - (st.pixel_sums @ values).log()[st.image_of_fixation]
            mixed = torch.logaddexp(
                torch.log1p(-weight) + log_map, weight.log() + st.center_at_fixations
            )
            total = total + mixed.sum()
        return total / n_fix

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = -mean_log_likelihood()
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        return float(mean_log_likelihood())


@dataclass
class _FitGroup:
    """Training images of one size, at the fitting resolution, and their fixations' pixels."""

    maps: torch.Tensor  # (B, h, w) normalised maps
    image_of_fixation: torch.Tensor  # (N,) index into the group's images
    pixel_of_fixation: torch.Tensor  # (N,) flat index into that image's (h, w) map
    center_at_fixations: torch.Tensor  # (N,) centre-bias log-density
    scale: tuple[float, float]  # fitting pixels per original pixel, rows and columns

    @classmethod
    def of(
        cls, dataset: GazeDataset, images: list[int], maps: list[torch.Tensor], bias: CenterBias
    ) -> _FitGroup:
        stacked = torch.stack(maps)
        _, h, w = stacked.shape
        height, width = dataset.stimuli[images[0]].size
        fix = dataset.fixations
        rows_of = fix.rows_by_image(len(dataset.stimuli))
        image = np.concatenate([np.full(len(rows_of[i]), k) for k, i in enumerate(images)])
        rows = np.concatenate([rows_of[i] for i in images])
        pixel = (np.floor(fix.y[rows]).astype(np.int64) * h // height) * w + (
            np.floor(fix.x[rows]).astype(np.int64) * w // width
        )
        center = as_float64(bias.log_density(h, w)).flatten()[pixel]
        return cls(
            stacked,
            torch.from_numpy(image.astype(np.int64)),
            torch.from_numpy(pixel),
            center,
            (h / height, w / width),
        )

    def statistics(self, sigma: float, knots: int) -> _Statistics:
        """The :class:`_Statistics` of the maps blurred with σ (original pixels)."""
        b, h, w = self.maps.shape
        sigma_t = torch.tensor(sigma, dtype=torch.float64)
        blurred = _blur_matrix(h, sigma_t * self.scale[0]) @ self.maps
        blurred = (blurred @ _blur_matrix(w, sigma_t * self.scale[1]).T).flatten(1)
        index, upper = _segments(blurred, knots)
        sums = torch.zeros(b, knots, dtype=torch.float64)
        sums.scatter_add_(1, index, 1 - upper).scatter_add_(1, index + 1, upper)
        index = index[self.image_of_fixation, self.pixel_of_fixation, None]
        upper = upper[self.image_of_fixation, self.pixel_of_fixation, None]
        at = torch.zeros(len(index), knots, dtype=torch.float64)
        at.scatter_add_(1, index, 1 - upper).scatter_add_(1, index + 1, upper)
        return _Statistics(sums, at, self.image_of_fixation, self.center_at_fixations)


def _log_density(
    x: torch.Tensor,
    values: torch.Tensor,
    sigma_rows: torch.Tensor,
    sigma_cols: torch.Tensor,
    weight: torch.Tensor,
    center: torch.Tensor,
) -> torch.Tensor:
    """log p of normalised maps ``x`` (B, h, w) with σ in pixels of ``x`` along each axis."""
    _, h, w = x.shape
    blurred = _blur_matrix(h, sigma_rows) @ x @ _blur_matrix(w, sigma_cols).T
    f = _piecewise_linear(blurred, values)
    log_map = f.log() - f.sum((1, 2), keepdim=True).log()
    return torch.logaddexp(torch.log1p(-weight) + log_map, weight.log() + center)


def _blur_matrix(size: int, sigma: torch.Tensor) -> torch.Tensor:
    """B with ``B @ v`` the Gaussian blur of v (kernel truncated at 4σ, the edge pixel repeated
    beyond the border); as matrix products a wide blur of a float64 map needs no unfolded copy
    of it, as a convolution on the CPU would."""
    # beyond 4·size taps every source clamps to the border: wider kernels change nothing
    radius = min(max(1, math.ceil(GAUSSIAN_TRUNCATE * float(sigma))), 4 * size)
    offsets = torch.arange(-radius, radius + 1, device=sigma.device)
    kernel = torch.exp(-0.5 * (offsets.to(sigma.dtype) / sigma) ** 2)
    kernel = kernel / kernel.sum()
    sources = (torch.arange(size, device=sigma.device)[:, None] + offsets).clamp(0, size - 1)
    matrix = torch.zeros(size, size, dtype=sigma.dtype, device=sigma.device)
    return matrix.scatter_add(1, sources, kernel.expand(size, -1))


def _segments(x: torch.Tensor, knots: int) -> tuple[torch.Tensor, torch.Tensor]:
    """For x in [0, 1]: the segment k between knots k/(K−1) and (k+1)/(K−1) holding it, and
    its position t in [0, 1] along it, so f(x) = (1 − t)·f_k + t·f_(k+1)."""
    position = x * (knots - 1)
    index = position.detach().floor().clamp(0, knots - 2).long()
    return index, position - index


def _piecewise_linear(x: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """f(x) for x in [0, 1], linear between ``values`` at the knots k / (K − 1)."""
    index, upper = _segments(x, len(values))
    low = values[index]
    return low + upper * (values[index + 1] - low)


def _downsampled_maps(
    dataset: GazeDataset, maps: Iterable[ArrayLike], factor: int
) -> tuple[list[torch.Tensor], float, float]:
    """Each map area-averaged by ``factor`` (at least 1 pixel a side), and the min and max over
    all full-resolution maps (the normalisation commutes with the averaging)."""
    coarse, low, high = [], math.inf, -math.inf
    for k, saliency_map in enumerate(maps):
        if k == len(dataset.stimuli):
            raise ValueError(f"more maps than the {len(dataset.stimuli)} training stimuli")
        stim = dataset.stimuli[k]
        s = as_float64(saliency_map, torch.device("cpu"))
        if tuple(s.shape) != stim.size:
            raise ValueError(
                f"training map of stimulus {stim.id!r}: shape {tuple(s.shape)}, but the image "
                f"is {stim.height}x{stim.width} (height x width)"
            )
        if not torch.isfinite(s).all():
            raise ValueError(f"training map of stimulus {stim.id!r} contains NaN or inf")
        low, high = min(low, float(s.min())), max(high, float(s.max()))
        size = (max(1, round(stim.height / factor)), max(1, round(stim.width / factor)))
        coarse.append(F.adaptive_avg_pool2d(s[None], size)[0])
    if len(coarse) != len(dataset.stimuli):
        raise ValueError(f"{len(coarse)} maps for the {len(dataset.stimuli)} training stimuli")
    return coarse, low, high


def _images_by_size(dataset: GazeDataset) -> dict[tuple[int, int], list[int]]:
    groups: dict[tuple[int, int], list[int]] = {}
    for i, stim in enumerate(dataset.stimuli):
        groups.setdefault(stim.size, []).append(i)
    return groups


def _span(low: float, high: float) -> float:
    """hi − lo, or 1 for constant training maps (they carry no information: x = 0)."""
    return high - low if high > low else 1.0


def _fingerprint(density: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(density, dtype=np.float64).tobytes()).hexdigest()
