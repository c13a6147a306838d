"""How an encoder's code is organised: sparsity and decorrelation of its units (logged by masked
image modelling, not optimised).

The code is a non-negative (post-ReLU) map (B, C, h, w); a unit is one channel at one position.

- **Unit (lifetime) sparsity** of a unit over n images, Treves–Rolls as normalised by Vinje &
  Gallant (2000): (1 − (Σr/n)² / (Σr²/n)) / (1 − 1/n), 0 for a unit responding equally to
  every image, 1 for one responding to a single image; averaged over units that respond at all.
- **Population sparsity** of one image: the same over the C·h·w units' responses to it,
  averaged over images with any response.
- **Decorrelation**: the mean squared Pearson correlation between two channels, their samples
  being every (image, position); 0 when channels are uncorrelated. Channels that never vary are
  left out.
"""

from __future__ import annotations

import torch


def treves_rolls(first: torch.Tensor, second: torch.Tensor, n: float) -> torch.Tensor:
    """Sparsity from the means of r and r² over ``n`` responses (NaN where r² is 0)."""
    return (1 - first**2 / second) / (1 - 1 / n)


class CodeStatistics:
    """Sums over the images of one split from which :meth:`compute` gives the three measures;
    ``state`` is one float64 tensor, so ranks add theirs before computing."""

    def __init__(self, channels: int, height: int, width: int) -> None:
        self.channels, self.units = channels, channels * height * width
        c, d = channels, self.units
        # per unit Σr, Σr²; images; Σ population sparsity, images counted; per channel Σx,
        # Σxxᵀ; samples
        self.layout = {"unit_sum": d, "unit_squares": d, "images": 1, "population": 1,
                       "population_images": 1, "channel_sum": c, "channel_products": c * c,
                       "samples": 1}  # fmt: skip
        self.sums = torch.zeros(sum(self.layout.values()), dtype=torch.float64)

    def parts(self, state: torch.Tensor) -> dict[str, torch.Tensor]:
        return dict(zip(self.layout, state.split(list(self.layout.values())), strict=True))

    def update(self, code: torch.Tensor) -> None:
        """Add the (B, C, h, w) code of a batch."""
        r = code.detach().double().flatten(1).cpu()
        first, second = r.mean(dim=1), (r**2).mean(dim=1)
        responding = second > 0
        population = treves_rolls(first[responding], second[responding], self.units)
        samples = code.detach().double().cpu().permute(0, 2, 3, 1).reshape(-1, self.channels)
        added = {
            "unit_sum": r.sum(dim=0),
            "unit_squares": (r**2).sum(dim=0),
            "images": torch.tensor([len(r)]),
            "population": population.sum()[None],
            "population_images": responding.sum()[None],
            "channel_sum": samples.sum(dim=0),
            "channel_products": (samples.T @ samples).flatten(),
            "samples": torch.tensor([len(samples)]),
        }
        self.sums += torch.cat([added[name].double() for name in self.layout])

    def state(self) -> torch.Tensor:
        return self.sums

    def compute(self, state: torch.Tensor) -> dict[str, float]:
        s = self.parts(state.double())
        n = s["images"].item()
        first, second = s["unit_sum"] / n, s["unit_squares"] / n
        responding = second > 0
        unit = treves_rolls(first[responding], second[responding], n).mean()
        mean = s["channel_sum"] / s["samples"]
        products = s["channel_products"].view(self.channels, self.channels) / s["samples"]
        covariance = products - torch.outer(mean, mean)
        std = covariance.diagonal().clamp(min=0).sqrt()
        varying = std > 1e-12 * max(std.max().item(), 1e-300)
        correlation = covariance[varying][:, varying] / torch.outer(std[varying], std[varying])
        off_diagonal = ~torch.eye(len(correlation), dtype=torch.bool)
        return {
            "unit_sparsity": unit.item() if responding.any() and n > 1 else float("nan"),
            "population_sparsity": (s["population"] / s["population_images"]).item(),
            "decorrelation": (correlation[off_diagonal] ** 2).mean().item(),
        }
