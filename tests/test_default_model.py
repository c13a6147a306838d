"""The shipped default model (``models/default/``): ``code.predict`` without ``--checkpoint``
reproduces the scores its card states, from the committed file alone, on images of any size."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from code.engine.checkpoint import load_checkpoint
from code.evaluate import main as evaluate
from code.predict import DEFAULT_MODEL
from code.predict import main as predict

CHECK = DEFAULT_MODEL.with_name("check.json")
CARD = DEFAULT_MODEL.with_name("MODEL_CARD.md")


def test_the_shipped_file_is_small_plain_data_and_named_by_its_card() -> None:
    assert DEFAULT_MODEL.stat().st_size < 5e6
    state = load_checkpoint(DEFAULT_MODEL)  # refuses anything that could run code
    assert set(state) == {"model", "config", "run_info"}
    card = CARD.read_text()
    assert state["run_info"]["git_commit"][:12] in card  # the commit it was trained at
    assert "check.json" in card and "scripts/default_model.sh" in card


def test_predict_without_checkpoint_reproduces_the_cards_check_scores(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The stored scores of the check subset (OSIE test images), to 1e-3, through the same two
    commands the card's numbers came from."""
    check = json.loads(CHECK.read_text())
    names = tmp_path / "check_images.txt"
    names.write_text("\n".join(check["images"]) + "\n")
    osie = shared_data / "osie"
    out = tmp_path / "predicted"
    predict(["--input", str(osie / "stimuli"), "--images", str(names), "--output", str(out),
             "--no-overlays"])  # fmt: skip
    first_line = capsys.readouterr().out.splitlines()[0]
    assert "shipped default model" in first_line and str(DEFAULT_MODEL) in first_line
    result = tmp_path / "result.json"
    evaluate(["saliency", "--dataset", "osie", "--root", str(osie), "--predictions",
              str(out / "densities"), "--kind", "log-density", "--images", str(names),
              "--out", str(result)])  # fmt: skip
    scored = json.loads(result.read_text())
    assert scored["n_fixations"] == check["n_fixations"]
    for metric, value in check["metrics"].items():
        assert scored["metrics"][metric] == pytest.approx(value, abs=1e-3), metric
    assert check["metrics"]["IG"] > 0.5  # far above the centre bias: a trained model


def test_predict_without_checkpoint_on_images_of_mixed_sizes(tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    sizes = {"wide.png": (90, 240), "tall.jpg": (300, 120), "small.png": (40, 50)}
    for name, (height, width) in sizes.items():
        pixels = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(images / name)
    out = tmp_path / "out"
    assert predict(["--input", str(images), "--output", str(out)])["written"] == sorted(sizes)
    for name, size in sizes.items():
        log_density = np.load(out / "densities" / f"{Path(name).stem}.npy")
        assert log_density.shape == size
        assert np.exp(log_density.astype(np.float64)).sum() == pytest.approx(1.0, abs=1e-4)
        assert (out / "overlays" / f"{Path(name).stem}_overlay.png").is_file()
