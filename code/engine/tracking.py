"""What a training run records, on rank 0 only: every metric as a line of ``metrics.jsonl``, the
same to wandb (offline unless the config says online), ``curves.png`` and validation overlays.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

import torch
from yacs.config import CfgNode

from code.data.batch import Batch
from code.engine.visualize import DRAWERS, pyplot
from code.utils import distributed as dist

Record = dict[str, Any]


class Tracker:
    """Records metrics of a run in ``output_dir``; does nothing on ranks other than 0.

    ``resume_step``: the optimizer step of the checkpoint a run resumes from; records written
    after it by the interrupted run are dropped, so the log reads as one uninterrupted run.
    """

    def __init__(
        self, cfg: CfgNode, output_dir: Path, resume_step: int | None, info: dict[str, Any]
    ) -> None:
        self.active = dist.is_main()
        self.output_dir = output_dir
        self.path = output_dir / "metrics.jsonl"
        self.records: list[Record] = []
        self.wandb = None
        if not self.active:
            return
        output_dir.mkdir(parents=True, exist_ok=True)
        if resume_step is not None and self.path.is_file():
            lines = self.path.read_text().splitlines()
            self.records = [r for r in map(json.loads, lines) if r["step"] <= resume_step]
        self.path.write_text("".join(json.dumps(r) + "\n" for r in self.records))
        if cfg.TRACKING.WANDB.ENABLED:
            self.wandb = _start_wandb(cfg, output_dir, info)

    def log(self, record: Record) -> None:
        """Append one record (``kind``: "step" or "epoch", ``step``, ``epoch``, metrics)."""
        if not self.active:
            return
        self.records.append(record)
        with self.path.open("a") as file:
            file.write(json.dumps(record) + "\n")
        if self.wandb is not None:
            metrics = {f"{record['kind']}/{k}": v for k, v in record.items() if k != "kind"}
            self.wandb.log(metrics, step=record["step"])

    def plot_curves(self) -> None:
        """``curves.png``: training and validation loss, validation IG and the LR, per step."""
        if not self.active:
            return
        steps = [r for r in self.records if r["kind"] == "step"]
        epochs = [r for r in self.records if r["kind"] == "epoch"]
        plt = pyplot()
        fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
        axes[0].plot([r["step"] for r in steps], [r["loss"] for r in steps], lw=0.8, alpha=0.5,
                     label="train (step)")  # fmt: skip
        for key, label in (("train_loss", "train (epoch)"), ("val_loss", "val")):
            axes[0].plot([r["step"] for r in epochs], [r[key] for r in epochs], "o-", label=label)
        axes[0].set(title="loss (bits / fixation)", xlabel="step")
        axes[0].legend()
        if epochs and "val_ig" in epochs[0]:
            axes[1].plot([r["step"] for r in epochs], [r["val_ig"] for r in epochs], "o-")
        axes[1].set(title="val IG over the centre bias (bits / fixation)", xlabel="step")
        axes[2].plot([r["step"] for r in steps], [r["lr"] for r in steps])
        axes[2].set(title="learning rate", xlabel="step", yscale="log")
        fig.tight_layout()
        fig.savefig(self.output_dir / "curves.png", dpi=90)
        plt.close(fig)

    @torch.no_grad()
    def save_overlays(self, model: torch.nn.Module, batch: Batch, epoch: int, count: int) -> None:
        """Pictures of the model's predictions for the first ``count`` items of ``batch``, as
        their kind is drawn (nothing for kinds without a picture)."""
        if not self.active or count == 0 or model.prediction not in DRAWERS:
            return
        folder = self.output_dir / "val_overlays"
        folder.mkdir(exist_ok=True)
        model.eval()
        prediction, batch = model(batch.first(count))
        for item in range(len(batch)):
            index = int(batch.image_index[item])
            path = folder / f"epoch{epoch + 1:03d}_image{index}.png"
            title = f"epoch {epoch + 1}, val image {index}"
            DRAWERS[model.prediction](path, batch, prediction, item, title)

    def close(self) -> None:
        if self.wandb is not None:
            self.wandb.finish()
            self.wandb = None


def _start_wandb(cfg: CfgNode, output_dir: Path, info: dict[str, Any]) -> Any:
    """A wandb run in ``output_dir/wandb``, continued (same id) when the run is resumed."""
    os.environ.setdefault("WANDB_SILENT", "true")
    import wandb  # imported here: it takes a second, and runs without tracking never need it

    id_file = output_dir / "wandb_id.txt"
    if not id_file.is_file():
        id_file.write_text(uuid.uuid4().hex[:8])
    return wandb.init(
        project=cfg.TRACKING.WANDB.PROJECT,
        mode=cfg.TRACKING.WANDB.MODE,
        dir=str(output_dir),
        id=id_file.read_text().strip(),
        resume="allow",
        name=output_dir.name,
        config={"config": cfg.dump(sort_keys=False), "run": info},
    )
