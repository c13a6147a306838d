"""The ``mim_pretrain`` task: masked image modelling, the reconstruction of what a masking input
stage hid (Weiler, Brucklacher et al., 2024), on the images of any data set.

Items are images with themselves as the target (``DATA.SAMPLES.NAME: image``); the model's
input stage masks them (``MODEL.INPUT_STAGE``: ``random_patches``, ``periphery``, ... or
``identity``, the plain autoencoder) and its decoder reconstructs the image, trained by the
squared error where the mask is 1. Validation: ``val_loss`` (that masked error) beside
``val_fill_mse``, the error of the fill itself (what a model that reconstructs nothing scores);
the test report gives both, and the error of the image's mean colour (the same as the fill's
for mean fills; the baseline for fills that keep content, as foveation's), with the code's
sparsity and decorrelation; overlays show input, mask, reconstruction and target.
"""

from __future__ import annotations

import argparse
import dataclasses
from functools import partial
from pathlib import Path

import numpy as np
import torch
from yacs.config import CfgNode

from code.data.batch import Batch
from code.data.samples import resize_rgb
from code.engine.trainer import ValidationScorer
from code.engine.visualize import hwc, save_panels
from code.metrics.predictions import stimulus_stem
from code.metrics.representation import CodeStatistics
from code.models.build import GazeModel
from code.models.decoders.reconstruction import masked_squared_error
from code.models.shapes import PredictionKind
from code.registry import TASKS, ConfigError
from code.tasks.base import Predictor, Task, checked_model, image_batch, image_data
from code.utils import distributed as dist
from code.utils.logging import get_logger
from code.utils.parallel import Write


class MaskedErrorScorer(ValidationScorer):
    """``val_fill_mse``: the masked squared error of the model's input (the fill) as if it were
    the reconstruction; ``val_loss`` is the model's own, so the two compare directly. Beside
    them the sparsity and decorrelation of the encoder's code (``code.metrics.representation``),
    logged, not optimised."""

    def __init__(self, model: GazeModel, image_size: tuple[int, int]) -> None:
        directions = {"fill_mse": False, "unit_sparsity": True, "population_sparsity": True,
                      "decorrelation": False}  # fmt: skip
        self.higher_is_better = {f"val_{name}": up for name, up in directions.items()}
        self.code = CodeProbe(model, image_size)
        self.sums = torch.zeros(2, dtype=torch.float64)  # Σ e²·m of the fill, Σ m

    def update(self, prediction: torch.Tensor, batch: Batch) -> None:
        total, count = masked_squared_error(batch.input, batch)
        self.sums += torch.stack([total.double().cpu(), count.double().cpu()])
        self.code.update(batch)

    def state(self) -> torch.Tensor:
        return torch.cat([self.sums, self.code.statistics.state()])

    def compute(self, state: torch.Tensor) -> dict[str, float]:
        total, count = state[:2].tolist()
        code = self.code.statistics.compute(state[2:])
        return {"val_fill_mse": total / count, **{f"val_{k}": v for k, v in code.items()}}


class CodeProbe:
    """The code (the encoder's deepest map) of the images a model sees, into ``statistics``."""

    def __init__(self, model: GazeModel, image_size: tuple[int, int]) -> None:
        self.encoder = model.encoder
        self.name = list(self.encoder.output_shapes)[-1]
        device = next(self.encoder.parameters()).device
        with torch.no_grad():  # the code's size for an input of the run's size
            code = self.encoder(torch.zeros(1, 3, *image_size, device=device))[self.name]
        self.statistics = CodeStatistics(*code.shape[1:])

    @torch.no_grad()
    def update(self, seen: Batch) -> None:
        self.statistics.update(self.encoder(seen.input)[self.name])


@TASKS.register("mim_pretrain")
class MaskedImageModellingTask(Task):
    """Train a reconstruction model on masked images; report the masked error on the test split
    beside the fill's."""

    trains = True

    def __init__(self, cfg: CfgNode) -> None:
        self.cfg = cfg

    def prepare(self) -> None:
        self.splits, self.samples, self.loaders = image_data(self.cfg)

    def build_model(self) -> GazeModel:
        reconstructs = lambda kind: kind is PredictionKind.IMAGE  # noqa: E731
        return checked_model(self.cfg, self.samples["train"].fields, reconstructs,
                             "reconstructs images")  # fmt: skip

    def validation(self, model: GazeModel) -> ValidationScorer:
        return MaskedErrorScorer(model, tuple(self.cfg.DATA.IMAGE_SIZE))

    @torch.no_grad()
    def evaluate(self, model: GazeModel, device: torch.device, output_dir: Path) -> dict | None:
        model.eval()
        sums = torch.zeros(4, dtype=torch.float64, device=device)  # model, fill, mean, Σ m
        code = CodeProbe(model, tuple(self.cfg.DATA.IMAGE_SIZE))
        for batch in self.loaders["test"]:
            prediction, seen = model(batch.to(device))
            total, count = masked_squared_error(prediction, seen)
            fill, _ = masked_squared_error(seen.input, seen)
            colour = seen.target.mean(dim=(2, 3), keepdim=True).expand_as(seen.target)
            mean, _ = masked_squared_error(colour, seen)
            sums += torch.stack([total, fill, mean, count]).double()
            code.update(seen)
        model_sum, fill_sum, mean_sum, count = dist.all_reduce_sum(sums).tolist()
        code_state = dist.all_reduce_sum(code.statistics.state().to(device)).cpu()
        if not dist.is_main():
            return None
        return {
            "metrics": {
                "masked_mse": model_sum / count,
                "fill_mse": fill_sum / count,
                "mean_colour_mse": mean_sum / count,
                **code.statistics.compute(code_state),
            },
            "n_images": len(self.samples["test"]),
            "input_stage": self.cfg.MODEL.INPUT_STAGE.NAME,
        }

    def summary(self, report: dict) -> str:
        m = report["metrics"]
        # without a mask nothing is filled: the input is the target, its error 0
        share = f", {m['masked_mse'] / m['fill_mse']:.1%} of it" if m["fill_mse"] > 0 else ""
        return (
            f"masked MSE {m['masked_mse']:.5f} (the fill's: {m['fill_mse']:.5f}{share}; the "
            f"image's mean colour's: {m['mean_colour_mse']:.5f}) on "
            f"{report['n_images']} test images, input stage {report['input_stage']}; code: unit "
            f"sparsity {m['unit_sparsity']:.3f}, population sparsity "
            f"{m['population_sparsity']:.3f}, decorrelation {m['decorrelation']:.4f}"
        )

    @torch.no_grad()
    def save_figures(
        self, model: GazeModel, device: torch.device, output_dir: Path, report: dict
    ) -> None:
        """``overlays/<image>_reconstruction.png``: input, mask, reconstruction, target."""
        model.eval()
        folder = output_dir / "overlays"
        folder.mkdir(exist_ok=True)
        samples, collate = self.samples["test"], self.loaders["test"].collate_fn
        for index in range(min(self.cfg.EVAL.NUM_OVERLAYS, len(samples))):
            prediction, seen = model(collate([samples[index]]).to(device))
            panels = {"input": seen.input[0], "reconstruction": prediction[0],
                      "target": seen.target[0]}  # fmt: skip
            if seen.loss_mask is not None:
                panels = {"mask (loss)": seen.loss_mask[0].expand(3, -1, -1), **panels}
            pictures = {name: hwc(image) for name, image in panels.items()}
            stem = stimulus_stem(self.splits.test.stimuli[int(seen.image_index[0])])
            save_panels(folder / f"{stem}_reconstruction.png", pictures, stem)
        get_logger().info("reconstructions written to %s", folder)

    def predictor(
        self, model: GazeModel, device: torch.device, options: argparse.Namespace
    ) -> Predictor:
        if model.input_stage.requires:
            raise ConfigError(
                f"MODEL.INPUT_STAGE.NAME {self.cfg.MODEL.INPUT_STAGE.NAME!r} reads "
                f"{', '.join(sorted(model.input_stage.requires))} of the data; code.predict "
                "has the images alone"
            )
        return ReconstructionPredictor(model, tuple(self.cfg.DATA.IMAGE_SIZE))


class ReconstructionPredictor(Predictor):
    """``reconstructions/<stem>_reconstruction.png``: the image at the trained size, masked by
    the model's input stage (its evaluation mask), and the model's reconstruction of it."""

    def __init__(self, model: GazeModel, size: tuple[int, int]) -> None:
        self.model, self.size = model, size

    def batch(self, image: np.ndarray, name: str) -> Batch:
        batch = image_batch(resize_rgb(image, *self.size), image.shape[:2])
        return dataclasses.replace(batch, target=batch.input.clone())

    def predict(
        self, batch: Batch, images: list[np.ndarray], names: list[str], output: Path
    ) -> list[Write]:
        prediction, seen = self.model(batch)
        folder = output / "reconstructions"
        folder.mkdir(exist_ok=True)
        writes: list[Write] = []
        for item, name in enumerate(names):
            pictures = {"input": hwc(seen.input[item]), "reconstruction": hwc(prediction[item])}
            path = folder / f"{Path(name).stem}_reconstruction.png"
            writes.append(partial(save_panels, path, pictures, name))
        return writes
