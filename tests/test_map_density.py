import json
import math

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.ndimage import gaussian_filter

from code import evaluate
from code.data.centerbias import CenterBias
from code.data.gaze import Fixations, GazeDataset, Stimulus
from code.data.generated import generated_dataset
from code.metrics.map_density import (
    MapDensityFit,
    MapDensityOptions,
    _blur_matrix,
    fit_map_density,
)
from code.metrics.saliency import log_likelihoods
from code.models.layers.gaussian_blur import GaussianBlur

OPTIONS = MapDensityOptions(knots=20, downsample=2, iterations=100)


@pytest.fixture(scope="module")
def scenes():
    """32 generated 48x64 scenes of known density, 600 fixations each: 16 to fit, 16 held out."""
    data = generated_dataset(32, 48, 64, 10, 60, 3)
    return data.subset(range(16)), data.subset(range(16, 32))


TRANSFORMS = {"density": np.exp, "log_density": lambda log_p: log_p}  # the density, monotone


@pytest.fixture(scope="module", params=list(TRANSFORMS))
def fitted(request, scenes):
    """The fit on maps that are the training images' true density, or a monotone transform."""
    train, _ = scenes
    transform = TRANSFORMS[request.param]
    maps = (transform(s.true_log_density()) for s in train.stimuli)
    return transform, fit_map_density(train, maps, CenterBias(0.05, 0.01).fit(train), OPTIONS)


def fixations_by_image(dataset):
    fix = dataset.fixations
    return [(fix.x[r], fix.y[r]) for r in fix.rows_by_image(len(dataset.stimuli))]


def mean_gain_bits(dataset, log_density_of) -> float:
    """Mean over the fixations of log p(fixation) − log p_true(fixation), in bits."""
    gains = [
        log_likelihoods(log_density_of(stim), *xy) - log_likelihoods(stim.true_log_density(), *xy)
        for stim, xy in zip(dataset.stimuli, fixations_by_image(dataset), strict=True)
    ]
    return float(torch.cat(gains).mean()) / math.log(2)


def test_a_density_given_as_a_map_is_recovered(scenes, fitted):
    _, held_out = scenes
    transform, fit = fitted
    # IG of the fitted density on held-out images' fixations, against the true density's own
    gap = mean_gain_bits(held_out, lambda s: fit.log_density(transform(s.true_log_density())))
    assert abs(gap) < 0.01
    assert fit.training["images"] == 16 and fit.training["fixations"] == 16 * 600


def test_nonlinearity_is_monotone_and_densities_normalised(fitted):
    _, fit = fitted
    values = np.array(fit.values)
    assert (np.diff(values) >= 0).all() and values[0] > 0 and values[-1] == pytest.approx(1)
    assert fit.sigma > 0 and 0 < fit.center_bias_weight < 1
    rng = np.random.default_rng(0)
    log_p = fit.log_density(rng.normal(size=(30, 41)) * 100)  # any size, beyond the range
    assert log_p.shape == (30, 41) and float(log_p.exp().sum()) == pytest.approx(1, abs=1e-12)


def test_constant_maps_score_as_the_centre_bias(scenes):
    train, _ = scenes
    center_bias = CenterBias(0.05, 0.01).fit(train)
    maps = (np.full(s.size, 3.0) for s in train.stimuli)
    fit = fit_map_density(train, maps, center_bias, OPTIONS)
    assert fit.center_bias_weight > 0.99
    assert fit.training["information_gain"] == pytest.approx(0, abs=1e-3)


def test_saved_fit_loads_to_the_same_densities(scenes, fitted, tmp_path):
    _, held_out = scenes
    _, fit = fitted
    fit.save(tmp_path / "fit.json")
    loaded = MapDensityFit.load(tmp_path / "fit.json")
    described = loaded.describe()
    assert described == fit.describe()
    assert set(described) >= {"nonlinearity", "sigma", "center_bias_weight", "map_range"}
    stim = held_out.stimuli[0]
    assert torch.equal(
        loaded.log_density(np.exp(stim.true_log_density())),
        fit.log_density(np.exp(stim.true_log_density())),
    )
    record = json.loads((tmp_path / "fit.json").read_text())
    record["center_bias"]["density"][0][0] += 1e-3
    (tmp_path / "bad.json").write_text(json.dumps(record))
    with pytest.raises(ValueError, match=r"bad\.json"):
        MapDensityFit.load(tmp_path / "bad.json")


def test_blur_matrix_is_the_replicate_padded_gaussian_blur():
    x = torch.randn(1, 1, 9, 13, dtype=torch.float64)
    for sigma in (0.3, 1.7, 6.0):  # the last kernel is wider than the map
        s = torch.tensor(sigma, dtype=torch.float64)
        radius = math.ceil(4 * sigma)
        expected = GaussianBlur(sigma, learnable=False, radius=radius)(x)[0, 0]
        assert torch.allclose(_blur_matrix(9, s) @ x[0, 0] @ _blur_matrix(13, s).T, expected)


def test_bad_training_input_is_named(scenes):
    train, _ = scenes
    center_bias = CenterBias(0.05, 0.01).fit(train)
    maps = [np.exp(s.true_log_density()) for s in train.stimuli]
    with pytest.raises(ValueError, match=r"generated_00003.*shape \(48, 63\)"):
        fit_map_density(train, [m[:, :-1] if i == 3 else m for i, m in enumerate(maps)],
                        center_bias, OPTIONS)  # fmt: skip
    nan = maps[5].copy()
    nan[2, 2] = np.nan
    with pytest.raises(ValueError, match=r"generated_00005.*NaN"):
        fit_map_density(train, [*maps[:5], nan, *maps[6:]], center_bias, OPTIONS)
    with pytest.raises(ValueError, match="15 maps for the 16"):
        fit_map_density(train, maps[:15], center_bias, OPTIONS)
    with pytest.raises(ValueError, match="no training images"):
        fit_map_density(train.subset([]), [], center_bias, OPTIONS)
    with pytest.raises(ValueError, match="knots"):
        fit_map_density(train, maps, center_bias, MapDensityOptions(1, 2, 10))


# ----------------------------------------- fitting at a resolution reduced unevenly in y and x

# (height, width) -> the fitting grid at downsample 16, written out: 136/16 = 8.5 rounds to 8,
# 120/16 = 7.5 to 8, 36/16 = 2.25 to 2, 96/16 = 6; so each coarse pixel averages a whole block
# of 17x15 or 18x16 original pixels, and rows and columns shrink by different factors
UNEVEN = {(136, 120): (8, 8), (36, 96): (2, 6)}
UNEVEN_DOWNSAMPLE = 16
GENERATING_SIGMA = 20.0  # original pixels


@pytest.fixture(scope="module")
def uneven() -> tuple[GazeDataset, list[np.ndarray], MapDensityFit]:
    """Ten images of two shapes whose fixations are drawn from scipy's blur (σ = 20 px) of
    sparse point maps, plus 10 % uniform; the fit is given the sharp point maps."""
    rng = np.random.default_rng(11)
    shapes = [(136, 120)] * 6 + [(36, 96)] * 4
    maps, columns = [], {name: [] for name in ("x", "y", "image", "subject")}
    for image, (height, width) in enumerate(shapes):
        points = np.zeros((height, width))
        np.add.at(points, (rng.integers(0, height, 6), rng.integers(0, width, 6)), 1.0)
        p = gaussian_filter(points, GENERATING_SIGMA, mode="nearest")
        p = 0.9 * p / p.sum() + 0.1 / p.size
        row, col = np.divmod(rng.choice(p.size, 400, p=p.ravel()), width)
        columns["x"].append(col + rng.uniform(0, 1, 400))
        columns["y"].append(row + rng.uniform(0, 1, 400))
        columns["image"].append(np.full(400, image))
        columns["subject"].append(np.arange(400) % 8)
        maps.append(points)
    x, y, image, subject = (np.concatenate(columns[name]) for name in columns)
    n = len(x)
    fixations = Fixations(
        x=x, y=y, image=image, subject=subject, train=image * 8 + subject,
        index=np.zeros(n, np.int64), onset_ms=np.full(n, np.nan), duration_ms=np.full(n, np.nan),
    )  # fmt: skip
    stimuli = [Stimulus(f"uneven_{i}", h, w, None) for i, (h, w) in enumerate(shapes)]
    dataset = GazeDataset("uneven", stimuli, fixations)
    center_bias = CenterBias(0.1, 0.1).fit(dataset)
    options = MapDensityOptions(knots=6, downsample=UNEVEN_DOWNSAMPLE, iterations=15)
    return dataset, maps, fit_map_density(dataset, maps, center_bias, options)


def reference_density(
    fit: MapDensityFit, x: np.ndarray, sigma: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray]:
    """The fitted density of normalised maps ``x`` (clipped to [0, 1]), built with scipy:
    Gaussian blur (σ per axis, in pixels of ``x``; edge pixel repeated; kernel cut at 4σ), the
    fitted f interpolated between its knots, normalised, and mixed with the centre bias; and
    the centre bias alone."""
    radius = tuple(max(1, math.ceil(4 * s)) for s in sigma)
    blurred = gaussian_filter(x, sigma, mode="nearest", radius=radius)
    f = np.interp(blurred, np.linspace(0, 1, len(fit.values)), fit.values)
    w = fit.center_bias_weight
    center = np.exp(fit.center_bias.log_density(*x.shape))
    return (1 - w) * f / f.sum() + w * center, center


def test_fitted_blur_is_in_original_pixels_on_both_axes(uneven):
    """Fitting grids that shrink rows and columns by different factors (1/17 and 1/15, 1/18 and
    1/16). The reported training information gain must be that of scipy's blur of the
    block-averaged maps with σ·h/H along rows and σ·w/W along columns at the reported σ, and
    the reported σ must be near the generating 20 px (18.5: the fit is at 1/16 resolution).
    Catches (through the information gain) either axis's factor used for both, the two swapped,
    the nominal 1/16 for both, fixations counted in a coarse column by the row factor; (through
    the recovery) σ reported in fitting pixels; and, at full resolution, the fitted σ applied
    in fitting pixels. Recovery alone would not catch the factor bugs: they fit 17.5 to 19.8."""
    dataset, maps, fit = uneven
    assert fit.sigma == pytest.approx(GENERATING_SIGMA, rel=0.15)  # 18.5: fitted at 1/16
    lo, hi = min(m.min() for m in maps), max(m.max() for m in maps)
    assert fit.map_range == (lo, hi)
    fix = dataset.fixations
    gains = []
    for i, (stim, full) in enumerate(zip(dataset.stimuli, maps, strict=True)):
        (height, width), (h, w) = stim.size, UNEVEN[stim.size]
        by, bx = height // h, width // w  # each coarse pixel: a by x bx block
        coarse = ((full - lo) / (hi - lo)).reshape(h, by, w, bx).mean((1, 3))
        sigma = (fit.sigma * h / height, fit.sigma * w / width)
        p, center = reference_density(fit, coarse, sigma)
        rows = np.floor(fix.y[fix.image == i]).astype(int) // by
        cols = np.floor(fix.x[fix.image == i]).astype(int) // bx
        gains.append(np.log2(p[rows, cols]) - np.log2(center[rows, cols]))
    gain = np.concatenate(gains).mean()
    assert fit.training["information_gain"] == pytest.approx(gain, rel=1e-9)
    assert gain > 0.1  # the maps are informative: σ matters
    # applied to a map at its full size (a 36x96 one), σ is in its pixels on both axes
    full = maps[6]
    p, _ = reference_density(fit, (full - lo) / (hi - lo), (fit.sigma, fit.sigma))
    np.testing.assert_allclose(fit.log_density(full).numpy(), np.log(p), rtol=1e-9)


# --------------------------------------------------------------------------- the CLI


@pytest.fixture(scope="module")
def csv_scenes(tmp_path_factory):
    """20 generated scenes written in the generic layout, with their true densities as maps."""
    root = tmp_path_factory.mktemp("scenes")
    data = generated_dataset(20, 48, 64, 8, 25, 5)
    (root / "stimuli").mkdir()
    (root / "maps").mkdir()
    rows = ["image,subject,fix_index,x,y,duration_ms,onset_ms"]
    fix = data.fixations
    for i, stim in enumerate(data.stimuli):
        Image.fromarray(stim.read()).save(root / "stimuli" / f"{stim.id}.png")
        np.save(root / "maps" / f"{stim.id}.npy", np.exp(stim.true_log_density()))
        for r in np.flatnonzero(fix.image == i):
            rows.append(f"{stim.id}.png,{fix.subject[r]},{fix.index[r]},{fix.x[r]},{fix.y[r]},,")
    (root / "fixations.csv").write_text("\n".join(rows) + "\n")
    (root / "train.txt").write_text("".join(f"generated_{i:05d}\n" for i in range(12)))
    (root / "test.txt").write_text("".join(f"generated_{i:05d}\n" for i in range(12, 20)))
    return root


def run_cli(root, out, *extra):
    evaluate.main(
        [
            "saliency",
            "--dataset",
            "csv",
            "--root",
            str(root),
            "--out-of-image",
            "error",
            "--predictions",
            str(root / "maps"),
            "--kind",
            "saliency-map",
            "--images",
            str(root / "test.txt"),
            "--opts",  # the csv data set has no config of its own: its centre bias is given
            "EVAL.FIXATION_MAP_SIGMA",
            "4",
            "EVAL.CENTERBIAS_FOLDS",
            "4",
            "EVAL.WORKERS",
            "1",
            "DATA.CENTERBIAS.BANDWIDTH",
            "0.05",
            "DATA.CENTERBIAS.UNIFORM_WEIGHT",
            "0.01",
            "MAP_DENSITY.DOWNSAMPLE",
            "2",
            "--out",
            str(out),
            *extra,
        ]
    )
    return json.loads(out.read_text())


FIT = ("--fit-images", "train.txt")


def fit_args(root, *changes):
    args = [str(root / a) if a.endswith(".txt") else a for a in FIT]
    return ["--fit-density-on", str(root / "maps"), *args, *changes]


def test_cli_fits_the_density_on_training_maps(csv_scenes, tmp_path, capsys):
    plain = run_cli(csv_scenes, tmp_path / "plain.json")
    fitted = run_cli(csv_scenes, tmp_path / "fitted.json", *fit_args(csv_scenes))
    # without the fit, a saliency map reports no LL/IG and nothing about a density
    assert "LL" not in plain["metrics"] and "IG" not in plain["metrics"]
    assert "map_density" not in plain and "map_density" not in plain["settings"]
    # with it, the map metrics are unchanged and LL/IG are those of the fitted density
    for metric, value in plain["metrics"].items():
        assert fitted["metrics"][metric] == value
    density = fitted["map_density"]
    assert fitted["metrics"]["IG"] == density["metrics"]["IG"]
    assert fitted["per_image"]["model"]["LL"] == fitted["per_image"]["map_density"]["LL"]
    assert "LL" in fitted["uncertainty"]["model"]
    assert density["parameters"]["training"]["images"] == 12
    assert fitted["settings"]["map_density"]["fit_images"] == 12
    # the maps are the true densities: the fitted density scores like them
    scored = generated_dataset(20, 48, 64, 8, 25, 5).subset(range(12, 20))
    true_ll = torch.cat(
        [
            log_likelihoods(s.true_log_density(), *xy)
            for s, xy in zip(scored.stimuli, fixations_by_image(scored), strict=True)
        ]
    ).mean()
    assert abs(fitted["metrics"]["LL"] - float(true_ll)) / math.log(2) < 0.02
    assert "map density fitted on 12 images" in capsys.readouterr().out


def test_cli_refuses_bad_fit_input(csv_scenes, tmp_path):
    out = tmp_path / "r.json"
    with pytest.raises(SystemExit):  # a density fit for densities
        run_cli(csv_scenes, out, *fit_args(csv_scenes), "--kind", "log-density")
    with pytest.raises(SystemExit):  # training images without their maps
        run_cli(csv_scenes, out, "--fit-images", str(csv_scenes / "train.txt"))
    with pytest.raises(SystemExit):  # the scored images among the training images
        scored = str(csv_scenes / "test.txt")
        run_cli(csv_scenes, out, *fit_args(csv_scenes, "--fit-images", scored))
    empty = tmp_path / "none.txt"
    empty.write_text("# no image\n")
    with pytest.raises(ValueError, match=r"none\.txt: names no stimulus"):
        run_cli(csv_scenes, out, *fit_args(csv_scenes, "--fit-images", str(empty)))
    maps = tmp_path / "maps"
    maps.mkdir()
    for k in range(12):
        m = np.load(csv_scenes / "maps" / f"generated_{k:05d}.npy")
        if k != 7:
            np.save(maps / f"generated_{k:05d}.npy", m[:-1] if k == 4 else m)
    with pytest.raises(ValueError, match=r"1 missing.*generated_00007"):
        run_cli(csv_scenes, out, *fit_args(csv_scenes, "--fit-density-on", str(maps)))
    np.save(maps / "generated_00007.npy", m)
    with pytest.raises(ValueError, match=r"generated_00004\.npy: shape \(47, 64\)"):
        run_cli(csv_scenes, out, *fit_args(csv_scenes, "--fit-density-on", str(maps)))
    assert not out.exists()
