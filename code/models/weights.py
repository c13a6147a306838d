"""Reading a local weight file (nothing is downloaded): the one place that knows the formats."""

from __future__ import annotations

import pickle
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
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as err:
        raise ValueError(
            f"{path}: not a {what} weight file ({key}): a .pth/.pt of tensors or a "
            f".safetensors file was expected; reading it gave: {refusal_reason(err)}"
        ) from None
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]  # the layout of many training checkpoints (and of saccade's)
    tensors = isinstance(state, dict) and all(isinstance(v, torch.Tensor) for v in state.values())
    if not tensors or not state:
        found = sorted(state)[:8] if isinstance(state, dict) else type(state).__name__
        raise ValueError(
            f"{path}: not a {what} weight file ({key}): a dict of tensors was expected, found "
            f"{found}"
        )
    return state


def refusal_reason(err: Exception) -> str:
    """The line of a ``weights_only`` load error that says what was refused (torch's message
    goes on with advice on loading untrusted files anyway)."""
    return str(err).split("WeightsUnpickler error:")[-1].strip().split(". Please")[0]


def check_shapes(
    module: torch.nn.Module, state: dict[str, torch.Tensor], path: Path, what: str
) -> None:
    """Refuse weights whose shapes differ from ``module``'s (another architecture), naming the
    first few, instead of torch's error listing every one."""
    own = module.state_dict()
    differ = [
        f"{name} {tuple(state[name].shape)} (model: {tuple(own[name].shape)})"
        for name in own
        if name in state and state[name].shape != own[name].shape
    ]
    if differ:
        more = f" and {len(differ) - 5} more" if len(differ) > 5 else ""
        raise ValueError(
            f"{path}: {what} weights of another architecture: {len(differ)} tensor(s) differ in "
            f"shape, e.g. {'; '.join(differ[:5])}{more}"
        )
