"""The training loop: optimise the model's own loss, validate each epoch, keep the best weights."""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm
from yacs.config import CfgNode

from code.engine.checkpoint import load_checkpoint, load_model_state, save_checkpoint
from code.models.build import GazeModel
from code.utils import distributed as dist
from code.utils.logging import get_logger

OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}


class Trainer:
    """Trains ``model`` on ``train_loader``; the epoch with the best validation loss -> best.pt."""

    def __init__(
        self,
        cfg: CfgNode,
        model: GazeModel,
        train_loader: torch.utils.data.DataLoader,
        val_loader: torch.utils.data.DataLoader,
        device: torch.device,
        output_dir: Path,
    ) -> None:
        self.cfg = cfg
        self.model = model.to(device)
        self.device = device
        self.train_loader = train_loader
        self.val_loader = val_loader
        self.output_dir = output_dir
        self.ddp = (
            DistributedDataParallel(
                self.model, device_ids=[device.index] if device.type == "cuda" else None
            )
            if dist.world_size() > 1
            else None
        )
        params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = OPTIMIZERS[cfg.TRAIN.OPTIMIZER](
            params, lr=cfg.TRAIN.LR, weight_decay=cfg.TRAIN.WEIGHT_DECAY
        )
        self.start_epoch = 0
        self.best_loss = math.inf

    def resume(self, path: Path) -> None:
        """Continue from a checkpoint written by this trainer (model, optimizer, epoch, best)."""
        state = load_checkpoint(path)
        load_model_state(self.model, state["model"], path)
        self.optimizer.load_state_dict(state["optimizer"])
        self.start_epoch = state["epoch"]
        self.best_loss = state["best_loss"]
        get_logger().info("resumed from %s at epoch %d", path, self.start_epoch)

    def fit(self) -> Path:
        """Train for ``TRAIN.EPOCHS`` epochs; returns the path of the best checkpoint."""
        log = get_logger()
        best_path = self.output_dir / "best.pt"
        for epoch in range(self.start_epoch, self.cfg.TRAIN.EPOCHS):
            train_loss = self._train_epoch(epoch)
            val_loss = self._validate()
            log.info("epoch %d: train loss %.4f, val loss %.4f", epoch + 1, train_loss, val_loss)
            improved, self.best_loss = val_loss < self.best_loss, min(self.best_loss, val_loss)
            if dist.is_main():
                state = self._state(epoch)
                save_checkpoint(state, self.output_dir / "last.pt")
                if improved:
                    save_checkpoint(state, best_path)
            dist.barrier()
        return best_path

    def _train_epoch(self, epoch: int) -> float:
        self.model.train()
        self.train_loader.batch_sampler.set_epoch(epoch)
        forward = self.ddp or self.model
        total = torch.zeros(2, dtype=torch.float64, device=self.device)
        bar = tqdm(
            self.train_loader, desc=f"epoch {epoch + 1}", disable=not dist.is_main(), leave=False
        )
        for step, batch in enumerate(bar):
            batch = batch.to(self.device)
            loss_sum, count = self.model.loss(forward(batch), batch)
            loss = loss_sum / count
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            total += torch.stack([loss_sum.detach().double(), count.double()])
            bar.set_postfix(loss=f"{loss.item():.3f}")
            if (step + 1) % self.cfg.TRAIN.LOG_EVERY == 0:
                get_logger().debug("epoch %d step %d loss %.4f", epoch + 1, step + 1, loss.item())
        loss_sum, count = dist.all_reduce_sum(total).tolist()
        return loss_sum / count

    @torch.no_grad()
    def _validate(self) -> float:
        self.model.eval()
        total = torch.zeros(2, dtype=torch.float64, device=self.device)
        for batch in self.val_loader:
            batch = batch.to(self.device)
            loss_sum, count = self.model.loss(self.model(batch), batch)
            total += torch.stack([loss_sum.double(), count.double()])
        loss_sum, count = dist.all_reduce_sum(total).tolist()
        return loss_sum / count

    def _state(self, epoch: int) -> dict:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "epoch": epoch + 1,
            "best_loss": self.best_loss,
            "config": self.cfg.dump(sort_keys=False),
        }
