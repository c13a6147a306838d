"""``code.predict`` in batches of images of one input size, with its files written on a writer
thread: the same densities as one image at a time, optional overlays, write errors raised."""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import code.predict
from code.data.batch import Batch
from code.engine.checkpoint import Checkpointer, load_checkpoint
from code.export import main as export
from code.main import main
from code.predict import main as predict
from code.tasks.density import DensityPredictor
from code.utils.parallel import BackgroundWriter, Write
from tests.small_run import QUICKSTART, SMALL

# Resized to about the trained 36 x 48 pixels, these images have model inputs of three sizes,
# interleaved in input order: 36 x 48 (a, c, e, g), 48 x 36 (b, f) and 42 x 42 (d).
SIZES = {"a.png": (30, 40), "b.png": (40, 30), "c.jpg": (60, 80), "d.png": (50, 50),
         "e.png": (30, 40), "f.png": (40, 30), "g.png": (45, 60)}  # fmt: skip


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A quickstart model after one small epoch."""
    run = tmp_path_factory.mktemp("run")
    main(["--cfg", QUICKSTART, "--opts", *SMALL, "OUTPUT_DIR", str(run), "TRAIN.EPOCHS", "1"])
    return Checkpointer(run).best


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for name, (h, w) in SIZES.items():
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(folder / name)
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    return folder


def _predict(checkpoint: Path, images: Path, output: Path, *options: str) -> dict[str, list[str]]:
    return predict(["--checkpoint", str(checkpoint), "--input", str(images),
                    "--output", str(output), *options])  # fmt: skip


def _densities(output: Path) -> dict[str, np.ndarray]:
    return {p.stem: np.load(p) for p in sorted((output / "densities").iterdir())}


def test_batches_give_the_densities_of_one_image_at_a_time(
    checkpoint: Path,
    images: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    sizes: list[int] = []  # of the batches the model saw
    original = DensityPredictor.predict

    def recording(self: DensityPredictor, batch: Batch, *args: object) -> list[Write]:
        sizes.append(len(batch))
        return original(self, batch, *args)

    monkeypatch.setattr(DensityPredictor, "predict", recording)
    single = _predict(checkpoint, images, tmp_path / "single", "--batch-size", "1", "--sync-writes")
    assert sizes == [1] * len(SIZES)
    order = sorted(SIZES)  # input order, whatever the batches were
    assert single == {"written": order, "skipped": ["broken.jpg"]}
    out = capsys.readouterr()
    assert "skipped broken.jpg" in out.err and "1 unreadable skipped: broken.jpg" in out.out
    reference = _densities(tmp_path / "single")
    assert list(reference) == [Path(name).stem for name in order]
    for name, (h, w) in SIZES.items():
        assert reference[Path(name).stem].shape == (h, w)

    # Batches of up to 3 images of one size: a, c, e; then the rest (b, f), d, g. With at most
    # 3 images waiting (WAITING_BATCHES 1), the fullest size goes before it is full.
    runs = {
        "batched": (code.predict.WAITING_BATCHES, [1, 1, 2, 3]),
        "bounded": (1, [1, 1, 1, 2, 2]),
    }
    for folder, (waiting, batch_sizes) in runs.items():
        monkeypatch.setattr(code.predict, "WAITING_BATCHES", waiting)
        sizes.clear()
        result = _predict(checkpoint, images, tmp_path / folder, "--batch-size", "3")
        assert result == single
        assert "skipped broken.jpg" in capsys.readouterr().err
        assert sorted(sizes) == batch_sizes
        densities = _densities(tmp_path / folder)
        assert list(densities) == list(reference)
        for stem, log_density in densities.items():
            np.testing.assert_allclose(log_density, reference[stem], rtol=0, atol=1e-5)
        assert len(list((tmp_path / folder / "overlays").iterdir())) == len(SIZES)


def test_no_overlays_writes_the_densities_alone(
    checkpoint: Path, images: Path, tmp_path: Path
) -> None:
    _predict(checkpoint, images, tmp_path / "out", "--no-overlays")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["densities", "run_info.json"]
    assert len(list((tmp_path / "out" / "densities").iterdir())) == len(SIZES)


@pytest.mark.parametrize("options", [[], ["--sync-writes"]], ids=["writer thread", "sync"])
def test_a_failing_write_is_raised(
    checkpoint: Path, images: Path, tmp_path: Path, options: list[str]
) -> None:
    blocked = tmp_path / "out" / "densities" / "c.npy"
    blocked.mkdir(parents=True)  # np.save cannot write a file where a folder is
    with pytest.raises(IsADirectoryError, match=r"c\.npy"):
        _predict(checkpoint, images, tmp_path / "out", *options, "--overwrite")


def test_writer_runs_writes_in_order_and_bounds_those_waiting() -> None:
    done: list[int] = []
    release = threading.Event()
    threads = torch.get_num_threads()
    with BackgroundWriter(pending=2) as writer:
        assert torch.get_num_threads() == max(1, threads - 1)  # a core left for the writer
        writer.submit(release.wait)  # the writer thread holds this one until released
        writer.submit(lambda: done.append(1))
        writer.submit(lambda: done.append(2))
        third = threading.Thread(target=writer.submit, args=(lambda: done.append(3),))
        third.start()
        third.join(timeout=0.2)
        assert third.is_alive() and done == []  # two are waiting: the third cannot join them
        release.set()
        third.join()
    assert done == [1, 2, 3]  # all done when the block ends
    assert torch.get_num_threads() == threads


def test_writer_raises_the_first_error_and_drops_the_writes_after_it() -> None:
    done: list[int] = []

    def fail() -> None:
        raise OSError("disk full")

    writer = BackgroundWriter(pending=4)
    for write in (lambda: done.append(1), fail, lambda: done.append(2)):
        writer.submit(write)
    with pytest.raises(OSError, match="disk full"):
        writer.close()
    assert done == [1]
    with pytest.raises(OSError, match="disk full"):  # never forgotten
        writer.submit(lambda: done.append(3))
    assert done == [1]


def test_writer_lets_the_callers_error_through_and_shows_its_own(
    capsys: pytest.CaptureFixture,
) -> None:
    def fail() -> None:
        raise OSError("disk full")

    with pytest.raises(KeyError), BackgroundWriter(pending=1) as writer:
        writer.submit(fail)
        raise KeyError("the caller's")
    assert "a write failed as well" in capsys.readouterr().err


def test_writer_without_pending_writes_at_once() -> None:
    done: list[int] = []
    with BackgroundWriter(pending=0) as writer:
        writer.submit(lambda: done.append(threading.get_ident()))
        assert done == [threading.get_ident()]


def test_reconstructions_of_a_batch_are_those_of_each_image(tmp_path: Path) -> None:
    from tests.test_focus_mim import GENERATED

    main(["--cfg", "configs/04_focus_mim/cpu_osie/random_patches.yaml", "--opts", *GENERATED,
          "DATA.DATASET.GENERATED.NUM_IMAGES", "40", "TRAIN.EPOCHS", "1",
          "OUTPUT_DIR", str(tmp_path / "run")])  # fmt: skip
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for name, (h, w) in {"a.png": (48, 48), "b.png": (60, 80), "c.png": (48, 48)}.items():
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(images / name)
    pictures = {}
    for batch_size in ("1", "3"):
        out = tmp_path / f"batch{batch_size}"
        _predict(Checkpointer(tmp_path / "run").best, images, out, "--batch-size", batch_size)
        pictures[batch_size] = {p.name: np.asarray(Image.open(p), dtype=np.int16)
                                for p in sorted((out / "reconstructions").iterdir())}  # fmt: skip
    assert list(pictures["1"]) == [f"{stem}_reconstruction.png" for stem in "abc"]
    for name, picture in pictures["3"].items():  # drawn from the same numbers, up to rounding
        assert np.abs(picture - pictures["1"][name]).max() <= 1


def test_a_folder_with_other_files_is_refused_and_run_info_names_the_checkpoint(
    checkpoint: Path, images: Path, tmp_path: Path
) -> None:
    one = tmp_path / "one"
    one.mkdir()
    (one / "a.png").write_bytes((images / "a.png").read_bytes())
    output = tmp_path / "out"
    _predict(checkpoint, one, output)
    info = json.loads((output / "run_info.json").read_text())
    assert info["checkpoint"] == str(checkpoint.resolve())
    assert info["checkpoint_sha256"] == hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    assert "TASK:" in info["config"] and info["command"] and "git_commit" in info
    with pytest.raises(FileExistsError, match=r"out is not empty .*--overwrite"):
        _predict(checkpoint, one, output)
    with pytest.raises(FileExistsError, match=r"out is not empty"):  # before a model loads
        _predict(tmp_path / "no_such_checkpoint.pt", one, output)
    _predict(checkpoint, one, output, "--overwrite")


def test_an_exported_model_predicts_as_its_checkpoint_and_holds_no_training_state(
    checkpoint: Path, images: Path, tmp_path: Path
) -> None:
    exported = tmp_path / "model.pt"
    export(["--overwrite", str(checkpoint), str(exported)])
    state = load_checkpoint(exported)
    assert set(state) == {"model", "config", "run_info"}  # no optimizer, sampler or rng
    assert state["run_info"] == load_checkpoint(checkpoint)["run_info"]
    assert exported.stat().st_size < checkpoint.stat().st_size / 2
    with pytest.raises(FileExistsError, match=r"model\.pt exists"):
        export([str(checkpoint), str(exported)])
    _predict(checkpoint, images, tmp_path / "full")
    _predict(exported, images, tmp_path / "exported")
    full, small = _densities(tmp_path / "full"), _densities(tmp_path / "exported")
    assert full.keys() == small.keys() and len(full) == len(SIZES)
    assert all(np.array_equal(full[name], small[name]) for name in full)


def test_images_file_predicts_only_the_files_it_names(
    checkpoint: Path, images: Path, tmp_path: Path
) -> None:
    names = tmp_path / "names.txt"
    names.write_text("# two of the folder's images\nc.jpg\na.png\n")
    result = _predict(checkpoint, images, tmp_path / "out", "--images", str(names))
    assert result["written"] == ["c.jpg", "a.png"]
    assert sorted(_densities(tmp_path / "out")) == ["a", "c"]
    names.write_text("a.png\nz.png\n")
    with pytest.raises(FileNotFoundError, match=r"names.txt: 1 name\(s\) are not files of .*z.png"):
        _predict(checkpoint, images, tmp_path / "other", "--images", str(names))
