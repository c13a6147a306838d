"""Every loader on tiny files written in the exact on-disk format of its original release."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image

from code.config import ConfigError, load_config
from code.data.build import build_splits, load_dataset
from code.data.loaders.cat2000 import load_cat2000
from code.data.loaders.coco_freeview import load_coco_freeview
from code.data.loaders.concat import concatenate
from code.data.loaders.csv_layout import load_csv_layout
from code.data.loaders.image_folder import load_image_folder
from code.data.loaders.mit1003 import load_mit1003
from code.data.loaders.osie import load_osie
from code.data.loaders.salicon import load_salicon
from code.data.loaders.scene500 import load_scene500
from code.data.loaders.stl10 import load_stl10


def write_jpeg(path: Path, height: int, width: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (width, height), (90, 120, 150)).save(path)


def cell(items: list) -> np.ndarray:
    """A MATLAB 1×N cell array for scipy.io.savemat (dicts become structs)."""
    out = np.empty((1, len(items)), dtype=object)
    for i, item in enumerate(items):
        out[0, i] = item
    return out


def write_osie(root: Path, subjects_of_image: dict[str, list[tuple]]) -> None:
    entries = []
    for name, subjects in subjects_of_image.items():
        write_jpeg(root / "stimuli" / name, 60, 80)
        entries.append(
            {
                "img": name,
                "subjects": cell(
                    [
                        {
                            "fix_x": np.array([x], float),
                            "fix_y": np.array([y], float),
                            "fix_duration": np.array([d], float),
                        }
                        if x is not None
                        else {
                            "fix_x": np.zeros((1, 0)),
                            "fix_y": np.zeros((1, 0)),
                            "fix_duration": np.zeros((1, 0)),
                        }
                        for x, y, d in subjects
                    ]
                ),
            }
        )
    (root / "eye").mkdir(parents=True)
    scipy.io.savemat(root / "eye" / "fixations.mat", {"fixations": cell(entries)})


def test_osie_layout(tmp_path):
    write_osie(
        tmp_path,
        {
            "1.jpg": [(1.0, 1.0, 200), (80.0, 60.0, 300)],
            "2.jpg": [(None, None, None), (40.5, 30.5, 100)],
        },
    )
    data = load_osie(str(tmp_path))
    np.testing.assert_array_equal(data.fixations.x, [0.0, 79.0, 39.5])  # 1-based -> 0-based
    np.testing.assert_array_equal(data.fixations.y, [0.0, 59.0, 29.5])
    np.testing.assert_array_equal(data.fixations.subject, [0, 1, 1])
    assert data.skipped == {"subject with no fixations on an image": 1}


def test_osie_fixation_outside_image_names_file_image_subject(tmp_path):
    write_osie(tmp_path, {"1.jpg": [(1.0, 1.0, 200), (95.0, 10.0, 300)]})
    with pytest.raises(ValueError, match=r"'1.jpg'.*subject 1, fixation 0.*fixations.mat"):
        load_osie(str(tmp_path))


def test_unreadable_mat_names_file(tmp_path):
    (tmp_path / "eye").mkdir()
    (tmp_path / "eye" / "fixations.mat").write_bytes(b"MATLAB 5.0 MAT-file, garbage" * 3)
    with pytest.raises(ValueError, match=r"cannot read MATLAB file .*fixations\.mat"):
        load_osie(str(tmp_path))


def test_damaged_jpeg_names_file(tmp_path):
    write_osie(tmp_path, {"1.jpg": [(1.0, 1.0, 200)]})
    (tmp_path / "stimuli" / "1.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(OSError, match=r"stimuli/1\.jpg"):
        load_osie(str(tmp_path))


def test_missing_image_names_file(tmp_path):
    write_osie(tmp_path, {"1.jpg": [(1.0, 1.0, 200)]})
    (tmp_path / "stimuli" / "1.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=r"stimuli/1\.jpg"):
        load_osie(str(tmp_path))


def test_scene500_layout(tmp_path):
    write_jpeg(tmp_path / "stimuli" / "001.jpg", 30, 40)
    write_jpeg(tmp_path / "stimuli" / "002.jpg", 50, 20)
    cells = np.empty((2, 2), dtype=object)
    cells[0, 0] = np.array([[10.0, 20.0, 0.2, 0.3], [0.5, 5.0, 0.6, 0.1]])  # [y, x, onset, dur]
    cells[0, 1] = np.zeros((0, 0))
    cells[1, 0] = np.array([[50.0, 20.0, 0.1, 0.2]])
    cells[1, 1] = np.array([[1.0, 1.0, 0.0, 0.5]])
    (tmp_path / "tidy").mkdir()
    scipy.io.savemat(tmp_path / "tidy" / "fixations.mat", {"fixations": cells})
    scipy.io.savemat(
        tmp_path / "tidy" / "imgInfo.mat", {"imgInfo": {"size": np.array([[30, 40], [50, 20]])}}
    )
    data = load_scene500(str(tmp_path))
    np.testing.assert_array_equal(data.fixations.x, [19.0, 4.0, 19.0, 0.0])
    np.testing.assert_array_equal(data.fixations.y, [9.0, 0.0, 49.0, 0.0])  # -0.5 moved onto 0
    np.testing.assert_allclose(data.fixations.onset_ms, [200, 600, 100, 0])
    assert data.skipped == {"empty cell (subject without data for the image)": 1}
    assert sum(data.adjusted.values()) == 1


def test_scene500_size_mismatch_names_image(tmp_path):
    write_jpeg(tmp_path / "stimuli" / "001.jpg", 30, 40)
    cells = np.empty((1, 1), dtype=object)
    cells[0, 0] = np.array([[10.0, 20.0, 0.2, 0.3]])
    (tmp_path / "tidy").mkdir()
    scipy.io.savemat(tmp_path / "tidy" / "fixations.mat", {"fixations": cells})
    scipy.io.savemat(tmp_path / "tidy" / "imgInfo.mat", {"imgInfo": {"size": np.array([[40, 30]])}})
    with pytest.raises(ValueError, match=r"001\.jpg.*imgInfo"):
        load_scene500(str(tmp_path))


def gaze_samples(points: list[tuple[float, float]], lengths: list[int]) -> np.ndarray:
    """240 Hz samples: fixations at ``points`` joined by 6-sample saccades, slight noise."""
    samples = []
    for k, (point, length) in enumerate(zip(points, lengths, strict=True)):
        if k:
            prev = np.array(points[k - 1])
            samples += [prev + (np.array(point) - prev) * t for t in np.linspace(0, 1, 8)[1:-1]]
        samples += [np.array(point, float)] * length
    return np.array(samples) + np.random.default_rng(0).normal(0, 0.3, (len(samples), 2))


def test_mit1003_release_format(tmp_path):
    write_jpeg(tmp_path / "ALLSTIMULI" / "i05june05_a.jpeg", 300, 400)
    eye = gaze_samples([(200, 150), (100, 80), (450, 100), (300, 250)], [70, 80, 90, 60])
    for subject in ("ajs", "CNG"):
        (tmp_path / "DATA" / subject).mkdir(parents=True)
        scipy.io.savemat(
            tmp_path / "DATA" / subject / "i05june05_a.mat",
            {"i05june05_a": {"DATA": {"eyeData": eye}}},
        )
    data = load_mit1003(str(tmp_path))
    fix = data.fixations
    assert len(fix) == 4  # per subject: 4 fixations - the central one - the one at x=450 > width
    np.testing.assert_allclose(fix.x[:2], [99, 299], atol=0.5)
    np.testing.assert_allclose(fix.y[:2], [79, 249], atol=0.5)
    assert data.skipped["initial central fixation (Judd et al.)"] == 2
    assert data.skipped["fixation outside the image (blink or off-image gaze)"] == 2
    assert np.all(np.diff(fix.onset_ms[:2]) > 0) and np.all(fix.duration_ms > 200)


def test_cat2000_release_format(tmp_path):
    write_jpeg(tmp_path / "trainSet" / "Stimuli" / "Action" / "001.jpg", 20, 30)
    write_jpeg(tmp_path / "trainSet" / "Stimuli" / "Action" / "Output" / "001.jpg", 20, 30)
    locs = np.zeros((20, 30), np.uint8)
    locs[3, 7] = locs[19, 29] = 1
    (tmp_path / "trainSet" / "FIXATIONLOCS" / "Action").mkdir(parents=True)
    scipy.io.savemat(
        tmp_path / "trainSet" / "FIXATIONLOCS" / "Action" / "001.mat", {"fixLocs": locs}
    )
    data = load_cat2000(str(tmp_path))
    assert [s.id for s in data.stimuli] == ["Action/001.jpg"]
    np.testing.assert_array_equal(data.fixations.x, [7, 29])
    np.testing.assert_array_equal(data.fixations.y, [3, 19])


def test_salicon_2017_json(tmp_path):
    write_jpeg(tmp_path / "images" / "val" / "COCO_val2014_000000000042.jpg", 48, 64)
    annotations = {
        "images": [
            {"id": 42, "file_name": "COCO_val2014_000000000042.jpg", "width": 64, "height": 48}
        ],
        "annotations": [
            {"id": 1, "image_id": 42, "worker_id": 7, "fixations": [[1, 1], [48, 64], [10, 20]]},
            {"id": 2, "image_id": 42, "worker_id": 8, "fixations": []},
        ],
    }
    (tmp_path / "fixations_val2014.json").write_text(json.dumps(annotations))
    data = load_salicon(str(tmp_path), "val")
    np.testing.assert_array_equal(data.fixations.x, [0, 63, 19])  # [row, col], 1-based
    np.testing.assert_array_equal(data.fixations.y, [0, 47, 9])
    np.testing.assert_array_equal(data.fixations.subject, [7, 7, 7])
    assert data.skipped == {"annotation with no fixations": 1}


def test_coco_freeview_json(tmp_path):
    write_jpeg(tmp_path / "images" / "bottle" / "000000123.jpg", 105, 168)
    items = [
        {
            "name": "000000123.jpg",
            "subject": 3,
            "split": "train",
            "X": [84.0, 10.5],
            "Y": [52.0, 100.0],
            "T": [250, 180],
            "length": 2,
        },
        {
            "name": "000000123.jpg",
            "subject": 4,
            "split": "valid",
            "X": [1.0],
            "Y": [2.0],
            "T": [90],
            "length": 1,
        },
    ]
    (tmp_path / "COCOFreeView_fixations_trainval.json").write_text(json.dumps(items))
    data = load_coco_freeview(str(tmp_path), "train")
    np.testing.assert_array_equal(data.fixations.x, [84.0, 10.5])
    np.testing.assert_array_equal(data.fixations.duration_ms, [250, 180])
    assert len(load_coco_freeview(str(tmp_path), "valid").fixations) == 1


def write_stl10(root: Path, split: str, images: np.ndarray, labels: list[int] | None) -> None:
    # The release stores each channel plane column-major: (n, c, col, row).
    images.transpose(0, 3, 2, 1).tofile(root / f"{split}_X.bin")
    if labels is not None:
        np.array(labels, np.uint8).tofile(root / f"{split}_y.bin")


def test_stl10_binary(tmp_path):
    images = np.random.default_rng(0).integers(0, 255, (3, 96, 96, 3), dtype=np.uint8)
    write_stl10(tmp_path, "train", images, [1, 10, 4])
    data = load_stl10(str(tmp_path), "train")
    assert [s.label for s in data.stimuli] == [0, 9, 3] and len(data.fixations) == 0
    for stimulus, image in zip(data.stimuli, images, strict=True):
        np.testing.assert_array_equal(stimulus.read(), image)
    part = data.subset([2, 0])  # labels travel with their images
    assert [s.label for s in part.stimuli] == [3, 0]
    np.testing.assert_array_equal(part.stimuli[0].read(), images[2])
    write_stl10(tmp_path, "unlabeled", images[:2], None)
    assert [s.label for s in load_stl10(str(tmp_path), "unlabeled").stimuli] == [None, None]
    (tmp_path / "test_X.bin").write_bytes(b"\0" * (3 * 96 * 96 + 5))  # a truncated download
    with pytest.raises(ValueError, match=r"test_X\.bin: size 27653 bytes is not"):
        load_stl10(str(tmp_path), "test")
    write_stl10(tmp_path, "test", images, [1, 2])  # labels of another file
    with pytest.raises(ValueError, match=r"test_y.bin: expected 3 labels in 1..10"):
        load_stl10(str(tmp_path), "test")


def test_image_folder_and_concatenated_data_sets(tmp_path):
    write_jpeg(tmp_path / "folder" / "b10.png", 10, 20)
    write_jpeg(tmp_path / "folder" / "b2.jpg", 30, 40)
    (tmp_path / "folder" / "notes.txt").write_text("not an image")
    folder = load_image_folder(str(tmp_path / "folder"))
    assert [(s.id, s.size) for s in folder.stimuli] == [("b2.jpg", (30, 40)), ("b10.png", (10, 20))]
    write_osie(tmp_path / "osie", {"1001.jpg": [(10, 5, 100), (30, 7, 90)]})
    osie = load_osie(str(tmp_path / "osie"))
    both = concatenate([osie, folder, osie])
    assert [s.id for s in both.stimuli] == [
        "osie/1001.jpg",
        "folder/b2.jpg",
        "folder/b10.png",
        "osie/1001.jpg",
    ]
    fix = both.fixations
    assert fix.image.tolist() == [0, 0, 3, 3]
    assert fix.subject.tolist() == [0, 1, 2, 3]  # no subject shared across data sets
    assert fix.train.tolist() == [0, 1, 2, 3]
    # as a config names it: a chain of data sets, each with its own keys
    opts = ["DATA.DATASET.NAME", "concat",
            "DATA.DATASET.CONCAT.DATASETS.NAMES", "[osie, image_folder]",
            "DATA.DATASET.CONCAT.DATASETS.OSIE.ROOT", str(tmp_path / "osie"),
            "DATA.DATASET.CONCAT.DATASETS.IMAGE_FOLDER.ROOT", str(tmp_path / "folder")]  # fmt: skip
    loaded = load_dataset(load_config("configs/quickstart.yaml", opts))
    assert loaded.name == "osie+folder" and len(loaded.stimuli) == 3
    assert both.name == "osie+folder+osie"


def test_each_dataset_split_keeps_every_data_sets_own_split():
    """With DATA.SPLIT.EACH_DATASET, OSIE + Scene500 holds out exactly the images that runs on
    OSIE alone and on Scene500 alone hold out (the default model's test images stay unseen);
    one split over the concatenation would not."""
    alone = {
        name: load_config("configs/01_dinogaze_spade/cpu_osie/no_injection.yaml", opts)
        for name, opts in [
            ("osie", []),
            ("scene500", ["DATA.DATASET.NAME", "scene500",
                          "DATA.DATASET.SCENE500.ROOT", "../shared/data/scene500"]),
        ]
    }  # fmt: skip
    expected = {}
    for name, cfg in alone.items():
        splits = build_splits(cfg, load_dataset(cfg))
        for side in ("train", "val", "test"):
            ids = [f"{name}/{s.id}" for s in getattr(splits, side).stimuli]
            expected.setdefault(side, []).extend(ids)
    opts = ["DATA.DATASET.NAME", "concat",
            "DATA.DATASET.CONCAT.DATASETS.NAMES", "[osie, scene500]",
            "DATA.DATASET.CONCAT.DATASETS.OSIE.ROOT", "../shared/data/osie",
            "DATA.DATASET.CONCAT.DATASETS.SCENE500.ROOT", "../shared/data/scene500"]  # fmt: skip
    path = "configs/01_dinogaze_spade/cpu_osie/no_injection.yaml"
    each = load_config(path, [*opts, "DATA.SPLIT.EACH_DATASET", "true"])
    both = load_dataset(each)
    assert both.parts == [("osie", 700), ("scene500", 500)]
    splits = build_splits(each, both)
    for side, ids in expected.items():
        assert [s.id for s in getattr(splits, side).stimuli] == ids, side
    whole = build_splits(load_config(path, opts), both)  # one split over all 1,200 images
    assert [s.id for s in whole.test.stimuli] != expected["test"]
    assert both.subset([0, 1]).parts == []  # a subset is no concatenation
    with pytest.raises(ConfigError, match=r"EACH_DATASET.*osie is one data set"):
        build_splits(
            load_config(path, ["DATA.SPLIT.EACH_DATASET", "true"]), load_dataset(alone["osie"])
        )


def write_csv(root: Path, rows: list[str]) -> None:
    write_jpeg(root / "stimuli" / "a.png", 10, 20)
    header = "image,subject,fix_index,x,y,duration_ms,onset_ms,img_w,img_h"
    (root / "fixations.csv").write_text("\n".join([header, *rows]) + "\n")


def test_csv_layout(tmp_path):
    write_csv(
        tmp_path,
        [
            "a.png,s2,1,3.5,4,100,,20,10",
            "a.png,s2,0,0,0,,50,20,10",
            "a.png,s1,0,19.9,9.9,80,0,20,10",
        ],
    )
    data = load_csv_layout(str(tmp_path), "error")
    np.testing.assert_array_equal(data.fixations.subject, [0, 1, 1])  # names numbered sorted
    np.testing.assert_array_equal(data.fixations.x, [19.9, 0, 3.5])  # ordered by fix_index
    assert np.isnan(data.fixations.duration_ms[1]) and np.isnan(data.fixations.onset_ms[2])


def test_csv_out_of_image_policy_errs_clips_within_a_pixel_or_drops_and_counts(tmp_path):
    # subject 1: a fixation 0.38 px right of the 20 px wide image (border noise); subject 2:
    # one 10 px outside (no border noise)
    write_csv(tmp_path, ["a.png,1,0,20.38,4,100,,20,10", "a.png,1,1,5,4,100,,20,10",
                         "a.png,2,0,30,4,100,,20,10"])  # fmt: skip
    for policy, first in (("error", "1, fixation 0 at x=20.38"), ("clip", "2, fixation 0")):
        with pytest.raises(ValueError, match=f"outside their image.*subject {first}"):
            load_csv_layout(str(tmp_path), policy)
    dropped = load_csv_layout(str(tmp_path), "drop")
    np.testing.assert_array_equal(dropped.fixations.x, [5.0])
    assert sum(dropped.skipped.values()) == 2 + 1  # two fixations, one scanpath left empty
    write_csv(tmp_path, ["a.png,1,0,20.38,4,100,,20,10", "a.png,1,1,5,4,100,,20,10"])
    clipped = load_csv_layout(str(tmp_path), "clip")
    assert clipped.fixations.x[0] == np.nextafter(20.0, 0) and sum(clipped.adjusted.values()) == 1


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("a.png,1,0,nan,4,100,,20,10", r"fixations.csv:2 .*subject '1'.*not finite"),
        ("a.png,1,0,,4,100,,20,10", r"fixations.csv:2 .*not finite"),
        ("a.png,1,0,20,4,100,,20,10", r"'a.png' \(20x10\), subject 1, fixation 0.*fixations.csv"),
        ("a.png,1,0,2,4,100,,21,10", r"fixations.csv:2 .*img_w=21"),
        ("b.png,1,0,2,4,100,,20,10", r"fixations.csv:2 .*'b.png'.*no such image"),
    ],
)
def test_csv_layout_bad_rows_name_file_and_item(tmp_path, row, message):
    write_csv(tmp_path, [row])
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        load_csv_layout(str(tmp_path), "error")
