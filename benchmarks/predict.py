"""Images/s of ``code.predict`` on 1024x768 images, before and after batching, the writer thread
and the faster heat maps, in one run.

*Before* is ``--batch-size 1 --sync-writes`` (one image at a time, each file written before the
next: the loop as it was) with ``previous_save_heatmap`` below, our copy of the heat-map writer
as it was (colour map and blend in float64, PNG at Pillow's default zlib level 6), patched in.
The other variants are today's code with its options: the old loop with today's heat maps
(what batching and the thread add on their own), also with torch on one thread (as the defaults
compute beside their writer thread on 2 cores: the writer takes a core), batches written
synchronously, the defaults (batches of 8 images of one input size, files written on a writer
thread) and ``--no-overlays``.

The model is the OSIE CPU configuration's (``configs/01_dinogaze_spade/cpu_osie/
no_injection.yaml``: ConvNet encoder and DeepGaze readout at 150x200), trained for one step on a
few generated images, so no data set is needed: prediction costs the same whatever the weights.
The inputs are synthetic photograph-like JPEGs (smooth colour fields with grain) written to a
temporary folder. Each variant is a call of ``code.predict``'s ``main``, as a user runs it
(checkpoint loading included; Python's start-up and imports, paid once, not); the variants run
in turn, ``--repeats`` times, and the table gives each one's fastest repeat (the least disturbed
by other work on the machine), the median, and the CPU time per image of all the process's
threads together (the work a variant needs, which other jobs change less than its wall time).
The first repeat also checks that every variant wrote the same densities as the first (to 1e-5)
and notes the overlays' mean file size. Then each step of predicting an image is timed alone.
The part of ``--results`` between this script's markers is replaced (or appended with its
heading).

    uv run python -m benchmarks.predict [--images 32] [--repeats 3]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import io
import os
import resource
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import matplotlib.pyplot as plt
import numpy as np
import torch
from PIL import Image

from benchmarks.results import update_results
from code.data.batch import Batch
from code.data.gaze import read_rgb
from code.engine.checkpoint import Checkpointer
from code.engine.model_scoring import to_original_size
from code.engine.visualize import DENSITY_CMAP, HEATMAP_OPACITY, save_heatmap
from code.main import main as train
from code.predict import build_parser as predict_parser
from code.predict import main as predict
from code.tasks.base import build_task
from code.utils.parallel import available_cpus

CONFIG = "configs/01_dinogaze_spade/cpu_osie/no_injection.yaml"
# One training step on 8 generated images at the config's 150x200; nothing else is run or kept.
TRAIN_OPTS = [
    "DATA.DATASET.NAME", "generated",
    "DATA.DATASET.GENERATED.NUM_IMAGES", "12",
    "DATA.DATASET.GENERATED.HEIGHT", "150",
    "DATA.DATASET.GENERATED.WIDTH", "200",
    "DATA.DATASET.GENERATED.NUM_SUBJECTS", "3",
    "DATA.DATASET.GENERATED.FIXATIONS_PER_SCANPATH", "4",
    "DATA.DATASET.GENERATED.SEED", "0",
    "DATA.SPLIT.VAL_FRACTION", "0.17",
    "DATA.SPLIT.TEST_FRACTION", "0.17",
    "DATA.CACHE.DIR", "null",
    "TRAIN.EPOCHS", "1",
    "EVAL.CENTERBIAS_FOLDS", "2",
    "EVAL.NUM_OVERLAYS", "0",
    "TRACKING.WANDB.ENABLED", "false",
    "TRACKING.VAL_OVERLAYS", "0",
]  # fmt: skip
HEIGHT, WIDTH = 768, 1024


def previous_save_heatmap(path: Path, image: np.ndarray, log_density: np.ndarray) -> None:
    """``code.engine.visualize.save_heatmap`` as it was before it was made faster (with this
    benchmark): the colour map called on float64 densities, the blend in float64, and PNG at
    Pillow's default compression."""
    density = np.exp(log_density - log_density.max())
    heat = plt.get_cmap(DENSITY_CMAP)(density)[..., :3]
    alpha = HEATMAP_OPACITY * np.sqrt(density)[..., None]
    blended = (1 - alpha) * image / 255 + alpha * heat
    Image.fromarray((blended * 255).round().astype(np.uint8)).save(path)


@dataclass(frozen=True)
class Variant:
    name: str
    options: list[str]  # of code.predict
    heatmap: Callable[[Path, np.ndarray, np.ndarray], None] | None = None  # patched in if given
    torch_threads: int | None = None  # set for the call if given (else torch's default)


VARIANTS = [  # the first is the baseline of the ratios
    Variant("before: batch 1, synchronous writes, the old heat maps",
            ["--batch-size", "1", "--sync-writes"], heatmap=previous_save_heatmap),
    Variant("the old loop, today's heat maps", ["--batch-size", "1", "--sync-writes"]),
    Variant("the old loop, today's heat maps, torch on 1 thread",
            ["--batch-size", "1", "--sync-writes"], torch_threads=1),
    Variant("batch 8, synchronous writes", ["--batch-size", "8", "--sync-writes"]),
    Variant("defaults: batch 8, writer thread", []),
    Variant("defaults, no overlays", ["--no-overlays"]),
]  # fmt: skip
DEFAULTS = 4  # the index of the defaults in VARIANTS
HEADING = "## `code.predict` throughput on 1024×768 images (`benchmarks/predict.py`)"


def write_images(folder: Path, count: int) -> None:
    """``count`` 1024x768 JPEGs: a random 24x32 colour grid upscaled (smooth regions and edges)
    plus Gaussian grain, so they decode and compress about as photographs do."""
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(count):
        coarse = Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8))
        smooth = np.asarray(coarse.resize((WIDTH, HEIGHT), Image.BICUBIC), dtype=np.float32)
        grain = rng.normal(0, 6, smooth.shape).astype(np.float32)
        pixels = np.clip(smooth + grain, 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"image{i:03d}.jpg", quality=90)


def train_checkpoint(folder: Path) -> Path:
    opts = [*TRAIN_OPTS, "OUTPUT_DIR", str(folder)]
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        train(["--cfg", CONFIG, "--opts", *opts])
    return Checkpointer(folder).best


def timed_predict(
    checkpoint: Path, images: Path, output: Path, variant: Variant
) -> tuple[float, float]:
    """Wall and CPU seconds (all threads) of one ``code.predict`` call (its progress bar and
    summary line silenced)."""
    argv = ["--checkpoint", str(checkpoint), "--input", str(images), "--output", str(output)]
    with contextlib.ExitStack() as stack:
        stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
        stack.enter_context(contextlib.redirect_stderr(io.StringIO()))
        if variant.heatmap is not None:
            stack.enter_context(mock.patch("code.tasks.density.save_heatmap", variant.heatmap))
        if variant.torch_threads is not None:
            stack.callback(torch.set_num_threads, torch.get_num_threads())
            torch.set_num_threads(variant.torch_threads)
        start, cpu = time.perf_counter(), cpu_seconds()
        predict([*argv, *variant.options])
        return time.perf_counter() - start, cpu_seconds() - cpu


def cpu_seconds() -> float:
    """User and system time of this process so far, all its threads together."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def overlay_kib(output: Path) -> float:
    """The mean size of the overlays a run wrote."""
    sizes = [p.stat().st_size for p in (output / "overlays").iterdir()]
    return sum(sizes) / len(sizes) / 1024


def largest_difference(first: Path, second: Path) -> float:
    """Largest |difference| between the densities two runs wrote (the same files in both)."""
    names = sorted(p.name for p in (first / "densities").iterdir())
    if names != sorted(p.name for p in (second / "densities").iterdir()):
        raise AssertionError(f"{first} and {second} hold different density files")
    return max(
        float(np.abs(np.load(first / "densities" / n) - np.load(second / "densities" / n)).max())
        for n in names
    )


def measure(
    work: Path, count: int, repeats: int
) -> tuple[list[list[float]], list[list[float]], list[float | None], dict[str, list[float]]]:
    """Images/s and CPU milliseconds per image of every variant in each repeat, the mean size
    of its overlays, and the times of each step of the prediction."""
    checkpoint = train_checkpoint(work / "run")
    images = work / "images"
    write_images(images, count)
    stages = stage_times(checkpoint, images, work)
    warmup = work / "warmup"  # first calls pay one-off costs (kernel set-up for each batch size)
    warmup.mkdir()
    for path in sorted(images.iterdir())[:8]:
        (warmup / path.name).symlink_to(path)
    for variant in VARIANTS:
        timed_predict(checkpoint, warmup, work / "warmup_out", variant)
        shutil.rmtree(work / "warmup_out")
    rates: list[list[float]] = [[] for _ in VARIANTS]
    cpu: list[list[float]] = [[] for _ in VARIANTS]
    sizes: list[float | None] = []
    for repeat in range(repeats):
        for index, variant in enumerate(VARIANTS):
            output = work / f"out{index}"
            seconds, cpu_s = timed_predict(checkpoint, images, output, variant)
            rates[index].append(count / seconds)
            cpu[index].append(cpu_s / count * 1000)
            print(f"  repeat {repeat + 1}, {variant.name}: {count / seconds:.2f} images/s")
            if repeat == 0:
                sizes.append(overlay_kib(output) if (output / "overlays").exists() else None)
            if repeat == 0 and index:  # each variant checked against the first
                difference = largest_difference(work / "out0", output)
                if difference > 1e-5:
                    raise AssertionError(f"{variant.name}: densities differ by {difference:.2e}")
            if repeat or index:
                shutil.rmtree(output)
        if repeat == 0:
            shutil.rmtree(work / "out0")
    return rates, cpu, sizes, stages


def stage_times(checkpoint: Path, images: Path, work: Path) -> dict[str, list[float]]:
    """Milliseconds per image of each step of ``code.predict`` for the density task, each timed
    alone over the first 8 images (the fastest of 3 passes after an untimed one), on torch's
    default threads and on one: what the variants batch or overlap."""
    device = torch.device("cpu")
    model, cfg = Checkpointer.load_model(checkpoint, device)
    parser, task = predict_parser(), build_task(cfg)
    task.add_predict_options(parser)
    argv = ["--checkpoint", str(checkpoint), "--input", str(images), "--output", str(work)]
    predictor = task.predictor(model, device, parser.parse_args(argv))
    paths = sorted(images.iterdir())[:8]
    pictures = [read_rgb(path) for path in paths]
    names = [path.name for path in paths]
    batches = [predictor.batch(*item) for item in zip(pictures, names, strict=True)]
    with torch.no_grad():
        prediction = model(Batch.cat(batches))[0]
    densities = [to_original_size(p, (HEIGHT, WIDTH)).numpy() for p in prediction]
    each = range(len(paths))
    steps: dict[str, Callable[[], object]] = {  # each over all the images
        "decode the JPEG": lambda: [read_rgb(path) for path in paths],
        "model input (resize, centre bias)": lambda: [predictor.batch(pictures[i], names[i])
                                                      for i in each],
        "model forward, batch 1": lambda: [model(batch) for batch in batches],
        "model forward, batch 8": lambda: model(Batch.cat(batches)),
        "density to 1024×768 (upsample, log-softmax)": lambda: [
            to_original_size(p, (HEIGHT, WIDTH)).numpy() for p in prediction],
        "write the density .npy": lambda: [np.save(work / "d.npy", d) for d in densities],
        "heat-map overlay PNG, before": lambda: [
            previous_save_heatmap(work / "before.png", pictures[i], densities[i]) for i in each],
        "heat-map overlay PNG, now": lambda: [
            save_heatmap(work / "now.png", pictures[i], densities[i]) for i in each],
    }  # fmt: skip
    times: dict[str, list[float]] = {name: [] for name in steps}
    default = torch.get_num_threads()
    with torch.no_grad():
        for threads in (default, 1):
            torch.set_num_threads(threads)
            for name, step in steps.items():
                step()  # untimed: first calls pay one-off costs
                seconds = []
                for _ in range(3):
                    start = time.perf_counter()
                    step()
                    seconds.append(time.perf_counter() - start)
                times[name].append(min(seconds) / len(paths) * 1000)
    torch.set_num_threads(default)
    return times


def table(rates: list[list[float]], cpu: list[list[float]], sizes: list[float | None]) -> str:
    before = max(rates[0])
    lines = [
        "| variant | options | images/s (fastest) | median | vs before | CPU ms/image (median) "
        "| overlay PNG |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for variant, values, cpu_ms, size in zip(VARIANTS, rates, cpu, sizes, strict=True):
        options = f"`{' '.join(variant.options)}`" if variant.options else "—"
        lines.append(
            f"| {variant.name} | {options} | {max(values):.2f} | {statistics.median(values):.2f} "
            f"| {max(values) / before:.2f}× | {statistics.median(cpu_ms):.0f} "
            f"| {'—' if size is None else f'{size:,.0f} KiB'} |"
        )
    return "\n".join(lines)


def machine(load_before: tuple[float, ...], load_after: tuple[float, ...]) -> str:
    cores = available_cpus()
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    busy = max(load_before[0], load_after[0]) > 0.5 * cores
    text = (
        f"Machine: {cores} CPU cores, {gpu}, torch {torch.__version__} with "
        f"{torch.get_num_threads()} threads; load average (1 min) {load_before[0]:.2f} before "
        f"and {load_after[0]:.2f} after the run"
    )
    if busy:
        text += ": measured while other jobs were running on the machine (all variants alike)"
    return text + "."


def build_parser() -> argparse.ArgumentParser:
    """The command line, apart from ``main`` so that documented commands can be checked."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=32, help="1024x768 inputs per call")
    parser.add_argument("--repeats", type=int, default=3, help="calls of each variant")
    parser.add_argument("--results", type=Path, default=Path("benchmarks/RESULTS.md"))
    return parser


def main() -> None:
    args = build_parser().parse_args()
    load_before = os.getloadavg()
    print(f"load average before: {', '.join(f'{x:.2f}' for x in load_before)}")
    with tempfile.TemporaryDirectory() as tmp:
        rates, cpu, sizes, stages = measure(Path(tmp), args.images, args.repeats)
    load_after = os.getloadavg()
    print(f"load average after: {', '.join(f'{x:.2f}' for x in load_after)}")
    summary = table(rates, cpu, sizes)
    fastest = [max(values) for values in rates]
    ratios = (
        f"Defaults vs before: **{fastest[DEFAULTS] / fastest[0]:.2f}×**; vs the old loop with "
        f"today's heat maps: {fastest[DEFAULTS] / fastest[1]:.2f}× on torch's "
        f"{torch.get_num_threads()} threads, {fastest[DEFAULTS] / fastest[2]:.2f}× against the "
        "same loop on 1 torch thread."
    )
    steps = "\n".join(
        [f"| step (one at a time) | ms per image, {torch.get_num_threads()} torch threads "
         "| 1 torch thread |", "|---|---:|---:|"]
        + [f"| {name} | {ms[0]:.1f} | {ms[1]:.1f} |" for name, ms in stages.items()]
    )  # fmt: skip
    print(summary)
    print(ratios)
    print(steps)
    date = datetime.date.today().isoformat()
    block = (
        f"`uv run python -m benchmarks.predict --images {args.images} --repeats "
        f"{args.repeats}` ({date}): {args.images} synthetic {WIDTH}×{HEIGHT} JPEGs, the OSIE "
        f"CPU model (`{CONFIG}`, input 150×200) after one training step; each variant "
        f"{args.repeats} times in turn, densities identical across variants (≤ 1e-5). "
        f"{machine(load_before, load_after)}\n\n{summary}\n\n{ratios}\n\n"
        f"Where an image's time goes, each step timed alone (fastest of 3 passes over 8 "
        f"images):\n\n{steps}"
    )
    update_results(args.results, "predict", HEADING, block)
    print(f"written to {args.results}")


if __name__ == "__main__":
    main()
