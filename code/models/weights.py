"""Reading a local weight file (nothing is downloaded): the one place that knows the formats."""

from __future__ import annotations

from pathlib import Path

import torch


def read_state_dict(path: Path, what: str, key: str) -> dict[str, torch.Tensor]:
    """The tensors of a local checkpoint (.safetensors, or .pth/.pt read by ``torch.load``
    without unpickling code). A missing file is a FileNotFoundError naming ``what`` weights
    and the config ``key`` that named it."""
    if not path.is_file():
        raise FileNotFoundError(
            f"{what} weights not found: {path} ({key}; set it to null for random initialisation)"
        )
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    return torch.load(path, map_location="cpu", weights_only=True)
