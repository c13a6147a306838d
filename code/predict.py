"""Run a trained model on your own images.

    python -m code.predict --checkpoint RUN/best.pt --input IMAGE_OR_DIR --output DIR
                           [--scanpaths K]

The model is rebuilt from the configuration stored in the checkpoint (no config file needed).
Each image, of any size, is scaled (aspect kept) to about the pixel count the model was trained
at; the centre bias stored in the checkpoint is evaluated at that size. Written per image, named
after the image's stem:

- ``<stem>.npy``: the log-density (natural log, float32) at the image's original size. For a
  scanpath model: the density of the next fixation given a first fixation at the image centre.
- ``<stem>_overlay.png``: the image with the density as a heat map.
- ``<stem>_scanpaths.png`` (scanpath models, ``--scanpaths K``): K sampled scanpaths drawn on the
  image, and ``<stem>_scanpaths.npy``, (K, L, 2) fixations (x, y) in original pixels.

Images that cannot be read are reported by name, skipped and counted.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
from PIL import Image
from tqdm import tqdm
from yacs.config import CfgNode

from code.config import load_config
from code.data.batch import Batch
from code.data.build import SeededEncoder
from code.data.gaze import Stimulus, read_rgb
from code.data.loaders.common import IMAGE_SUFFIXES
from code.data.samples import resize_rgb
from code.engine.checkpoint import load_checkpoint, load_model_state
from code.engine.evaluator import to_original_size
from code.models.build import GazeModel, build_model
from code.models.decoders.scanpath import ScanpathDecoder, sample_scanpaths
from code.registry import SEGMENTERS


def load_model(checkpoint: Path, device: torch.device) -> tuple[GazeModel, CfgNode]:
    """The model and its configuration, both from the checkpoint alone."""
    state = load_checkpoint(checkpoint)
    with tempfile.TemporaryDirectory() as tmp:  # validated like any config file
        path = Path(tmp) / "config.yaml"
        path.write_text(state["config"])
        cfg = load_config(path, [])
    model = build_model(cfg)
    load_model_state(model, state["model"], checkpoint)
    return model.to(device).eval(), cfg


def input_size(height: int, width: int, trained: tuple[int, int]) -> tuple[int, int]:
    """(height, width) with the aspect of the image and about the trained pixel count."""
    scale = math.sqrt(trained[0] * trained[1] / (height * width))
    return max(1, round(height * scale)), max(1, round(width * scale))


class Predictor:
    """Log-densities (and scanpaths) for images of any size, from one trained model."""

    def __init__(self, model: GazeModel, cfg: CfgNode, device: torch.device) -> None:
        self.model = model
        self.cfg = cfg
        self.device = device
        self.centerbias = model.centerbias(
            cfg.DATA.CENTERBIAS.BANDWIDTH, cfg.DATA.CENTERBIAS.UNIFORM_WEIGHT
        )
        self.segmenter = SEGMENTERS.build(cfg.DATA.SEGMENTS, encoder=SeededEncoder(cfg))
        self.is_scanpath_model = isinstance(model.decoder, ScanpathDecoder)
        samples = cfg.DATA.SAMPLES
        # Trained without first fixations (they follow a central fixation cross): start there.
        self.first_at_centre = samples.NAME == "scanpath" and not samples.SCANPATH.INCLUDE_FIRST

    def batch(self, image: np.ndarray, stimulus: Stimulus) -> Batch:
        height, width = input_size(*image.shape[:2], tuple(self.cfg.DATA.IMAGE_SIZE))
        resized = resize_rgb(image, height, width)
        segments = None
        if self.segmenter is not None:
            segments = torch.from_numpy(self.segmenter(resized, stimulus).astype(np.int64))[None]
        centre = torch.tensor([[[width / 2, height / 2]]])
        # History for a scanpath model's density: the centre, then nothing (masked).
        k = self.model.decoder.history_length if self.is_scanpath_model else 1
        history_mask = torch.arange(k).view(1, 1, k) == 0
        return Batch(
            image=torch.tensor(resized).permute(2, 0, 1)[None].float().div(255),
            fixations=centre,
            fixation_mask=torch.ones(1, 1, dtype=torch.bool),
            centerbias=torch.from_numpy(self.centerbias.log_density(height, width)).float()[None],
            image_index=torch.zeros(1, dtype=torch.int64),
            original_size=torch.tensor([image.shape[:2]]),
            segments=segments,
            history=centre[:, :, None] * history_mask[..., None],
            history_mask=history_mask,
        ).to(self.device)

    @torch.no_grad()
    def log_density(self, batch: Batch, size: tuple[int, int]) -> np.ndarray:
        prediction = self.model(batch)[0]
        if prediction.dim() == 3:  # scanpath model: the one fixation of the batch
            prediction = prediction[0]
        return to_original_size(prediction, size).cpu().numpy().astype(np.float32)

    def scanpaths(self, batch: Batch, count: int, length: int, seed: int) -> np.ndarray:
        """(count, length, 2) sampled fixations (x, y) in the original image's pixels."""
        generator = torch.Generator().manual_seed(seed)
        xy = sample_scanpaths(self.model, batch, count, length, self.first_at_centre, generator)
        height, width = batch.image.shape[-2:]
        original_h, original_w = batch.original_size[0].tolist()
        return (xy.cpu() * torch.tensor([original_w / width, original_h / height])).numpy()


def save_heatmap(path: Path, image: np.ndarray, log_density: np.ndarray) -> None:
    """The image with the density (scaled to its maximum) blended over it as a heat map."""
    density = np.exp(log_density - log_density.max())
    heat = plt.get_cmap("inferno")(density)[..., :3]
    alpha = 0.25 + 0.6 * density[..., None]
    blended = (1 - alpha) * image / 255 + alpha * heat
    Image.fromarray((blended * 255).round().astype(np.uint8)).save(path)


def save_scanpaths(path: Path, image: np.ndarray, scanpaths: np.ndarray) -> None:
    """Scanpaths as numbered fixations joined by lines, one colour per scanpath."""
    height, width = image.shape[:2]
    fig = plt.figure(figsize=(width / 100, height / 100), dpi=100)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.imshow(image)
    for k, path_xy in enumerate(scanpaths):
        colour = plt.get_cmap("tab10")(k % 10)
        ax.plot(path_xy[:, 0], path_xy[:, 1], "-o", color=colour, lw=1.5, ms=5, alpha=0.85)
        for i, (x, y) in enumerate(path_xy):
            ax.annotate(str(i + 1), (x, y), color="white", fontsize=7, ha="center", va="center")
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)
    ax.axis("off")
    fig.savefig(path, dpi=100)
    plt.close(fig)


def list_inputs(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    raise FileNotFoundError(f"input not found: {path}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m code.predict", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--checkpoint", type=Path, required=True, help="a run's best.pt / last.pt")
    parser.add_argument("--input", type=Path, required=True, help="an image or a folder of images")
    parser.add_argument("--output", type=Path, required=True, help="folder for the results")
    parser.add_argument("--scanpaths", type=int, default=0, metavar="K", help="scanpaths per image")
    parser.add_argument("--scanpath-length", type=int, default=10, help="fixations per scanpath")
    parser.add_argument("--seed", type=int, default=0, help="seed of the scanpath sampling")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, list[str]]:
    """Predict for every input image; returns {"written": [...], "skipped": [...]} by name."""
    args = parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model, cfg = load_model(args.checkpoint, device)
    predictor = Predictor(model, cfg, device)
    if args.scanpaths and not predictor.is_scanpath_model:
        raise SystemExit(f"{args.checkpoint}: not a scanpath model; --scanpaths needs one")
    inputs = list_inputs(args.input)
    args.output.mkdir(parents=True, exist_ok=True)
    written, skipped = [], []
    for path in tqdm(inputs, desc="predict", unit="img", disable=len(inputs) < 2):
        try:
            image = read_rgb(path)
        except OSError as err:
            tqdm.write(f"skipped {path.name}: {err}", file=sys.stderr)
            skipped.append(path.name)
            continue
        stimulus = Stimulus(path.name, image.shape[0], image.shape[1], path)
        batch = predictor.batch(image, stimulus)
        log_density = predictor.log_density(batch, image.shape[:2])
        np.save(args.output / f"{path.stem}.npy", log_density)
        save_heatmap(args.output / f"{path.stem}_overlay.png", image, log_density)
        if args.scanpaths:
            scanpaths = predictor.scanpaths(batch, args.scanpaths, args.scanpath_length, args.seed)
            np.save(args.output / f"{path.stem}_scanpaths.npy", scanpaths)
            save_scanpaths(args.output / f"{path.stem}_scanpaths.png", image, scanpaths)
        written.append(path.name)
    print(
        f"{len(written)} image(s) written to {args.output}; {len(skipped)} unreadable skipped"
        + (f": {', '.join(skipped)}" if skipped else "")
    )
    return {"written": written, "skipped": skipped}


if __name__ == "__main__":
    main()
