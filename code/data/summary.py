"""What a data set holds: counts, image sizes, and what the loader skipped or adjusted, and why."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from code.data.gaze import GazeDataset


def summarize(dataset: GazeDataset) -> dict[str, Any]:
    """A JSON-ready summary of a loaded data set (with image counts per label if labelled)."""
    fix = dataset.fixations
    sizes = Counter((s.height, s.width) for s in dataset.stimuli)
    areas = sorted(sizes, key=lambda hw: (hw[0] * hw[1], hw))
    (common, common_count) = sizes.most_common(1)[0]
    with_fixations = len(np.unique(fix.image))
    labelled = [s for s in dataset.stimuli if s.label is not None]
    return {
        "name": dataset.name,
        "images": len(dataset.stimuli),
        "images_without_fixations": len(dataset.stimuli) - with_fixations,
        "subjects": len(dataset.subjects),
        "scanpaths": len(np.unique(fix.train)),
        "fixations": len(fix),
        "fixations_per_scanpath_mean": len(fix) / max(len(np.unique(fix.train)), 1),
        "durations_known": bool(np.isfinite(fix.duration_ms).any()),
        "onsets_known": bool(np.isfinite(fix.onset_ms).any()),
        "image_sizes": {
            "distinct": len(sizes),
            "smallest_hw": list(areas[0]),
            "largest_hw": list(areas[-1]),
            "most_common_hw": list(common),
            "most_common_count": common_count,
        },
        "labels": dict(sorted(Counter(str(s.label) for s in labelled).items())),
        "skipped": dict(dataset.skipped),
        "adjusted": dict(dataset.adjusted),
    }


def format_summary(summary: dict[str, Any]) -> str:
    """The summary as aligned text lines for a terminal."""
    lines = []
    for key, value in summary.items():
        if isinstance(value, dict):
            lines.append(f"{key}:" + ("" if value else " none"))
            lines += [f"  {k}: {_number(v)}" for k, v in value.items()]
        else:
            lines.append(f"{key}: {_number(value)}")
    return "\n".join(lines)


def _number(value: Any) -> str:
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)
