"""saccade checkpoints as pysaliency models (the ``pysaliency`` extra: ``uv sync --extra
pysaliency``), so pysaliency's metrics and benchmarks score them::

    import pysaliency
    from code.interop.pysaliency import SaccadeModel
    model = SaccadeModel("output/run/best.pt")
    model.information_gain(stimuli, fixations, baseline)  # bits per fixation
    pysaliency.DensitySaliencyMapModel(model).AUC(stimuli, fixations)

``SaccadeModel`` serves a density checkpoint (a spatial model's log-density), and
``SaccadeScanpathModel`` a scanpath checkpoint (the density of the next fixation given the
scanpath so far), each at the stimulus' own size and computed exactly as ``code.predict``
computes the densities it writes: the image scaled to about the trained pixel count, the
model's prediction taken back to the stimulus' size. pysaliency's data objects come the other
way through the ``pysaliency`` data set (``code.data.loaders.pysaliency_hdf5``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from code.engine.checkpoint import Checkpointer
from code.models.shapes import PredictionKind
from code.tasks.base import build_task
from code.tasks.density import DensityPredictor

try:
    import pysaliency
except ImportError:
    raise ImportError(
        "code.interop.pysaliency needs pysaliency: install the extra (uv sync --extra "
        "pysaliency, or pip install pysaliency h5py)"
    ) from None

# pysaliency 0.2.22 calls numpy names that numpy 2 removed (np.string_ in its HDF5 writers,
# np.trapz in AUC): restored as aliases of the replacements numpy names.
for _removed, _replacement in (("string_", "bytes_"), ("trapz", "trapezoid")):
    if not hasattr(np, _removed):
        setattr(np, _removed, getattr(np, _replacement))

# pysaliency hands ``_log_density`` the image alone; a model whose segments are read from files
# by image name cannot find them under this name, and says so.
STIMULUS_NAME = "pysaliency-stimulus.png"


# The wrapper of each kind of prediction, named when a checkpoint is handed to the other one.
WRAPPERS = {
    PredictionKind.LOG_DENSITY: "SaccadeModel",
    PredictionKind.CONDITIONAL_LOG_DENSITY: "SaccadeScanpathModel",
}


def checkpoint_predictor(
    checkpoint: Path, device: torch.device, kind: PredictionKind
) -> DensityPredictor:
    """``code.predict``'s predictor of a density checkpoint whose model predicts ``kind``."""
    model, cfg = Checkpointer.load_model(checkpoint, device)
    if model.prediction is not kind:
        wrapper = WRAPPERS.get(model.prediction)
        raise ValueError(
            f"{checkpoint}: its model predicts {model.prediction.value}, not {kind.value}"
            + (f": wrap it in {wrapper}" if wrapper else "")
        )
    task = build_task(cfg)
    parser = argparse.ArgumentParser()
    task.add_predict_options(parser)
    predictor = task.predictor(model, device, parser.parse_args([]))
    if not isinstance(predictor, DensityPredictor):
        raise ValueError(f"{checkpoint}: not a density checkpoint (task {cfg.TASK.NAME!r})")
    return predictor


def as_rgb(stimulus: np.ndarray) -> np.ndarray:
    """A pysaliency stimulus ((H, W) or (H, W, 3), uint8) as (H, W, 3) uint8."""
    image = np.asarray(stimulus)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"a stimulus of shape {image.shape}: (H, W) or (H, W, 3) expected")
    return image.astype(np.uint8, copy=False)


def _device(device: str | torch.device | None) -> torch.device:
    return torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))


class SaccadeModel(pysaliency.Model):
    """A saccade density checkpoint (a run's ``best.pt``) as a pysaliency ``Model``.

    ``device``: where the model runs (default: CUDA when available); ``kwargs``: pysaliency's
    caching options.
    """

    def __init__(
        self, checkpoint: str | Path, device: str | torch.device | None = None, **kwargs: object
    ) -> None:
        super().__init__(**kwargs)
        self.device = _device(device)
        self.predictor = checkpoint_predictor(
            Path(checkpoint), self.device, PredictionKind.LOG_DENSITY
        )

    @torch.no_grad()
    def _log_density(self, stimulus: np.ndarray) -> np.ndarray:
        batch = self.predictor.batch(as_rgb(stimulus), STIMULUS_NAME).to(self.device)
        return self.predictor.log_densities(batch)[0].double().cpu().numpy()


class SaccadeScanpathModel(pysaliency.ScanpathModel):
    """A saccade scanpath checkpoint as a pysaliency ``ScanpathModel``: the log-density of the
    next fixation given the fixations so far (``x_hist``, ``y_hist``: pixels of the stimulus,
    oldest first; the model reads the last ``HISTORY_LENGTH``, as it was trained).

    With an empty history it gives the density of a first fixation; a model trained without
    first fixations (``INCLUDE_FIRST: false``, data recorded after a central fixation cross)
    was not trained for it: score its fixations from the second on.
    """

    def __init__(self, checkpoint: str | Path, device: str | torch.device | None = None) -> None:
        super().__init__()
        self.device = _device(device)
        self.predictor = checkpoint_predictor(
            Path(checkpoint), self.device, PredictionKind.CONDITIONAL_LOG_DENSITY
        )

    @torch.no_grad()
    def conditional_log_density(
        self,
        stimulus: np.ndarray,
        x_hist: np.ndarray,
        y_hist: np.ndarray,
        t_hist: np.ndarray,
        attributes: dict | None = None,
        out: np.ndarray | None = None,
    ) -> np.ndarray:
        """pysaliency's interface; times and attributes are not read."""
        image = as_rgb(pysaliency.datasets.as_stimulus(stimulus).stimulus_data)
        batch = self.predictor.batch(image, STIMULUS_NAME)
        height, width = batch.input.shape[-2:]
        # to the model input's pixels, as the training items were (ScanpathSamples)
        scale = np.array([width / image.shape[1], height / image.shape[0]])
        xy = np.stack([np.asarray(x_hist, float), np.asarray(y_hist, float)], axis=1) * scale
        history = torch.from_numpy(xy.astype(np.float32))
        batch = self.predictor.with_history(batch, history).to(self.device)
        log_density = self.predictor.log_densities(batch)[0].double().cpu().numpy()
        if out is None:
            return log_density
        out[...] = log_density
        return out
