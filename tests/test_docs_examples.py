"""The worked examples of docs/extending.md run as written: each part is registered from the
page's code, used through the page's config, and does what the page says. The task example is
run by ``tests/test_tasks.py`` and the metric example by ``tests/test_evaluate_cli.py``, whose
tests it replaced; both through the ``docs_example`` fixture."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from yacs.config import CfgNode

from code.config import ConfigError, load_config
from code.data.build import gaze_dataset
from code.engine.checkpoint import Checkpointer, load_checkpoint
from code.main import main
from code.models.build import build_model
from code.registry import ATTENTIONS, PartFactory
from tests.docs_examples import example_files, example_names
from tests.small_run import SMALL
from tests.test_models import _batch as model_batch

ONE_EPOCH = [*SMALL, "TRAIN.EPOCHS", "1"]


def test_every_example_on_the_page_is_run() -> None:
    """Catches an example whose marker line is mistyped (it would silently not be run) and an
    example added to the page with no test: each name below is run by a test."""
    assert example_names() == {"encoder", "attention", "task", "metric", "dataset"}
    for name in example_names():
        assert any(path.endswith(".py") for path in example_files(name)), name


def test_the_encoder_example_trains_in_the_quickstart(docs_example, tmp_path: Path) -> None:
    """The config builds the example's encoder (one 32-channel map at stride 8, two residual
    convolutions) and a run trains and scores it; a refused DEPTH is named by its full key."""
    example = docs_example("encoder")
    encoder_class = example.modules["code.models.encoders.my_encoder"].MyEncoder
    cfg = load_config(example.config(), ONE_EPOCH)
    model = build_model(cfg)
    assert type(model.encoder) is encoder_class and len(model.encoder.residuals) == 2
    features = model.encoder(torch.rand(2, 3, 36, 48))
    assert features["features"].shape == (2, 32, 36 // 8 + 1, 48 // 8)
    report = main(["--cfg", str(example.config()), "--opts", *ONE_EPOCH,
                   "OUTPUT_DIR", str(tmp_path / "run")])  # fmt: skip
    assert math.isfinite(report["metrics"]["IG"])
    weights = load_checkpoint(Checkpointer(tmp_path / "run").best)["model"]
    assert weights["encoder.residuals.1.0.weight"].shape == (32, 32, 3, 3)  # the run's encoder
    zero = load_config(example.config(), [*ONE_EPOCH, "MODEL.ENCODER.MY_ENCODER.DEPTH", "0"])
    with pytest.raises(ConfigError, match=r"^MODEL\.ENCODER\.MY_ENCODER\.DEPTH must be at least 1"):
        build_model(zero)


def test_the_attention_example_is_scaled_cosine_attention(docs_example, tmp_path: Path) -> None:
    """The mechanism against its definition written out here, softmax(cos(q, k) / τ) v per
    head; then the config's cross-attention block attends with it in a training step. Fails for
    a temperature applied twice or not at all, or keys left unnormalised."""
    example = docs_example("attention")
    torch.manual_seed(0)
    choice = CfgNode({"NAME": "cosine", "COSINE": {"INITIAL_TEMPERATURE": 0.1}})
    mechanism = PartFactory(ATTENTIONS, choice, None)(channels=8, num_heads=2, block_index=0)
    query, key_value = nn.Linear(8, 8), nn.Linear(8, 16)
    x = torch.randn(2, 12, 8)
    q = query(x).unflatten(-1, (2, 4)).transpose(1, 2)
    k, v = (t.unflatten(-1, (2, 4)).transpose(1, 2) for t in key_value(x).chunk(2, -1))
    cosines = F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).transpose(-1, -2)
    expected = ((cosines / 0.1).softmax(-1) @ v).transpose(1, 2).flatten(2)
    torch.testing.assert_close(mechanism(x, (3, 4), query, key_value), expected)

    model = build_model(load_config(example.config(), ONE_EPOCH))
    prediction, seen = model(model_batch(36, 48))  # with segments, which the block reads
    loss_sum, count = model.loss(prediction, seen)
    (loss_sum / count).backward()
    cosine = example.modules["code.models.cosine_attention"].CosineAttention
    used = [module for module in model.block.modules() if type(module) is cosine]
    assert used and all(module.log_temperature.grad is not None for module in used)


def test_the_data_set_example_loads_the_fixations_written(docs_example, tmp_path: Path) -> None:
    """Three images, two viewers, written in the example's JSON layout and read through its
    config: every fixation where it was written, per subject and in order; an image without
    gaze counted; a gaze entry without its image refused, naming the file."""
    example = docs_example("dataset")
    root = tmp_path / "my_gaze"
    (root / "stimuli").mkdir(parents=True)
    for name in ("a.png", "b.png", "c.png"):
        Image.fromarray(np.zeros((30, 40, 3), np.uint8)).save(root / "stimuli" / name)
    gaze = {"a.png": {"0": [[1.5, 2.0, 200], [39.9, 29.0, 250]], "3": [[10.0, 5.0, 180]]},
            "b.png": {"3": [[0.0, 0.0, 300]]}}  # fmt: skip
    (root / "gaze.json").write_text(json.dumps(gaze))
    cfg = load_config(example.config(), ["DATA.DATASET.JSON_GAZE.ROOT", str(root),
                                         "OUTPUT_DIR", str(tmp_path / "run")])  # fmt: skip
    dataset = gaze_dataset(cfg)
    assert [s.id for s in dataset.stimuli] == ["a.png", "b.png", "c.png"]
    fixations = dataset.fixations
    assert fixations.x.tolist() == [1.5, 39.9, 10.0, 0.0]
    assert fixations.y.tolist() == [2.0, 29.0, 5.0, 0.0]
    assert fixations.duration_ms.tolist() == [200, 250, 180, 300]
    assert fixations.image.tolist() == [0, 0, 0, 1] and fixations.index.tolist() == [0, 1, 0, 0]
    assert fixations.subject.tolist() == [0, 0, 3, 3]
    assert dataset.skipped == {"image without gaze": 1}
    (root / "gaze.json").write_text(json.dumps({**gaze, "d.png": {}}))
    with pytest.raises(ValueError, match=r"gaze\.json: no image file in stimuli/ for d\.png"):
        gaze_dataset(cfg)


def test_running_the_examples_leaves_every_registry_as_it_was(tmp_path: Path) -> None:
    """Every example's files run (registering their parts) and are undone on leaving: catches
    a registry, the metric registry or an example module left holding an example's part, which
    other tests (the registry coverage tests, the typed view) would then see."""
    import sys

    from code import registry
    from code.metrics.registry import saliency_metrics, scanpath_metrics
    from tests.docs_examples import examples_in

    def registered() -> dict[str, list[str]]:
        found = {name: value.names() for name, value in vars(registry).items()
                 if isinstance(value, registry.Registry)}  # fmt: skip
        return {**found, "METRICS": [m.name for m in saliency_metrics() + scanpath_metrics()]}

    before = registered()
    with examples_in(tmp_path) as run:
        for name in sorted(example_names()):
            run(name)
        during = registered()
        assert "my_encoder" in during["ENCODERS"] and "halves" in during["TASKS"]
        assert "json_gaze" in during["DATASETS"] and "PEAK" in during["METRICS"]
    assert registered() == before
    assert "code.tasks.halves" not in sys.modules and "code.metrics.peak" not in sys.modules
