"""Checkpoints: written atomically, carrying the resolved configuration."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch


def save_checkpoint(state: dict[str, Any], path: Path) -> None:
    """Write ``state`` to ``path`` via a temporary file and a rename, so no reader sees half."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    return torch.load(path, map_location="cpu", weights_only=False)


def load_model_state(model: torch.nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
    """Load weights, naming every key that the model and the checkpoint disagree on."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or mismatched:
        details = [
            f"{label}: {', '.join(keys[:8])}{' ...' if len(keys) > 8 else ''}"
            for label, keys in (
                ("missing", missing),
                ("unexpected", unexpected),
                ("shape differs", mismatched),
            )
            if keys
        ]
        raise ValueError(
            f"checkpoint {path} does not fit the configured model; " + "; ".join(details)
        )
    model.load_state_dict(state)
