"""Segment files from Segment Anything (SAM) for ``DATA.SEGMENTS.NAME: files``.

    python -m code.data.sam generate --checkpoint sam_vit_h_4b8939.pth --model-type vit_h \\
        --images DIR --out SEGMENTS_DIR
    python -m code.data.sam convert --masks AMG_OUTPUT_DIR --out SEGMENTS_DIR

``generate`` runs SAM's automatic mask generator on every image of DIR (needs the optional
``segment-anything`` package, ``uv sync --extra sam``, and a checkpoint file you downloaded).
``convert`` reads what segment-anything's own ``scripts/amg.py`` writes: one folder per image,
``<stem>/<i>.png`` binary masks (0/255) with ``<stem>/metadata.csv`` (``id,area,...``). Both
write ``SEGMENTS_DIR/<stem>.npy``, an int32 label map at the image's size, the layout the
``files`` segmenter reads: masks are painted largest first, so a smaller mask lying on a larger
one stays visible; pixels no mask covers get label 0.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
from PIL import Image

from code.data.gaze import read_rgb
from code.data.loaders.common import IMAGE_SUFFIXES
from code.utils.cli import add_debug_option, run_command


def masks_to_labels(masks: list[np.ndarray], areas: list[float]) -> np.ndarray:
    """One label map from possibly overlapping boolean masks of one image (label k + 1 for
    mask k, 0 where none covers)."""
    if not masks:
        raise ValueError("no masks to convert")
    labels = np.zeros(masks[0].shape, dtype=np.int32)
    for k in sorted(range(len(masks)), key=lambda k: -areas[k]):
        labels[masks[k]] = k + 1
    return labels


def read_amg_masks(folder: Path) -> tuple[list[np.ndarray], list[float]]:
    """The masks and areas of one image in ``scripts/amg.py``'s output layout."""
    metadata = folder / "metadata.csv"
    if not metadata.is_file():
        raise FileNotFoundError(f"{folder}: no metadata.csv (not an amg.py mask folder)")
    with metadata.open(newline="") as file:
        rows = list(csv.DictReader(file))
    masks, areas = [], []
    for line, row in enumerate(rows, start=2):
        path = folder / f"{row['id']}.png"
        if not path.is_file():
            raise FileNotFoundError(f"{metadata}:{line}: mask {path.name} is missing")
        with Image.open(path) as image:
            masks.append(np.asarray(image.convert("L")) > 127)
        areas.append(float(row["area"]))
    return masks, areas


def convert(masks_dir: Path, out: Path) -> int:
    """Convert every image folder under ``masks_dir``; returns the number written."""
    folders = sorted(p for p in masks_dir.iterdir() if p.is_dir()) if masks_dir.is_dir() else []
    if not folders:
        raise FileNotFoundError(f"{masks_dir}: no per-image mask folders")
    out.mkdir(parents=True, exist_ok=True)
    for folder in folders:
        masks, areas = read_amg_masks(folder)
        np.save(out / f"{folder.name}.npy", masks_to_labels(masks, areas))
    return len(folders)


def generate(checkpoint: Path, model_type: str, images: Path, out: Path, device: str) -> int:
    """Run SAM's automatic mask generator on every image of ``images``."""
    try:
        from segment_anything import SamAutomaticMaskGenerator, sam_model_registry
    except ImportError as err:
        raise SystemExit(
            f"the segment-anything package is not installed ({err}): uv sync --extra sam"
        ) from err
    if not checkpoint.is_file():
        raise FileNotFoundError(f"SAM checkpoint not found: {checkpoint}")
    files = sorted(p for p in images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"{images}: no image files")
    sam = sam_model_registry[model_type](checkpoint=str(checkpoint)).to(device)
    generator = SamAutomaticMaskGenerator(sam)
    out.mkdir(parents=True, exist_ok=True)
    for path in files:
        found = generator.generate(read_rgb(path))
        labels = masks_to_labels([m["segmentation"] for m in found], [m["area"] for m in found])
        np.save(out / f"{path.stem}.npy", labels)
    return len(files)


def build_parser() -> argparse.ArgumentParser:
    """The command line, apart from ``main`` so that documented commands can be checked."""
    parser = argparse.ArgumentParser(prog="python -m code.data.sam", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate", help="run SAM on a folder of images")
    gen.add_argument("--checkpoint", type=Path, required=True, help="a local SAM checkpoint")
    gen.add_argument("--model-type", required=True, choices=["vit_h", "vit_l", "vit_b"])
    gen.add_argument("--images", type=Path, required=True)
    gen.add_argument("--device", default="cpu")
    conv = sub.add_parser("convert", help="label maps from scripts/amg.py mask folders")
    conv.add_argument("--masks", type=Path, required=True)
    for p in (gen, conv):
        p.add_argument("--out", type=Path, required=True, help="the DATA.SEGMENTS.FILES.DIR")
        add_debug_option(p)
    return parser


def main(argv: list[str]) -> None:
    args = build_parser().parse_args(argv)
    if args.command == "generate":
        count = generate(args.checkpoint, args.model_type, args.images, args.out, args.device)
    else:
        count = convert(args.masks, args.out)
    print(f"{count} label map(s) written to {args.out}")


if __name__ == "__main__":
    run_command(main)
