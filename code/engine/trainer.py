"""The training loop: DDP, mixed precision, gradient accumulation and clipping, LR schedule, early
stopping, checkpoints that resume exactly, tracking.

The loss is averaged over the items of a whole optimizer step (fixations, pixels, ...: what the
decoder's loss counts) — all ranks and accumulation micro-steps together — so N processes x
batch b, one process x batch N*b and one process x batch b with N accumulation steps all take the
same step (given the same samples).

Each epoch ends with validation: ``val_loss`` and the task's own metrics, computed from the
predictions on the validation split by the task's ``ValidationScorer``; ``TRAIN.BEST_METRIC``
names one of them.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.profiler import record_function
from yacs.config import CfgNode

from code.data.batch import Batch
from code.engine.checkpoint import Checkpointer, Training
from code.engine.optim import (
    build_momentum_schedule,
    build_optimizer,
    build_scheduler,
    freeze,
)
from code.engine.precision import Precision
from code.engine.tracking import Tracker
from code.models.build import GazeModel
from code.registry import ConfigError
from code.utils import distributed as dist
from code.utils.logging import get_logger
from code.utils.progress import ProgressBar


class ValidationScorer:
    """Accumulates a task's validation metrics over the predictions on the validation split.

    ``state`` is a float64 tensor of sums (added over ranks before ``compute``);
    ``higher_is_better`` maps each metric ``compute`` returns to its direction.
    """

    higher_is_better: dict[str, bool]  # set by each scorer's constructor

    def update(self, prediction: torch.Tensor, batch: Batch) -> None:
        raise NotImplementedError

    def state(self) -> torch.Tensor:
        raise NotImplementedError

    def compute(self, state: torch.Tensor) -> dict[str, float]:
        raise NotImplementedError


@dataclass
class TrainState:
    """Where training stands; saved in every checkpoint, so a resumed run picks up right here."""

    epoch: int = 0  # the epoch in progress (or the next to start)
    batches_consumed: int = 0  # of this epoch, by each rank
    step: int = 0  # optimizer steps taken
    epoch_loss: list[float] = field(default_factory=lambda: [0.0, 0.0])  # global (sum, count)
    best: float | None = None  # best value of TRAIN.BEST_METRIC so far
    bad_epochs: int = 0  # epochs since it last improved
    stopped: str | None = None  # why training ended early, once it has


class Trainer:
    """Trains ``model`` on ``train_loader``, validates each epoch; writes the run's checkpoints
    (``Checkpointer``) to ``output_dir``."""

    def __init__(
        self,
        cfg: CfgNode,
        model: GazeModel,
        train_loader: torch.utils.data.DataLoader,
        val_loader: torch.utils.data.DataLoader,
        device: torch.device,
        output_dir: Path,
        info: dict[str, Any],
        scorer: Callable[[], ValidationScorer],
    ) -> None:
        """``scorer`` makes a fresh ``ValidationScorer`` for each validation."""
        self.cfg = cfg
        self.model = model
        self.device = device
        self.train_loader = train_loader
        self.val_loader = val_loader
        self.output_dir = output_dir
        self.checkpoints = Checkpointer(output_dir)
        self.info = info
        self.scorer = scorer
        train = cfg.TRAIN
        self.higher_is_better = {"val_loss": False, **scorer().higher_is_better}
        if train.BEST_METRIC not in self.higher_is_better:
            raise ConfigError(
                f"TRAIN.BEST_METRIC {train.BEST_METRIC!r} is not a validation metric of task "
                f"{cfg.TASK.NAME!r} with decoder {cfg.MODEL.DECODER.NAME!r}; it has "
                f"{', '.join(self.higher_is_better)}"
            )
        if train.INIT.CHECKPOINT is not None:
            self._initialise(Path(train.INIT.CHECKPOINT), train.INIT.STRICT)
        frozen = freeze(model, train.FREEZE)
        if frozen:
            get_logger().info("frozen: %.2fM parameters (%s)", frozen / 1e6, train.FREEZE)
        model.to(device)
        if train.CHANNELS_LAST:
            model.to(memory_format=torch.channels_last)
        if train.COMPILE is not None:
            # In place: the parameters keep their names, so checkpoints of compiled and eager
            # models load into each other.
            model.compile(mode=train.COMPILE)
        self.ddp = (
            DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
            if dist.world_size() > 1
            else None
        )
        self.optimizer = build_optimizer(cfg, model)
        self.scheduler = build_scheduler(cfg, self.optimizer)
        steps_per_epoch = -(-len(train_loader) // train.ACCUMULATION_STEPS)
        self.momentum = build_momentum_schedule(cfg, steps_per_epoch)
        self.precision = Precision(train.PRECISION, device)
        self.training = Training(model, self.optimizer, self.scheduler, self.precision.scaler,
                                 train_loader.batch_sampler, cfg, info)  # fmt: skip
        self.state = TrainState()
        self.resumed_at: int | None = None
        self.tracker: Tracker | None = None

    def _initialise(self, path: Path, strict: bool) -> None:
        missing, unused = Checkpointer.load_weights(self.model, path, strict)
        if strict:
            get_logger().info("initialised from %s", path)
            return
        get_logger().info(
            "initialised from %s; kept as built: %s; not used: %s", path, missing, unused
        )

    def resume(self) -> None:
        """Continue exactly where the run's last checkpoint left off."""
        self.state = self.checkpoints.resume(self.training, TrainState)
        self.resumed_at = self.state.step
        get_logger().info(
            "resumed from %s: epoch %d, batch %d, step %d",
            self.checkpoints.last, self.state.epoch + 1, self.state.batches_consumed,
            self.state.step,
        )  # fmt: skip

    def fit(self) -> Path:
        """Train until ``TRAIN.EPOCHS``, early stopping or ``TRAIN.STOP_LR``; returns the best
        checkpoint."""
        with self.tracking():
            while self.state.epoch < self.cfg.TRAIN.EPOCHS and self.state.stopped is None:
                train_loss = self.train_epoch()
                self._end_epoch(train_loss, self._validate())
        if self.state.stopped:
            get_logger().info("stopped after epoch %d: %s", self.state.epoch, self.state.stopped)
        dist.barrier()  # the best checkpoint is complete before any rank reads it
        return self.checkpoints.best

    @contextlib.contextmanager
    def tracking(self) -> Iterator[None]:
        """The run's tracker (metrics.jsonl, wandb) open for the epochs trained inside."""
        self.tracker = Tracker(self.cfg, self.output_dir, self.resumed_at, self.info)
        try:
            yield
        finally:
            self.tracker.close()

    def train_epoch(self) -> float:
        """One pass over (the rest of) the training loader, inside ``tracking()``; returns the
        epoch's mean training loss. The phases of each step are labelled for profilers."""
        state, accumulation = self.state, self.cfg.TRAIN.ACCUMULATION_STEPS
        self.model.train()
        self.train_loader.batch_sampler.set_epoch(state.epoch)
        total = len(self.train_loader)
        window = torch.zeros(2, dtype=torch.float64, device=self.device)
        bar = ProgressBar(total=total, initial=state.batches_consumed,
                          desc=f"epoch {state.epoch + 1}", unit="batch",
                          disable=not dist.is_main(), leave=False)  # fmt: skip
        images, start = 0, time.perf_counter()
        for batch in self.train_loader:
            state.batches_consumed += 1
            last_micro_step = state.batches_consumed % accumulation == 0
            last_micro_step |= state.batches_consumed == total
            window += self._micro_step(batch, sync=last_micro_step)
            images += len(batch) * dist.world_size()
            bar.update()
            if not last_micro_step:
                continue
            with record_function("optimizer"):
                loss = self._optimizer_step(window)
            window.zero_()
            speed = images / (time.perf_counter() - start)
            bar.set_postfix(loss=f"{loss:.3f}", img_s=f"{speed:.0f}")
            if state.step % self.cfg.TRAIN.LOG_EVERY == 0:
                lr = self.optimizer.param_groups[-1]["lr"]
                record = {"kind": "step", "step": state.step, "epoch": state.epoch, "loss": loss,
                          "lr": lr, "images_per_s": speed}  # fmt: skip
                with record_function("logging"):
                    self.tracker.log(record)
            every = self.cfg.TRAIN.CHECKPOINT_EVERY
            if every and state.step % every == 0 and state.batches_consumed < total:
                self.checkpoints.save(self.training, state, best=False)
        bar.close()
        loss_sum, count = state.epoch_loss
        return loss_sum / max(count, 1.0)

    def _micro_step(self, batch: Any, sync: bool) -> torch.Tensor:
        """Forward and backward of one batch; returns its (loss sum, count)."""
        batch = batch.to(self.device)
        forward = self.ddp or self.model
        # Under DDP, gradients are all-reduced only on the last micro-step of a window.
        no_sync = self.ddp.no_sync() if self.ddp is not None and not sync else None
        with no_sync or contextlib.nullcontext():
            with self.precision.autocast(), record_function("forward"):
                prediction, batch = forward(batch)
            with record_function("loss"):
                loss_sum, count = self.model.loss(prediction, batch)
            # A fixed divisor keeps fp16 gradients in range; the step rescales by the true count.
            with record_function("backward"):
                self.precision.scaler.scale(loss_sum / self.cfg.DATA.BATCH_SIZE).backward()
        return torch.stack([loss_sum.detach().double(), count.detach().double()])

    def _optimizer_step(self, window: torch.Tensor) -> float:
        """Average the window's gradients over its global count, clip, step; returns its loss."""
        loss_sum, count = dist.all_reduce_sum(window.clone()).tolist()
        scaler = self.precision.scaler
        scaler.unscale_(self.optimizer)
        # DDP averaged d(loss_sum / BATCH_SIZE) over ranks; this makes it d(sum of all) / count.
        factor = dist.world_size() * self.cfg.DATA.BATCH_SIZE / max(count, 1.0)
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        for param in params:
            if param.grad is not None:
                param.grad.mul_(factor)
        if self.cfg.TRAIN.CLIP_GRAD_NORM is not None:
            torch.nn.utils.clip_grad_norm_(params, self.cfg.TRAIN.CLIP_GRAD_NORM)
        self.momentum.apply(self.optimizer, self.state.step)
        scaler.step(self.optimizer)
        scaler.update()
        self.model.constrain()  # e.g. a max-norm, on the weights the step made
        self.optimizer.zero_grad(set_to_none=True)
        self.state.step += 1
        self.state.epoch_loss = [
            self.state.epoch_loss[0] + loss_sum,
            self.state.epoch_loss[1] + count,
        ]
        return loss_sum / max(count, 1.0)

    @torch.no_grad()
    def _validate(self) -> dict[str, float]:
        """``val_loss`` and the task's metrics of the predictions on the validation split."""
        self.model.eval()
        scorer = self.scorer()
        totals = torch.zeros(2, dtype=torch.float64, device=self.device)
        for batch in self.val_loader:
            with self.precision.autocast():
                prediction, batch = self.model(batch.to(self.device))
            loss_sum, count = self.model.loss(prediction, batch)
            totals += torch.stack([loss_sum, count]).double()
            scorer.update(prediction, batch)
        loss_sum, count = dist.all_reduce_sum(totals).tolist()
        state = dist.all_reduce_sum(scorer.state().to(self.device)).cpu()
        return {"val_loss": loss_sum / count, **scorer.compute(state)}

    def _end_epoch(self, train_loss: float, val: dict[str, float]) -> None:
        state, train = self.state, self.cfg.TRAIN
        self.scheduler.step()
        lr = max(group["lr"] for group in self.optimizer.param_groups)
        value = val[train.BEST_METRIC]
        higher = self.higher_is_better[train.BEST_METRIC]
        improved = state.best is None or (value > state.best if higher else value < state.best)
        state.best = value if improved else state.best
        state.bad_epochs = 0 if improved else state.bad_epochs + 1
        state.epoch, state.batches_consumed, state.epoch_loss = state.epoch + 1, 0, [0.0, 0.0]
        if train.PATIENCE is not None and state.bad_epochs >= train.PATIENCE:
            state.stopped = f"{train.BEST_METRIC} did not improve for {train.PATIENCE} epochs"
        if train.STOP_LR is not None and lr < train.STOP_LR:
            state.stopped = f"the LR {lr:.3g} fell below TRAIN.STOP_LR {train.STOP_LR:.3g}"
        record = {"kind": "epoch", "step": state.step, "epoch": state.epoch,
                  "train_loss": train_loss, **val, "lr": lr, "best": state.best}  # fmt: skip
        self.tracker.log(record)
        shown = ", ".join(f"{k} {v:.4f}" for k, v in val.items())
        get_logger().info("epoch %d: train_loss %.4f, %s%s", state.epoch, train_loss, shown,
                          " (best)" if improved else "")  # fmt: skip
        self.checkpoints.save(self.training, state, best=improved)
        self.tracker.plot_curves()
        overlays = self.cfg.TRACKING.VAL_OVERLAYS
        if dist.is_main() and overlays:
            batch = next(iter(self.val_loader)).to(self.device)
            self.tracker.save_overlays(self.model, batch, state.epoch - 1, overlays)
