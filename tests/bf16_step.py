"""Two bf16-autocast CPU training steps of the model a config builds, on a synthetic batch
holding every field the model reads. Run as a subprocess by tests/test_bf16_cpu.py, so that a
native crash (a oneDNN kernel corrupting the heap) fails one test instead of ending pytest:

    python -m tests.bf16_step CONFIG HEIGHT WIDTH [KEY VALUE ...]
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import torch

from benchmarks.gpu_step import train_step
from code.config import load_config
from code.data.batch import Batch
from code.engine.optim import build_optimizer
from code.engine.precision import Precision
from code.models.build import build_model

BATCH, FIXATIONS, SCANPATHS, LENGTH, HISTORY, POINTS = 2, 6, 2, 5, 3, 4


def synthetic_batch(requires: set[str], height: int, width: int) -> Batch:
    """Random images and every optional field in ``requires``, in the data layer's shapes."""
    scale = torch.tensor([width - 1.0, height - 1.0])
    fields = {
        "target": lambda: torch.rand(BATCH, 3, height, width),
        "fixations": lambda: torch.rand(BATCH, FIXATIONS, 2) * scale,
        "fixation_mask": lambda: torch.ones(BATCH, FIXATIONS, dtype=torch.bool),
        "centerbias": lambda: torch.full((BATCH, height, width), -math.log(height * width)),
        "segments": lambda: (
            (torch.arange(height * width) % 7).view(height, width).repeat(BATCH, 1, 1)
        ),
        "history": lambda: torch.rand(BATCH, FIXATIONS, HISTORY, 2) * scale,
        "history_mask": lambda: torch.ones(BATCH, FIXATIONS, HISTORY, dtype=torch.bool),
        "scanpaths": lambda: torch.rand(BATCH, SCANPATHS, LENGTH, 2) * scale,
        "scanpath_mask": lambda: torch.ones(BATCH, SCANPATHS, LENGTH, dtype=torch.bool),
        "foreground": lambda: torch.ones(BATCH, height, width),
        "label": lambda: torch.arange(BATCH),
        "points": lambda: torch.rand(BATCH, POINTS, 2) * scale,
        "point_labels": lambda: (torch.arange(POINTS) % 2).float().repeat(BATCH, 1),
    }
    unknown = requires - set(fields)
    if unknown:
        raise KeyError(f"no synthetic value for the batch fields {sorted(unknown)}")
    return Batch(
        input=torch.rand(BATCH, 3, height, width),
        image_index=torch.arange(BATCH),
        original_size=torch.tensor([[height, width]] * BATCH),
        **{name: fields[name]() for name in requires},
    )


def main(argv: list[str]) -> None:
    config, height, width, *opts = argv
    cfg = load_config(Path(config), [*opts, "DATA.IMAGE_SIZE", f"[{height}, {width}]"])
    torch.manual_seed(0)
    model = build_model(cfg).train()
    requires = set().union(*(part.requires for part in model.parts().values()))
    optimizer = build_optimizer(cfg, model)
    precision = Precision("bf16", torch.device("cpu"))
    for step in range(2):
        batch = synthetic_batch(requires, int(height), int(width))
        loss, prediction = train_step(model, optimizer, batch, precision)
        print(f"step {step}: loss {loss.item():.4f}, {prediction.dtype}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
