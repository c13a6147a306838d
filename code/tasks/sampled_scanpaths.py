"""Scanpaths sampled from a trained density model: a scanpath generator of the
``scanpath_generation`` task (``GENERATOR.NAME: model_samples``) beside NeVA's.

The model of ``CHECKPOINT`` is run as ``code.predict`` runs it (``DensityPredictor``: the image
read at its original size, resized to about the model's trained pixel count, with the centre
bias stored in the checkpoint). A scanpath model's scanpath is ``code.predict --scanpaths 1
--scanpath-length LENGTH --seed SEED``'s: each fixation drawn from the conditional density
given the ones before, the first at the image centre when the model was trained without first
fixations (``INCLUDE_FIRST: false``: they follow the fixation cross), else drawn too. A spatial
model's fixations are drawn independently from its density at the original size, the same
density every time (the control without history). Each image's draws are seeded by the run's
seed and the image's id (``image_seed``): ``code.predict --seed image_seed(SEED, id)`` on the
image's file gives its scanpath. (One seed for every image, as one ``code.predict`` call seeds
them, would draw every image's fixations from the same random numbers: at the same quantiles
of their densities, not independently.) The downstream criterion is not used.
"""

from __future__ import annotations

import argparse
import zlib
from pathlib import Path

import torch

from code.config import load_config_text
from code.data.build import build_loader, build_samples
from code.data.gaze import GazeDataset, Stimulus
from code.engine.checkpoint import Checkpointer
from code.engine.model_scoring import evaluate_scanpath_model
from code.models.layers.foveation import Foveation, from_pixels
from code.models.neva import Criterion, ScanpathGenerator
from code.models.scanpath_baselines import density_scanpaths
from code.registry import DECODERS, GENERATORS, ConfigError
from code.tasks.density import DensityPredictor


def image_seed(seed: int, image_id: str) -> int:
    """The seed of the draws on image ``image_id`` in a run seeded ``seed`` (0 <= seed <
    2**32): distinct for every (seed, image)."""
    return seed * 2**32 + zlib.crc32(image_id.encode())


@torch.no_grad()
def sampled_scanpath(
    predictor: DensityPredictor, stimulus: Stimulus, length: int, seed: int
) -> torch.Tensor:
    """(length, 2) normalised positions of one scanpath sampled on ``stimulus`` by the model of
    ``predictor`` (see the module docstring), with draws seeded by ``seed``."""
    device = next(predictor.model.parameters()).device
    batch = predictor.batch(stimulus.read(), stimulus.id).to(device)
    if predictor.conditional:
        pixels = torch.from_numpy(predictor.scanpaths(batch, 1, length, seed)[0])
        return from_pixels(pixels, stimulus.height, stimulus.width).float()
    log_density = predictor.log_densities(batch)[0]  # at the original size
    return density_scanpaths(log_density, 1, length, torch.Generator().manual_seed(seed))[0]


@GENERATORS.register("model_samples")
class ModelSamples(ScanpathGenerator):
    """One scanpath per image sampled from the density model of ``CHECKPOINT`` (a scanpath
    model: with history; a spatial model: without), seeded by the run; scored, with its own
    conditional information gain (``conditional_scores``), as NeVA's scanpaths are."""

    row = "samples"

    def __init__(self, checkpoint: str, seed: int) -> None:
        super().__init__()
        self.path = Path(checkpoint)
        predicts = DECODERS.get(Checkpointer.config(self.path).MODEL.DECODER.NAME).prediction
        if not predicts.is_density:
            raise ConfigError(
                f"{self.path} predicts {predicts.value}; sampled scanpaths need a density or "
                "scanpath model",
                key="CHECKPOINT",
            )
        if not 0 <= seed < 2**32:
            raise ConfigError(f"SEED must be in [0, 2**32) to seed sampled scanpaths, got {seed}")
        self.seed = seed
        self._predictor: DensityPredictor | None = None

    def predictor(self, device: torch.device) -> DensityPredictor:
        """The checkpoint's model as ``code.predict`` runs it, loaded the first time."""
        if self._predictor is None:
            model, cfg = Checkpointer.load_model(self.path, device)
            self._predictor = DensityPredictor(model, cfg, argparse.Namespace())
        return self._predictor

    def generate(
        self,
        criterion: Criterion,
        foveation: Foveation,
        length: int,
        rng: torch.Generator | None,
        stimuli: list[Stimulus],
    ) -> torch.Tensor:
        device = criterion.images.device
        predictor = self.predictor(device)
        paths = [
            sampled_scanpath(predictor, s, length, image_seed(self.seed, s.id)) for s in stimuli
        ]
        return torch.stack(paths).to(device)

    def conditional_scores(self, dataset: GazeDataset, device: torch.device) -> dict:
        """The model's conditional LL, IG (over the centre bias cross-validated on ``dataset``),
        NSS and AUC at every human fixation of ``dataset`` but each scanpath's first, given the
        ones before: the scanpath model's own test evaluation, on all of ``dataset``'s images
        (a spatial model's one density serves each fixation, as in that evaluation)."""
        predictor = self.predictor(device)
        # a spatial model reads no history: items of one fixation before, as code.predict's
        history = predictor.model.decoder.history_length if predictor.conditional else 1
        items = ["DATA.SAMPLES.NAME", "scanpath", "DATA.SAMPLES.SCANPATH.HISTORY_LENGTH",
                 str(history), "DATA.SAMPLES.SCANPATH.INCLUDE_FIRST", "false"]  # fmt: skip
        cfg = load_config_text(predictor.cfg.dump(sort_keys=False), items)
        samples = build_samples(
            cfg, dataset, "test", predictor.centerbias, predictor.segmenter, transformed=False
        )
        loader = build_loader(cfg, samples, train=False)
        return evaluate_scanpath_model(cfg, predictor.model, dataset, loader, device)
