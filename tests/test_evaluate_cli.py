import itertools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.io
from scipy import stats
from scipy.special import logsumexp

from benchmarks.osie import osie_dataset
from code import evaluate
from code.data.gaze import GazeDataset
from code.metrics.registry import saliency_metrics
from code.metrics.uncertainty import bootstrap, paired_comparison
from code.registry import DATASETS, ConfigError

METRICS = tuple(m.name for m in saliency_metrics())  # the registered ones, in order


@pytest.fixture(scope="module")
def six_osie_images(osie_csv):
    return osie_dataset(osie_csv).subset(range(6))


@pytest.fixture
def small_osie(six_osie_images, monkeypatch):
    """The six images registered as a data set for the duration of one test."""

    def load(root: str) -> GazeDataset:
        return six_osie_images

    name = "osie_cli_test"
    monkeypatch.setitem(DATASETS._entries, name, load)
    return name, six_osie_images


def write_predictions(directory, dataset, transform=lambda i, a: a):
    rng = np.random.default_rng(0)
    for i, stim in enumerate(dataset.stimuli):
        m = rng.normal(size=stim.size)
        np.save(directory / f"{stim.id.split('.')[0]}.npy", transform(i, m - logsumexp(m)))


def run(name, directory, out, *extra, opts=()):
    """``code.evaluate saliency`` on the OSIE images registered as ``name``, with OSIE's
    settings (its config's centre bias), 3 centre-bias folds and ``opts``."""
    evaluate.main(
        [
            "saliency",
            "--dataset",
            name,
            "--root",
            "unused",
            "--predictions",
            str(directory),
            "--kind",
            "log-density",
            "--out",
            str(out),
            "--cfg",
            "configs/_base_/data/osie.yaml",
            "--opts",
            "EVAL.CENTERBIAS_FOLDS",
            "3",
            *opts,
            "--overwrite",  # the tests score into the same files again
            *extra,
        ]
    )


def test_cli_writes_result(small_osie, tmp_path, capsys):
    name, dataset = small_osie
    write_predictions(tmp_path, dataset)
    run(name, tmp_path, tmp_path / "r.json")
    result = json.loads((tmp_path / "r.json").read_text())
    # the documented result.json layout
    assert list(result["metrics"]) == list(METRICS)
    assert METRICS == ("AUC", "sAUC", "AUC_Judd", "NSS", "CC", "KLDiv", "SIM", "LL", "IG")
    assert result["n_images"] == 6 and result["n_fixations"] == len(dataset.fixations)
    assert result["baselines"]["uniform"]["AUC"] == 0.5
    assert result["baselines"]["gold_standard"]["IG"] > result["baselines"]["uniform"]["IG"]
    # the gold standard's IG: its LL over the centre bias's, per fixation, in bits (not nats)
    gold, centre = result["baselines"]["gold_standard"], result["baselines"]["center_bias"]
    assert gold["IG"] == pytest.approx((gold["LL"] - centre["LL"]) / np.log(2), rel=1e-9)
    assert "gold_standard" in capsys.readouterr().out


def test_threads_do_not_change_the_result(small_osie, tmp_path):
    name, dataset = small_osie
    write_predictions(tmp_path, dataset)
    run(name, tmp_path, tmp_path / "one.json", opts=["EVAL.WORKERS", "1"])
    run(name, tmp_path, tmp_path / "three.json", opts=["EVAL.WORKERS", "3"])
    one, three = (json.loads((tmp_path / f).read_text()) for f in ("one.json", "three.json"))
    assert one == three  # bitwise: images are summed in order whatever thread scored them
    with pytest.raises(ConfigError, match=r"EVAL\.WORKERS"):
        run(name, tmp_path, tmp_path / "none.json", opts=["EVAL.WORKERS", "0"])
    assert not (tmp_path / "none.json").exists()


@pytest.mark.parametrize(
    ("transform", "message"),
    [
        (lambda i, a: a[:-1] if i == 2 else a, r"1003\.npy: shape"),
        (
            lambda i, a: (
                np.where(np.arange(a.size).reshape(a.shape) == 5, np.nan, a) if i == 1 else a
            ),
            r"1002\.npy.*NaN",
        ),
        (lambda i, a: a + 1 if i == 0 else a, r"1001\.npy.*sums to"),
    ],
)
def test_cli_names_bad_file(small_osie, tmp_path, transform, message):
    name, dataset = small_osie
    write_predictions(tmp_path, dataset, transform)
    with pytest.raises(ValueError, match=message):
        run(name, tmp_path, tmp_path / "r.json")


def test_cli_missing_and_extra_files(small_osie, tmp_path):
    name, dataset = small_osie
    write_predictions(tmp_path, dataset)
    (tmp_path / "1004.npy").rename(tmp_path / "9999.npy")
    with pytest.raises(ValueError, match=r"1 missing.*1004.*1 extra.*9999\.npy"):
        run(name, tmp_path, tmp_path / "r.json")


def test_scanpath_command_scores_a_human_as_well_as_the_human_ceiling(
    shared_data, tmp_path, capsys
):
    """Real OSIE: subject 0's own scanpaths, submitted as predictions for three images."""
    source = shared_data / "osie"
    rows = (source / "fixations.csv").read_text().splitlines()
    wanted = ("1001.jpg,0,", "1002.jpg,0,", "1003.jpg,0,")
    predictions = tmp_path / "scanpaths.csv"
    predictions.write_text("\n".join([rows[0], *(r for r in rows if r.startswith(wanted))]) + "\n")
    out = tmp_path / "result.json"
    evaluate.main(
        [
            "scanpaths",
            "--dataset",
            "osie",
            "--root",
            str(source),
            "--predictions",
            str(predictions),
            "--out",
            str(out),
        ]
    )
    result = json.loads(out.read_text())
    assert result["n_images"] == 3 and result["n_pairs"] == 3 * 15
    per_image = result["per_image"]
    assert per_image["image"] == ["1001.jpg", "1002.jpg", "1003.jpg"]
    assert per_image["n_pairs"] == [15, 15, 15]
    for metric, value in result["metrics"].items():  # equal pair counts: the mean of the means
        assert np.mean(per_image["model"][metric]) == pytest.approx(value, rel=1e-9)
    metrics, ceiling = result["metrics"], result["human_ceiling"]
    assert set(metrics) == set(ceiling) >= {"ScanMatch", "sequence_score", "MM_position"}
    # one human against all humans (itself included once) is close to the human ceiling
    for name in ("ScanMatch", "sequence_score", "MM_position"):
        assert abs(metrics[name] - ceiling[name]) < 0.1, name
    for name in ("model", "human_ceiling"):  # each value with its interval over images
        for metric, interval in result["intervals"][name].items():
            value = result["metrics" if name == "model" else name][metric]
            assert interval["mean"] == pytest.approx(value, rel=1e-9)
            assert interval["ci95"][0] < value < interval["ci95"][1] and interval["se"] > 0
    assert result["length"] == max(per_image_lengths(predictions).values())
    table = capsys.readouterr().out
    assert "ScanMatch" in table and "95% interval" in table


def per_image_lengths(table: Path) -> dict[str, int]:
    """Fixations per image in a one-subject fixation table."""
    images = [line.split(",")[0] for line in table.read_text().splitlines()[1:]]
    return {image: images.count(image) for image in images}


def test_out_folder_is_made_and_checked_before_any_work(small_osie, tmp_path, capsys):
    name, dataset = small_osie
    write_predictions(tmp_path, dataset)
    out = tmp_path / "new" / "sub" / "result.json"
    run(name, tmp_path, out)
    assert json.loads(out.read_text())["n_images"] == 6
    (tmp_path / "blocker").write_text("a file where a folder should be")
    with pytest.raises(SystemExit):
        run(name, tmp_path / "no-predictions-here", tmp_path / "blocker" / "result.json")
    assert "cannot create its folder" in capsys.readouterr().err  # before reading predictions


def test_scanpaths_outside_the_image_are_refused_like_the_loader_does(shared_data, tmp_path):
    source = shared_data / "osie"
    header, first = (source / "fixations.csv").read_text().splitlines()[:2]
    columns = header.split(",")
    row = dict(zip(columns, first.split(","), strict=True))
    row["x"] = "5000"
    predictions = tmp_path / "scanpaths.csv"
    predictions.write_text(header + "\n" + ",".join(row[c] for c in columns) + "\n")
    args = ["scanpaths", "--dataset", "osie", "--root", str(source)]
    with pytest.raises(ValueError, match=r"1 fixation\(s\) outside their image.*x=5000"):
        evaluate.main([*args, "--predictions", str(predictions), "--out", str(tmp_path / "r.json")])


def test_per_image_scores_give_the_table_and_its_intervals(small_osie, tmp_path, capsys):
    name, dataset = small_osie
    write_predictions(tmp_path, dataset)
    run(name, tmp_path, tmp_path / "r.json")
    result = json.loads((tmp_path / "r.json").read_text())
    per_image = result["per_image"]
    assert per_image["image"] == [s.id for s in dataset.stimuli]
    assert sum(per_image["n_fixations"]) == result["n_fixations"]
    for metric, value in result["metrics"].items():
        weighted = metric in AVERAGED_PER_FIXATION
        w = np.asarray(per_image["n_fixations"] if weighted else [1] * 6, float)
        assert np.dot(per_image["model"][metric], w) / w.sum() == pytest.approx(value, rel=1e-9)
        spread = result["uncertainty"]["model"][metric]
        # the bootstrap weighs the images as the table does (n_fixations passed on, not 1s)
        assert spread["mean"] == pytest.approx(value, rel=1e-9)
        assert spread["ci95"][0] <= value <= spread["ci95"][1] and spread["se"] > 0
    for baseline in ("uniform", "center_bias"):
        assert set(result["uncertainty"][baseline]) == set(result["baselines"][baseline])
    assert "± s.e." in capsys.readouterr().out


def test_bootstrap_and_paired_tests_against_textbook_values():
    rng = np.random.default_rng(1)
    values = rng.normal(1.0, 2.0, size=400)
    spread = bootstrap({"CC": values.tolist()}, [1] * 400)["CC"]
    assert spread["mean"] == pytest.approx(values.mean())
    assert spread["se"] == pytest.approx(values.std(ddof=1) / np.sqrt(400), rel=0.1)
    shifted = values - 0.5 + rng.normal(0, 0.1, size=400)
    paired = paired_comparison({"CC": values.tolist()}, {"CC": shifted.tolist()}, [1] * 400)
    assert paired["CC"]["difference"] == pytest.approx(0.5, abs=0.02)
    assert paired["CC"]["ci95"][0] < 0.5 < paired["CC"]["ci95"][1]
    assert paired["CC"]["wilcoxon_p"] < 1e-10 and paired["CC"]["t_p"] < 1e-10
    same = paired_comparison({"CC": values.tolist()}, {"CC": values.tolist()}, [1] * 400)
    assert same["CC"]["difference"] == 0 and same["CC"]["wilcoxon_p"] == 1.0


# pysaliency's averaging, written out: per fixation (each image weighs its fixation count) or
# per image; code.metrics.uncertainty must weigh the resampled images the same way
AVERAGED_PER_FIXATION = {"AUC", "sAUC", "NSS", "LL", "IG"}
AVERAGED_PER_IMAGE = {"AUC_Judd", "CC", "KLDiv", "SIM"}


def uneven_images() -> tuple[np.ndarray, np.ndarray]:
    """Fixation counts (2 to 400) and values of 40 images; the values fall with the count, so
    the per-fixation mean (-0.36) and the per-image mean (0.22) lie 6 s.e. apart."""
    rng = np.random.default_rng(7)
    counts = np.round(np.exp(rng.uniform(np.log(2), np.log(400), 40)))
    return counts, 1.5 - 0.4 * np.log(counts) + rng.normal(0, 0.3, 40)


def percentile_bootstrap(
    samples: tuple[np.ndarray, ...], statistic: Callable[..., np.ndarray]
) -> Any:
    """scipy's 95 % percentile bootstrap, images resampled with all their columns together."""
    return stats.bootstrap(
        samples,
        statistic,
        paired=True,
        vectorized=True,
        n_resamples=50_000,
        confidence_level=0.95,
        method="percentile",
        rng=np.random.default_rng(1),
    )


def weighted_mean(v: np.ndarray, c: np.ndarray, axis: int = -1) -> np.ndarray:
    return (v * c).sum(axis) / c.sum(axis)


def test_bootstrap_is_scipys_95_percent_interval_with_images_weighted_as_the_metric():
    """Every metric's mean, s.e. and interval against scipy.stats.bootstrap of the weighted
    mean (per-fixation metrics) or of the plain mean (per-image ones), at a tolerance (0.12
    s.e.) far below what a wrong variant moves. Catches the 5/95 percentiles (0.23 and 0.42
    s.e. inside), 0.025/0.975 taken as percentiles, images weighted by 1 for AUC, sAUC, NSS,
    LL or IG, or by their fixations for AUC-Judd, CC, KLDiv or SIM, and a resample that
    averages images equally though the metric's value weighs them."""
    assert set(METRICS) == AVERAGED_PER_FIXATION | AVERAGED_PER_IMAGE
    counts, values = uneven_images()
    result = bootstrap({metric: values.tolist() for metric in METRICS}, counts.tolist())
    per_fixation = percentile_bootstrap((values, counts), weighted_mean)
    per_image = percentile_bootstrap((values,), lambda v, axis=-1: v.mean(axis))
    for metric in METRICS:
        weighted = metric in AVERAGED_PER_FIXATION
        reference = per_fixation if weighted else per_image
        mean = np.average(values, weights=counts) if weighted else values.mean()
        se = reference.standard_error
        assert result[metric]["mean"] == pytest.approx(mean, rel=1e-12), metric
        assert result[metric]["se"] == pytest.approx(se, rel=0.08), metric
        np.testing.assert_allclose(
            result[metric]["ci95"], reference.confidence_interval, rtol=0, atol=0.12 * se,
            err_msg=metric,
        )  # fmt: skip


def test_paired_interval_resamples_the_images_of_both_models_together_weighted():
    """A − B of two models whose per-image values are strongly correlated, and whose
    difference grows with the fixation count: against scipy.stats.bootstrap of the difference
    of weighted means (IG) and of plain means (CC). Catches the 5/95 percentiles, equal weights
    for IG or fixation weights for CC, and A and B resampled independently (a far wider
    interval)."""
    counts, a = uneven_images()
    rng = np.random.default_rng(8)
    b = a - 0.3 + 0.15 * np.log(counts) + rng.normal(0, 0.05, len(a))
    result = paired_comparison(
        {"IG": a.tolist(), "CC": a.tolist()}, {"IG": b.tolist(), "CC": b.tolist()}, counts.tolist()
    )
    references = {
        "IG": percentile_bootstrap(
            (a, b, counts), lambda x, y, c, axis=-1: weighted_mean(x - y, c, axis)
        ),
        "CC": percentile_bootstrap((a - b,), lambda d, axis=-1: d.mean(axis)),
    }
    for metric, reference in references.items():
        row = result[metric]
        weights = counts if metric == "IG" else np.ones_like(counts)
        assert row["A"] == pytest.approx(np.average(a, weights=weights), rel=1e-12)
        assert row["B"] == pytest.approx(np.average(b, weights=weights), rel=1e-12)
        assert row["difference"] == pytest.approx(np.average(a - b, weights=weights), rel=1e-9)
        np.testing.assert_allclose(
            row["ci95"], reference.confidence_interval, rtol=0,
            atol=0.12 * reference.standard_error, err_msg=metric,
        )  # fmt: skip


def _per_image_differences(a: dict, b: dict, metric: str) -> np.ndarray:
    """A − B of ``metric`` on the images both results scored, paired by image name."""
    rows_b = dict(zip(b["per_image"]["image"], b["per_image"]["model"][metric], strict=True))
    pairs = zip(a["per_image"]["image"], a["per_image"]["model"][metric], strict=True)
    return np.array([value - rows_b[image] for image, value in pairs if image in rows_b])


def _paired_t_p(d: np.ndarray) -> float:
    """Two-sided p of the paired t test: t = mean(d) / (sd(d) / √n), n − 1 degrees of freedom."""
    from scipy.stats import t

    statistic = d.mean() / (d.std(ddof=1) / np.sqrt(len(d)))
    return float(2 * t.sf(abs(statistic), len(d) - 1))


def _exact_wilcoxon_p(d: np.ndarray) -> float:
    """Two-sided exact p of the Wilcoxon signed-rank test for differences without zeros or
    tied magnitudes: the sum of the ranks of the positive differences against its
    distribution over all 2^n sign patterns, the nearer tail doubled."""
    assert np.all(d != 0) and len(np.unique(np.abs(d))) == len(d)
    ranks = np.argsort(np.argsort(np.abs(d))) + 1
    observed = ranks[d > 0].sum()
    sums = np.array(list(itertools.product([0, 1], repeat=len(d)))) @ ranks
    return float(min(1.0, 2 * min(np.mean(sums <= observed), np.mean(sums >= observed))))


def test_subsets_and_paired_comparison(small_osie, tmp_path, capsys):
    """Subsets by name list and split file; ``compare``'s per-metric p values against the
    paired t test and the exact Wilcoxon signed-rank test computed here from the per-image
    differences (fails for an unpaired t test, a one-sided or normal-approximation Wilcoxon,
    images paired out of order)."""
    name, dataset = small_osie
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    write_predictions(a, dataset)
    write_predictions(b, dataset, lambda i, m: np.full_like(m, -np.log(m.size)))  # uniform
    (tmp_path / "images.txt").write_text(
        "1001.jpg\n1002  # a stem names it too\n\n1003.jpg\n1004\n"
    )
    run(name, a, tmp_path / "a.json", "--images", str(tmp_path / "images.txt"))
    subset = json.loads((tmp_path / "a.json").read_text())
    assert subset["per_image"]["image"] == ["1001.jpg", "1002.jpg", "1003.jpg", "1004.jpg"]
    split = {
        "dataset": dataset.name,
        "train": [],
        "val": [],
        "test": ["1002.jpg", "1005.jpg", "1006.jpg"],
    }
    (tmp_path / "split.json").write_text(json.dumps(split))
    run(name, b, tmp_path / "b.json", "--split", str(tmp_path / "split.json"))
    assert json.loads((tmp_path / "b.json").read_text())["per_image"]["image"] == [
        "1002.jpg", "1005.jpg", "1006.jpg"
    ]  # fmt: skip
    (tmp_path / "two.txt").write_text("1001.jpg\n1002.jpg\n")
    with pytest.raises(SystemExit):
        run(name, a, tmp_path / "x.json", "--images", str(tmp_path / "two.txt"))
    assert "EVAL.CENTERBIAS_FOLDS 3: the centre bias is cross-validated" in capsys.readouterr().err
    # compare on all six images: A (smooth random maps) against the uniform map
    run(name, a, tmp_path / "a.json")
    run(name, b, tmp_path / "b.json")
    capsys.readouterr()
    evaluate.main(["compare", str(tmp_path / "a.json"), str(tmp_path / "b.json"),
                   "--out", str(tmp_path / "cmp.json")])  # fmt: skip
    comparison = json.loads((tmp_path / "cmp.json").read_text())
    results = [json.loads((tmp_path / f"{x}.json").read_text()) for x in "ab"]
    assert comparison["n_images"] == 6 and comparison["only_in_A"] == 0
    for metric, row in comparison["metrics"].items():
        assert row["A"] == pytest.approx(results[0]["metrics"][metric])
        assert row["B"] == pytest.approx(results[1]["metrics"][metric])
        assert row["ci95"][0] <= row["difference"] <= row["ci95"][1]
        # the tests' p values on the per-image differences, paired by image, by their formulas
        d = _per_image_differences(results[0], results[1], metric)
        assert row["t_p"] == pytest.approx(_paired_t_p(d), rel=1e-9), metric
        assert row["wilcoxon_p"] == pytest.approx(_exact_wilcoxon_p(d), rel=1e-9), metric
    assert "Wilcoxon p" in capsys.readouterr().out
    with pytest.raises(SystemExit):  # an existing --out is replaced only with --overwrite
        evaluate.main(["compare", str(tmp_path / "b.json"), str(tmp_path / "a.json"),
                       "--out", str(tmp_path / "cmp.json")])  # fmt: skip
    assert "cmp.json exists: pass --overwrite" in capsys.readouterr().err
    assert json.loads((tmp_path / "cmp.json").read_text()) == comparison
    # refused: other settings, other data; bad subsets name their file
    run(name, b, tmp_path / "b24.json", opts=["EVAL.JUDD_JITTER_SEED", "7"])
    with pytest.raises(ValueError, match=r"scored differently: settings judd_jitter_seed: 42 vs 7"):
        evaluate.main(["compare", str(tmp_path / "a.json"), str(tmp_path / "b24.json"),
                       "--out", str(tmp_path / "x.json")])  # fmt: skip
    (tmp_path / "bad.txt").write_text("1001.jpg\nnot_a_stimulus.jpg\n")
    with pytest.raises(ValueError, match=r"bad\.txt: 1 name\(s\) are not stimuli .*not_a_stimulus"):
        run(name, a, tmp_path / "x.json", "--images", str(tmp_path / "bad.txt"))
    (tmp_path / "other.json").write_text(json.dumps({**split, "dataset": "mit1003"}))
    with pytest.raises(ValueError, match=r"other\.json: a split of data set 'mit1003'"):
        run(name, a, tmp_path / "x.json", "--split", str(tmp_path / "other.json"))


def _bar_heights(png: Path) -> list[float]:
    """Signed heights in pixels (up: positive) of the bars of ``code.report``'s IG plot, left to
    right: runs of columns in the bar colour (an error bar that hides a bar's whole middle
    column splits nothing), each measured one pixel inside its left edge from the zero line,
    the middle of the three black lines across the axes (frame, zero, frame)."""
    from PIL import Image

    pixels = np.asarray(Image.open(png).convert("RGB")).astype(int)
    bar = np.abs(pixels - [0x5B, 0x6E, 0xA8]).sum(-1) < 30
    lines = np.flatnonzero((pixels.sum(-1) < 200).sum(1) > 0.5 * bar.any(0).sum())
    rows = np.split(lines, np.flatnonzero(np.diff(lines) > 1) + 1)
    assert len(rows) == 3, rows
    zero = rows[1].mean()
    columns = np.flatnonzero(bar.any(0))
    starts = columns[np.r_[True, np.diff(columns) > 10]]  # bars lie ~19 px apart
    heights = []
    for start in starts:
        filled = np.flatnonzero(bar[:, start + 1])
        below = filled[-1] > zero
        heights.append(-(filled[-1] + 0.5 - zero) if below else zero - (filled[0] - 0.5))
    return heights


def test_report_tables_runs_with_their_baselines_and_intervals(small_osie, tmp_path):
    """The markdown table and CSV, and the IG plot read back from its pixels: one bar per row
    whose IG is not 0, heights on one scale with the sign of the IG (fails for another metric
    drawn, the signs flipped, a row left out)."""
    from code import report

    name, dataset = small_osie
    predictions = tmp_path / "maps"
    predictions.mkdir()
    write_predictions(predictions, dataset)
    run(name, predictions, tmp_path / "runs" / "a" / "metrics.json")
    run(name, predictions, tmp_path / "runs" / "b" / "eval" / "metrics.json",
        opts=["EVAL.SIM_STEPS", "0"])  # fmt: skip
    text = report.main([str(tmp_path / "runs" / "*"), "--out", str(tmp_path / "report")])
    result = json.loads((tmp_path / "runs" / "a" / "metrics.json").read_text())
    lines = text.splitlines()
    assert lines[0] == "| | IG | IG 95% CI | LL | NSS | AUC | sAUC | AUC_Judd | CC | KLDiv | SIM |"
    ig, (low, high) = result["metrics"]["IG"], result["uncertainty"]["model"]["IG"]["ci95"]
    assert lines[2].startswith(f"| a | {ig:.3f} | [{low:.3f}, {high:.3f}] |")
    assert lines[3].startswith("| b |")  # an evaluation's eval/metrics.json, named by its run
    assert [line.split(" |")[0] for line in lines[4:8]] == [
        "| centre bias", "| gold standard", "| uniform", ""
    ]  # fmt: skip
    assert "6 test images" in text
    rows = (tmp_path / "report" / "report.csv").read_text().splitlines()
    assert rows[0] == "table,row,metric,value,se,ci95_low,ci95_high" and len(rows) > 30
    # the plot: a bar per row, its height in pixels the row's IG on one scale (±2 px)
    table_ig = [float(line.split(" | ")[1]) for line in lines[2:7]]
    visible = [ig for ig in table_ig if abs(ig) > 0.01]  # the centre bias's IG is 0: no bar
    bars = _bar_heights(tmp_path / "report" / "report_ig.png")
    assert len(visible) == len(bars) == 4, (table_ig, bars)
    scale = max(bars, key=abs) / max(visible, key=abs)  # pixels per bit, up: positive
    assert scale > 0 and all(
        abs(h - scale * ig) <= 2 for h, ig in zip(bars, visible, strict=True)
    ), bars
    with pytest.raises(FileNotFoundError, match=r"no metrics\.json"):
        report.main([str(tmp_path / "maps"), "--out", str(tmp_path / "x")])
    # another report is never overwritten by accident
    report_md = (tmp_path / "report" / "report.md").read_bytes()
    with pytest.raises(SystemExit):
        report.main([str(tmp_path / "runs" / "a"), "--out", str(tmp_path / "report")])
    assert (tmp_path / "report" / "report.md").read_bytes() == report_md
    report.main([str(tmp_path / "runs" / "a"), "--out", str(tmp_path / "report"), "--overwrite"])
    assert (tmp_path / "report" / "report.md").read_bytes() != report_md


def test_maps_from_other_tools_as_png_jpg_or_mat_score_as_the_same_npy(small_osie, tmp_path):
    """Grey-level images and .mat files are read as the maps they hold: the same values as
    .npy give the same scores; an image is refused as a log-density; two maps for one image are
    refused."""
    from PIL import Image

    name, dataset = small_osie
    rng = np.random.default_rng(1)
    folders = {suffix: tmp_path / suffix for suffix in ("npy", "png", "mat")}
    for folder in folders.values():
        folder.mkdir()
    for stim in dataset.stimuli:
        stem = stim.id.split(".")[0]
        grey = rng.integers(0, 256, stim.size, dtype=np.uint8)
        np.save(folders["npy"] / f"{stem}.npy", grey)
        Image.fromarray(grey).convert("RGB").save(folders["png"] / f"{stem}.png")  # 3 channels
        scipy.io.savemat(folders["mat"] / f"{stem}.mat", {"saliency_map": grey.astype(float)})
    results = {}
    for suffix, folder in folders.items():
        run(name, folder, tmp_path / f"{suffix}.json", "--kind", "saliency-map")
        results[suffix] = json.loads((tmp_path / f"{suffix}.json").read_text())["metrics"]
    assert results["png"] == results["npy"]  # the same uint8 values
    assert results["mat"] == pytest.approx(results["npy"], rel=1e-12)  # as float64
    with pytest.raises(ValueError, match=r"png: .*\.png is an image: it holds a saliency map"):
        run(name, folders["png"], tmp_path / "x.json")  # --kind log-density
    np.save(folders["png"] / f"{dataset.stimuli[0].id.split('.')[0]}.npy", np.zeros(3))
    with pytest.raises(ValueError, match=r"two maps for one image"):
        run(name, folders["png"], tmp_path / "x.json", "--kind", "saliency-map")


@pytest.fixture
def peak_metric(docs_example):
    """The metric example of docs/extending.md: the highest value of the density (per image),
    registered for this test only."""
    return docs_example("metric").modules["code.metrics.peak"].PEAK


def test_a_metric_registered_outside_the_framework_appears_everywhere(
    peak_metric, small_osie, tmp_path, capsys
):
    """One record, no other edit: the new metric is in ``code.evaluate``'s table, result.json
    (its value, per-image values and bootstrap interval, the baselines'), ``compare`` and
    ``code.report``. Its value is checked against the maps, so a record scored on another map
    or averaged per fixation fails."""
    from code import report

    name, dataset = small_osie
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    write_predictions(a, dataset)
    write_predictions(b, dataset, lambda i, m: np.full_like(m, -np.log(m.size)))  # uniform
    run(name, a, tmp_path / "runs" / "a" / "metrics.json")
    table = capsys.readouterr().out
    run(name, b, tmp_path / "runs" / "b" / "metrics.json")
    result = json.loads((tmp_path / "runs" / "a" / "metrics.json").read_text())
    peaks = [np.exp(np.load(a / f"{s.id.split('.')[0]}.npy")).max() for s in dataset.stimuli]
    assert result["metrics"]["PEAK"] == pytest.approx(np.mean(peaks), rel=1e-12)
    assert result["per_image"]["model"]["PEAK"] == pytest.approx(peaks, rel=1e-12)
    assert result["baselines"]["uniform"]["PEAK"] == pytest.approx(
        np.mean([1 / (s.height * s.width) for s in dataset.stimuli]), rel=1e-12
    )
    low, high = result["uncertainty"]["model"]["PEAK"]["ci95"]
    assert min(peaks) <= low < high <= max(peaks)
    assert any(line.startswith("PEAK ") for line in table.splitlines())

    evaluate.main(["compare", str(tmp_path / "runs" / "a" / "metrics.json"),
                   str(tmp_path / "runs" / "b" / "metrics.json"),
                   "--out", str(tmp_path / "cmp.json")])  # fmt: skip
    comparison = json.loads((tmp_path / "cmp.json").read_text())["metrics"]["PEAK"]
    assert comparison["A"] == pytest.approx(result["metrics"]["PEAK"], rel=1e-12)
    assert "PEAK" in capsys.readouterr().out

    text = report.main([str(tmp_path / "runs" / "*"), "--out", str(tmp_path / "report")])
    header = text.splitlines()[0].split(" | ")
    assert header[-1] == "PEAK |"  # after the README's columns
    assert f"{result['metrics']['PEAK']:.3f} |" in text.splitlines()[2]


def test_a_metric_record_that_cannot_be_scored_is_refused_at_registration():
    """A name registered twice, an unknown averaging, map or input: refused, each named."""
    from code.metrics.registry import Metric, register

    def value(saliency_map, image):
        return 0.0

    with pytest.raises(ValueError, match=r"'AUC': its name is registered already"):
        register(Metric("AUC", "fixation", True, value, map="auc"))
    with pytest.raises(ValueError, match=r"averaging 'pixel' is not one of"):
        register(Metric("X", "pixel", True, value))
    with pytest.raises(ValueError, match=r"map 'density' is not one of \('auc', "):
        register(Metric("X", "image", True, value, map="density"))
    with pytest.raises(ValueError, match=r"reads \['durations_ms'\]"):
        register(Metric("X", "image", True, value, reads=frozenset({"durations_ms"})))


def test_a_baseline_registered_in_a_test_file_is_built_once_and_scored(small_osie, tmp_path):
    """A registered baseline is built once per evaluation (not per image or pass) and scored
    with every metric beside the others: a copy of the uniform model scores as the uniform."""
    from code.metrics.baselines import BASELINES, UniformBaseline, register_baseline

    built = []

    def build(inputs):
        built.append(inputs.dataset.name)
        return UniformBaseline()

    register_baseline("uniform_again", build)
    try:
        name, dataset = small_osie
        write_predictions(tmp_path, dataset)
        run(name, tmp_path, tmp_path / "r.json", opts=["EVAL.PROTOCOL", "benchmark"])
    finally:
        del BASELINES["uniform_again"]
    baselines = json.loads((tmp_path / "r.json").read_text())["baselines"]
    assert built == [dataset.name]
    assert list(baselines) == ["uniform", "center_bias", "uniform_again", "gold_standard"]
    assert baselines["uniform_again"] == baselines["uniform"]


def test_results_written_before_the_format_version_still_compare_and_report(small_osie, tmp_path):
    """A result.json of format version 1 (today's without ``provenance``: the layout the
    project wrote before) is read by ``compare`` and ``code.report`` as a new one is."""
    from code import report

    name, dataset = small_osie
    write_predictions(tmp_path, dataset)
    for run_name in ("new", "old"):
        run(name, tmp_path, tmp_path / "runs" / run_name / "metrics.json")
    old_file = tmp_path / "runs" / "old" / "metrics.json"
    old = json.loads(old_file.read_text())
    assert old.pop("provenance") == {"format_version": 2}
    old_file.write_text(json.dumps(old))
    evaluate.main(["compare", str(tmp_path / "runs" / "new" / "metrics.json"), str(old_file),
                   "--out", str(tmp_path / "cmp.json")])  # fmt: skip
    comparison = json.loads((tmp_path / "cmp.json").read_text())
    assert comparison["n_images"] == 6
    assert all(row["difference"] == 0 for row in comparison["metrics"].values())
    lines = report.main([str(tmp_path / "runs" / "*"), "--out", str(tmp_path / "r")]).splitlines()
    assert lines[2].replace("| new |", "") == lines[3].replace("| old |", "")


def test_settings_come_from_the_strict_config_and_typos_are_refused(small_osie, tmp_path):
    """code.evaluate's settings are config keys: a --cfg file's EVAL node (the rest of a run's
    config ignored) and --opts override configs/_base_/'s, and a misspelt key or a bad value
    is refused before any work, naming the key and its file."""
    name, dataset = small_osie
    write_predictions(tmp_path, dataset)
    cfg = tmp_path / "run_config.yaml"
    cfg.write_text(
        "_BASE_: " + str(Path("configs/_base_/data/osie.yaml").resolve()) + "\n"
        "TRAIN: {EPOCHS: 3}\nEVAL: {FIXATION_MAP_SIGMA: 12.0, JUDD_JITTER_SEED: null}\n"
    )
    run(name, tmp_path, tmp_path / "r.json", "--cfg", str(cfg))
    settings = json.loads((tmp_path / "r.json").read_text())["settings"]
    assert settings["fixation_map_sigma"] == 12.0 and settings["judd_jitter_seed"] is None
    assert settings["protocol"] == "raw"  # configs/_base_/runtime.yaml's
    with pytest.raises(ConfigError, match=r"--opts: unknown key EVAL\.PROTOKOL \(did you mean P"):
        run(name, tmp_path, tmp_path / "x.json", opts=["EVAL.PROTOKOL", "benchmark"])
    cfg.write_text("EVAL: {FIXATION_MAP_SIGMAA: 12.0}\n")
    with pytest.raises(ConfigError, match=r"EVAL\.FIXATION_MAP_SIGMAA.*run_config\.yaml"):
        run(name, tmp_path, tmp_path / "x.json", "--cfg", str(cfg))
    with pytest.raises(ConfigError, match=r"EVAL\.PROTOCOL"):
        run(name, tmp_path, tmp_path / "x.json", opts=["EVAL.PROTOCOL", "mit"])
    assert not (tmp_path / "x.json").exists()
