"""The ``scanpath_generation`` task: NeVA scanpaths (Schwinn et al., 2022) from any model the
framework trained, scored against human scanpaths beside baselines.

The run's model is the *downstream* model, frozen: ``MODEL`` must be the architecture of the
checkpoint ``DOWNSTREAM`` (e.g. ``_BASE_`` its training config), whose weights it loads. For
every test image the generator (``GENERATOR``, a registered part of ``code.models.neva``)
places ``LENGTH`` fixations where the model, seeing the image through the foveation
(``FOVEATION``), best does its task (``CRITERION``, a registered part too); or samples them
from a trained density model (``model_samples``, :mod:`code.tasks.sampled_scanpaths`), whose
scanpaths the downstream model then only sees for the utility curve. A generator that
trains (the attention network) is first trained by the trainer on the training images, with
``TRAIN``, so the run checkpoints and resumes as any training run. Beside it
the same number of fixations from baselines: ``random`` (uniform), ``centre`` (drawn from the
centre bias of the training fixations), ``wta`` (winner-take-all with inhibition of return on
the density of the saliency model ``SALIENCY_CHECKPOINT``, when one is given), and the humans'
own scanpaths (their first ``LENGTH`` fixations). Outputs:

- ``scanpaths/<generator>.csv`` (the generic ``fixations.csv`` layout: image, subject = the
  generator, fix_index, x, y in original pixels; no durations) and ``<generator>.npy``
  ((images, LENGTH, 2), the test images in order);
- ``metrics.json``: per generator, the scanpath metrics against every human scanpath of the
  image (each image's mean over its humans, then mean ± s.e. over images) and the human
  ceiling (each human against the others); the downstream loss after t = 1..LENGTH fixations
  (mean ± s.e. over images; humans: over their scanpaths long enough), as ``utility``; for a
  probabilistic generator (``model_samples``, and the ``random`` and ``centre`` baselines), its
  density scored at the test images' human fixations given the ones before, as
  ``conditional`` (IG in bits/fixation over the centre bias; the deterministic NeVA and
  winner-take-all, and the humans, have none);
- ``utility.png`` (that loss against t) and ``overlays/<image>_scanpaths.png``.
"""

from __future__ import annotations

import argparse
import csv
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from yacs.config import CfgNode

from code.data.batch import Batch
from code.data.build import fit_centerbias
from code.data.gaze import Stimulus
from code.data.loaders.csv_layout import FIXATION_COLUMNS
from code.data.samples import resize_rgb
from code.engine.checkpoint import Checkpointer
from code.engine.model_scoring import evaluate_history_free_densities
from code.engine.trainer import ValidationScorer
from code.engine.visualize import save_scanpaths, save_utility_plot
from code.metrics.baselines import uniform_log_density
from code.metrics.predictions import stimulus_stem
from code.metrics.registry import scanpath_metrics
from code.metrics.scanpath import (
    Grid,
    ScanMatchParams,
    human_pairs,
    per_image_means,
    scanpaths_by_image,
    score_scanpaths,
)
from code.models.build import GazeModel, build_model
from code.models.layers.foveation import Foveation, from_pixels, to_pixels
from code.models.neva import Criterion, Downstream, GeneratorTraining, scanpath_losses
from code.models.scanpath_baselines import density_scanpaths, random_scanpaths, winner_take_all
from code.registry import (
    CRITERIA,
    DECODERS,
    GENERATORS,
    TASKS,
    ConfigError,
    SubNode,
    SubPart,
)
from code.tasks.base import (
    Predictor,
    Task,
    image_batch,
    image_data,
    input_size,
    providers,
)
from code.utils.logging import get_logger
from code.utils.progress import ProgressBar

HUMANS = "humans"
RANDOM = "random"
EDGE_PX = 1e-3  # the tables' precision: positions are written to 3 decimals of a pixel
# The metrics of the table: every registered scanpath metric but those reading durations
# (generated scanpaths say where, not how long).
TABLE_METRICS = tuple(m.name for m in scanpath_metrics() if "durations" not in m.reads)
IG_WIDTH = 10  # the printed table's conditional IG column


class NoMetrics(ValidationScorer):
    """A trainable generator validates on its downstream loss alone (``val_loss``)."""

    def __init__(self) -> None:
        self.higher_is_better = {}

    def update(self, prediction: torch.Tensor, batch: Batch) -> None:
        pass

    def state(self) -> torch.Tensor:
        return torch.zeros(0, dtype=torch.float64)

    def compute(self, state: torch.Tensor) -> dict[str, float]:
        return {}


@TASKS.register("scanpath_generation")
class ScanpathGenerationTask(Task):
    """Generate scanpaths with a frozen downstream model; score them against the humans'.

    A generator that ``trains`` (the attention network) is first fitted to the downstream loss
    on the training images by the trainer (``TRAIN``: DDP, AMP, checkpoints, ``--resume``), as
    any run's model; the searches train nothing.
    """

    def __init__(
        self,
        cfg: CfgNode,
        downstream: str,
        criterion: SubPart[CRITERIA],
        generator: SubPart[GENERATORS],
        length: int,
        foveation: SubNode[Foveation],
        saliency_checkpoint: str | None,
        ior_sigma: float,
        grid: list[int],
        scanmatch_threshold: float,
    ) -> None:
        self.cfg = cfg
        self.downstream_path = Path(downstream)
        self.criterion = criterion
        self.generator_name = generator.name
        self.length = length
        # The foveation's keys are the layer's own (``SubNode``), declared once in
        # ``Foveation`` and read alike by the ``neva_foveation`` input stage: a NeVA run's MODEL
        # is its downstream model's, whose input stage is rarely that one, so each has its node.
        self.generator = generator(seed=cfg.SEED)
        self.foveation = foveation()
        self.trains = self.generator.trains
        self.saliency_path = None if saliency_checkpoint is None else Path(saliency_checkpoint)
        self.ior_sigma = ior_sigma
        self.grid = grid
        self.scanmatch_threshold = scanmatch_threshold
        # Every key, both checkpoints' configurations and the criterion's fit to the model are
        # checked here, where the registry names the refused key in full; nothing is built.
        if length < 1:
            raise ConfigError(f"must be at least 1, got {length}", key="LENGTH")
        if len(grid) != 2 or min(grid) < 1:
            raise ConfigError(f"must be two positive bin counts, got {grid}", key="GRID")
        if ior_sigma <= 0:
            raise ConfigError(f"must be positive, got {ior_sigma}", key="IOR_SIGMA")
        self._check_downstream()
        if self.saliency_path is not None:
            saliency = Checkpointer.config(self.saliency_path).MODEL.DECODER
            predicts = DECODERS.get(saliency.NAME).prediction
            if not predicts.is_density:
                raise ConfigError(
                    f"{self.saliency_path} predicts {predicts.value}; winner-take-all needs a "
                    "density model",
                    key="SALIENCY_CHECKPOINT",
                )

    def _check_downstream(self) -> None:
        """Refuse a checkpoint trained with another ``MODEL`` than the run's, and a prediction
        the criterion cannot compare."""
        trained = Checkpointer.config(self.downstream_path).MODEL
        if trained.dump(sort_keys=True) != self.cfg.MODEL.dump(sort_keys=True):
            raise ConfigError(
                f"{self.downstream_path} was trained with another MODEL than this run's: base "
                "the run on that checkpoint's training config (_BASE_), so MODEL matches; its "
                f"MODEL is:\n{trained.dump()}",
                key="DOWNSTREAM",
            )
        accepts = CRITERIA.get(self.criterion.name).accepts
        predicts = DECODERS.get(self.cfg.MODEL.DECODER.NAME).prediction
        if accepts is not None and predicts not in accepts:
            compares = " or ".join(kind.value for kind in accepts)
            raise ConfigError(
                f"{self.criterion.name!r} compares {compares}; MODEL.DECODER.NAME "
                f"{self.cfg.MODEL.DECODER.NAME!r} predicts {predicts.value}",
                key="CRITERION.NAME",
            )

    def prepare(self) -> None:
        """The images with their human scanpaths (refused without), and the centre bias of the
        training fixations."""
        self.splits, self.samples, self.loaders = image_data(self.cfg)
        if "scanpaths" not in self.samples["test"].fields:
            raise ConfigError(
                f"task {self.cfg.TASK.NAME!r} compares with the human scanpaths, which "
                f"DATA.SAMPLES does not provide; provided by: {', '.join(providers('scanpaths'))} "
                "(with IMAGE.SCANPATHS true)"
            )
        self.centerbias = fit_centerbias(self.cfg, self.splits.train)

    def build_model(self) -> GazeModel | GeneratorTraining:
        """The downstream model with its checkpoint's weights (it makes its batches itself:
        ``Downstream``), or, for a generator that trains, the generator on it to train."""
        model = build_model(self.cfg)
        Checkpointer.load_weights(model, self.downstream_path, strict=True)
        where = f"the DOWNSTREAM checkpoint {self.downstream_path}"
        try:
            self.downstream = Downstream(model, self._own_centerbias(model), where)
        except ValueError as err:
            raise ConfigError(str(err)) from err
        if self.trains:
            return GeneratorTraining(self.generator, self.downstream, self.criterion,
                                     self.foveation, self.length)  # fmt: skip
        return model

    def validation(self, model: GeneratorTraining) -> ValidationScorer:
        return NoMetrics()

    # ------------------------------------------------------------------------ evaluation

    def evaluate(self, model: torch.nn.Module, device: torch.device, output_dir: Path) -> dict:
        height, width = self.cfg.DATA.IMAGE_SIZE
        downstream = self.downstream
        foveation = self.foveation.to(device)
        chosen = self.generator.to(device).eval()  # trained already, if it trains
        saliency = self._saliency_model(device)
        stimuli = self.splits.test.stimuli
        centre = torch.from_numpy(self.centerbias.log_density(height, width))
        generator = torch.Generator().manual_seed(self.cfg.SEED)
        positions: dict[str, list[torch.Tensor]] = {}
        losses: dict[str, list[torch.Tensor]] = {}
        for batch in ProgressBar(self.loaders["test"], desc="scanpaths", unit="batch"):
            batch = batch.to(device)
            criterion = self.criterion(downstream=downstream, images=batch.input)
            count = len(batch)
            images = [stimuli[index] for index in batch.image_index.tolist()]
            scanpaths = {
                chosen.row: chosen.generate(criterion, foveation, self.length, generator, images),
                RANDOM: random_scanpaths(count, self.length, generator).to(device),
                "centre": density_scanpaths(centre, count, self.length, generator).to(device),
            }
            if saliency is not None:  # image by image: their sizes may differ
                scanpaths["wta"] = torch.cat([
                    winner_take_all(saliency(index), self.length, self.ior_sigma)
                    for index in batch.image_index.tolist()
                ]).to(device)  # fmt: skip
            with torch.no_grad():
                for name, xy in scanpaths.items():
                    positions.setdefault(name, []).append(xy.cpu())
                    losses.setdefault(name, []).append(
                        scanpath_losses(criterion, foveation, xy).cpu())  # fmt: skip
                losses.setdefault(HUMANS, []).append(self._human_losses(criterion, batch))
        conditional = self._baseline_conditional_scores()
        scores = chosen.conditional_scores(self.splits.test, device)
        if scores is not None:
            conditional[chosen.row] = scores
        return self._report(
            {name: torch.cat(xy) for name, xy in positions.items()},
            {name: torch.cat(loss) for name, loss in losses.items()},
            conditional,
            output_dir,
        )

    def _baseline_conditional_scores(self) -> dict[str, dict]:
        """The random and centre-bias generators' densities (uniform; the centre bias they
        draw from, at each image's size) scored as a probabilistic generator's are."""
        densities = {
            RANDOM: lambda s: uniform_log_density(s.height, s.width),
            "centre": lambda s: self.centerbias.log_density(s.height, s.width),
        }
        return evaluate_history_free_densities(self.cfg, self.splits.test, densities)

    def _own_centerbias(self, model: GazeModel) -> torch.Tensor | None:
        """A density model's own centre bias (stored in it) at the images' size."""
        if not model.prediction.is_density:
            return None
        centre = self.cfg.DATA.CENTERBIAS
        stored = model.centerbias(centre.BANDWIDTH, centre.UNIFORM_WEIGHT)
        return torch.from_numpy(stored.log_density(*self.cfg.DATA.IMAGE_SIZE)).float()

    def _saliency_model(self, device: torch.device) -> Callable[[int], torch.Tensor] | None:
        """Test image index -> (1, h, w) log-density of ``SALIENCY_CHECKPOINT`` on the image,
        read and resized as that model was trained (about its trained pixel count, the image's
        aspect), with its own centre bias; None without one."""
        if self.saliency_path is None:
            return None
        model, cfg = Checkpointer.load_model(self.saliency_path, device)
        centre = cfg.DATA.CENTERBIAS
        stored = model.centerbias(centre.BANDWIDTH, centre.UNIFORM_WEIGHT)
        reader = Downstream(model, None, f"the SALIENCY_CHECKPOINT {self.saliency_path}")
        stimuli = self.splits.test.stimuli

        @torch.no_grad()
        def log_density(index: int) -> torch.Tensor:
            image = stimuli[index].read()
            size = input_size(*image.shape[:2], tuple(cfg.DATA.IMAGE_SIZE))
            inputs = image_batch(resize_rgb(image, *size), image.shape[:2]).input.to(device)
            reader.centerbias = torch.from_numpy(stored.log_density(*size)).float()
            return reader.output(inputs)

        return log_density

    def _human_losses(self, criterion: Criterion, batch: Batch) -> torch.Tensor:
        """(B, S, LENGTH) the loss after each of the first fixations of each human scanpath
        (NaN past a scanpath's end or for missing scanpaths)."""
        height, width = batch.input.shape[-2:]
        paths = batch.scanpaths[:, :, : self.length]
        valid = batch.scanpath_mask[:, :, : self.length]
        steps = paths.shape[2]
        result = torch.full((*paths.shape[:2], self.length), math.nan)
        with torch.no_grad():
            for subject in range(paths.shape[1]):
                xy = from_pixels(paths[:, subject], height, width)
                loss = scanpath_losses(criterion, self.foveation, xy).cpu()
                result[:, subject, :steps] = torch.where(valid[:, subject].cpu(), loss, math.nan)
        return result

    def _report(
        self,
        positions: dict[str, torch.Tensor],
        losses: dict[str, torch.Tensor],
        conditional: dict[str, dict],
        out: Path,
    ) -> dict:
        test = self.splits.test
        folder = out / "scanpaths"
        folder.mkdir(exist_ok=True)
        params = ScanMatchParams(Grid(*self.grid), self.scanmatch_threshold, 0.0, 0.0)
        for name, xy in positions.items():  # every generator's files first, then the scores
            pixels = original_pixels(xy, test.stimuli)
            np.save(folder / f"{name}.npy", pixels)
            write_scanpath_table(folder / f"{name}.csv", [s.id for s in test.stimuli], name, pixels)
        per_image = {
            name: score_scanpaths(test, folder / f"{name}.csv", params)["per_image"]["model"]
            for name in positions
        }  # every generator scores the same images, in one order
        scores = {name: {m: mean_and_error(v[m]) for m in TABLE_METRICS}
                  for name, v in per_image.items()}  # fmt: skip
        # paired: each generator minus the random scanpaths, image by image
        random = per_image[RANDOM]
        versus_random = {
            name: {m: mean_and_error(np.subtract(v[m], random[m])) for m in TABLE_METRICS}
            for name, v in per_image.items()
            if name != RANDOM
        }
        # the viewers' first LENGTH fixations against the others', as NeVA's are scored
        pairs = human_pairs(test, params, set(range(len(test.stimuli))), self.length)
        ceiling = per_image_means(pairs, TABLE_METRICS)
        scores[HUMANS] = {m: mean_and_error(values) for m, values in ceiling.items()}
        utility = {name: utility_curve(loss) for name, loss in losses.items()}
        return {
            "metrics": scores,
            "versus_random": versus_random,
            "utility": utility,
            "conditional": conditional,
            "n_images": len(test.stimuli),
            "length": self.length,
            "criterion": self.criterion.name,
            "generator": self.generator_name,
            "downstream": str(self.downstream_path),
        }

    def summary(self, report: dict) -> str:
        return format_report(report)

    def save_figures(
        self, model: GazeModel, device: torch.device, output_dir: Path, report: dict
    ) -> None:
        """``utility.png`` and, for the first test images, the generator's scanpath (NeVA's)
        beside a human's."""
        title = f"{report['criterion']} loss, {report['n_images']} test images"
        save_utility_plot(output_dir / "utility.png", report["utility"], title)
        folder = output_dir / "overlays"
        folder.mkdir(exist_ok=True)
        test = self.splits.test
        row = self.generator.row
        generated = np.load(output_dir / "scanpaths" / f"{row}.npy")
        humans = scanpaths_by_image(test)
        for index in range(min(self.cfg.EVAL.NUM_OVERLAYS, len(generated))):
            paths = [generated[index]]
            if humans.get(index):  # the first subject's scanpath, as long as NeVA's
                xs, ys, _ = next(iter(humans[index].values()))
                paths.append(np.stack([xs, ys], axis=1)[: self.length])
            stimulus = test.stimuli[index]
            picture = folder / f"{stimulus_stem(stimulus)}_scanpaths.png"
            labels = [row, "a human (first fixations)"][: len(paths)]
            save_scanpaths(picture, stimulus.read(), paths, labels,
                           f"{stimulus.id}: numbers give the fixation order")  # fmt: skip
        get_logger().info("scanpaths drawn to %s (%s blue, a human orange)", folder, row)

    def predictor(
        self, model: GazeModel, device: torch.device, options: argparse.Namespace
    ) -> Predictor:
        raise ConfigError(
            "a scanpath_generation run has no model of its own to predict with: run "
            "code.predict on its DOWNSTREAM checkpoint"
        )


def original_pixels(positions: torch.Tensor, stimuli: list[Stimulus]) -> np.ndarray:
    """(images, L, 2) normalised positions as pixels of each image's original size. A position
    on the far edge (1: the search clamps there) is moved ``EDGE_PX`` inside the image, into its
    last pixel, since a fixation at x = width lies outside it."""
    rows = []
    for xy, stimulus in zip(positions, stimuli, strict=True):
        pixels = to_pixels(xy.double(), stimulus.height, stimulus.width).numpy()
        rows.append(np.clip(pixels, 0, np.array([stimulus.width, stimulus.height]) - EDGE_PX))
    return np.stack(rows)


def write_scanpath_table(path: Path, images: list[str], name: str, pixels: np.ndarray) -> None:
    """One scanpath per image (``pixels`` (images, L, 2)) in the generic ``fixations.csv``
    layout, ``subject`` = ``name``, without durations."""
    with path.open("w", newline="") as file:
        table = csv.writer(file)
        table.writerow(FIXATION_COLUMNS)
        for image, path_xy in zip(images, pixels, strict=True):
            for index, (x, y) in enumerate(path_xy.tolist()):
                table.writerow((image, name, index, f"{x:.3f}", f"{y:.3f}", "", ""))


def mean_and_error(values: list[float]) -> dict[str, float]:
    """Mean and standard error over images (NaNs, e.g. MultiMatch on too short a scanpath,
    left out)."""
    array = np.asarray(values, dtype=np.float64)
    array = array[np.isfinite(array)]
    error = array.std(ddof=1) / math.sqrt(len(array)) if len(array) > 1 else math.nan
    return {"mean": float(array.mean()), "se": float(error), "n": len(array)}


def utility_curve(losses: torch.Tensor) -> dict[str, list[float]]:
    """Mean ± s.e. of the loss after each fixation over images, from (images, T) losses or
    (images, scanpaths, T) with NaN where a scanpath has ended (each image's mean first)."""
    if losses.dim() == 3:
        losses = losses.nanmean(dim=1)
    rows = [mean_and_error(losses[:, t].tolist()) for t in range(losses.shape[1])]
    return {"mean": [r["mean"] for r in rows], "se": [r["se"] for r in rows]}


def information_gain_cell(report: dict, name: str) -> str:
    """Row ``name``'s conditional IG (bits/fixation over the centre bias), or "—" for a row
    without a density of its own (NeVA, winner-take-all, the humans)."""
    scores = report.get("conditional", {}).get(name)
    return "—" if scores is None else f"{scores['metrics']['IG']:.4f}"


def format_report(report: dict) -> str:
    """The metric table (mean ± s.e. over images; the conditional IG where the generator has
    a density) and the loss after each fixation."""
    names = list(report["metrics"])
    # every column as wide as its header (MultiMatch's names are long) and a space apart
    widths = [max(20, len(m) + 2) for m in TABLE_METRICS]
    first = max(10, *(len(n) + 2 for n in names))

    def row(label: str, cells: dict) -> str:
        values = (f"{cells[m]['mean']:.4f} ± {cells[m]['se']:.3f}" for m in TABLE_METRICS)
        return f"{label:<{first}}" + "".join(
            f"{v:>{w}}" for v, w in zip(values, widths, strict=True)
        )

    header = "".join(f"{m:>{w}}" for m, w in zip(TABLE_METRICS, widths, strict=True))
    lines = [f"{'generator':<{first}}" + header + f"{'IG':>{IG_WIDTH}}"]
    lines += [
        row(name, report["metrics"][name]) + f"{information_gain_cell(report, name):>{IG_WIDTH}}"
        for name in names
    ]
    lines.append("\nminus random, image by image (mean ± s.e.):")
    lines += [row(name, cells) for name, cells in report["versus_random"].items()]
    lines.append("IG: conditional, bits/fixation over the centre bias (—: no density)")
    lines.append(f"\n{report['criterion']} loss after fixation t (mean over images):")
    steps = len(report["utility"][names[0]]["mean"])
    lines.append(f"{'generator':<{first}}" + "".join(f"{t + 1:>9}" for t in range(steps)))
    for name, curve in report["utility"].items():
        lines.append(f"{name:<{first}}" + "".join(f"{v:>9.5f}" for v in curve["mean"]))
    return "\n".join(lines)
