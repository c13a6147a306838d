"""Run a trained model on your own images.

    python -m code.predict --checkpoint RUN/best.pt --input IMAGE_OR_DIR --output DIR [TASK OPTIONS]

The model and its task are rebuilt from the configuration stored in the checkpoint (no config
file needed); the task says what is written, named after each image's stem, and may add
options (``--help`` with ``--checkpoint`` lists them). For the ``density`` task, in the layouts
``code.evaluate`` reads:

- ``densities/<stem>.npy``: the log-density (natural log, float32) at the image's original size
  (``code.evaluate saliency --predictions OUT/densities``). For a scanpath model: the density of
  the next fixation given a first fixation at the image centre.
- ``overlays/<stem>_overlay.png``: the image with the density as a heat map.
- scanpath models, ``--scanpaths K``: ``scanpaths.csv`` (the generic fixation layout, subject =
  sample 0..K-1; ``code.evaluate scanpaths --predictions OUT/scanpaths.csv``), and per image
  ``scanpaths/<stem>_scanpaths.npy``, (K, L, 2) fixations (x, y) in original pixels, and
  ``scanpaths/<stem>_scanpaths.png``, drawn on the image.

Images that cannot be read are reported by name and skipped; the exit status is then 3 (0 when
every image was written). An input without any image is an error.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch
from tqdm import tqdm
from yacs.config import CfgNode

from code.config import load_config
from code.data.gaze import read_rgb
from code.data.loaders.common import IMAGE_SUFFIXES
from code.engine.checkpoint import load_checkpoint, load_model_state
from code.models.build import GazeModel, build_model
from code.tasks.base import build_task


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


EXIT_SKIPPED = 3  # exit status when some images could not be read


def list_inputs(path: Path) -> list[Path]:
    """The image files at ``path`` (a file, or a folder's files with an image suffix)."""
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"input not found: {path}")
    images = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        suffixes = ", ".join(sorted(IMAGE_SUFFIXES))
        raise FileNotFoundError(f"{path}: no image files ({suffixes}) in this folder")
    return images


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m code.predict", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--checkpoint", type=Path, required=True, help="a run's best.pt / last.pt")
    parser.add_argument("--input", type=Path, required=True, help="an image or a folder of images")
    parser.add_argument("--output", type=Path, required=True, help="folder for the results")
    return parser


def main(argv: list[str] | None = None) -> dict[str, list[str]]:
    """Predict for every input image; returns {"written": [...], "skipped": [...]} by name."""
    argv = sys.argv[1:] if argv is None else argv
    parser = make_parser()
    known, _ = parser.parse_known_args([a for a in argv if a not in ("-h", "--help")])
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model, cfg = load_model(known.checkpoint, device)
    task = build_task(cfg)
    task.add_predict_options(parser)  # the checkpoint's task knows its own options
    args = parser.parse_args(argv)
    inputs = list_inputs(args.input)
    predictor = task.predictor(model, device, args)
    args.output.mkdir(parents=True, exist_ok=True)
    written, skipped = [], []
    for path in tqdm(inputs, desc="predict", unit="img", disable=len(inputs) < 2):
        try:
            image = read_rgb(path)
        except OSError as err:
            tqdm.write(f"skipped {path.name}: {err}", file=sys.stderr)
            skipped.append(path.name)
            continue
        predictor.predict(image, path.name, args.output)
        written.append(path.name)
    predictor.finish(args.output)
    print(
        f"{len(written)} image(s) written to {args.output}; {len(skipped)} unreadable skipped"
        + (f": {', '.join(skipped)}" if skipped else "")
    )
    return {"written": written, "skipped": skipped}


if __name__ == "__main__":
    sys.exit(EXIT_SKIPPED if main()["skipped"] else 0)
