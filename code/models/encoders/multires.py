"""The multi-resolution encoders of Mr-CNN (Liu et al., CVPR 2015): unshared convolutional
streams, each looking at the image resized to its own resolution.

Stream ``s`` sees the image resized to ``RESOLUTIONS[s]`` x ``RESOLUTIONS[s]`` pixels (after an
optional pre-filter, ``PREFILTER``). Two encoders share the streams and differ in where they run
them:

- ``multires`` (Mr-CNN's): for every point of ``batch.points`` each stream reads the
  ``CROP_SIZE`` x ``CROP_SIZE`` crop of its resized image whose centre pixel (index
  ``CROP_SIZE // 2`` in each direction) is the pixel holding the point; borders replicate the
  edge. The crops of all points are cut at once (``grid_sample``). Features: (B, C, P), one
  vector per point (announced as a ``PointSpec``), for the ``point_classifier`` decoder.
- ``multires_dense``: the same streams run fully convolutionally over their whole resized
  image, replicate-padded so that map position i is exactly the crop centred on resized pixel
  ``stride * i``; the maps are resampled to the ``STRIDE`` grid of the input and concatenated, a
  feature map any map decoder reads (e.g. the DeepGaze readout).

``MAX_NORM``: after every optimizer step, each filter of every stream's first convolution whose
L2 norm exceeds the bound is scaled back to it (Mr-CNN's constraint); null: none.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from code.data.batch import Batch
from code.models.base import Encoder, Features
from code.models.layers.feature_maps import grid_size
from code.models.layers.gaussian_blur import GaussianPrefilter
from code.models.shapes import PointSpec, ShapeSpec
from code.models.weights import read_state_dict
from code.registry import ENCODERS, PREFILTERS, STREAMS, ConfigError, PartFactory, SubPart
from code.utils.logging import get_logger, log_shapes, log_signature


class Stream(nn.Module):
    """One resolution's network: ``features`` (convolutions and pools, total stride
    ``stride``), then ``fc``, a convolution whose kernel covers what ``features`` makes of one
    crop: a fully connected layer on a crop, and fully convolutional over a whole image."""

    features: nn.Sequential
    fc: nn.Sequential
    channels: int  # of ``fc``'s output
    stride: int

    @property
    def first_conv(self) -> nn.Conv2d:
        return next(m for m in self.features if isinstance(m, nn.Conv2d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


def too_small(key: str, value: object, crop_size: int) -> ConfigError:
    """The error of a stream whose layers (``key`` of ``value``) leave nothing of its crop."""
    return ConfigError(
        f"{value}: the stream's layers leave nothing of a {crop_size}x{crop_size} crop (the "
        "encoder's CROP_SIZE)",
        key=key,
    )


@STREAMS.register("mrcnn")
class MrCNNStream(Stream):
    """Mr-CNN's stream: per entry of ``channels``, a valid convolution of ``kernels[i]``, ReLU,
    (dropout after the last), 2x2 max-pool; then a fully connected layer of ``fc_channels`` and
    ReLU. Mr-CNN: 42x42 crops, C96@7, C160@3, C288@3, FC512."""

    def __init__(
        self,
        crop_size: int,
        channels: list[int],
        kernels: list[int],
        fc_channels: int,
        dropout: float,
    ) -> None:
        super().__init__()
        if not channels or len(channels) != len(kernels):
            raise ConfigError(
                f"{channels} and KERNELS {kernels} need one entry per convolution", key="CHANNELS"
            )
        layers: list[nn.Module] = []
        size, in_channels = crop_size, 3
        for i, (out_channels, kernel) in enumerate(zip(channels, kernels, strict=True)):
            layers += [nn.Conv2d(in_channels, out_channels, kernel), nn.ReLU(inplace=True)]
            if i == len(channels) - 1:
                layers.append(nn.Dropout(dropout))
            layers.append(nn.MaxPool2d(2))
            size, in_channels = (size - kernel + 1) // 2, out_channels
        if size < 1:
            raise too_small("KERNELS", kernels, crop_size)
        self.features = nn.Sequential(*layers)
        self.fc = nn.Sequential(nn.Conv2d(in_channels, fc_channels, size), nn.ReLU(inplace=True))
        self.channels, self.stride = fc_channels, 2 ** len(channels)


VGGArch = Literal["vgg11", "vgg13", "vgg16", "vgg19"]


@STREAMS.register("vgg")
class VGGStream(Stream):
    """The first ``stages`` stages of a VGG (3x3 convolutions + BatchNorm if ``batch_norm`` +
    ReLU, each stage ending in a 2x2 max-pool), laid out as timm's ``features`` so that timm's
    VGG weights load; then dropout, a fully connected layer of ``fc_channels`` and ReLU.

    ``weights``: a local timm VGG checkpoint (``vgg11`` ... ``vgg19_bn``, .pth/.pt or
    .safetensors) whose ``features.*`` entries of the kept stages are loaded into every stream
    (the streams stay unshared: each trains its own copy); null: random initialisation. Nothing
    is downloaded.
    """

    def __init__(
        self,
        crop_size: int,
        arch: VGGArch,
        batch_norm: bool,
        stages: int,
        fc_channels: int,
        dropout: float,
        weights: str | None,
    ) -> None:
        super().__init__()
        from timm.models.vgg import cfgs as vgg_layouts  # timm takes seconds: only when built

        layout = vgg_layouts[arch]
        if not 1 <= stages <= layout.count("M"):
            raise ConfigError(
                f"must be in [1, {layout.count('M')}] for {arch}, got {stages}", key="STAGES"
            )
        layers: list[nn.Module] = []
        in_channels, pools = 3, 0
        for entry in layout:
            if entry == "M":
                layers.append(nn.MaxPool2d(2, 2))
                pools += 1
                if pools == stages:
                    break
                continue
            layers.append(nn.Conv2d(in_channels, entry, 3, padding=1))
            if batch_norm:
                layers.append(nn.BatchNorm2d(entry))
            layers.append(nn.ReLU(inplace=True))
            in_channels = entry
        size = crop_size // 2**stages
        if size < 1:
            raise too_small("STAGES", stages, crop_size)
        self.features = nn.Sequential(*layers)
        self.fc = nn.Sequential(
            nn.Dropout(dropout), nn.Conv2d(in_channels, fc_channels, size), nn.ReLU(inplace=True)
        )
        self.channels, self.stride = fc_channels, 2**stages
        if weights is not None:
            try:
                load_vgg_features(self.features, Path(weights))
            except (FileNotFoundError, ValueError) as err:
                raise ConfigError(str(err), key="WEIGHTS") from err


def load_vgg_features(features: nn.Sequential, path: Path) -> None:
    """Load the ``features.<i>.*`` entries of a local timm VGG checkpoint for the layers
    ``features`` has; errors name the file and what differs."""
    state = read_state_dict(path, "VGG", "WEIGHTS")
    kept = {
        name.removeprefix("features."): value
        for name, value in state.items()
        if name.startswith("features.") and int(name.split(".")[1]) < len(features)
    }
    try:
        features.load_state_dict(kept, strict=True)
    except RuntimeError as err:
        raise ValueError(f"{path}: not the timm VGG layout of ARCH and BATCH_NORM: {err}") from err
    get_logger().info("loaded VGG weights from %s", path)


@PREFILTERS.register("none")
def no_prefilter(streams: int) -> nn.ModuleList:
    """Every stream sees its resized image as it is (Mr-CNN)."""
    return nn.ModuleList(nn.Identity() for _ in range(streams))


@PREFILTERS.register("gaussian")
def gaussian_prefilters(
    streams: int,
    kernels: list[int],
    sqrt_sigmas: list[float],
    mixing: Literal["depthwise", "channels"],
    normalisation: Literal["sum", "l2"],
) -> nn.ModuleList:
    """A learnable Gaussian blur in front of each stream (the improved Mr-CNN's): kernel
    ``kernels[s]``, sqrt(sigma) starting at ``sqrt_sigmas[s]`` (the seed: 7/5/3 and
    0.5/0.75/1.0). ``depthwise`` + ``sum`` blurs each colour channel by a proper weighted
    average; the seed's own code mixes the channels and L2-normalises (``channels`` + ``l2``)."""
    if len(kernels) != streams or len(sqrt_sigmas) != streams:
        raise ConfigError(
            f"{kernels} and SQRT_SIGMAS {sqrt_sigmas} need one entry per stream, one per "
            f"resolution of the encoder ({streams})",
            key="KERNELS",
        )
    return nn.ModuleList(
        GaussianPrefilter(kernel, root, mixing, normalisation)
        for kernel, root in zip(kernels, sqrt_sigmas, strict=True)
    )


def clip_filter_norms_(weight: torch.Tensor, bound: float) -> None:
    """In place: each filter (first axis) whose L2 norm exceeds ``bound`` is scaled to it;
    the others are left as they are."""
    norms = weight.flatten(1).norm(dim=1)
    scale = torch.where(norms > bound, bound / norms, torch.ones_like(norms))
    weight.mul_(scale.view(-1, *([1] * (weight.ndim - 1))))


def check_points(points: torch.Tensor, height: int, width: int) -> None:
    """Refuse points outside the (height, width) image, naming the first."""
    outside = (points[..., 0] < 0) | (points[..., 0] >= width)
    outside |= (points[..., 1] < 0) | (points[..., 1] >= height)
    if outside.any():
        item, point = (int(i) for i in outside.nonzero()[0])
        x, y = points[item, point].tolist()
        raise ValueError(
            f"point {point} of batch item {item}, (x, y) = ({x:.2f}, {y:.2f}), lies outside its "
            f"{width}x{height} image"
        )


def crops_at(image: torch.Tensor, points: torch.Tensor, size: int) -> torch.Tensor:
    """(B·P, C, size, size) crops of (B, C, H, W) ``image``: crop (b, p) has the pixel holding
    ``points[b, p]`` (x, y) at index ``size // 2`` in each direction; pixels beyond the border
    repeat the edge. All crops in one ``grid_sample`` call, copying pixels exactly."""
    batch, channels, height, width = image.shape
    count = points.shape[1]
    offsets = torch.arange(size, device=image.device, dtype=image.dtype) - size // 2
    pixel = points.to(image.dtype).floor()
    xs = pixel[..., 0, None] + offsets  # (B, P, size)
    ys = pixel[..., 1, None] + offsets
    # pixel centres in grid_sample's [-1, 1] (align_corners=False): nearest copies them exactly
    u = ((xs + 0.5) / width * 2 - 1)[:, :, None, :].expand(-1, -1, size, -1)
    v = ((ys + 0.5) / height * 2 - 1)[:, :, :, None].expand(-1, -1, -1, size)
    grid = torch.stack([u, v], dim=-1).reshape(batch, count * size, size, 2)
    crops = F.grid_sample(image, grid, mode="nearest", padding_mode="border", align_corners=False)
    crops = crops.view(batch, channels, count, size, size).transpose(1, 2)
    return crops.reshape(batch * count, channels, size, size)


class MultiResolutionStreams(Encoder):
    """What both multi-resolution encoders share: unshared ``stream``s built for ``crop_size``
    crops, one per entry of ``resolutions``, each behind its ``prefilter``, and the max-norm
    constraint; the subclasses decide where the streams run (module docstring)."""

    def __init__(
        self,
        resolutions: list[int],
        crop_size: int,
        stream: PartFactory,
        prefilter: PartFactory,
        max_norm: float | None,
    ) -> None:
        super().__init__()
        if not resolutions:
            raise ConfigError("needs at least one resolution (stream)", key="RESOLUTIONS")
        small = [r for r in resolutions if r < crop_size]
        if small:
            raise ConfigError(
                f"{resolutions}: images resized to {small} are smaller than a CROP_SIZE "
                f"{crop_size} crop",
                key="RESOLUTIONS",
            )
        if max_norm is not None and max_norm <= 0:
            raise ConfigError(f"must be positive (null: none), got {max_norm}", key="MAX_NORM")
        self.resolutions = resolutions
        self.crop_size = crop_size
        self.max_norm = max_norm
        self.streams = nn.ModuleList(stream(crop_size=crop_size) for _ in resolutions)
        self.prefilters = prefilter(streams=len(resolutions))
        self.channels = sum(s.channels for s in self.streams)

    def resized(self, x: torch.Tensor, index: int) -> torch.Tensor:
        """The (normalised) images as stream ``index`` sees them: resized, pre-filtered."""
        size = self.resolutions[index]
        x = F.interpolate(
            x, size=(size, size), mode="bilinear", align_corners=False, antialias=True
        )
        return self.prefilters[index](x)

    def constrain(self) -> None:
        if self.max_norm is not None:
            for stream in self.streams:
                clip_filter_norms_(stream.first_conv.weight, self.max_norm)

    def prefilter_sigmas(self) -> list[float] | None:
        """The learned σ (pixels of its resized image) of each stream's pre-filter; None
        without one."""
        sigmas = [f.sigma.item() for f in self.prefilters if isinstance(f, GaussianPrefilter)]
        return sigmas or None


@ENCODERS.register("multires")
class MultiResolutionCrops(MultiResolutionStreams):
    """Mr-CNN's encoder: ``stream``s on crops around each point of ``batch.points`` in the image
    resized to each of ``resolutions`` (module docstring). Feature ``multires``: the streams'
    outputs concatenated, one vector per point."""

    requires = frozenset({"points"})

    @log_signature
    def __init__(
        self,
        resolutions: list[int],
        crop_size: int,
        stream: SubPart[STREAMS],
        prefilter: SubPart[PREFILTERS],
        max_norm: float | None,
    ) -> None:
        super().__init__(resolutions, crop_size, stream, prefilter, max_norm)
        self.output_shapes = {"multires": PointSpec(self.channels)}

    @log_shapes
    def forward(self, image: torch.Tensor, batch: Batch | None = None) -> Features:
        if batch is None or batch.points is None:
            raise ValueError("the multires encoder reads batch.points, and was given none")
        x, points = self.normalize(image), batch.points
        check_points(points, *x.shape[-2:])
        vectors = [
            stream(self.crops(x, points, index)).flatten(1)
            for index, stream in enumerate(self.streams)
        ]
        count = points.shape[1]
        return {"multires": torch.cat(vectors, dim=1).view(len(x), count, -1).transpose(1, 2)}

    def crops(self, x: torch.Tensor, points: torch.Tensor, index: int) -> torch.Tensor:
        """(B·P, 3, crop, crop): what stream ``index`` sees of (normalised) images ``x`` around
        (B, P, 2) input-pixel ``points``."""
        size = self.resolutions[index]
        height, width = x.shape[-2:]
        scaled = points * points.new_tensor([size / width, size / height])
        return crops_at(self.resized(x, index), scaled, self.crop_size)


@ENCODERS.register("multires_dense")
class MultiResolutionMaps(MultiResolutionStreams):
    """Mr-CNN's streams run fully convolutionally over the image resized to each of
    ``resolutions`` (module docstring). Feature ``multires``: the streams' maps resampled to the
    input's ``stride`` grid and concatenated."""

    @log_signature
    def __init__(
        self,
        resolutions: list[int],
        crop_size: int,
        stream: SubPart[STREAMS],
        prefilter: SubPart[PREFILTERS],
        max_norm: float | None,
        stride: int,
    ) -> None:
        super().__init__(resolutions, crop_size, stream, prefilter, max_norm)
        if stride < 1:
            raise ConfigError(f"must be positive, got {stride}", key="STRIDE")
        self.stride = stride
        self.output_shapes = {"multires": ShapeSpec(self.channels, stride)}

    @log_shapes
    def forward(self, image: torch.Tensor, batch: Batch | None = None) -> Features:
        """Every stream over its whole resized image, resampled to the input's stride grid."""
        x = self.normalize(image)
        height, width = x.shape[-2:]
        before = self.crop_size // 2
        after = self.crop_size - before - 1
        maps = []
        for index, stream in enumerate(self.streams):
            padded = F.pad(self.resized(x, index), (before, after, before, after), "replicate")
            maps.append(self.to_input_grid(stream(padded), stream.stride, index, height, width))
        return {"multires": torch.cat(maps, dim=1)}

    def to_input_grid(
        self, stream_map: torch.Tensor, stride: int, index: int, height: int, width: int
    ) -> torch.Tensor:
        """A stream's map (position i: the crop centred on resized pixel ``stride * i``) read
        bilinearly at the centres of the input's ``self.stride`` grid cells."""
        rows, cols = grid_size((height, width), self.stride)
        size = self.resolutions[index]

        def positions(cells: int, extent: int, length: int) -> torch.Tensor:
            centres = (torch.arange(cells, device=stream_map.device) + 0.5) * self.stride
            resized = centres * size / extent - 0.5  # in resized pixel indices
            return (resized / stride) / max(length - 1, 1) * 2 - 1  # align_corners=True

        v = positions(rows, height, stream_map.shape[-2]).to(stream_map.dtype)
        u = positions(cols, width, stream_map.shape[-1]).to(stream_map.dtype)
        grid = torch.stack(torch.meshgrid(u, v, indexing="xy"), dim=-1)
        grid = grid.expand(stream_map.shape[0], -1, -1, -1)
        return F.grid_sample(
            stream_map, grid, mode="bilinear", padding_mode="border", align_corners=True
        )
