"""The README's main command, at reduced size: it must learn most of what can be learned."""

from __future__ import annotations

import json
from pathlib import Path

from code.engine.checkpoint import Checkpointer
from code.main import main
from code.metrics.registry import saliency_metrics


def test_quickstart_learns_most_of_the_oracle_information_gain(tmp_path: Path) -> None:
    report = main(
        [
            "--cfg", "configs/quickstart.yaml",
            "--debug",
            "--opts",
            "OUTPUT_DIR", str(tmp_path),
            "DATA.DATASET.GENERATED.NUM_IMAGES", "150",
            "TRAIN.EPOCHS", "6",
        ]
    )  # fmt: skip
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["metrics"] == report["metrics"]
    model_ig = saved["metrics"]["IG"]
    oracle_ig = saved["baselines"]["oracle"]["IG"]
    assert oracle_ig > 0.5  # the task has something to learn beyond the centre bias
    assert model_ig >= 0.5 * oracle_ig, (model_ig, oracle_ig)
    assert saved["n_images"] == 30 and saved["n_fixations"] == 30 * 100
    # the layout of code.evaluate's result.json
    assert list(saved["metrics"]) == [m.name for m in saliency_metrics()]
    assert set(saved["baselines"]) == {"uniform", "center_bias", "oracle", "gold_standard"}
    assert len(list((tmp_path / "overlays").glob("*.png"))) == 4
    assert (tmp_path / "config.yaml").is_file() and Checkpointer(tmp_path).best.is_file()
    log = (tmp_path / "log.txt").read_text()
    assert "ConvNetEncoder(channels=[24, 48, 64])" in log  # --debug: constructor arguments
    assert "SaliencyDecoder.forward out: Tensor(" in log  # --debug: tensor shapes
