"""Which map each metric scores: the raw map, or the benchmark's probabilistic protocol.

Kümmerer, Wallis & Bethge (ECCV 2018) showed that a fixation density p predicts a *different*
best saliency map for each metric; the MIT/Tübingen benchmark scores density models with those
maps (pysaliency's ``DensitySaliencyMapModel``, ``ShuffledAUCSaliencyMapModel`` with a
``ShuffledBaselineModel``, and ``SIMSaliencyMapModel``):

- AUC, AUC-Judd, NSS: the density p itself;
- sAUC: log p − log p_shuffled, where p_shuffled is the mean of the model's own densities for all
  *other* images (the negatives of sAUC are drawn from there);
- CC, KLDiv: the expected empirical fixation map, i.e. p blurred with the same Gaussian (σ,
  reflecting borders) as the empirical map;
- SIM: the map maximising the expected SIM against empirical maps of ``fixation_count``
  fixations sampled from p, found by stochastic gradient ascent started at the blurred density
  (pysaliency does the same with its own optimiser, so values agree to the optimiser's noise,
  not bit for bit). With ``sim_steps=0`` the blurred density is used unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F

from code.metrics.saliency import as_float64, blur_matrix, exp, gaussian_blur


@dataclass
class MetricMaps:
    """The map each metric scores for one image (None where the metric cannot be scored)."""

    auc: torch.Tensor  # AUC, AUC-Judd, NSS
    sauc: torch.Tensor | None
    fixation_map: torch.Tensor  # CC, KLDiv
    sim: torch.Tensor


MAP_NAMES = tuple(f.name for f in fields(MetricMaps))  # what a metric record's ``map`` names


def raw_maps(saliency_map: torch.Tensor) -> MetricMaps:
    """Every metric scores the same map."""
    return MetricMaps(
        auc=saliency_map, sauc=saliency_map, fixation_map=saliency_map, sim=saliency_map
    )


@dataclass(frozen=True)
class SimOptimisation:
    """Parameters of the SIM-optimal map search (see the module docstring)."""

    steps: int
    fixation_count: int  # fixations per sampled empirical map
    batch_size: int  # sampled maps per step
    learning_rate: float  # Adam, on the logits of the map
    seed: int


def benchmark_maps(
    log_density: torch.Tensor,
    sigma: float,
    shuffled_log_density: torch.Tensor | None,
    sim_optimisation: SimOptimisation,
) -> MetricMaps:
    """The probabilistic protocol's map for each metric from a log-density."""
    density = exp(log_density)
    expected = gaussian_blur(density, sigma)
    sauc = None if shuffled_log_density is None else log_density - shuffled_log_density
    return MetricMaps(
        auc=density,
        sauc=sauc,
        fixation_map=expected,
        sim=sim_optimal_map(density, expected, sigma, sim_optimisation),
    )


def sim_optimal_map(
    density: torch.Tensor, start: torch.Tensor, sigma: float, opt: SimOptimisation
) -> torch.Tensor:
    """Maximise E[SIM(map, blurred counts of fixations sampled from ``density``)]."""
    if opt.steps == 0:
        return start
    height, width = density.shape
    rows_blur = blur_matrix(height, sigma, density.device)
    cols_blur = blur_matrix(width, sigma, density.device)
    generator = torch.Generator(device=density.device).manual_seed(opt.seed)
    logits = torch.log(start / start.sum()).clone().requires_grad_(True)
    optimiser = torch.optim.Adam([logits], lr=opt.learning_rate)
    for _ in range(opt.steps):
        flat = torch.multinomial(
            density.flatten(),
            opt.batch_size * opt.fixation_count,
            replacement=True,
            generator=generator,
        ).view(opt.batch_size, opt.fixation_count)
        rows_at = rows_blur[:, flat // width].permute(1, 0, 2)  # (B, H, n)
        cols_at = cols_blur[:, flat % width].permute(1, 2, 0)  # (B, n, W)
        empirical = torch.bmm(rows_at, cols_at)
        empirical = empirical / empirical.sum(dim=(1, 2), keepdim=True)
        candidate = torch.softmax(logits.flatten(), 0).view(height, width)
        loss = -torch.minimum(candidate, empirical).sum(dim=(1, 2)).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return torch.softmax(logits.detach().flatten(), 0).view(height, width)


class ShuffledBaseline:
    """The sAUC baseline of the protocol: mean density of the model's *other* predictions.

    As pysaliency's ``ShuffledBaselineModel`` (and the MIT/Tübingen benchmark's): log-densities
    are resized to ``compute_size`` (bilinear, corners aligned, renormalised) and their
    densities averaged there; the prediction for image i is (N·mean − p_i) / (N − 1), its log
    resized back to image i's size the same way. It is the *log*-density that is interpolated.
    """

    def __init__(self, compute_size: tuple[int, int]) -> None:
        self.compute_size = compute_size
        self.total: torch.Tensor | None = None
        self.count = 0

    def add(self, log_density: torch.Tensor) -> None:
        density = exp(_resize_log_density(as_float64(log_density), self.compute_size))
        self.total = density if self.total is None else self.total + density.to(self.total.device)
        self.count += 1

    def log_density_without(self, log_density: torch.Tensor) -> torch.Tensor:
        """log p_shuffled for the image whose own log-density is ``log_density``."""
        if self.total is None or self.count < 2:
            raise RuntimeError("the shuffled baseline needs the predictions of at least two images")
        own = exp(_resize_log_density(log_density, self.compute_size))
        others = (self.total.to(own.device) - own).clamp_min(0) / (self.count - 1)
        return _resize_log_density(others.log(), tuple(log_density.shape))


def _resize_log_density(log_density: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``log_density`` at ``size``, renormalised: bilinear with corners aligned (scipy's
    ``zoom(order=1)``, which pysaliency applies to log-densities). −inf (density 0) is
    interpolated as the lowest finite value, so its zero-weight neighbours do not become NaN."""
    if tuple(log_density.shape) != tuple(size):
        finite_below = log_density.clamp_min(torch.finfo(log_density.dtype).min)
        log_density = F.interpolate(
            finite_below[None, None], size=size, mode="bilinear", align_corners=True
        )[0, 0]
    return log_density - torch.logsumexp(log_density.flatten(), 0)
