"""Scanpaths sampled from trained density models as generators of the scanpath_generation
task (``model_samples``), their conditional information gain, and the table across runs
(``code.scanpath_report``)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from code.config import ConfigError, load_config
from code.data.build import fit_centerbias
from code.engine.checkpoint import Checkpointer
from code.main import main
from code.models.layers.foveation import to_pixels
from code.predict import main as predict
from code.scanpath_report import main as scanpath_report
from code.tasks.base import build_task
from code.tasks.density import DensityPredictor
from code.tasks.sampled_scanpaths import image_seed, sampled_scanpath
from code.tasks.scanpath_generation import format_report
from tests import test_neva
from tests.test_neva import GENERATED, SMALL_AUTOENCODER, SMALL_SCANPATHS

autoencoder = test_neva.autoencoder  # the downstream model of NeVA's tests, a fixture here too

SAMPLES = "configs/05_neva/variants/scanpath_samples.yaml"
# the spatial model's scores on the scanpath model's fixations (the README's spatial_on_scanpaths)
ON_SCANPATHS = ["DATA.SAMPLES.NAME", "scanpath", "DATA.SAMPLES.SCANPATH.HISTORY_LENGTH", "3",
                "DATA.SAMPLES.SCANPATH.INCLUDE_FIRST", "false"]  # fmt: skip


def _train(root: Path, config: str) -> Path:
    out = root / "run"
    main(["--cfg", config, "--opts", *GENERATED, "OUTPUT_DIR", str(out), "TRAIN.EPOCHS", "1",
          "EVAL.CENTERBIAS_FOLDS", "2"])  # fmt: skip
    return Checkpointer(out).best


@pytest.fixture(scope="module")
def scanpath_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The OSIE CPU scanpath model (first fixations not predicted: sampled from the centre)."""
    return _train(
        tmp_path_factory.mktemp("scanpath"), "configs/01_dinogaze_spade/cpu_osie/scanpath.yaml"
    )


@pytest.fixture(scope="module")
def spatial_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _train(
        tmp_path_factory.mktemp("spatial"), "configs/01_dinogaze_spade/cpu_osie/no_injection.yaml"
    )


def _sampled(out: Path, downstream: Path, checkpoint: Path, config: str = SAMPLES) -> dict:
    return main(["--cfg", config, "--opts", *GENERATED, *SMALL_AUTOENCODER, *SMALL_SCANPATHS,
                 "TASK.SCANPATH_GENERATION.DOWNSTREAM", str(downstream),
                 "TASK.SCANPATH_GENERATION.SALIENCY_CHECKPOINT", "null",
                 "TASK.SCANPATH_GENERATION.GENERATOR.MODEL_SAMPLES.CHECKPOINT", str(checkpoint),
                 "OUTPUT_DIR", str(out)])  # fmt: skip


@pytest.fixture(scope="module")
def scanpath_run(
    tmp_path_factory: pytest.TempPathFactory, autoencoder: Path, scanpath_model: Path
) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("samples") / "run"
    return out, _sampled(out, autoencoder, scanpath_model)


@pytest.fixture(scope="module")
def spatial_run(
    tmp_path_factory: pytest.TempPathFactory, autoencoder: Path, spatial_model: Path
) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("spatial_samples") / "run"
    config = "configs/05_neva/variants/spatial_samples.yaml"
    return out, _sampled(out, autoencoder, spatial_model, config)


def _test_stimuli(out: Path) -> list:
    task = build_task(load_config(str(out / "config.yaml"), []))
    task.prepare()
    return task.splits.test.stimuli


def test_the_sampled_scanpaths_are_code_predicts_for_the_images_seeds(
    tmp_path: Path, scanpath_run: tuple[Path, dict], scanpath_model: Path
) -> None:
    """The run's scanpath on each test image is the one ``code.predict --scanpaths 1`` writes
    for the image file with the image's seed (``image_seed``), first fixation at the image
    centre. Fails for one seed for every image (the images' draws would repeat each other's
    random numbers: here their second fixations coincide), images in another order, positions
    in the model's input pixels, a first fixation drawn."""
    out, report = scanpath_run
    assert report["generator"] == "model_samples" and "NeVA" not in report["metrics"]
    stimuli = _test_stimuli(out)
    seed = load_config(str(out / "config.yaml"), []).SEED
    ours = np.load(out / "scanpaths" / "samples.npy")
    assert ours.shape == (len(stimuli), 3, 2)
    for path, stimulus in zip(ours, stimuli, strict=True):
        folder, predicted = tmp_path / stimulus.id, tmp_path / f"{stimulus.id}_predicted"
        folder.mkdir()
        Image.fromarray(stimulus.read()).save(folder / f"{stimulus.id}.png")
        predict(["--checkpoint", str(scanpath_model), "--input", str(folder), "--output",
                 str(predicted), "--scanpaths", "1", "--scanpath-length", "3",
                 "--seed", str(image_seed(seed, stimulus.id)), "--no-overlays"])  # fmt: skip
        theirs = np.load(predicted / "scanpaths" / f"{stimulus.id}_scanpaths.npy")
        np.testing.assert_allclose(path, theirs[0], rtol=0, atol=1e-3)  # the tables' precision
        assert path[0].tolist() == [stimulus.width / 2, stimulus.height / 2]
    assert len({tuple(p[1]) for p in ours}) == len(stimuli)  # every image draws its own


def test_the_conditional_ig_is_the_scanpath_models_own_evaluation(
    scanpath_run: tuple[Path, dict], scanpath_model: Path
) -> None:
    """On the 8 test images (fewer than EVAL.SCANPATH_IMAGES) the model's own test evaluation
    scored the same fixations: every fixation but each scanpath's first, given its history."""
    _, report = scanpath_run
    own = json.loads((scanpath_model.parent / "metrics.json").read_text())
    scores = report["conditional"]["samples"]
    assert scores["n_fixations"] == own["n_fixations"] == 8 * 3 * 3
    for metric in ("IG", "LL", "NSS", "AUC"):
        assert scores["metrics"][metric] == pytest.approx(own["metrics"][metric], abs=1e-9)


def test_a_spatial_models_ig_is_recomputed_from_its_density_at_the_later_fixations(
    spatial_run: tuple[Path, dict], spatial_model: Path
) -> None:
    """The spatial model's IG, independently: its density as ``code.predict`` makes it, read at
    each human fixation but the first of its scanpath (pixel by truncation), minus the centre
    bias' LL the run reports, in bits. Fails for the first fixations scored too (a different
    mean), a density other than the model's at the original size, nats for bits."""
    out, report = spatial_run
    scores = report["conditional"]["samples"]
    model, cfg = Checkpointer.load_model(spatial_model, torch.device("cpu"))
    predictor = DensityPredictor(model, cfg, None)
    dataset = build_task(load_config(str(out / "config.yaml"), []))
    dataset.prepare()
    test = dataset.splits.test
    values = []
    for index, stimulus in enumerate(test.stimuli):
        with torch.no_grad():
            log_density = predictor.log_densities(predictor.batch(stimulus.read(), stimulus.id))[0]
        fix = test.fixations_of(index)
        later = fix.index > 0
        values += log_density[fix.y[later].astype(int), fix.x[later].astype(int)].tolist()
    assert scores["n_fixations"] == len(values) == 8 * 3 * 3
    centre_ll = scores["baselines"]["center_bias"]["LL"]
    expected = (np.mean(values) - centre_ll) / math.log(2)
    assert scores["metrics"]["IG"] == pytest.approx(expected, abs=1e-5)
    # the same as the spatial model scored on the scanpath model's fixations by its own task
    own = main(["--cfg", "configs/01_dinogaze_spade/cpu_osie/no_injection.yaml", "--eval-only",
                "--checkpoint", str(spatial_model), "--opts", *GENERATED, *ON_SCANPATHS,
                "EVAL.CENTERBIAS_FOLDS", "2", "OUTPUT_DIR", str(out.parent / "own")])  # fmt: skip
    assert scores["metrics"]["IG"] == pytest.approx(own["metrics"]["IG"], abs=1e-9)


class Concentrated:
    """A stand-in for a spatial model's ``DensityPredictor``: all of the density in the block of
    rows 10-12 and columns 40-49 of a 48 x 64 image."""

    conditional = False
    model = torch.nn.Linear(1, 1)

    def batch(self, image: np.ndarray, name: str) -> Concentrated:
        return self

    def to(self, device: torch.device) -> Concentrated:
        return self

    def log_densities(self, batch: Concentrated) -> list[torch.Tensor]:
        log_density = torch.full((48, 64), -math.inf)
        log_density[10:13, 40:50] = -math.log(30)
        return [log_density]


def test_a_spatial_models_fixations_are_drawn_from_its_density_and_seeded() -> None:
    from code.data.gaze import Stimulus

    stimulus = Stimulus("a", 48, 64, None, generate=lambda: np.zeros((48, 64, 3), np.uint8))
    xy = to_pixels(sampled_scanpath(Concentrated(), stimulus, 20, seed=3).double(), 48, 64)
    assert ((xy[:, 0] >= 40) & (xy[:, 0] < 50) & (xy[:, 1] >= 10) & (xy[:, 1] < 13)).all()
    assert len({tuple(p) for p in xy.tolist()}) == 20  # independent draws, no history
    again = sampled_scanpath(Concentrated(), stimulus, 20, seed=3)
    assert torch.equal(again, sampled_scanpath(Concentrated(), stimulus, 20, seed=3))


def test_the_probabilistic_baselines_have_an_ig_and_the_humans_none(
    scanpath_run: tuple[Path, dict],
) -> None:
    """The random scanpaths' density is the uniform one: its IG is the uniform baseline's of the
    model's own evaluation, on the same fixations (fails for the first fixations scored too or
    another centre bias to gain over). The humans have no density: "—"."""
    _, report = scanpath_run
    assert set(report["conditional"]) == {"samples", "random", "centre"}
    own = report["conditional"]["samples"]
    random = report["conditional"]["random"]
    assert random["n_fixations"] == own["n_fixations"] == 8 * 3 * 3
    for metric in ("IG", "LL", "NSS", "AUC"):
        expected = own["baselines"]["uniform"][metric]
        assert random["metrics"][metric] == pytest.approx(expected, abs=1e-9)
    lines = format_report(report).splitlines()
    assert lines[0].split()[-1] == "IG"
    cells = {line.split()[0]: line.split()[-1] for line in lines[1:5]}
    ig = {name: f"{report['conditional'][name]['metrics']['IG']:.4f}"
          for name in ("samples", "random", "centre")}  # fmt: skip
    assert cells == {**ig, "humans": "—"}


def test_the_centre_generators_ig_is_its_training_centre_bias_at_the_later_fixations(
    scanpath_run: tuple[Path, dict],
) -> None:
    """Independently: the centre bias of the training fixations the centre scanpaths are drawn
    from, at each test image's size, read at every human fixation but its scanpath's first,
    minus the cross-validated centre bias' LL, in bits. Fails for the cross-validated centre
    bias scored as the generator (IG 0), the first fixations included, nats for bits."""
    out, report = scanpath_run
    task = build_task(load_config(str(out / "config.yaml"), []))
    task.prepare()
    centre = fit_centerbias(task.cfg, task.splits.train)
    test = task.splits.test
    values = []
    for index, stimulus in enumerate(test.stimuli):
        log_density = centre.log_density(stimulus.height, stimulus.width)
        fix = test.fixations_of(index)
        later = fix.index > 0
        values += log_density[fix.y[later].astype(int), fix.x[later].astype(int)].tolist()
    scores = report["conditional"]["centre"]
    assert scores["n_fixations"] == len(values)
    centre_ll = report["conditional"]["samples"]["baselines"]["center_bias"]["LL"]
    expected = (np.mean(values) - centre_ll) / math.log(2)
    assert scores["metrics"]["IG"] == pytest.approx(expected, abs=1e-6)
    assert abs(expected) > 1e-3  # not the cross-validated centre bias itself


def test_a_checkpoint_without_a_density_is_refused_before_any_data_is_read(
    tmp_path: Path, autoencoder: Path
) -> None:
    with pytest.raises(ConfigError, match=r"^TASK\.SCANPATH_GENERATION\.GENERATOR\.MODEL_SAMPLES"
                       r"\.CHECKPOINT .* predicts image; sampled scanpaths need"):  # fmt: skip
        _sampled(tmp_path / "run", autoencoder, autoencoder)
    assert not (tmp_path / "run" / "scanpaths").exists()


def test_the_table_across_runs_names_each_rows_run(
    tmp_path: Path, scanpath_run: tuple[Path, dict], spatial_run: tuple[Path, dict]
) -> None:
    (sampled, report), (spatial, spatial_report) = scanpath_run, spatial_run
    rows = [("scanpath model (sampled)", sampled, "samples"),
            ("spatial model (sampled without history)", spatial, "samples"),
            ("random", sampled, "random"), ("humans", sampled, "humans")]  # fmt: skip
    argv = [a for label, run, name in rows for a in ("--row", label, str(run), name)]
    text = scanpath_report([*argv, "--out", str(tmp_path / "table")])
    assert (tmp_path / "table" / "scanpath_table.md").read_text() == text + "\n"
    lines = text.splitlines()
    table = [line.split(" | ") for line in lines[2:6]]
    assert [(cells[0].strip("| "), cells[1]) for cells in table] == [
        (label, str(run)) for label, run, _ in rows
    ]
    igs = [cells[-1].strip(" |") for cells in table]
    expected = [r["conditional"]["samples"]["metrics"]["IG"] for r in (report, spatial_report)]
    random = report["conditional"]["random"]["metrics"]["IG"]
    assert igs == [f"{expected[0]:.3f}", f"{expected[1]:.3f}", f"{random:.3f}", "—"]
    scanmatch = report["metrics"]["samples"]["ScanMatch"]
    assert table[0][2] == f"{scanmatch['mean']:.3f} ± {scanmatch['se']:.3f}"
    # minus random: the two sampled rows (random and the humans have no paired difference)
    paired_part, utility_part = "\n".join(lines[8:]).split("The downstream loss after t")
    paired = [
        line for line in paired_part.splitlines() if line.startswith("| ") and "---" not in line
    ]
    assert [p.split(" | ")[0].strip("| ") for p in paired[1:]] == [label for label, *_ in rows[:2]]
    difference = report["versus_random"]["samples"]["ScanMatch"]
    assert paired[1].split(" | ")[2] == f"{difference['mean']:+.3f} ± {difference['se']:.3f}"
    # the loss after each fixation, every row's generator from its own run
    utility = [line.split(" | ") for line in utility_part.splitlines()[4:8]]
    assert [cells[0].strip("| ") for cells in utility] == [label for label, *_ in rows]
    sources = [(report, "samples"), (spatial_report, "samples"), (report, "random"),
               (report, "humans")]  # fmt: skip
    curves = [r["utility"][name]["mean"] for r, name in sources]
    assert [[float(c.strip(" |")) for c in cells[2:]] for cells in utility] == [
        pytest.approx(curve, abs=5e-5) for curve in curves
    ]
    with pytest.raises(SystemExit):  # the table is there: not replaced without --overwrite
        scanpath_report([*argv, "--out", str(tmp_path / "table")])


def test_the_table_refuses_a_missing_generator_and_runs_of_other_images(
    tmp_path: Path, scanpath_run: tuple[Path, dict]
) -> None:
    sampled, _ = scanpath_run
    with pytest.raises(ValueError, match=r"has no generator 'NeVA'; it has samples, random"):
        scanpath_report(["--row", "NeVA", str(sampled), "NeVA", "--out", str(tmp_path / "t")])
    other = tmp_path / "other"
    other.mkdir()
    data = json.loads((sampled / "metrics.json").read_text())
    (other / "metrics.json").write_text(json.dumps({**data, "n_images": 140}))
    with pytest.raises(ValueError, match=r"other scored 140 images, 3 fixations; .* 8, 3"):
        scanpath_report(["--row", "a", str(sampled), "samples", "--row", "b", str(other),
                         "random", "--out", str(tmp_path / "t")])  # fmt: skip
    shutil.rmtree(other)
