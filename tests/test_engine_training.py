"""Training options: bf16 on CPU, fp16 refused on CPU, LR recipe and early stopping, freezing and
parameter groups, initialising from and evaluating a checkpoint, channels-last and compiled
models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from code.config import ConfigError, load_config
from code.engine.checkpoint import (
    Checkpointer,
    load_checkpoint,
    load_matching_state,
    load_model_state,
)
from code.engine.optim import build_optimizer, freeze
from code.engine.precision import Precision
from code.main import main
from code.models.build import build_model
from tests.small_run import QUICKSTART, SMALL, torchrun


def _run(tmp_path: Path, *opts: str) -> dict:
    return main(["--cfg", QUICKSTART, "--opts", *SMALL, "OUTPUT_DIR", str(tmp_path), *opts])


def _train_state(tmp_path: Path) -> dict:
    return load_checkpoint(Checkpointer(tmp_path).last)["train_state"]


def test_bf16_autocast_trains_on_cpu(tmp_path: Path) -> None:
    # In a subprocess: bf16 kernels are native code that could abort the test run.
    opts = [*SMALL, "OUTPUT_DIR", str(tmp_path), "TRAIN.PRECISION", "bf16", "TRAIN.EPOCHS", "1"]
    run = torchrun(1, ["-m", "code.main", "--cfg", QUICKSTART, "--opts", *opts], timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    report = json.loads((tmp_path / "metrics.json").read_text())
    assert report["metrics"]["IG"] > 0  # better than the centre bias after one epoch
    with pytest.raises(ValueError, match="fp16 needs a CUDA device"):
        Precision("fp16", torch.device("cpu"))


def test_deepgaze_recipe_stops_when_the_lr_falls_below_the_minimum(tmp_path: Path) -> None:
    _run(
        tmp_path,
        "TRAIN.EPOCHS", "10",
        "TRAIN.SCHEDULER.NAME", "multistep",
        "TRAIN.SCHEDULER.MULTISTEP.MILESTONES", "[1, 2]",
        "TRAIN.SCHEDULER.MULTISTEP.GAMMA", "0.1",
        "TRAIN.STOP_LR", "1e-4",
    )  # fmt: skip
    state = _train_state(tmp_path)
    assert state["epoch"] == 2 and "STOP_LR" in state["stopped"]
    lrs = [r["lr"] for r in map(json.loads, (tmp_path / "metrics.jsonl").read_text().splitlines())]
    assert lrs == pytest.approx([3e-4, 3e-5])


def test_early_stopping_on_the_validation_metric(tmp_path: Path) -> None:
    # An LR of 0 never improves on the first epoch: patience 1 stops after the second.
    _run(tmp_path, "TRAIN.EPOCHS", "10", "TRAIN.LR", "0.0", "TRAIN.PATIENCE", "1")
    state = _train_state(tmp_path)
    assert state["epoch"] == 2 and "did not improve" in state["stopped"]


def test_freezing_and_parameter_groups_by_name() -> None:
    cfg = load_config(
        QUICKSTART, [*SMALL, "TRAIN.PARAM_GROUPS.PATTERNS", "['decoder.finalizer.*']",
                     "TRAIN.PARAM_GROUPS.LR_SCALES", "[10.0]"]
    )  # fmt: skip
    model = build_model(cfg)
    frozen = freeze(model, ["encoder.*"])
    assert frozen == sum(p.numel() for p in model.encoder.parameters())
    groups = build_optimizer(cfg, model).param_groups
    assert [g["lr"] for g in groups] == pytest.approx([10 * cfg.TRAIN.LR, cfg.TRAIN.LR])
    trainable = sum(p.numel() for g in groups for p in g["params"])
    assert trainable == sum(p.numel() for p in model.decoder.parameters())
    with pytest.raises(ValueError, match=r"TRAIN.FREEZE: no parameter matches \['encodr\.\*'\]"):
        freeze(model, ["encodr.*"])


def test_checkpoints_load_only_into_a_model_they_fit(tmp_path: Path) -> None:
    small = build_model(load_config(QUICKSTART, SMALL))
    wider = build_model(
        load_config(QUICKSTART, [*SMALL, "MODEL.DECODER.SALIENCY.HIDDEN_CHANNELS", "[32, 16]"])
    )
    with pytest.raises(ValueError, match=r"shape differs: decoder\.readout\.1\.bias, decoder"):
        load_model_state(wider, small.state_dict(), tmp_path / "small.pt")
    with pytest.raises(ValueError, match="shape differs"):  # not a part of this model either
        load_matching_state(wider, small.state_dict(), tmp_path / "small.pt")
    # A checkpoint of the encoder alone (plus a key of a part this model lacks) loads in part.
    partial = {k: v for k, v in small.state_dict().items() if k.startswith("encoder.")}
    partial["head.extra"] = torch.zeros(1)
    missing, unused = load_matching_state(wider, partial, tmp_path / "encoder.pt")
    # (the model's centre-bias buffer is not an encoder weight either)
    assert unused == ["head.extra"] and missing
    assert all(k.startswith("decoder.") or k == "centerbias_density" for k in missing)
    assert all(torch.equal(v, partial[k]) for k, v in wider.state_dict().items() if k in partial)


def test_eval_only_scores_a_named_checkpoint(tmp_path: Path) -> None:
    trained = _run(tmp_path / "train", "TRAIN.EPOCHS", "1")
    again = main(
        ["--cfg", QUICKSTART, "--eval-only",
         "--checkpoint", str(Checkpointer(tmp_path / "train").best),
         "--opts", *SMALL, "OUTPUT_DIR", str(tmp_path / "other")]
    )  # fmt: skip
    assert again["metrics"] == trained["metrics"]
    assert json.loads((tmp_path / "other" / "eval" / "metrics.json").read_text()) == again
    assert not Checkpointer(tmp_path / "other").last.exists()
    split = json.loads((tmp_path / "train" / "split.json").read_text())  # for evaluate --split
    assert split["dataset"] == "generated" and len(split["test"]) == trained["n_images"] == 9
    assert not set(split["test"]) & set(split["train"]) and len(split["val"]) == 5


def test_a_run_never_starts_over_another_by_accident(tmp_path: Path) -> None:
    run = tmp_path / "run"
    wandb = ("TRACKING.WANDB.ENABLED", "true", "TRACKING.WANDB.MODE", "offline")
    _run(run, "TRAIN.EPOCHS", "1", *wandb)
    files = ("config.yaml", "run_info.json", *Checkpointer.FILES, "metrics.jsonl", "metrics.json")
    before = {name: (run / name).read_bytes() for name in files}
    wandb_id = (run / "wandb_id.txt").read_text()
    with pytest.raises(FileExistsError, match=r"holds a run .*--resume .*--overwrite"):
        _run(run, "TRAIN.EPOCHS", "1")
    # evaluation-only writes its own folder, also when it fails on a missing checkpoint
    with pytest.raises(FileNotFoundError, match=r"--eval-only: checkpoint not found: .*nope\.pt"):
        main(["--cfg", QUICKSTART, "--eval-only", "--checkpoint", str(tmp_path / "nope.pt"),
              "--opts", *SMALL, "OUTPUT_DIR", str(run)])  # fmt: skip
    main(["--cfg", QUICKSTART, "--eval-only", "--opts", *SMALL, "OUTPUT_DIR", str(run)])
    assert {name: (run / name).read_bytes() for name in files} == before
    with pytest.raises(FileExistsError, match=r"eval holds a run \(metrics\.json\)"):
        main(["--cfg", QUICKSTART, "--eval-only", "--opts", *SMALL, "OUTPUT_DIR", str(run)])
    _run(run, "TRAIN.EPOCHS", "1", "SEED", "1", *wandb, "--overwrite")
    assert Checkpointer(run).best.read_bytes() != before[Checkpointer.BEST]
    assert (run / "wandb_id.txt").read_text() != wandb_id  # a fresh run, a fresh id
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        _run(tmp_path / "empty", "--resume")


def test_split_sizes_are_checked_before_training(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError,
        match=r"EVAL\.CENTERBIAS_FOLDS: .* 10 folds, .*32/5/9 train/val/test.*at most 9",
    ):
        _run(tmp_path / "folds", "EVAL.CENTERBIAS_FOLDS", "10")
    with pytest.raises(ConfigError, match=r"val split is empty; raise DATA\.SPLIT\.VAL_FRACTION"):
        _run(tmp_path / "val", "DATA.SPLIT.VAL_FRACTION", "0.0")
    with pytest.raises(ConfigError, match=r"EVAL\.SCANPATH_IMAGES \(2\) cannot fill"):
        _run(tmp_path / "scanpaths", "EVAL.SCANPATH_IMAGES", "2")
    assert not any(tmp_path.rglob("*.pt")) and not any(tmp_path.rglob("metrics.jsonl"))


def test_channels_last_weights_train_as_the_default_layout(tmp_path: Path) -> None:
    default = _run(tmp_path / "default", "TRAIN.EPOCHS", "1")
    channels_last = _run(tmp_path / "channels_last", "TRAIN.EPOCHS", "1",
                         "TRAIN.CHANNELS_LAST", "true")  # fmt: skip
    # the same computation in another memory layout: equal up to the order of float sums
    assert channels_last["metrics"]["IG"] == pytest.approx(default["metrics"]["IG"], abs=1e-4)
    weights = load_checkpoint(Checkpointer(tmp_path / "channels_last").best)["model"]
    assert any(w.dim() == 4 and w.is_contiguous(memory_format=torch.channels_last)
               and not w.is_contiguous() for w in weights.values())  # fmt: skip


@pytest.mark.slow  # compiling takes minutes on 2 cores
def test_a_compiled_model_trains_and_its_checkpoints_load_into_an_eager_one_and_back(
    tmp_path: Path,
) -> None:
    compiled = _run(tmp_path / "compiled", "TRAIN.EPOCHS", "1", "TRAIN.COMPILE", "default")
    best = Checkpointer(tmp_path / "compiled").best
    eager = main(["--cfg", QUICKSTART, "--opts", *SMALL, "OUTPUT_DIR", str(tmp_path / "compiled"),
                  "--eval-only", "--checkpoint", str(best)])  # fmt: skip
    assert eager["metrics"]["IG"] == pytest.approx(compiled["metrics"]["IG"], abs=1e-5)
    again = _run(tmp_path / "recompiled", "TRAIN.EPOCHS", "1", "TRAIN.LR", "0.0",
                 "TRAIN.COMPILE", "default", "TRAIN.INIT.CHECKPOINT", str(best))  # fmt: skip
    assert again["metrics"]["IG"] == pytest.approx(compiled["metrics"]["IG"], abs=1e-5)
