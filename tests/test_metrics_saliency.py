import math

import numpy as np
import pytest
import torch

from code.metrics import saliency as M
from code.metrics.evaluator import SaliencyEvaluator
from code.metrics.protocol import SimOptimisation
from code.metrics.registry import saliency_metrics

NO_SIM_OPT = SimOptimisation(steps=0, fixation_count=100, batch_size=4, learning_rate=1e-3, seed=0)
XS = np.array([3.2, 10.9, 10.1, 25.0, 7.5])
YS = np.array([4.7, 2.0, 2.9, 15.3, 18.0])
H, W = 20, 30

METRICS = tuple(m.name for m in saliency_metrics())  # the registered ones, in order


def test_constant_map_is_chance():
    smap = np.full((H, W), 3.0)
    assert M.auc(smap, XS, YS).item() == 0.5
    assert M.auc_judd(smap, XS, YS, None).item() == 0.5
    assert M.shuffled_auc(smap, XS, YS, XS[::-1] + 1, YS).item() == 0.5
    assert np.all(M.nss(smap, XS, YS).numpy() == 0)
    empirical = M.empirical_saliency_map(XS, YS, H, W, 2.0, torch.device("cpu"))
    assert M.cc(smap, empirical).item() == 0


def test_perfect_map():
    smap = np.zeros((H, W))
    smap[YS.astype(int), XS.astype(int)] = 1
    assert M.auc_judd(smap, XS, YS, None).item() == 1.0
    n_fixated = len({(int(y), int(x)) for x, y in zip(XS, YS, strict=True)})
    # all pixels are negatives: a fixated pixel ties with itself and the other fixated pixels
    expected = (H * W - n_fixated + 0.5 * n_fixated) / (H * W)
    assert M.auc(smap, XS, YS).item() == pytest.approx(expected, rel=1e-15)
    assert M.nss(smap, XS, YS).mean().item() > 5


def test_map_equal_to_empirical_density():
    empirical = M.empirical_saliency_map(XS, YS, H, W, 3.0, torch.device("cpu"))
    assert M.cc(empirical, empirical).item() == pytest.approx(1, abs=1e-12)
    assert M.sim(empirical, empirical).item() == pytest.approx(1, abs=1e-12)
    assert M.kl_div(empirical, empirical).item() == pytest.approx(0, abs=1e-12)


def test_swapped_inputs():
    rng = np.random.default_rng(1)
    a, b = rng.random((H, W)), rng.random((H, W)) ** 4
    assert M.cc(a, b).item() == pytest.approx(M.cc(b, a).item(), rel=1e-12)
    assert M.sim(a, b).item() == pytest.approx(M.sim(b, a).item(), rel=1e-12)
    assert M.kl_div(a, b).item() != pytest.approx(M.kl_div(b, a).item(), rel=1e-3)
    # AUC of the reversed map is 1 − AUC (no ties in a random map)
    assert M.auc(-a, XS, YS).item() == pytest.approx(1 - M.auc(a, XS, YS).item(), rel=1e-12)


def test_blur_is_scipy_reflect():
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(2)
    for size, sigma in [((20, 30), 2.0), ((9, 5), 7.3), ((64, 48), 12.0)]:
        image = rng.random(size)
        ours = M.gaussian_blur(image, sigma).numpy()
        np.testing.assert_allclose(
            ours, gaussian_filter(image, sigma, mode="reflect"), rtol=1e-12, atol=1e-15
        )


@pytest.mark.parametrize(
    ("size", "sigma", "corner"),
    [
        ((300, 40), 5.0, True),
        ((300, 40), 5.0, False),
        ((7, 9), 30.0, False),
        ((130, 64), 1.0, True),
    ],
)
def test_empirical_map_is_blurred_counts(size, sigma, corner):
    """Banded products (fixations far from most bands, kernels wider than the image) equal
    scipy's filter of the count map, duplicates counted."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(3)
    height, width = size
    extent = (min(height, 20), min(width, 20)) if corner else size
    ys, xs = rng.uniform(0, extent[0], 40), rng.uniform(0, extent[1], 40)
    xs[1], ys[1] = xs[0], ys[0]
    counts = np.zeros(size)
    np.add.at(counts, (ys.astype(int), xs.astype(int)), 1)
    ours = M.empirical_saliency_map(xs, ys, height, width, sigma, torch.device("cpu")).numpy()
    expected = gaussian_filter(counts, sigma, mode="reflect")
    np.testing.assert_allclose(ours, expected, rtol=1e-12, atol=1e-17)


def test_fixations_outside_the_map_are_an_error():
    smap = np.random.default_rng(4).random((H, W))
    with pytest.raises(IndexError, match=r"column 30\.\.30 outside a map of 20x30"):
        M.auc(smap, np.array([30.0]), np.array([1.0]))
    with pytest.raises(IndexError, match=r"row -1"):
        M.nss(smap, np.array([3.0]), np.array([-0.5 - 1]))
    with pytest.raises(IndexError, match=r"row -1"):
        M.empirical_saliency_map([3.0], [-1.5], H, W, 2.0, torch.device("cpu"))


def test_shuffled_nonfixations_are_all_other_fixations_rescaled():
    rng = np.random.default_rng(5)
    sizes = np.array([[60, 80], [30, 40], [60, 80], [90, 50]])
    images = rng.integers(0, 4, 200)  # fixations in no particular order
    xs = rng.uniform(0, 1, 200) * sizes[images, 1]
    ys = rng.uniform(0, 1, 200) * sizes[images, 0]
    nonfixations = M.ShuffledNonfixations(xs, ys, images, sizes)
    for image in [2, 1, 3, 0, 2]:  # sizes change between calls
        height, width = sizes[image]
        other = images != image
        expected = sorted(
            zip(
                (xs[other] * (width / sizes[images[other], 1])).astype(int),
                (ys[other] * (height / sizes[images[other], 0])).astype(int),
                strict=True,
            )
        )
        assert sorted(zip(*nonfixations.of(image), strict=True)) == expected


@pytest.mark.parametrize("n_fixations", [1, 3, 8, 9, 40])
def test_auc_by_counting_equals_auc_by_sorting(n_fixations):
    rng = np.random.default_rng(n_fixations)
    smap = np.round(rng.random((H, W)) * 20) / 20  # many ties
    xs, ys = rng.uniform(0, W, n_fixations), rng.uniform(0, H, n_fixations)
    xs[-1], ys[-1] = xs[0], ys[0]  # a duplicate fixation
    by_sorting = M.auc(smap, xs, ys, M.sorted_values(torch.from_numpy(smap)))
    assert M.auc(smap, xs, ys).item() == by_sorting.item()


def test_log_density_checks():
    with pytest.raises(ValueError, match=r"map\.npy.*sums to"):
        M.density_from_log_density(torch.zeros(4, 4, dtype=torch.float64), "map.npy")
    bad = torch.full((4, 4), -math.log(16), dtype=torch.float64)
    bad[1, 2] = float("nan")
    with pytest.raises(ValueError, match=r"x\.npy.*NaN"):
        M.density_from_log_density(bad, "x.npy")


def _evaluate(osie_csv, log_densities, images):
    evaluator = SaliencyEvaluator("log-density", "raw", 24.0, NO_SIM_OPT)
    nonfixations = M.ShuffledNonfixations(osie_csv.x, osie_csv.y, osie_csv.image, osie_csv.sizes)
    for i in images:
        xs, ys = osie_csv.of(i)
        sx, sy = nonfixations.of(i)
        uniform = np.full(osie_csv.sizes[i], -np.log(np.prod(osie_csv.sizes[i])))
        evaluator.update(
            log_densities[i], xs, ys, baseline_log_density=uniform, shuffled_xs=sx, shuffled_ys=sy
        )
    return evaluator


def test_merged_states_equal_single_pass(osie_csv, osie_log_densities):
    images = range(len(osie_csv.stems))
    whole = _evaluate(osie_csv, osie_log_densities, images)
    first = _evaluate(osie_csv, osie_log_densities, images[:11])
    first.merge(_evaluate(osie_csv, osie_log_densities, images[11:]).state())
    assert first.n_fixations == whole.n_fixations == len(osie_csv.x)
    for metric, value in whole.compute().items():
        assert first.compute()[metric] == pytest.approx(value, rel=1e-12), metric
    assert set(whole.compute()) == set(METRICS)


def test_torch_tensors_on_device(osie_csv, osie_log_densities):
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    xs, ys = osie_csv.of(0)
    logp = torch.from_numpy(osie_log_densities[0]).to(device)
    as_numpy = _evaluate(osie_csv, osie_log_densities, [0]).compute()
    evaluator = SaliencyEvaluator("log-density", "raw", 24.0, NO_SIM_OPT)
    sx, sy = M.ShuffledNonfixations(osie_csv.x, osie_csv.y, osie_csv.image, osie_csv.sizes).of(0)
    evaluator.update(
        logp,
        torch.from_numpy(xs).to(device),
        torch.from_numpy(ys).to(device),
        baseline_log_density=torch.full_like(logp, -math.log(logp.numel())),
        shuffled_xs=sx,
        shuffled_ys=sy,
    )
    for metric, value in evaluator.compute().items():
        assert value == pytest.approx(as_numpy[metric], rel=1e-9), metric


def test_benchmark_protocol_maps_of_one_image(osie_csv, osie_log_densities):
    """Every metric the benchmark protocol scores on one image, against maps written out here
    with numpy and scipy: AUC and NSS read the density; CC, KLDiv and SIM (0 steps) compare
    scipy's reflecting ``gaussian_filter`` of the density with the blurred fixation counts;
    sAUC ranks log p − log((p₁ + p₂)/2), the mean density of the two *other* images, at the
    fixations against the other images' fixations.

    Caught (checked by planting each): CC/KLDiv/SIM scoring the unblurred density, or blurring
    with σ/2 or zero borders; the sAUC map log p or log p_shuffled − log p. (A baseline
    keeping the image's own density in the mean cannot move sAUC at one size: with S the
    others' sum, p/(p + S) ranks pixels as p/S does.)
    """
    from scipy.ndimage import gaussian_filter

    from code.metrics.protocol import ShuffledBaseline

    densities = [np.exp(logp) / np.exp(logp).sum() for logp in osie_log_densities[:3]]
    shuffled = ShuffledBaseline((600, 800))
    for logp in osie_log_densities[:3]:
        shuffled.add(torch.from_numpy(logp))
    evaluator = SaliencyEvaluator("log-density", "benchmark", 24.0, NO_SIM_OPT)
    logp = torch.from_numpy(osie_log_densities[0])
    xs, ys = osie_csv.of(0)
    sx, sy = M.ShuffledNonfixations(osie_csv.x, osie_csv.y, osie_csv.image, osie_csv.sizes).of(0)
    values = evaluator.update(
        logp,
        xs,
        ys,
        shuffled_xs=sx,
        shuffled_ys=sy,
        shuffled_log_density=shuffled.log_density_without(logp),
    )
    assert set(values) == {"AUC", "sAUC", "AUC_Judd", "NSS", "CC", "KLDiv", "SIM", "LL"}
    rows, cols = ys.astype(int), xs.astype(int)
    counts = np.zeros((600, 800))
    np.add.at(counts, (rows, cols), 1)
    q = gaussian_filter(counts, 24.0, mode="reflect")
    q /= q.sum()
    expected_map = gaussian_filter(densities[0], 24.0, mode="reflect")
    p = expected_map / expected_map.sum()
    eps = 2.2204e-16
    log_ratio = np.log(densities[0]) - np.log((densities[1] + densities[2]) / 2)
    positives = log_ratio[rows, cols][:, None]
    negatives = log_ratio[sy.astype(int), sx.astype(int)][None, :]
    fixated = densities[0][rows, cols]
    expected = {
        "AUC": np.mean(
            [(densities[0] < v).mean() + 0.5 * (densities[0] == v).mean() for v in fixated]
        ),
        "NSS": np.mean((fixated - densities[0].mean()) / densities[0].std()),
        "CC": np.corrcoef(expected_map.ravel(), q.ravel())[0, 1],
        "KLDiv": (q * np.log(eps + q / (p + eps))).sum(),
        "SIM": np.minimum(p, q).sum(),
        "sAUC": ((negatives < positives) + 0.5 * (negatives == positives)).mean(),
    }
    for metric, value in expected.items():
        assert values[metric] == pytest.approx(value, rel=1e-9), metric


def test_a_shared_empirical_map_gives_the_same_scores(osie_csv, osie_log_densities):
    xs, ys = osie_csv.of(0)
    height, width = osie_csv.sizes[0]
    shared = M.empirical_saliency_map(xs, ys, height, width, 24.0, torch.device("cpu"))
    alone = SaliencyEvaluator("log-density", "raw", 24.0, NO_SIM_OPT)
    given = SaliencyEvaluator("log-density", "raw", 24.0, NO_SIM_OPT)
    expected = alone.update(osie_log_densities[0], xs, ys)
    assert given.update(osie_log_densities[0], xs, ys, empirical_map=shared) == expected
    assert {"CC", "KLDiv", "SIM"} <= set(expected)


def test_a_map_without_mass_becomes_the_uniform_density():
    """pysaliency's conversion of an all-zero (or constant, once shifted) map: every pixel
    1 / (H·W). Catches H·W in place of its inverse."""
    for flat in (torch.zeros(3, 4), torch.full((3, 4), -2.0)):
        assert torch.equal(M.to_density(flat), torch.full((3, 4), 1 / 12))


def test_log_densities_reach_the_original_size_item_by_item_interpolated_in_log():
    """A (2, 3, 1, 2) batch of log-densities to 1 × 4: each item's two log values interpolated
    bilinearly with half-pixel centres (weights 1, 3/4 + 1/4, 1/4 + 3/4, 1 written out here), then
    renormalised. Catches leading dimensions lost or merged, densities interpolated instead of
    their logs, and no renormalisation."""
    from code.engine.model_scoring import to_original_size

    logs = torch.log(torch.rand(2, 3, 1, 2, dtype=torch.float64) + 0.1)
    resized = to_original_size(logs, (1, 4))
    assert resized.shape == (2, 3, 1, 4)
    a, b = logs[..., 0, 0], logs[..., 0, 1]
    expected = torch.stack([a, 0.75 * a + 0.25 * b, 0.25 * a + 0.75 * b, b], dim=-1)
    expected = expected - torch.logsumexp(expected, dim=-1, keepdim=True)
    torch.testing.assert_close(resized[..., 0, :].double(), expected, rtol=0, atol=1e-6)
