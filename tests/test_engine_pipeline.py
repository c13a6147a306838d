"""A two-stage pipeline over two folds runs end to end, summarises, and a rerun skips it all;
a rerun with other options is refused until --overwrite."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from code.config import ConfigError
from code.engine.checkpoint import Checkpointer, load_checkpoint
from code.engine.outputs import RunExistsError
from code.engine.pipeline import load_pipeline
from code.main import main
from tests.small_run import SMALL

STAGE_1 = """_BASE_: [{quickstart}]
OUTPUT_DIR: unused  # the pipeline sets it per fold
TRAIN:
  EPOCHS: 1
"""
STAGE_2 = """_BASE_: [spatial.yaml]
TRAIN:
  LR: 1.0e-3
  FREEZE: ["encoder.*"]
"""
PIPELINE = """PIPELINE:
  OUTPUT_DIR: {out}
  STAGES: [spatial.yaml, readout.yaml]
  OPTS: {opts}
  FOLDS: 2
"""


def test_two_stages_two_folds_then_a_rerun_skips_finished_stages(tmp_path: Path) -> None:
    quickstart = Path("configs/quickstart.yaml").resolve()
    (tmp_path / "spatial.yaml").write_text(STAGE_1.format(quickstart=quickstart))
    (tmp_path / "readout.yaml").write_text(STAGE_2)
    out = tmp_path / "runs"
    (tmp_path / "pipeline.yaml").write_text(PIPELINE.format(out=out, opts=json.dumps(SMALL)))
    summary = main(["--cfg", str(tmp_path / "pipeline.yaml")])
    assert set(summary) == {"spatial", "readout"}
    ig = summary["readout"]["model"]["IG"]
    assert len(ig["folds"]) == 2 and ig["mean"] > 0  # above the centre bias
    assert ig["mean"] == pytest.approx(sum(ig["folds"]) / 2, abs=1e-12)
    assert ig["std"] == pytest.approx(abs(ig["folds"][0] - ig["folds"][1]) / 2, abs=1e-12)
    assert (out / "summary.txt").read_text().count("±") >= 2 * 4
    assert json.loads((out / "summary.json").read_text()) == summary
    tests = []
    for fold in (0, 1):
        spatial, readout = out / f"fold{fold}" / "spatial", out / f"fold{fold}" / "readout"
        assert (spatial / "metrics.json").is_file() and (readout / "metrics.json").is_file()
        config = (readout / "config.yaml").read_text()
        assert str(Checkpointer(spatial).best) in config and "FOLD: " + str(fold) in config
        # Stage 2 started from stage 1 and trained only what is not frozen.
        first = load_checkpoint(Checkpointer(spatial).best)["model"]
        second = load_checkpoint(Checkpointer(readout).best)["model"]
        assert all(torch.equal(first[k], second[k]) for k in first if k.startswith("encoder."))
        assert any(not torch.equal(first[k], second[k]) for k in first if k.startswith("decoder."))
        metrics = json.loads((readout / "metrics.json").read_text())
        tests.append(metrics["n_images"])
        assert ig["folds"][fold] == metrics["metrics"]["IG"]  # each fold's own test IG
    assert sum(tests) == 46  # each image is tested in exactly one fold
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.pt")}
    assert main(["--cfg", str(tmp_path / "pipeline.yaml")]) == summary
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.pt")} == stamps  # nothing retrained


def test_a_rerun_with_changed_options_is_refused_naming_the_keys_until_overwrite(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    quickstart = Path("configs/quickstart.yaml").resolve()
    (tmp_path / "spatial.yaml").write_text(STAGE_1.format(quickstart=quickstart))
    out = tmp_path / "runs"
    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text(
        PIPELINE.format(out=out, opts=json.dumps(SMALL))
        .replace("[spatial.yaml, readout.yaml]", "[spatial.yaml]")
        .replace("FOLDS: 2", "FOLDS: null")
    )
    first = main(["--cfg", str(pipeline), "--opts", "TRAIN.EPOCHS", "1"])
    best = Checkpointer(out / "spatial").best.read_bytes()
    capsys.readouterr()
    assert main(["--cfg", str(pipeline), "--opts", "TRAIN.EPOCHS", "1"]) == first
    assert "stage spatial: finished with this config, skipped" in capsys.readouterr().out
    changed = ["--opts", "TRAIN.EPOCHS", "2", "TRAIN.LR", "0.1"]
    with pytest.raises(RunExistsError) as refused:
        main(["--cfg", str(pipeline), *changed])
    assert "TRAIN.EPOCHS (1 -> 2), TRAIN.LR (0.003 -> 0.1)); pass --overwrite" in str(refused.value)
    assert Checkpointer(out / "spatial").best.read_bytes() == best  # untouched
    again = main(["--cfg", str(pipeline), *changed, "--overwrite"])
    assert again != first and Checkpointer(out / "spatial").best.read_bytes() != best
    assert "EPOCHS: 2" in (out / "spatial" / "config.yaml").read_text()


@pytest.mark.parametrize("stages", ["[]", "[spatial.yaml, other/spatial.yaml]"])
def test_a_pipeline_needs_stages_of_distinct_names(tmp_path: Path, stages: str) -> None:
    """Two stage files of one name would run into one folder, the second over the first;
    no stage at all runs nothing. Catches the check of either alone."""
    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text(f"PIPELINE:\n  OUTPUT_DIR: {tmp_path}\n  STAGES: {stages}\n"
                        "  OPTS: []\n  FOLDS: null\n")  # fmt: skip
    with pytest.raises(ConfigError, match="needs distinct stage files"):
        load_pipeline(pipeline, [])
