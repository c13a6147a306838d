"""saccade inside pysaliency 0.2.22: a checkpoint wrapped as a pysaliency model scores what
``code.predict`` + ``code.evaluate`` score, and pysaliency's HDF5 exports load as a data set."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

import code.evaluate
from code.data.build import build_loader, build_samples
from code.data.gaze import Fixations, GazeDataset
from code.data.loaders.pysaliency_hdf5 import load_pysaliency
from code.data.samples import ordered_scanpaths
from code.data.splits import select_images
from code.engine.checkpoint import Checkpointer
from code.engine.model_scoring import to_original_size
from code.interop.pysaliency import SaccadeModel, SaccadeScanpathModel, pysaliency
from code.main import main
from code.metrics.baselines import CrossValidatedCenterBias
from code.predict import main as predict
from tests.small_run import QUICKSTART, REPO_ROOT, SMALL

IMAGES = [f"{number}.jpg" for number in range(1001, 1007)]  # six real OSIE images
FOLDS = 3  # of code.evaluate's cross-validated centre bias, the IG baseline


def _train(config: Path | str, run: Path) -> Path:
    """A checkpoint of ``config`` after one small epoch on generated data (36 x 48 pixels)."""
    main(["--cfg", str(config), "--opts", *SMALL, "OUTPUT_DIR", str(run), "TRAIN.EPOCHS", "1",
          "DATA.CACHE.DIR", "null"])  # fmt: skip
    return Checkpointer(run).best


@pytest.fixture(scope="module")
def density_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _train(QUICKSTART, tmp_path_factory.mktemp("density"))


@pytest.fixture(scope="module")
def scanpath_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The quickstart with the DeepGaze III-style head, trained on scanpaths (history 3)."""
    folder = tmp_path_factory.mktemp("scanpath")
    config = folder / "scanpath.yaml"
    bases = [REPO_ROOT / QUICKSTART, REPO_ROOT / "configs/_base_/decoders/scanpath.yaml"]
    config.write_text(f"_BASE_: [{', '.join(str(b) for b in bases)}]\n")
    return _train(config, folder / "run")


@pytest.fixture(scope="module")
def osie_subset(osie: GazeDataset) -> GazeDataset:
    return select_images(osie, IMAGES, "the test's images")


def _pysaliency_data(
    dataset: GazeDataset,
) -> tuple[pysaliency.FileStimuli, pysaliency.FixationTrains]:
    """The data set as pysaliency's objects: its image files and its scanpaths in order."""
    stimuli = pysaliency.FileStimuli([str(s.path) for s in dataset.stimuli])
    fix, trains = dataset.fixations, ordered_scanpaths(dataset.fixations)
    fixations = pysaliency.FixationTrains.from_fixation_trains(
        [fix.x[rows] for rows in trains],
        [fix.y[rows] for rows in trains],
        [np.arange(len(rows), dtype=float) for rows in trains],
        np.array([fix.image[rows[0]] for rows in trains]),
        np.array([fix.subject[rows[0]] for rows in trains]),
    )
    return stimuli, fixations


class ArrayModel(pysaliency.Model):
    """Stimulus i of ``stimuli`` -> ``log_densities[i]`` (a baseline for pysaliency's IG)."""

    def __init__(self, stimuli: pysaliency.Stimuli, log_densities: list[np.ndarray]) -> None:
        super().__init__(caching=False)
        self.of = dict(zip(stimuli.stimulus_ids, log_densities, strict=True))

    def _log_density(self, stimulus: np.ndarray) -> np.ndarray:
        return self.of[pysaliency.datasets.get_image_hash(stimulus)]


def _centre_bias(dataset: GazeDataset, stimuli: pysaliency.Stimuli) -> ArrayModel:
    """code.evaluate's IG baseline (the DATA.CENTERBIAS of its data set's config) as a pysaliency
    model."""
    fitted = CrossValidatedCenterBias(0.05, 0.01, FOLDS).fit(dataset)
    densities = [fitted.log_density(i, *s.size) for i, s in enumerate(dataset.stimuli)]
    return ArrayModel(stimuli, densities)


def test_pysaliency_scores_the_wrapped_model_as_code_evaluate_does(
    density_checkpoint: Path, osie_subset: GazeDataset, shared_data: Path, tmp_path: Path
) -> None:
    """pysaliency's IG (over code.evaluate's centre bias), AUC and NSS of ``SaccadeModel`` on
    real OSIE images equal code.evaluate's scores of code.predict's densities."""
    images = tmp_path / "images"
    images.mkdir()
    for stimulus in osie_subset.stimuli:
        (images / stimulus.id).symlink_to(stimulus.path)
    predict(["--checkpoint", str(density_checkpoint), "--input", str(images),
             "--output", str(tmp_path / "out"), "--no-overlays"])  # fmt: skip
    (tmp_path / "images.txt").write_text("\n".join(IMAGES))
    code.evaluate.main(
        ["saliency", "--dataset", "osie", "--root", str(shared_data / "osie"),
         "--images", str(tmp_path / "images.txt"), "--predictions", str(tmp_path / "out/densities"),
         "--kind", "log-density", "--device", "cpu", "--out", str(tmp_path / "r.json"),
         "--opts", "EVAL.CENTERBIAS_FOLDS", str(FOLDS), "EVAL.WORKERS", "1"]
    )  # fmt: skip
    ours = json.loads((tmp_path / "r.json").read_text())["metrics"]

    stimuli, fixations = _pysaliency_data(osie_subset)
    model = SaccadeModel(density_checkpoint, device="cpu")
    theirs = {
        "IG": model.information_gain(stimuli, fixations, _centre_bias(osie_subset, stimuli)),
        "AUC": pysaliency.DensitySaliencyMapModel(model).AUC(stimuli, fixations),
        "NSS": pysaliency.DensitySaliencyMapModel(model).NSS(stimuli, fixations),
    }
    assert abs(theirs["IG"]) > 1e-3  # a trained model, not the centre bias itself
    for metric, value in theirs.items():
        assert ours[metric] == pytest.approx(value, abs=1e-6, rel=1e-6), metric


def test_scanpath_wrapper_gives_the_models_density_for_each_fixation(
    scanpath_checkpoint: Path, osie_subset: GazeDataset
) -> None:
    """For every fixation of two OSIE images, the density given the scanpath before it equals
    the model's own on its training items (history most recent first, the first fixation
    without one): a history reversed, shifted by one or not scaled to the model's input fails."""
    wrapper = SaccadeScanpathModel(scanpath_checkpoint, device="cpu")
    model, cfg = Checkpointer.load_model(scanpath_checkpoint, torch.device("cpu"))
    cfg.defrost()
    cfg.DATA.SAMPLES.SCANPATH.INCLUDE_FIRST = True  # score the empty history too
    dataset = osie_subset.subset(np.arange(2))
    centerbias = model.centerbias(cfg.DATA.CENTERBIAS.BANDWIDTH, cfg.DATA.CENTERBIAS.UNIFORM_WEIGHT)
    samples = build_samples(cfg, dataset, "test", centerbias, None, transformed=False)
    collate = build_loader(cfg, samples, train=False).collate_fn
    fix = dataset.fixations
    compared = 0
    for index in range(0, len(samples), 7):  # every 7th scanpath
        batch = collate([samples[index]])
        with torch.no_grad():
            own = model(batch)[0][0]
        rows = batch.fixation_rows[0].numpy()
        stimulus = dataset.stimuli[int(fix.image[rows[0]])]
        image = stimulus.read()
        for j in range(len(rows)):
            before = rows[:j]  # the scanpath's fixations before this one, oldest first
            theirs = wrapper.conditional_log_density(
                image, fix.x[before], fix.y[before], np.arange(j, dtype=float)
            )
            expected = to_original_size(own[j], stimulus.size).double().numpy()
            np.testing.assert_allclose(theirs, expected, atol=1e-5)
            compared += 1
    assert compared > 20


def test_a_checkpoint_of_the_other_kind_is_refused_naming_the_wrapper(
    density_checkpoint: Path, scanpath_checkpoint: Path
) -> None:
    with pytest.raises(ValueError, match="wrap it in SaccadeModel"):
        SaccadeScanpathModel(density_checkpoint, device="cpu")
    with pytest.raises(ValueError, match="wrap it in SaccadeScanpathModel"):
        SaccadeModel(scanpath_checkpoint, device="cpu")


def _fixation_table(fix: Fixations) -> dict[str, np.ndarray]:
    return {name: getattr(fix, name) for name in ("x", "y", "image", "subject", "train", "index")}


def test_pysaliency_exports_load_as_the_same_data_set(
    osie_subset: GazeDataset, tmp_path: Path
) -> None:
    """FileStimuli + FixationTrains written by pysaliency's own HDF5 writers read back through
    the ``pysaliency`` data set: the same stimuli, fixation table and counts."""
    stimuli, fixations = _pysaliency_data(osie_subset)
    stimuli.to_hdf5(tmp_path / "stimuli.hdf5")
    fixations.to_hdf5(tmp_path / "fixations.hdf5")
    loaded = load_pysaliency(str(tmp_path / "stimuli.hdf5"), str(tmp_path / "fixations.hdf5"))

    assert [(s.id, s.size, s.path.resolve()) for s in loaded.stimuli] == [
        (s.id, s.size, s.path.resolve()) for s in osie_subset.stimuli
    ]
    assert len(loaded.fixations) == len(osie_subset.fixations) == len(fixations.x)
    assert len(np.unique(loaded.fixations.train)) == len(fixations.train_ns)
    trains = ordered_scanpaths(osie_subset.fixations)  # the order the export holds them in
    expected = _fixation_table(osie_subset.fixations.select(np.concatenate(trains)))
    expected["train"] = np.repeat(np.arange(len(trains)), [len(rows) for rows in trains])
    for name, column in _fixation_table(loaded.fixations).items():
        np.testing.assert_array_equal(column, expected[name], err_msg=name)


def test_in_file_images_and_fixations_without_scanpaths_load(tmp_path: Path) -> None:
    """A ``Stimuli`` export (grey and colour images in the file) and a ``Fixations`` export
    (each fixation a scanpath of its own)."""
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 255, (20, 30), dtype=np.uint8)
    colour = rng.integers(0, 255, (25, 15, 3), dtype=np.uint8)
    pysaliency.Stimuli([grey, colour]).to_hdf5(tmp_path / "stimuli.hdf5")
    x, y, n = np.array([1.5, 29.0, 3.0]), np.array([2.0, 19.5, 24.0]), np.array([0, 0, 1])
    pysaliency.Fixations.create_without_history(x, y, n, subjects=np.array([0, 1, 0])).to_hdf5(
        tmp_path / "fixations.hdf5"
    )
    loaded = load_pysaliency(str(tmp_path / "stimuli.hdf5"), str(tmp_path / "fixations.hdf5"))
    assert [(s.id, s.size) for s in loaded.stimuli] == [("0", (20, 30)), ("1", (25, 15))]
    np.testing.assert_array_equal(loaded.stimuli[0].read(), np.stack([grey] * 3, axis=2))
    np.testing.assert_array_equal(loaded.stimuli[1].read(), colour)
    table = _fixation_table(loaded.fixations)
    np.testing.assert_array_equal(table["x"], x)
    np.testing.assert_array_equal(table["image"], n)
    np.testing.assert_array_equal(table["train"], [0, 1, 2])
    np.testing.assert_array_equal(table["index"], [0, 0, 0])


def test_missing_or_wrong_files_are_refused_naming_them(tmp_path: Path) -> None:
    stimuli, fixations = tmp_path / "stimuli.hdf5", tmp_path / "fixations.hdf5"
    pysaliency.Stimuli([np.zeros((4, 5), np.uint8)]).to_hdf5(stimuli)
    with pytest.raises(FileNotFoundError, match=f"pysaliency export not found: {fixations}"):
        load_pysaliency(str(stimuli), str(fixations))
    fixations.write_text("image,subject\n")
    with pytest.raises(ValueError, match=f"{fixations}: not an HDF5 file"):
        load_pysaliency(str(stimuli), str(fixations))
    with pytest.raises(ValueError, match=f"{stimuli}: a pysaliency export of FixationTrains or "
                       "Fixations expected, found type 'Stimuli'"):  # fmt: skip
        load_pysaliency(str(stimuli), str(stimuli))
    pysaliency.Fixations.create_without_history(
        np.array([1.0]), np.array([1.0]), np.array([3])
    ).to_hdf5(fixations)
    with pytest.raises(ValueError, match=f"{fixations}: fixations on stimulus 3, but the "
                       "stimuli export holds 1"):  # fmt: skip
        load_pysaliency(str(stimuli), str(fixations))
    pysaliency.Fixations.create_without_history(
        np.array([1.0]), np.array([1.0]), np.array([0])
    ).to_hdf5(fixations)
    with h5py.File(fixations, "a") as file:
        del file["subjects"]
    with pytest.raises(KeyError, match=f"{fixations}: no dataset 'subjects'"):
        load_pysaliency(str(stimuli), str(fixations))
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        SaccadeModel(tmp_path / "best.pt", device="cpu")
