"""SAM masks, as segment-anything's amg.py writes them, become the label maps the loader reads."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from code.data.gaze import Stimulus
from code.data.sam import convert, generate, main
from code.data.segments import SegmentFiles

AMG_COLUMNS = ["id", "area", "bbox_x0", "bbox_y0", "bbox_w", "bbox_h", "point_input_x",
               "point_input_y", "predicted_iou", "stability_score", "crop_box_x0",
               "crop_box_y0", "crop_box_w", "crop_box_h"]  # fmt: skip


def _write_amg_folder(folder: Path, masks: list[np.ndarray]) -> None:
    folder.mkdir(parents=True)
    with (folder / "metadata.csv").open("w", newline="") as file:
        table = csv.writer(file)
        table.writerow(AMG_COLUMNS)
        for i, mask in enumerate(masks):
            Image.fromarray(mask.astype(np.uint8) * 255).save(folder / f"{i}.png")
            table.writerow([i, int(mask.sum()), *[0] * 12])


def test_amg_masks_convert_to_label_maps_the_files_segmenter_reads(tmp_path: Path) -> None:
    left = np.zeros((10, 12), dtype=bool)
    left[:, :6] = True
    square = np.zeros((10, 12), dtype=bool)
    square[2:5, 1:4] = True  # lies on the left half: painted after it, so it stays visible
    _write_amg_folder(tmp_path / "masks" / "img1", [square, left])
    assert convert(tmp_path / "masks", tmp_path / "segments") == 1
    stimulus = Stimulus("img1.jpg", 10, 12, None)
    labels = SegmentFiles(str(tmp_path / "segments"))(np.zeros((10, 12, 3), np.uint8), stimulus)
    assert len(np.unique(labels)) == 3
    assert len(np.unique(labels[square])) == 1 and labels[square][0] != labels[0, 0]
    assert len(np.unique(labels[left & ~square])) == 1 and labels[0, 11] not in labels[left]
    (tmp_path / "masks" / "img1" / "1.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"metadata\.csv:3: mask 1\.png is missing"):
        convert(tmp_path / "masks", tmp_path / "segments")


def test_generate_names_what_it_lacks(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    try:
        import segment_anything  # noqa: F401
    except ImportError:
        with pytest.raises(SystemExit, match="uv sync --extra sam"):
            generate(tmp_path / "sam.pth", "vit_b", tmp_path, tmp_path / "out", "cpu")
    else:
        with pytest.raises(FileNotFoundError, match=r"SAM checkpoint not found: .*sam\.pth"):
            generate(tmp_path / "sam.pth", "vit_b", tmp_path, tmp_path / "out", "cpu")
    _write_amg_folder(tmp_path / "amg" / "a", [np.ones((4, 5), dtype=bool)])
    main(["convert", "--masks", str(tmp_path / "amg"), "--out", str(tmp_path / "seg")])
    assert "1 label map(s) written" in capsys.readouterr().out
    assert np.load(tmp_path / "seg" / "a.npy").shape == (4, 5)
