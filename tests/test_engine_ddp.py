"""DDP on CPU (gloo): equivalent to one large batch and to accumulation; failures end every rank;
the quickstart runs on two processes."""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from code.config import load_config
from code.data.batch import Collate
from code.data.sampler import ShapeAwareBatchSampler
from code.engine.checkpoint import Checkpointer, load_checkpoint
from code.engine.reproducibility import seed_everything
from code.engine.trainer import Trainer
from code.main import main
from code.models.build import build_model
from code.tasks.base import build_task
from tests.small_run import QUICKSTART, SMALL, torchrun


def _train(rank: int, world: int, init: str, opts: list[str], result: str) -> None:
    """Train one epoch on batches in index order, so every set-up sees the same samples per step.

    Unshuffled, rank r of W with batch b takes batches r, r + W, ... of b consecutive samples:
    step k of W x b equals step k of 1 x (W b) and window k of 1 x b with W accumulation steps.
    """
    if world > 1:
        dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    cfg = load_config(QUICKSTART, [*SMALL, *opts])
    seed_everything(cfg.SEED)
    task = build_task(cfg)
    task.prepare()
    train = task.samples["train"]
    sampler = ShapeAwareBatchSampler(
        train.sizes, cfg.DATA.BATCH_SIZE, world, rank, cfg.SEED, shuffle=False, drop_last=False
    )
    collate = Collate(train.fields.values())
    loader = torch.utils.data.DataLoader(train, batch_sampler=sampler, collate_fn=collate)
    model = task.build_model()
    trainer = Trainer(cfg, model, loader, task.loaders["val"], torch.device("cpu"),
                      Path(cfg.OUTPUT_DIR), {}, scorer=lambda: task.validation(model))  # fmt: skip
    trainer.fit()
    if rank == 0:
        torch.save({"model": model.state_dict(), "steps": trainer.state.step}, result)
    if world > 1:
        dist.destroy_process_group()


def test_two_processes_equal_one_large_batch_and_accumulation(tmp_path: Path) -> None:
    # SGD: Adam divides by the gradient's size, which turns the rounding noise on weights that
    # get no gradient (conv biases before a GroupNorm) into full-size steps.
    common = ["TRAIN.EPOCHS", "1", "TRAIN.CLIP_GRAD_NORM", "5.0", "TRAIN.LR", "0.05",
              "TRAIN.OPTIMIZER.NAME", "sgd", "TRAIN.OPTIMIZER.SGD.MOMENTUM", "0.9",
              "TRAIN.OPTIMIZER.SGD.NESTEROV", "false"]  # fmt: skip
    setups = {
        "ddp_2x4": (2, ["DATA.BATCH_SIZE", "4"]),
        "single_1x8": (1, ["DATA.BATCH_SIZE", "8"]),
        "accumulate_1x4x2": (1, ["DATA.BATCH_SIZE", "4", "TRAIN.ACCUMULATION_STEPS", "2"]),
    }
    results = {}
    for name, (world, opts) in setups.items():
        out = tmp_path / name
        args = (world, f"file://{tmp_path / name}.rdzv", [*common, *opts, "OUTPUT_DIR", str(out)],
                str(out / "result.pt"))  # fmt: skip
        if world == 1:
            _train(0, *args)
        else:
            mp.spawn(_train, args=args, nprocs=world, join=True)
        results[name] = torch.load(out / "result.pt")
    reference = results["ddp_2x4"]
    assert reference["steps"] == 4  # 32 training images, 8 per step
    for name in ("single_1x8", "accumulate_1x4x2"):
        assert results[name]["steps"] == reference["steps"]
        diff = max(
            (reference["model"][k] - v).abs().max().item()
            for k, v in results[name]["model"].items()
        )
        print(f"max |ddp_2x4 - {name}| = {diff:.3g}")
        assert diff < 1e-6, (name, diff)
    start = build_model(load_config(QUICKSTART, SMALL))  # the steps did change the weights
    assert any(not torch.equal(v, reference["model"][k]) for k, v in start.state_dict().items())


FAILING_RUN = """
import sys
from code.engine.trainer import Trainer
from code.main import main
from code.utils import distributed as dist

def fail_on_rank_1(self):
    if dist.rank() == 1:
        raise RuntimeError("injected failure on rank 1")
    return original(self)  # rank 0 goes on into validation's all-reduce and waits there

original = Trainer._validate
Trainer._validate = fail_on_rank_1
main(sys.argv[1:])
"""


def test_an_error_on_one_rank_ends_the_run_on_all_ranks(tmp_path: Path) -> None:
    script = tmp_path / "failing_run.py"
    script.write_text(FAILING_RUN)
    opts = [*SMALL, "OUTPUT_DIR", str(tmp_path / "run"), "DIST.TIMEOUT_S", "300"]
    done = torchrun(2, [str(script), "--cfg", QUICKSTART, "--opts", *opts], timeout=240)
    assert done.returncode != 0
    assert "injected failure on rank 1" in done.stdout + done.stderr
    assert not (tmp_path / "run" / "metrics.json").exists()


def _layout(tree: object) -> object:
    return {k: _layout(v) for k, v in tree.items()} if isinstance(tree, dict) else type(tree)


def test_quickstart_on_two_processes_reports_like_one(tmp_path: Path) -> None:
    opts = [*SMALL, "TRAIN.EPOCHS", "3"]
    main(["--cfg", QUICKSTART, "--opts", *opts, "OUTPUT_DIR", str(tmp_path / "one")])
    single = json.loads((tmp_path / "one" / "metrics.json").read_text())
    out = tmp_path / "two"
    done = torchrun(2, ["-m", "code.main", "--cfg", QUICKSTART, "--opts", *opts,
                        "OUTPUT_DIR", str(out)], timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    double = json.loads((out / "metrics.json").read_text())
    assert _layout(double) == _layout(single)
    assert double["n_images"] == single["n_images"]
    assert double["n_fixations"] == single["n_fixations"]
    # Both learn; their batches differ (two ranks shuffle across the pair), so values do too.
    assert double["metrics"]["IG"] > 0.3 * double["baselines"]["oracle"]["IG"]
    assert Checkpointer(out).last.is_file() and (out / "metrics.jsonl").is_file()
    checkpoint = load_checkpoint(Checkpointer(out).last)
    assert len(checkpoint["rng"]) == 2 and checkpoint["run_info"]["world_size"] == 2
