"""Saliency metrics with the exact definitions of pysaliency 0.2.22 (MIT/Tübingen benchmark).

Every function scores **one image** and works on numpy arrays or torch tensors (CPU or GPU);
inputs are converted to float64 tensors on the map's device, because the benchmark's numbers are
float64 numbers. A fixation at (x, y) lies in pixel (row ⌊y⌋, column ⌊x⌋) (``int()`` truncation,
as pysaliency's ``x_int``). How per-image values are averaged over a data set is stated in each
docstring; :class:`code.metrics.evaluator.SaliencyEvaluator` applies it.

The empirical fixation map of CC, KLDiv and SIM counts fixations per pixel (duplicates counted)
and blurs the counts with a Gaussian of σ pixels, borders reflected (scipy's ``mode="reflect"``,
kernel truncated at ``int(4σ + 0.5)``), exactly pysaliency's ``FixationMap(kernel_size=σ)``.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch

ArrayLike = np.ndarray | torch.Tensor

KLD_EPS = 2.2204e-16  # the MIT benchmark's regularisation of image-based KL divergence
GAUSSIAN_TRUNCATE = 4.0  # scipy.ndimage.gaussian_filter's default kernel extent, in σ
BAND_ROWS = 64  # rows per product of the empirical map: narrower bands skip more zeros
# AUC of this few fixations counts the pixels below each by comparison instead of sorting the
# map: sorting costs about as much as 16 such passes (one fixation: scanpath models' scores)
COUNT_UP_TO_POSITIVES = 8


def as_float64(value: ArrayLike, device: torch.device | None = None) -> torch.Tensor:
    """A float64 tensor sharing memory with ``value`` where possible."""
    tensor = torch.from_numpy(np.asarray(value)) if isinstance(value, np.ndarray) else value
    return tensor.to(device=device, dtype=torch.float64)


def pixel_index(xs: ArrayLike, ys: ArrayLike, device: torch.device) -> tuple[torch.Tensor, ...]:
    """(rows, columns) of the pixels holding fixations (x, y): truncation, as ``int()``.

    Integer coordinates are taken as pixel indices already, so a caller scoring one image on
    many metrics converts its fixations once.
    """
    return _pixel(ys, device), _pixel(xs, device)


def _pixel(coordinates: ArrayLike, device: torch.device) -> torch.Tensor:
    if isinstance(coordinates, torch.Tensor):
        tensor = coordinates
    else:  # via numpy: Python floats stay float64 (torch would make them float32)
        tensor = torch.from_numpy(np.asarray(coordinates))
    if tensor.is_floating_point():
        tensor = tensor.to(torch.float64).long()
    return tensor.to(device=device, dtype=torch.long)


def check_inside(rows: torch.Tensor, cols: torch.Tensor, height: int, width: int) -> None:
    """Raise IndexError unless every (row, column) is a pixel of a height × width map."""
    for index, size, axis in ((rows, height, "row"), (cols, width, "column")):
        if len(index):
            low, high = (int(v) for v in torch.aminmax(index))
            if low < 0 or high >= size:
                raise IndexError(
                    f"fixation {axis} {low}..{high} outside a map of {height}x{width} pixels"
                )


# --------------------------------------------------------------------------- numpy on CPU
# numpy's SIMD kernels beat torch's on CPU for these; each function runs on any device.


def values_at(saliency_map: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """``saliency_map[rows, cols]``; on CPU numpy's take, 5× faster than torch's indexing.

    Pixels outside the map are an error (never wrapped around or read from the next row).
    """
    height, width = saliency_map.shape
    check_inside(rows, cols, height, width)
    if saliency_map.device.type == "cpu":
        flat = saliency_map.contiguous().numpy().ravel()
        return torch.from_numpy(flat.take(rows.numpy() * width + cols.numpy()))
    return saliency_map[rows, cols]


def sorted_values(saliency_map: torch.Tensor) -> torch.Tensor:
    """All values of a map in ascending order (share it between :func:`auc` and
    :func:`auc_judd`, which both only count pixels below thresholds); on CPU numpy's sort,
    20× faster than torch's."""
    if saliency_map.device.type == "cpu":
        return torch.from_numpy(np.sort(saliency_map.flatten().numpy()))
    return torch.sort(saliency_map.flatten()).values


def exp(tensor: torch.Tensor) -> torch.Tensor:
    """exp of a float64 tensor; on CPU numpy's SIMD exp, 2–3× faster than torch's."""
    if tensor.device.type == "cpu":
        return torch.from_numpy(np.exp(tensor.numpy()))
    return tensor.exp()


def log_(tensor: torch.Tensor) -> torch.Tensor:
    """In-place log of a float64 tensor; on CPU numpy's SIMD log, 3× faster than torch's."""
    if tensor.device.type == "cpu":
        np.log(tensor.numpy(), out=tensor.numpy())
        return tensor
    return tensor.log_()


# --------------------------------------------------------------------------- blur


def kernel_radius(sigma: float) -> int:
    """Half-width of scipy's truncated Gaussian kernel: entries further away are 0."""
    return int(GAUSSIAN_TRUNCATE * sigma + 0.5)


@lru_cache(maxsize=16)
def _blur_matrix_cpu(size: int, sigma: float) -> torch.Tensor:
    radius = kernel_radius(sigma)
    offsets = np.arange(-radius, radius + 1)
    weights = np.exp(-0.5 * (offsets / sigma) ** 2)
    weights /= weights.sum()
    # scipy's "reflect" mirrors about the edge, repeating the border pixel (d c b a | a b c d);
    # folding an index into one period 2*size makes the matrix right for any radius.
    sources = np.arange(size)[:, None] + offsets[None, :]
    sources = np.mod(sources, 2 * size)
    sources = np.where(sources >= size, 2 * size - 1 - sources, sources)
    flat = (np.arange(size)[:, None] * size + sources).ravel()
    matrix = np.bincount(flat, np.tile(weights, size), minlength=size * size).reshape(size, size)
    return torch.from_numpy(matrix)


def blur_matrix(size: int, sigma: float, device: torch.device) -> torch.Tensor:
    """The (size × size) matrix B with ``gaussian_filter1d(v, σ, mode="reflect") == B @ v``."""
    return _blur_matrix_on(size, float(sigma), str(device))


@lru_cache(maxsize=16)
def _blur_matrix_on(size: int, sigma: float, device: str) -> torch.Tensor:
    return _blur_matrix_cpu(size, sigma).to(device)


@lru_cache(maxsize=16)
def blur_matrix_t(size: int, sigma: float, device: torch.device) -> torch.Tensor:
    """The transpose of :func:`blur_matrix`, stored contiguously."""
    return blur_matrix(size, sigma, device).T.contiguous()


def gaussian_blur(image: ArrayLike, sigma: float) -> torch.Tensor:
    """scipy's ``gaussian_filter(image, σ, mode="reflect")`` as two matrix products."""
    image = as_float64(image)
    height, width = image.shape
    rows = blur_matrix(height, sigma, image.device)
    cols = blur_matrix(width, sigma, image.device)
    return rows @ image @ cols.T


def empirical_saliency_map(
    xs: ArrayLike, ys: ArrayLike, height: int, width: int, sigma: float, device: torch.device
) -> torch.Tensor:
    """Fixation counts per pixel blurred with a reflecting Gaussian of σ pixels.

    Blurring is linear, so the blurred count map is the sum of one separable kernel per
    fixation: ``B_rows[:, rows] @ B_cols[:, cols].T`` — far cheaper than filtering a dense map.
    The product is taken in bands of :data:`BAND_ROWS` output rows, each summing only the
    fixations within a kernel radius of the band (the others' kernels are exactly 0 there;
    reflection never moves a pixel further away).
    """
    rows, cols = pixel_index(xs, ys, device)
    check_inside(rows, cols, height, width)
    rows, order = torch.sort(rows)
    # rows of the transposed matrices are the columns wanted, and gathering rows is contiguous
    row_kernels = blur_matrix_t(height, sigma, device)[rows]  # (n, height)
    col_kernels = blur_matrix_t(width, sigma, device)[cols[order]]  # (n, width)
    starts = np.arange(0, height, BAND_ROWS)
    stops = np.minimum(starts + BAND_ROWS, height)
    radius = kernel_radius(sigma)
    sorted_rows = rows.cpu().numpy()
    firsts = np.searchsorted(sorted_rows, starts - radius, side="left")
    lasts = np.searchsorted(sorted_rows, stops + radius, side="left")
    blurred = row_kernels.new_empty(height, width)
    for start, stop, first, last in zip(starts, stops, firsts, lasts, strict=True):
        torch.mm(
            row_kernels[first:last, start:stop].T,
            col_kernels[first:last],
            out=blurred[start:stop],
        )
    return blurred


# --------------------------------------------------------------------------- ROC


def _count_below(
    ordered: torch.Tensor, thresholds: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """How many of the ascending ``ordered`` values are < each threshold, and how many equal it."""
    below = torch.searchsorted(ordered, thresholds, right=False)
    return below, torch.searchsorted(ordered, thresholds, right=True) - below


def auc_per_positive(positives: torch.Tensor, sorted_negatives: torch.Tensor) -> torch.Tensor:
    """P(negative < positive) + ½ P(negative = positive), for each positive."""
    below, equal = _count_below(sorted_negatives, positives)
    return (below + 0.5 * equal).to(positives.dtype) / len(sorted_negatives)


def auc(
    saliency_map: ArrayLike, xs: ArrayLike, ys: ArrayLike, sorted_map: torch.Tensor | None = None
) -> torch.Tensor:
    """AUC with every pixel of the image as a negative (fixated ones too), ties counting ½.

    Per image this is the area under the ROC curve of fixated vs all pixel values (pysaliency
    ``SaliencyMapModel.AUC(nonfixations="uniform")``). Data-set value: per-image AUCs averaged
    with weights equal to each image's fixation count ("per fixation"). ``sorted_map``: the
    map's :func:`sorted_values`, if already computed.
    """
    smap = as_float64(saliency_map)
    rows, cols = pixel_index(xs, ys, smap.device)
    positives = values_at(smap, rows, cols)
    if sorted_map is None and len(positives) <= COUNT_UP_TO_POSITIVES:
        below = torch.stack([(smap < v).sum() for v in positives])
        equal = torch.stack([(smap == v).sum() for v in positives])
        return ((below + 0.5 * equal).to(smap.dtype) / smap.numel()).mean()
    ordered = sorted_values(smap) if sorted_map is None else sorted_map
    return auc_per_positive(positives, ordered).mean()


def shuffled_auc(
    saliency_map: ArrayLike, xs: ArrayLike, ys: ArrayLike, other_xs: ArrayLike, other_ys: ArrayLike
) -> torch.Tensor:
    """sAUC: negatives are the fixations of all other images, in this image's pixels.

    ``other_xs/ys`` come from :class:`ShuffledNonfixations`. Per image as :func:`auc`; data-set
    value weighted by fixation count ("per fixation"), as pysaliency's ``sAUC``.
    """
    smap = as_float64(saliency_map)
    rows, cols = pixel_index(xs, ys, smap.device)
    negatives = sorted_values(values_at(smap, *pixel_index(other_xs, other_ys, smap.device)))
    return auc_per_positive(values_at(smap, rows, cols), negatives).mean()


class ShuffledNonfixations:
    """The sAUC negatives of each image of a data set: every fixation of every *other* image.

    As pysaliency's ``FullShuffledNonfixationProvider``: x is multiplied by
    width(image) / width(source image), y by the heights' ratio, and the pixel is the truncation
    of the result. ``sizes`` is (n_images, 2) of (height, width); ``images`` gives each
    fixation's image index. Fixations are kept grouped by image and, once rescaled to a size,
    kept for the next image of that size: an image's negatives are then two slices.
    """

    def __init__(
        self, xs: np.ndarray, ys: np.ndarray, images: np.ndarray, sizes: np.ndarray
    ) -> None:
        order = np.argsort(images, kind="stable")
        self._xs, self._ys, self._sizes = xs[order], ys[order], sizes
        self._bounds = np.searchsorted(images[order], np.arange(len(sizes) + 1))
        self._source_sizes = sizes[images[order]].astype(np.float64)
        self._scaled_size: tuple[int, int] | None = None
        self._scaled: tuple[np.ndarray, np.ndarray] = (np.empty(0), np.empty(0))

    def of(self, image: int) -> tuple[np.ndarray, np.ndarray]:
        """(xs, ys) of the negatives of ``image``, as integer pixels of that image."""
        height, width = (int(v) for v in self._sizes[image])
        if self._scaled_size != (height, width):
            scaled_x = self._xs * (width / self._source_sizes[:, 1])
            scaled_y = self._ys * (height / self._source_sizes[:, 0])
            self._scaled = scaled_x.astype(np.int64), scaled_y.astype(np.int64)
            self._scaled_size = (height, width)
        start, stop = self._bounds[image], self._bounds[image + 1]
        x, y = self._scaled
        return np.concatenate([x[:start], x[stop:]]), np.concatenate([y[:start], y[stop:]])


def auc_judd(
    saliency_map: ArrayLike,
    xs: ArrayLike,
    ys: ArrayLike,
    jitter: ArrayLike | None,
    sorted_map: torch.Tensor | None = None,
) -> torch.Tensor:
    """AUC-Judd (MIT): thresholds at the fixated values, negatives are the unfixated pixels.

    The ROC has one point per fixation value θ (hit rate = share of fixations ≥ θ, false-alarm
    rate = share of unfixated pixels ≥ θ) plus (0, 0) and (1, 1), integrated by trapezoids —
    pysaliency's ``AUC_Judd``. ``jitter`` (the map's shape) is added first to break ties, as the
    MIT code and pysaliency (1e-7·N(0, 1)) do; None skips it. ``sorted_map``: the un-jittered
    map's :func:`sorted_values`, if already computed. Data-set value: mean over images.
    """
    smap = as_float64(saliency_map)
    if jitter is not None:
        smap = smap + as_float64(jitter, smap.device)
        sorted_map = None
    ordered = sorted_values(smap) if sorted_map is None else sorted_map
    rows, cols = pixel_index(xs, ys, smap.device)
    positives = torch.sort(values_at(smap, rows, cols)).values
    # unfixated pixels below θ = all pixels below θ − distinct fixated pixels below θ
    fixated = torch.sort(smap.flatten()[torch.unique(rows * smap.shape[1] + cols)]).values
    below = _count_below(ordered, positives)[0] - _count_below(fixated, positives)[0]
    n_pos, n_neg = len(positives), smap.numel() - len(fixated)
    # thresholds in descending order; hits at θ count every positive ≥ θ (ties included)
    hits = (n_pos - torch.searchsorted(positives, positives, right=False)).flip(0)
    false_alarms = (n_neg - below).flip(0)
    zero, one = positives.new_zeros(1), positives.new_ones(1)
    tpr = torch.cat([zero, hits.double() / n_pos, one])
    fpr = torch.cat([zero, false_alarms.double() / n_neg, one])
    return torch.trapezoid(tpr, fpr)


def nss(saliency_map: ArrayLike, xs: ArrayLike, ys: ArrayLike) -> torch.Tensor:
    """Per-fixation NSS: the map standardised (population std) read at each fixation.

    Returns one value per fixation; data-set value: mean over all fixations ("per fixation").
    A constant map (max = min) gives exactly 0, where pysaliency divides by the rounding error
    of its mean and gets ±1.
    """
    smap = as_float64(saliency_map)
    rows, cols = pixel_index(xs, ys, smap.device)
    if is_constant(smap):
        return smap.new_zeros(len(rows))
    return (values_at(smap, rows, cols) - smap.mean()) / smap.std(correction=0)


def is_constant(saliency_map: torch.Tensor) -> bool:
    """Exactly constant; a std computed in floating point need not be 0 for such a map."""
    low, high = torch.aminmax(saliency_map)
    return bool(low == high)


# --------------------------------------------------------------------------- map vs map


def to_density(saliency_map: torch.Tensor) -> torch.Tensor:
    """pysaliency's ``convert_saliency_map_to_density(minimum_value=0)``: shift to ≥ 0, sum to 1."""
    if saliency_map.min() < 0:
        saliency_map = saliency_map - saliency_map.min()
    total = saliency_map.sum()
    if total > 0:
        return saliency_map / total
    return torch.full_like(saliency_map, 1.0 / saliency_map.numel())


def cc(saliency_map: ArrayLike, empirical_map: ArrayLike) -> torch.Tensor:
    """Pearson correlation of the map with the empirical fixation map (per image).

    As pysaliency's ``CC``: 0 when the model's map is constant (max = min) and the empirical one
    is not. Data-set value: mean over images.
    """
    a = as_float64(saliency_map)
    b = as_float64(empirical_map, a.device)
    if is_constant(a) and not is_constant(b):
        return a.new_zeros(())
    a, b = a.flatten(), b.flatten()
    # one centred buffer, reused (fresh 10^6-element temporaries cost more than arithmetic):
    # Σ a_c·b_c = Σ a_c·b − b̄·Σ a_c, exactly, where Σ a_c is rounding error
    centred = a - a.mean()
    b_mean = b.mean()
    covariance = torch.dot(centred, b) - b_mean * centred.sum()
    a_square = torch.dot(centred, centred)
    torch.sub(b, b_mean, out=centred)
    return covariance / torch.sqrt(a_square * torch.dot(centred, centred))


def kl_div(saliency_map: ArrayLike, empirical_map: ArrayLike) -> torch.Tensor:
    """Image-based KL divergence, MIT variant: KL(empirical ‖ model), both made densities.

    Σ q · log(ε + q / (p + ε)) with q the empirical and p the model density (:func:`to_density`),
    ε = 2.2204e-16 (pysaliency ``image_based_kl_divergence(minimum_value=0,
    log_regularization=ε, quotient_regularization=ε)``). Data-set value: mean over images.
    """
    p = to_density(as_float64(saliency_map))
    return kl_div_of_densities(p, to_density(as_float64(empirical_map, p.device)))


def kl_div_of_densities(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """:func:`kl_div` of a model density p and an empirical density q."""
    # in place on one buffer: fresh 10^6-element temporaries cost more than the arithmetic
    ratio = p + KLD_EPS
    torch.div(q, ratio, out=ratio)
    log_(ratio.add_(KLD_EPS))
    return torch.dot(q.flatten(), ratio.flatten())


def sim(saliency_map: ArrayLike, empirical_map: ArrayLike) -> torch.Tensor:
    """Similarity: Σ min(p, q) of both maps made densities (:func:`to_density`). Data-set value:
    mean over images."""
    p = to_density(as_float64(saliency_map))
    return sim_of_densities(p, to_density(as_float64(empirical_map, p.device)))


def sim_of_densities(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """:func:`sim` of two densities."""
    return torch.minimum(p, q).sum()


# --------------------------------------------------------------------------- densities


def log_likelihoods(log_density: ArrayLike, xs: ArrayLike, ys: ArrayLike) -> torch.Tensor:
    """log p (natural log) at each fixation; data-set LL: mean over fixations."""
    logp = as_float64(log_density)
    rows, cols = pixel_index(xs, ys, logp.device)
    return values_at(logp, rows, cols)


def information_gains(
    log_density: ArrayLike, baseline_log_density: ArrayLike, xs: ArrayLike, ys: ArrayLike
) -> torch.Tensor:
    """(log p_model − log p_baseline) / ln 2 at each fixation, in bits; data-set IG: mean over
    fixations (pysaliency ``information_gain(average="fixation")``)."""
    model = log_likelihoods(log_density, xs, ys)
    baseline = log_likelihoods(as_float64(baseline_log_density, model.device), xs, ys)
    return (model - baseline) / math.log(2)


def batch_log_likelihoods(
    log_density: torch.Tensor, fixations: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """log p (natural log) of each fixation of a batch, (B, N), 0 where ``mask`` is False.

    ``log_density`` is (B, H, W), one density for all of an item's fixations, or (B, N, H, W),
    one per fixation (a conditional model's); ``fixations`` (B, N, 2) are (x, y) pixels of that
    grid, each scored by the pixel (row ⌊y⌋, column ⌊x⌋) it lies in.
    """
    width = log_density.shape[-1]
    flat = fixations[..., 1].floor().long() * width + fixations[..., 0].floor().long()
    flat = flat.clamp(min=0) * mask  # padding points at pixel 0, masked below
    if log_density.dim() == 3:
        values = log_density.flatten(1).gather(1, flat)
    else:
        values = log_density.flatten(2).gather(2, flat[..., None])[..., 0]
    return values * mask


DENSITY_SUM_TOLERANCE = 1e-3  # |Σ exp(log p) − 1| allowed; float32 sums over ~1e6 pixels drift


def density_from_log_density(log_density: torch.Tensor, name: str) -> torch.Tensor:
    """exp(log p), after checking it is finite and sums to 1 (error names ``name``)."""
    density = exp(log_density)
    total = density.sum().item()  # NaN or +inf anywhere in log p shows up here
    if not math.isfinite(total):
        raise ValueError(f"{name}: log-density contains NaN or +inf")
    if abs(total - 1) > DENSITY_SUM_TOLERANCE:
        raise ValueError(
            f"{name}: exp(log-density) sums to {total:.6g}, not 1 (is it a natural-log density? "
            "use --kind saliency-map for unnormalised maps)"
        )
    return density
