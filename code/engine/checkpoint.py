"""Checkpoints: one owner (:class:`Checkpointer`) of their file names in a run folder, what
they hold, how they are written (durably, atomically, with the resolved configuration), resumed
from and loaded into a model; read as data only (no pickled code runs when a shared checkpoint is
opened). A change of file names, retention or format is a change of this module alone."""

from __future__ import annotations

import os
import pickle
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np
import torch
from yacs.config import CfgNode

from code.config import load_config_text
from code.engine.reproducibility import all_rng_states, set_rng_state
from code.models.build import GazeModel, build_model
from code.models.weights import refusal_reason
from code.utils import distributed as dist
from code.utils.files import sync_directory

# Besides tensors and plain Python data, a checkpoint holds numpy's random state (a uint32
# array): its reconstruction is allowed, nothing else that could name code.
_NUMPY_ARRAYS = [
    np.zeros(0).__reduce__()[0],  # numpy's array reconstruction, whatever module holds it
    np.ndarray,
    np.dtype,
    type(np.dtype(np.uint32)),
]


class Progress(Protocol):
    """Where training stands (the trainer's ``TrainState``, a dataclass): saved whole in every
    checkpoint; its batch count places the sampler on resume."""

    batches_consumed: int  # of the epoch in progress, by each rank


P = TypeVar("P", bound=Progress)


@dataclass(frozen=True)
class Training:
    """What a training checkpoint saves and a resume restores, besides the progress."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    sampler: Any  # the training loader's batch sampler: state_dict(consumed), load_state_dict
    config: CfgNode  # the resolved configuration: a checkpoint alone rebuilds its model
    info: dict[str, Any]  # the run's run_info.json


class Checkpointer:
    """The checkpoints of the run folder ``folder`` (as detectron2's ``Checkpointer``).

    ``last.pt`` is written each epoch and every ``TRAIN.CHECKPOINT_EVERY`` optimizer steps and is
    what ``--resume`` continues; ``best.pt`` is the epoch of the best ``TRAIN.BEST_METRIC``, what
    a run evaluates and ``code.predict`` runs. Both hold everything an exact resume needs. The
    static methods read any checkpoint file, wherever it lies.
    """

    LAST = "last.pt"
    BEST = "best.pt"
    FILES = (LAST, BEST)

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    @property
    def last(self) -> Path:
        return self.folder / self.LAST

    @property
    def best(self) -> Path:
        return self.folder / self.BEST

    def can_resume(self) -> bool:
        return self.last.is_file()

    def save(self, training: Training, progress: Progress, best: bool) -> None:
        """Write ``last.pt`` (and, if ``best``, ``best.pt``) with everything an exact resume
        needs. Every rank calls it (each saves its own random state); rank 0 writes."""
        rng = all_rng_states()  # every rank's: each continues its own random stream
        if not dist.is_main():
            return
        state = {
            "model": training.model.state_dict(),
            "optimizer": training.optimizer.state_dict(),
            "scheduler": training.scheduler.state_dict(),
            "scaler": training.scaler.state_dict(),
            "sampler": training.sampler.state_dict(progress.batches_consumed),
            "train_state": asdict(progress),
            "rng": rng,
            "config": training.config.dump(sort_keys=False),
            "run_info": training.info,
        }
        save_checkpoint(state, self.last)
        if best:
            save_checkpoint(state, self.best)

    def resume(self, training: Training, progress: type[P]) -> P:
        """Restore ``training`` to where ``last.pt`` left off (this rank's random state too);
        returns the progress saved with it."""
        path = self.last
        state = load_checkpoint(path)
        if len(state["rng"]) != dist.world_size():
            raise ValueError(
                f"{path} was written by {len(state['rng'])} process(es), this run has "
                f"{dist.world_size()}; an exact resume needs the same number"
            )
        load_model_state(training.model, state["model"], path)
        training.optimizer.load_state_dict(state["optimizer"])
        training.scheduler.load_state_dict(state["scheduler"])
        training.scaler.load_state_dict(state["scaler"])
        training.sampler.load_state_dict(state["sampler"])
        set_rng_state(state["rng"][dist.rank()])
        return progress(**state["train_state"])

    @staticmethod
    def load_weights(
        model: torch.nn.Module, path: Path, strict: bool
    ) -> tuple[list[str], list[str]]:
        """Load the weights of the checkpoint ``path`` into ``model``: all of them and exactly
        its keys (``strict``), or those the two share (e.g. a previous, smaller stage's). Returns
        the model's keys left as initialised and the checkpoint's not used (empty when strict)."""
        weights = load_checkpoint(path)["model"]
        if strict:
            load_model_state(model, weights, path)
            return [], []
        return load_matching_state(model, weights, path)

    @staticmethod
    def config(path: Path) -> CfgNode:
        """The configuration the checkpoint ``path`` was trained with, validated like any config
        file."""
        return _config_of(load_checkpoint(path))

    @staticmethod
    def load_model(path: Path, device: torch.device) -> tuple[GazeModel, CfgNode]:
        """The model (in eval mode, on ``device``) and its configuration, both from the
        checkpoint ``path`` alone."""
        state = load_checkpoint(path)
        cfg = _config_of(state)
        model = build_model(cfg)
        load_model_state(model, state["model"], path)
        return model.to(device).eval(), cfg

    @staticmethod
    def export_model(source: Path, target: Path) -> int:
        """Write to ``target`` what predicting with the checkpoint ``source`` needs, and nothing
        of its training: the weights, the configuration and the run's ``run_info`` (its commit
        and command). Returns the number of weights. ``load_model`` and ``code.predict`` read
        it like a run's checkpoint."""
        state = load_checkpoint(source)
        _config_of(state)  # a checkpoint whose configuration no longer loads is not shipped
        weights = state["model"]
        model = {"model": weights, "config": state["config"], "run_info": state.get("run_info")}
        target.parent.mkdir(parents=True, exist_ok=True)
        save_checkpoint(model, target)
        return sum(tensor.numel() for tensor in weights.values())


def save_checkpoint(state: dict[str, Any], path: Path) -> None:
    """Write ``state`` to ``path`` via a temporary file, flushed to disk, and a rename: no reader
    sees half a file, and a crash (or power loss) leaves the old checkpoint or the new one."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as file:
        torch.save(state, file)
        file.flush()
        os.fsync(file.fileno())
    os.replace(tmp, path)
    sync_directory(path.parent)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint to CPU memory as data: tensors, numbers, strings, lists and dicts (and
    numpy's random state). A file whose unpickling would construct anything else (e.g. call a
    function) is refused before it runs; so is a file that is no checkpoint."""
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if not zipfile.is_zipfile(path):
        raise ValueError(
            f"{path}: not a checkpoint (torch.save's zip format, e.g. a run's {Checkpointer.BEST})"
        )
    try:
        with torch.serialization.safe_globals(_NUMPY_ARRAYS):
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise ValueError(
            f"{path}: refused to load: it holds more than tensors and plain data, and opening it "
            f"would run code it names ({refusal_reason(err)}); only load files you trust with "
            "other tools"
        ) from None
    except (RuntimeError, EOFError, OSError) as err:
        raise ValueError(
            f"{path}: not a checkpoint (a file written by torch.save, e.g. a run's "
            f"{Checkpointer.BEST}): {err}"
        ) from None
    if not isinstance(state, dict) or "model" not in state:
        found = sorted(state)[:8] if isinstance(state, dict) else type(state).__name__
        raise ValueError(
            f"{path}: not a saccade checkpoint (a run's {Checkpointer.BEST} or "
            f"{Checkpointer.LAST}, with 'model' and "
            f"'config'); found {found}"
        )
    return state


def _config_of(state: dict[str, Any]) -> CfgNode:
    """The configuration a checkpoint was trained with, validated like any config file."""
    return load_config_text(state["config"], [])


def load_model_state(model: torch.nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
    """Load weights, naming every key that the model and the checkpoint disagree on."""
    missing, unexpected, mismatched = _compare(model.state_dict(), state)
    if missing or unexpected or mismatched:
        _refuse(path, missing=missing, unexpected=unexpected, mismatched=mismatched)
    model.load_state_dict(state)


def load_matching_state(
    model: torch.nn.Module, state: dict[str, torch.Tensor], path: Path
) -> tuple[list[str], list[str]]:
    """Load the weights the model and the checkpoint share (e.g. a previous, smaller stage).

    Returns the model's keys left as initialised and the checkpoint's keys not used. A shared
    key with another shape is still an error: that is a different model, not a smaller one.
    """
    missing, unexpected, mismatched = _compare(model.state_dict(), state)
    if mismatched:
        _refuse(path, mismatched=mismatched)
    model.load_state_dict({k: v for k, v in state.items() if k not in unexpected}, strict=False)
    return missing, unexpected


def _compare(
    own: dict[str, torch.Tensor], state: dict[str, torch.Tensor]
) -> tuple[list[str], list[str], list[str]]:
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    return missing, unexpected, mismatched


def _refuse(path: Path, **problems: list[str]) -> None:
    labels = {"missing": "missing", "unexpected": "unexpected", "mismatched": "shape differs"}
    details = [
        f"{labels[kind]}: {', '.join(keys[:8])}{' ...' if len(keys) > 8 else ''}"
        for kind, keys in problems.items()
        if keys
    ]
    raise ValueError(f"checkpoint {path} does not fit the configured model; " + "; ".join(details))
