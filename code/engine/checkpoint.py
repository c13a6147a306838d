"""Checkpoints: written durably and atomically, carrying the resolved configuration, and read as
data only (no pickled code runs when a shared checkpoint is opened)."""

from __future__ import annotations

import os
import pickle
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from yacs.config import CfgNode

from code.config import load_config
from code.models.build import GazeModel, build_model
from code.models.weights import refusal_reason
from code.utils.files import sync_directory

# Besides tensors and plain Python data, a checkpoint holds numpy's random state (a uint32
# array): its reconstruction is allowed, nothing else that could name code.
_NUMPY_ARRAYS = [
    np.zeros(0).__reduce__()[0],  # numpy's array reconstruction, whatever module holds it
    np.ndarray,
    np.dtype,
    type(np.dtype(np.uint32)),
]


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
            f"{path}: not a checkpoint (torch.save's zip format, e.g. a run's best.pt)"
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
            f"{path}: not a checkpoint (a file written by torch.save, e.g. a run's best.pt): {err}"
        ) from None
    if not isinstance(state, dict) or "model" not in state:
        found = sorted(state)[:8] if isinstance(state, dict) else type(state).__name__
        raise ValueError(
            f"{path}: not a saccade checkpoint (a run's best.pt or last.pt, with 'model' and "
            f"'config'); found {found}"
        )
    return state


def checkpoint_config(state: dict[str, Any]) -> CfgNode:
    """The configuration a checkpoint was trained with, validated like any config file."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.yaml"
        path.write_text(state["config"])
        return load_config(path, [])


def load_model(checkpoint: Path, device: torch.device) -> tuple[GazeModel, CfgNode]:
    """The model (in eval mode, on ``device``) and its configuration, both from the checkpoint
    alone."""
    state = load_checkpoint(checkpoint)
    cfg = checkpoint_config(state)
    model = build_model(cfg)
    load_model_state(model, state["model"], checkpoint)
    return model.to(device).eval(), cfg


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
