"""Run a trained model on your own images.

    python -m code.predict [--checkpoint CHECKPOINT] --input IMAGE_OR_DIR --output DIR
                           [--images FILE] [--batch-size N] [--sync-writes] [--overwrite]
                           [TASK OPTIONS]

CHECKPOINT is a run's best (or last) checkpoint (``code.engine.checkpoint.Checkpointer``) or a
model file ``code.export`` wrote; without it, the shipped default model
(``models/default/model.pt``, described by ``models/default/MODEL_CARD.md``), which the first
line printed names. ``--images FILE`` (one name per line) predicts only those files of the
``--input`` folder, e.g. a run's validation images. The model and its task are rebuilt from the
configuration stored in the checkpoint (no config file needed); the task says what is written,
named after each image's stem, and may add options (``--help`` with ``--checkpoint`` lists
them). Images whose model inputs have one size (after the task's resize) go through the model
together, ``--batch-size`` at a time; the files are written on a writer thread meanwhile
(``--sync-writes``: each batch's before the next is predicted). For the ``density`` task, in the
layouts ``code.evaluate`` reads:

- ``densities/<stem>.npy``: the log-density (natural log, float32) at the image's original size
  (``code.evaluate saliency --predictions OUT/densities``). For a scanpath model: the density of
  the next fixation given a first fixation at the image centre.
- ``overlays/<stem>_overlay.png``: the image with the density as a heat map and, to its
  right, the map's colour bar (0 to the maximum) (not with ``--no-overlays``, which writes no
  pictures).
- scanpath models, ``--scanpaths K``: ``scanpaths.csv`` (the generic fixation layout, subject =
  sample 0..K-1; ``code.evaluate scanpaths --predictions OUT/scanpaths.csv``), and per image
  ``scanpaths/<stem>_scanpaths.npy``, (K, L, 2) fixations (x, y) in original pixels, and
  ``scanpaths/<stem>_scanpaths.png``, drawn on the image (not with ``--no-overlays``).

Every run also writes ``run_info.json``: the checkpoint's path and SHA-256, the configuration
it holds, the code's commit and the command. A folder that is not empty is refused unless
``--overwrite`` (files of the same name are then replaced).

Images that cannot be read are reported by name and skipped; the exit status is then 3 (0 when
every image was written). An input without any image is an error.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import torch
from yacs.config import CfgNode

from code.data.batch import Batch
from code.data.gaze import read_rgb
from code.data.loaders.common import IMAGE_SUFFIXES
from code.data.splits import read_image_list
from code.engine.checkpoint import Checkpointer
from code.engine.reproducibility import run_info
from code.registry import TASKS
from code.tasks.base import Predictor, build_task
from code.utils.cli import add_debug_option, run_command
from code.utils.parallel import BackgroundWriter
from code.utils.progress import ProgressBar

EXIT_SKIPPED = 3  # exit status when some images could not be read
# The model trained and shipped with the code (models/default/MODEL_CARD.md says how and how well).
DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "models" / "default" / "model.pt"
# Images read but waiting for others of their input size: at most this many batches' worth,
# then the fullest size goes through the model (a folder of many sizes stays bounded in memory).
WAITING_BATCHES = 4
# Writes that may wait for the writer thread, per image of a batch: with a density and an
# overlay per image, the next batch is predicted while the last one's files are written.
PENDING_PER_IMAGE = 2


def list_inputs(path: Path, names_file: Path | None = None) -> list[Path]:
    """The image files at ``path`` (a file, or a folder's files with an image suffix); with
    ``names_file``, only the folder's files it names (one per line), each of which must exist."""
    if path.is_file() and names_file is None:
        return [path]
    if not path.is_dir():
        what = "input not found" if not path.exists() else "--images needs an --input folder"
        raise FileNotFoundError(f"{what}: {path}")
    if names_file is not None:
        names = read_image_list(names_file)
        missing = [name for name in names if not (path / name).is_file()]
        if missing:
            raise FileNotFoundError(
                f"{names_file}: {len(missing)} name(s) are not files of {path}: {missing[:5]}"
            )
        if not names:
            raise ValueError(f"{names_file}: names no image")
        return [path / name for name in names]
    images = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        suffixes = ", ".join(sorted(IMAGE_SUFFIXES))
        raise FileNotFoundError(f"{path}: no image files ({suffixes}) in this folder")
    return images


def positive_int(text: str) -> int:
    """An argparse type: an integer of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def write_run_info(path: Path, checkpoint: Path, cfg: CfgNode) -> None:
    """Where the predictions came from: the checkpoint (path, SHA-256), its config, the code."""
    digest = hashlib.sha256()
    with open(checkpoint, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    info = {"checkpoint": str(checkpoint.resolve()), "checkpoint_sha256": digest.hexdigest(),
            "config": cfg.dump(sort_keys=False), **run_info()}  # fmt: skip
    path.write_text(json.dumps(info, indent=2))


def task_options_help() -> str:
    """Each task's own options, a section per task (``--help`` with ``--checkpoint`` shows only
    those of the checkpoint's task)."""
    sections = []
    for name in TASKS.names():
        task_parser = argparse.ArgumentParser(add_help=False, usage=argparse.SUPPRESS)
        group = task_parser.add_argument_group(f"options for checkpoints of task {name!r}")
        TASKS.get(name).add_predict_options(group)
        if group._group_actions:
            sections.append(task_parser.format_help().strip())
    return "\n" + "\n\n".join(sections) if sections else ""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m code.predict", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--checkpoint", type=Path,
                        help="a run's best (or last) checkpoint, or a model file code.export "
                        "wrote (default: the shipped model, models/default/model.pt)")  # fmt: skip
    parser.add_argument("--input", type=Path, required=True, help="an image or a folder of images")
    parser.add_argument("--images", type=Path,
                        help="predict only the files of the --input folder this file names, "
                        "one per line")  # fmt: skip
    parser.add_argument("--output", type=Path, required=True, help="folder for the results")
    parser.add_argument("--batch-size", type=positive_int, default=8,
                        help="images of one input size predicted together (default 8)")  # fmt: skip
    parser.add_argument("--sync-writes", action="store_true",
                        help="write each batch's files before predicting the next, without a "
                        "writer thread (as code.predict did before it had one)")  # fmt: skip
    parser.add_argument("--overwrite", action="store_true",
                        help="write into an --output folder that is not empty")  # fmt: skip
    add_debug_option(parser)
    return parser


class Batcher:
    """Images grouped by the size of their model input, each group predicted once it holds
    ``batch_size`` images (or the fullest one when too many wait), its writes handed to
    ``writer``."""

    def __init__(
        self,
        predictor: Predictor,
        device: torch.device,
        output: Path,
        batch_size: int,
        writer: BackgroundWriter,
        progress: ProgressBar,
    ) -> None:
        self.predictor, self.device, self.output = predictor, device, output
        self.batch_size, self.writer, self.progress = batch_size, writer, progress
        self.groups: dict[tuple[int, ...], list[tuple[Batch, np.ndarray, str]]] = {}

    def add(self, image: np.ndarray, name: str) -> None:
        batch = self.predictor.batch(image, name)
        size = tuple(batch.input.shape[1:])
        group = self.groups.setdefault(size, [])
        group.append((batch, image, name))
        if len(group) == self.batch_size:
            self.run(size)
        elif sum(map(len, self.groups.values())) >= WAITING_BATCHES * self.batch_size:
            self.run(max(self.groups, key=lambda key: len(self.groups[key])))

    def run(self, size: tuple[int, ...]) -> None:
        batches, images, names = zip(*self.groups.pop(size), strict=True)
        with torch.no_grad():
            batch = Batch.cat(batches).to(self.device)
            writes = self.predictor.predict(batch, list(images), list(names), self.output)
        for write in writes:
            self.writer.submit(write)
        self.progress.update(len(names))

    def flush(self) -> None:
        """Predict the images still waiting."""
        while self.groups:
            self.run(next(iter(self.groups)))


def main(argv: list[str] | None = None) -> dict[str, list[str]]:
    """Predict for every input image; returns {"written": [...], "skipped": [...]} by name, in
    input order."""
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    if {"-h", "--help"} & set(argv) and "--checkpoint" not in argv:
        parser.print_help()
        print(task_options_help())
        parser.exit()
    known, _ = parser.parse_known_args([a for a in argv if a not in ("-h", "--help")])
    # What can be refused without the model is refused before it loads.
    inputs = list_inputs(known.input, known.images)
    if known.output.is_dir() and any(known.output.iterdir()) and not known.overwrite:
        raise FileExistsError(
            f"--output {known.output} is not empty (another model's predictions?): pass "
            "--overwrite to write into it, or choose another folder"
        )
    if known.checkpoint is None:
        known.checkpoint = DEFAULT_MODEL
        print(
            f"no --checkpoint: predicting with the shipped default model {DEFAULT_MODEL} "
            f"(how it was trained and how well it does: {DEFAULT_MODEL.with_name('MODEL_CARD.md')})"
        )
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model, cfg = Checkpointer.load_model(known.checkpoint, device)
    task = build_task(cfg)
    task.add_predict_options(parser)  # the checkpoint's task knows its own options
    args = parser.parse_args(argv)
    predictor = task.predictor(model, device, args)
    args.output.mkdir(parents=True, exist_ok=True)
    write_run_info(args.output / "run_info.json", known.checkpoint, cfg)
    written, skipped = [], []
    pending = 0 if args.sync_writes else PENDING_PER_IMAGE * args.batch_size
    progress = ProgressBar(total=len(inputs), desc="predict", unit="img", disable=len(inputs) < 2)
    with progress, BackgroundWriter(pending) as writer:
        batcher = Batcher(predictor, device, args.output, args.batch_size, writer, progress)
        for path in inputs:
            try:
                image = read_rgb(path)
            except OSError as err:
                progress.write(f"skipped {path.name}: {err}", file=sys.stderr)
                skipped.append(path.name)
                progress.update()
                continue
            batcher.add(image, path.name)
            written.append(path.name)
        batcher.flush()
    predictor.finish(args.output, written)
    print(
        f"{len(written)} image(s) written to {args.output}; {len(skipped)} unreadable skipped"
        + (f": {', '.join(skipped)}" if skipped else "")
    )
    return {"written": written, "skipped": skipped}


if __name__ == "__main__":
    run_command(lambda argv: EXIT_SKIPPED if main(argv)["skipped"] else 0)
