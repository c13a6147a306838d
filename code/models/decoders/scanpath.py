"""The scanpath decoder (DeepGaze III style): where the next fixation goes, given the last ones.

Per fixation to predict, the ``history_length`` fixations before it are encoded as maps on the
readout grid (for each: dx, dy and distance from every position to that fixation, in units of
the image's longer side, plus a channel saying whether that fixation exists). A small 1x1
network turns them into history features; a fixation-selection network reads the saliency
readout and those features to one map, and the shared finalizer makes it the conditional
log-density of the next fixation: prediction (B, N, H, W), one density per fixation.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn

from code.data.batch import Batch
from code.models.base import Decoder, Features
from code.models.decoders.finalizer import Finalizer, fixation_nll_bits
from code.models.decoders.saliency import readout_network
from code.models.layers.feature_maps import concat_on_grid, finest_stride, grid_size
from code.models.shapes import FeatureShapes, PredictionKind
from code.registry import DECODERS
from code.utils.logging import log_shapes, log_signature

HISTORY_MAPS = 4  # dx, dy, distance, present


def history_maps(
    history: torch.Tensor, mask: torch.Tensor, stride: int, grid: tuple[int, int], scale: float
) -> torch.Tensor:
    """(B, N, k, 2) fixations (x, y) and (B, N, k) mask -> (B, N, 4k, h, w) maps on the grid.

    Grid position (i, j) stands for its centre, pixel (stride*(i+0.5), stride*(j+0.5)).
    """
    h, w = grid
    ys = (torch.arange(h, device=history.device, dtype=history.dtype) + 0.5) * stride
    xs = (torch.arange(w, device=history.device, dtype=history.dtype) + 0.5) * stride
    dx = (xs.view(1, 1, 1, 1, w) - history[..., 0, None, None]) / scale
    dy = (ys.view(1, 1, 1, h, 1) - history[..., 1, None, None]) / scale
    dx, dy = dx.expand(-1, -1, -1, h, w), dy.expand(-1, -1, -1, h, w)
    present = mask[..., None, None].to(history.dtype).expand_as(dx)
    maps = (
        torch.stack([dx, dy, torch.sqrt(dx**2 + dy**2), torch.ones_like(dx)], dim=3)
        * present[:, :, :, None]
    )
    return maps.flatten(2, 3)


@DECODERS.register("scanpath")
class ScanpathDecoder(Decoder):
    """Saliency readout + history features -> fixation selection -> finalizer, per fixation.

    Uses the most recent ``history_length`` fixations of the batch's history.
    Loss: negative log-likelihood in bits of each fixation under its conditional density.
    """

    prediction = PredictionKind.CONDITIONAL_LOG_DENSITY
    requires = frozenset({"centerbias", "fixations", "fixation_mask", "history", "history_mask"})

    @log_signature
    def __init__(
        self,
        input_shapes: FeatureShapes,
        saliency_channels: list[int],
        history_length: int,
        history_channels: list[int],
        selection_channels: list[int],
        blur_sigma: float,
        learn_blur: bool,
        centerbias_weight: float,
    ) -> None:
        super().__init__()
        if history_length < 1 or not history_channels:
            raise ValueError("scanpath HISTORY_LENGTH and HISTORY_CHANNELS must not be empty")
        self.input_shapes = input_shapes
        self.stride = finest_stride(input_shapes)
        self.history_length = history_length
        in_channels = sum(spec.channels for spec in input_shapes.values())
        self.saliency = readout_network(in_channels, saliency_channels)
        layers: list[nn.Module] = []
        channels = HISTORY_MAPS * history_length
        for out_channels in history_channels:
            layers += [nn.Conv2d(channels, out_channels, 1), nn.Softplus()]
            channels = out_channels
        self.history = nn.Sequential(*layers)
        self.selection = readout_network(1 + channels, selection_channels)
        self.finalizer = Finalizer(self.stride, blur_sigma, learn_blur, centerbias_weight)

    @log_shapes
    def forward(self, features: Features, batch: Batch) -> torch.Tensor:
        if batch.history is None or batch.history_mask is None:
            raise ValueError(
                "the scanpath decoder needs fixation histories (DATA.SAMPLES: scanpath)"
            )
        k = self.history_length
        if batch.history.shape[2] < k:
            raise ValueError(
                f"the batch holds {batch.history.shape[2]} previous fixations, the scanpath "
                f"decoder's HISTORY_LENGTH is {k}: raise DATA.SAMPLES.SCANPATH.HISTORY_LENGTH"
            )
        image_hw = tuple(batch.input.shape[-2:])
        grid = grid_size(image_hw, self.stride)
        saliency = self.saliency(concat_on_grid(features, self.input_shapes, self.stride, image_hw))
        batch_size, num = batch.fixations.shape[:2]
        maps = history_maps(
            batch.history[:, :, :k].to(saliency.dtype),
            batch.history_mask[:, :, :k],
            self.stride,
            grid,
            float(max(image_hw)),
        ).flatten(0, 1)
        selected = self.selection(
            torch.cat([saliency.repeat_interleave(num, 0), self.history(maps)], dim=1)
        )
        centerbias = batch.centerbias.repeat_interleave(num, 0)
        return self.finalizer(selected, centerbias).view(batch_size, num, *image_hw)

    def loss(self, prediction: torch.Tensor, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        return conditional_nll_bits(prediction, batch.fixations, batch.fixation_mask)


def conditional_nll_bits(
    log_density: torch.Tensor, fixations: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Like ``fixation_nll_bits``, with one (H, W) log-density per fixation: (B, N, H, W)."""
    batch, num, height, width = log_density.shape
    return fixation_nll_bits(
        log_density.reshape(batch * num, height, width),
        fixations.reshape(batch * num, 1, 2),
        mask.reshape(batch * num, 1),
    )


@torch.no_grad()
def sample_scanpaths(
    model: nn.Module,
    batch: Batch,
    num_scanpaths: int,
    length: int,
    first_at_centre: bool,
    generator: torch.Generator,
) -> torch.Tensor:
    """Sample ``num_scanpaths`` scanpaths of ``length`` fixations on a one-image batch.

    ``model`` is a ``GazeModel`` with a scanpath decoder. Each fixation is drawn from the
    model's conditional density given the ones before (a pixel, then a uniform position inside
    it). The first fixation is the image centre (``first_at_centre``: the fixation cross of data
    sets recorded that way, whose first fixation the model was not trained to predict) or drawn
    with an empty history. Returns (num_scanpaths, length, 2) (x, y) in pixels of ``batch.input``.
    """
    decoder = model.decoder
    if not isinstance(decoder, ScanpathDecoder):
        raise TypeError(
            f"scanpaths can only be sampled from a scanpath decoder, not {type(decoder).__name__}"
        )
    if len(batch) != 1:
        raise ValueError("sample_scanpaths takes a batch of one image")
    height, width = batch.input.shape[-2:]
    device = batch.input.device
    features, batch = model.features(batch)
    k = decoder.history_length
    scanpaths = torch.zeros(num_scanpaths, length, 2, device=device)
    start = 0
    if first_at_centre:
        scanpaths[:, 0] = torch.tensor([width / 2, height / 2], device=device)
        start = 1
    for step in range(start, length):
        before = step - 1 - torch.arange(k, device=device)
        history = scanpaths[:, before.clamp(min=0)][None]
        mask = (before >= 0).expand(1, num_scanpaths, k)
        step_batch = replace(
            batch,
            fixations=torch.zeros(1, num_scanpaths, 2, device=device),
            fixation_mask=torch.ones(1, num_scanpaths, dtype=torch.bool, device=device),
            history=history,
            history_mask=mask,
        )
        density = decoder(features, step_batch)[0].flatten(1).float().exp().cpu()
        pixels = torch.multinomial(density, 1, generator=generator)[:, 0]
        jitter = torch.rand(num_scanpaths, 2, generator=generator)
        xy = torch.stack([pixels % width, pixels // width], dim=1).float() + jitter
        scanpaths[:, step] = xy.to(device)
    return scanpaths
