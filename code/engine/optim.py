"""Optimisation from the configuration: freezing, parameter groups, optimizers and LR schedules.

Optimizers and schedules are registered parts (``TRAIN.OPTIMIZER``, ``TRAIN.SCHEDULER``): their
keyword parameters are their configuration keys, as for models.
"""

from __future__ import annotations

from collections.abc import Iterable
from fnmatch import fnmatch

import torch
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler
from yacs.config import CfgNode

from code.registry import MOMENTUM_SCHEDULES, OPTIMIZERS, SCHEDULERS

ParamGroups = list[dict]


@OPTIMIZERS.register("adam")
def adam(params: ParamGroups, lr: float, weight_decay: float, betas: list[float]) -> Optimizer:
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, betas=tuple(betas))


@OPTIMIZERS.register("adamw")
def adamw(params: ParamGroups, lr: float, weight_decay: float, betas: list[float]) -> Optimizer:
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, betas=tuple(betas))


@OPTIMIZERS.register("sgd")
def sgd(
    params: ParamGroups, lr: float, weight_decay: float, momentum: float, nesterov: bool
) -> Optimizer:
    return torch.optim.SGD(
        params, lr=lr, weight_decay=weight_decay, momentum=momentum, nesterov=nesterov
    )


@SCHEDULERS.register("constant")
def constant(optimizer: Optimizer, epochs: int) -> LRScheduler:
    return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[], gamma=1.0)


@SCHEDULERS.register("multistep")
def multistep(
    optimizer: Optimizer, epochs: int, milestones: list[int], gamma: float
) -> LRScheduler:
    """DeepGaze's recipe: multiply the LR by ``gamma`` at each milestone epoch."""
    return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=gamma)


@SCHEDULERS.register("cosine")
def cosine(optimizer: Optimizer, epochs: int, min_lr: float) -> LRScheduler:
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs, eta_min=min_lr)


class MomentumSchedule:
    """The momentum of every parameter group as a function of the optimizer step: ``apply``
    sets it before step ``step`` (0-based). Nothing else is stored, so a run resumed at a step
    repeats the uninterrupted run's momenta exactly."""

    def momentum(self, step: int) -> float | None:
        """The momentum of step ``step``; None leaves the optimizer's own."""
        raise NotImplementedError

    def apply(self, optimizer: Optimizer, step: int) -> None:
        momentum = self.momentum(step)
        if momentum is None:
            return
        for group in optimizer.param_groups:
            if "momentum" not in group:
                raise ValueError(
                    "TRAIN.MOMENTUM_SCHEDULE sets a momentum, but TRAIN.OPTIMIZER "
                    f"{type(optimizer).__name__} has none (choose sgd)"
                )
            group["momentum"] = momentum


@MOMENTUM_SCHEDULES.register("constant")
class ConstantMomentum(MomentumSchedule):
    """The optimizer's momentum throughout (e.g. ``TRAIN.OPTIMIZER.SGD.MOMENTUM``)."""

    def __init__(self, total_steps: int) -> None:
        self.total_steps = total_steps

    def momentum(self, step: int) -> float | None:
        return None


@MOMENTUM_SCHEDULES.register("linear")
class LinearMomentum(MomentumSchedule):
    """Momentum rising (or falling) linearly from ``start`` at the first optimizer step to
    ``end`` at the last one of the run (Mr-CNN: 0.9 -> 0.99), step by step."""

    def __init__(self, total_steps: int, start: float, end: float) -> None:
        if not (0 <= start < 1 and 0 <= end < 1):
            raise ValueError(
                f"TRAIN.MOMENTUM_SCHEDULE.LINEAR: START {start} and END {end} must be in [0, 1)"
            )
        self.total_steps = total_steps
        self.start = start
        self.end = end

    def momentum(self, step: int) -> float | None:
        if step >= self.total_steps - 1:
            return self.end
        return self.start + (self.end - self.start) * step / (self.total_steps - 1)


def build_momentum_schedule(cfg: CfgNode, steps_per_epoch: int) -> MomentumSchedule:
    """``TRAIN.MOMENTUM_SCHEDULE`` over the run's ``TRAIN.EPOCHS`` x ``steps_per_epoch`` steps."""
    total = cfg.TRAIN.EPOCHS * steps_per_epoch
    return MOMENTUM_SCHEDULES.build(cfg.TRAIN.MOMENTUM_SCHEDULE, total_steps=total)


def _first_match(name: str, patterns: Iterable[str]) -> int | None:
    return next((i for i, pattern in enumerate(patterns) if fnmatch(name, pattern)), None)


def _unmatched(patterns: list[str], names: list[str]) -> list[str]:
    return [p for p in patterns if not any(fnmatch(n, p) for n in names)]


def freeze(model: nn.Module, patterns: list[str]) -> int:
    """Stop gradients to parameters whose name matches a pattern; returns how many were frozen.

    A pattern that matches nothing is an error: a typo would otherwise train what was meant to
    stay fixed.
    """
    names = [name for name, _ in model.named_parameters()]
    if missing := _unmatched(patterns, names):
        raise ValueError(
            f"TRAIN.FREEZE: no parameter matches {missing}; names look like {names[:4]}"
        )
    frozen = 0
    for name, param in model.named_parameters():
        if _first_match(name, patterns) is not None:
            param.requires_grad_(False)
            frozen += param.numel()
    return frozen


def build_optimizer(cfg: CfgNode, model: nn.Module) -> Optimizer:
    """The configured optimizer over the trainable parameters, in ``TRAIN.PARAM_GROUPS``."""
    train = cfg.TRAIN
    patterns, scales = train.PARAM_GROUPS.PATTERNS, train.PARAM_GROUPS.LR_SCALES
    if len(patterns) != len(scales):
        raise ValueError(
            f"TRAIN.PARAM_GROUPS: {len(patterns)} PATTERNS but {len(scales)} LR_SCALES"
        )
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not trainable:
        raise ValueError("no trainable parameters: TRAIN.FREEZE froze the whole model")
    if missing := _unmatched(patterns, [n for n, _ in trainable]):
        raise ValueError(f"TRAIN.PARAM_GROUPS.PATTERNS: no trainable parameter matches {missing}")
    members: list[list[nn.Parameter]] = [[] for _ in range(len(patterns) + 1)]
    for name, param in trainable:
        index = _first_match(name, patterns)
        members[len(patterns) if index is None else index].append(param)
    groups = [
        {"params": params, "lr": train.LR * scale}
        for params, scale in zip(members, [*scales, 1.0], strict=True)
        if params
    ]
    return OPTIMIZERS.build(
        train.OPTIMIZER, params=groups, lr=train.LR, weight_decay=train.WEIGHT_DECAY
    )


def build_scheduler(cfg: CfgNode, optimizer: Optimizer) -> LRScheduler:
    return SCHEDULERS.build(cfg.TRAIN.SCHEDULER, optimizer=optimizer, epochs=cfg.TRAIN.EPOCHS)
