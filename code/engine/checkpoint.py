"""Checkpoints: written atomically, carrying the resolved configuration."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from yacs.config import CfgNode

from code.config import load_config
from code.models.build import GazeModel, build_model


def save_checkpoint(state: dict[str, Any], path: Path) -> None:
    """Write ``state`` to ``path`` via a temporary file and a rename, so no reader sees half."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint to CPU memory (it holds RNG states and the config, not just tensors)."""
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    return torch.load(path, map_location="cpu", weights_only=False)


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
