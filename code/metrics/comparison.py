"""Paired comparison of two saliency results (``result.json`` / a run's ``metrics.json``) on the
images both scored, refusing results that were scored on other data or with other settings."""

from __future__ import annotations

from pathlib import Path

from code.metrics.report import PerImage, SaliencyReport, read_report
from code.metrics.uncertainty import paired_comparison

# What must agree for two results to be comparable image by image.
COMPARABLE = ("dataset", "settings", "baseline")


def read_result(path: Path) -> SaliencyReport:
    """A saliency result with per-image scores, or an error naming the file."""
    result = read_report(path)
    if result.per_image is None:
        raise ValueError(
            f"{path}: no per-image scores (not a saliency result, or scored by an older version:"
            " score it again)"
        )
    return result


def compare_results(a: SaliencyReport, b: SaliencyReport, path_a: Path, path_b: Path) -> dict:
    """Per metric of the model, A − B on the common images (see
    :func:`code.metrics.uncertainty.paired_comparison`)."""
    for key in COMPARABLE:
        if getattr(a, key) != getattr(b, key):
            raise ValueError(
                f"{path_a} and {path_b} were scored differently: {key} "
                f"{_difference(getattr(a, key), getattr(b, key))}"
            )
    images_a, images_b = a.per_image, b.per_image
    rows_b = {image: k for k, image in enumerate(images_b.image)}
    common = [(k, rows_b[image]) for k, image in enumerate(images_a.image) if image in rows_b]
    if not common:
        raise ValueError(f"{path_a} and {path_b} scored no image in common")
    fixations_a = [images_a.n_fixations[k] for k, _ in common]
    fixations_b = [images_b.n_fixations[k] for _, k in common]
    if fixations_a != fixations_b:
        different = next(images_a.image[ka] for (ka, _), x, y in
                         zip(common, fixations_a, fixations_b, strict=True) if x != y)  # fmt: skip
        raise ValueError(
            f"{path_a} and {path_b} scored other fixations on image {different!r}: not the "
            "same data"
        )

    def model_scores(per_image: PerImage, column: int) -> dict[str, list[float]]:
        return {metric: [values[pair[column]] for pair in common]
                for metric, values in per_image.values["model"].items()}  # fmt: skip

    return {
        "A": str(path_a),
        "B": str(path_b),
        "n_images": len(common),
        "only_in_A": len(images_a.image) - len(common),
        "only_in_B": len(images_b.image) - len(common),
        "metrics": paired_comparison(
            model_scores(images_a, 0), model_scores(images_b, 1), fixations_a
        ),
    }


def _difference(a: object, b: object) -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        keys = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
        return ", ".join(f"{k}: {a.get(k)!r} vs {b.get(k)!r}" for k in keys)
    return f"{a!r} vs {b!r}"


def format_comparison(result: dict) -> str:
    lines = [f"A = {result['A']}", f"B = {result['B']}"]
    lines.append(
        f"{'metric':<10}{'A':>11}{'B':>11}{'A - B':>11}{'95% CI':>22}{'Wilcoxon p':>12}{'t p':>10}"
    )
    for metric, row in result["metrics"].items():
        interval = f"[{row['ci95'][0]:.4f}, {row['ci95'][1]:.4f}]"
        lines.append(
            f"{metric:<10}{row['A']:>11.5f}{row['B']:>11.5f}{row['difference']:>11.5f}"
            f"{interval:>22}{row['wilcoxon_p']:>12.2g}{row['t_p']:>10.2g}"
        )
    lines.append(
        f"{result['n_images']} images scored by both ({result['only_in_A']} only in A, "
        f"{result['only_in_B']} only in B); CI: paired bootstrap over images"
    )
    return "\n".join(lines)
