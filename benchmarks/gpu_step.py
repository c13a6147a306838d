"""Training-step throughput of full-size DinoGaze-SPADE on a GPU: images/s, peak memory and
model FLOP utilisation, for DINOv2 ViT-B/14 and ViT-L/14 (random weights: nothing to download)
at several input sizes, bf16 autocast, PyTorch SDPA attention, channels-last, compile on and off.

    uv run python -m benchmarks.gpu_step [--archs vitb vitl] [--heights 448 742 1022]
        [--compile off on] [--steps 20] [--peak-tflops 989]

The models are the configs ``configs/01_dinogaze_spade/vitb/mit1003_spade.yaml`` (ViT-B/14) and
``vitl_highres/spade.yaml`` (ViT-L/14) with their batch sizes, the encoder frozen as there; the
batches are synthetic (random images, 40 square segments, 16 fixations per image), so only the
model is measured. A step is forward + loss + backward + AdamW step. FLOPs per step are counted
once per setting by ``torch.utils.flop_counter`` (matrix products, convolutions and attention;
forward and backward), MFU = FLOPs per step / step time / peak. The default peak, 989 TFLOP/s,
is the dense bf16 peak of an H100/H200 SXM; pass the device's own with ``--peak-tflops``.
Without a CUDA device it says so and measures nothing (``--device cpu`` runs it anyway, e.g.
as a smoke test at tiny sizes).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from code.config import load_config
from code.data.batch import Batch
from code.engine.optim import build_optimizer
from code.engine.precision import Precision
from code.models.build import GazeModel, build_model

CONFIGS = {
    "vitb": Path("configs/01_dinogaze_spade/vitb/mit1003_spade.yaml"),
    "vitl": Path("configs/01_dinogaze_spade/vitl_highres/spade.yaml"),
}
PATCH = 14


def synthetic_batch(size: int, height: int, width: int, device: torch.device) -> Batch:
    """Random images, 8x5 block segments, 16 random fixations each, a uniform centre bias."""
    rows = torch.arange(height, device=device) * 5 // height
    cols = torch.arange(width, device=device) * 8 // width
    segments = (rows[:, None] * 8 + cols[None, :]).expand(size, height, width).contiguous()
    fixations = torch.rand(size, 16, 2, device=device) * torch.tensor(
        [width - 1, height - 1], device=device
    )
    uniform = -float(torch.tensor(height * width).log())
    return Batch(
        input=torch.rand(size, 3, height, width, device=device),
        image_index=torch.arange(size, device=device),
        original_size=torch.tensor([[height, width]] * size, device=device),
        fixations=fixations,
        fixation_mask=torch.ones(size, 16, dtype=torch.bool, device=device),
        centerbias=torch.full((size, height, width), uniform, device=device),
        segments=segments,
    )


def train_step(
    model: GazeModel, optimizer: torch.optim.Optimizer, batch: Batch, precision: Precision
) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward, loss, backward and optimizer step; the loss and the prediction, detached."""
    with precision.autocast():
        prediction, batch = model(batch)
    loss_sum, count = model.loss(prediction, batch)
    loss = loss_sum / count
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.detach(), prediction.detach()


def measure(
    arch: str, height: int, compiled: bool, steps: int, device: torch.device, bf16: bool
) -> dict:
    """Images/s, peak memory (GiB) and FLOPs per step of one setting."""
    width = round(height * 4 / 3 / PATCH) * PATCH
    cfg = load_config(CONFIGS[arch], ["MODEL.ENCODER.DINOV2.WEIGHTS", "null",
                                      "TRAIN.INIT.CHECKPOINT", "null",
                                      "DATA.IMAGE_SIZE", f"[{height}, {width}]"])  # fmt: skip
    torch.manual_seed(0)
    model = build_model(cfg).to(device).to(memory_format=torch.channels_last).train()
    optimizer = build_optimizer(cfg, model)
    batch = synthetic_batch(cfg.DATA.BATCH_SIZE, height, width, device)
    batch.input = batch.input.contiguous(memory_format=torch.channels_last)
    precision = Precision("bf16" if bf16 else "fp32", device)
    with FlopCounterMode(display=False) as counter:
        train_step(model, optimizer, batch, precision)
    flops = counter.get_total_flops()
    if compiled:
        model.compile()
    for _ in range(3):  # warm-up (and compilation)
        train_step(model, optimizer, batch, precision)
    synchronize(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    for _ in range(steps):
        train_step(model, optimizer, batch, precision)
    synchronize(device)
    seconds = (time.perf_counter() - start) / steps
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return {"size": (height, width), "batch": cfg.DATA.BATCH_SIZE, "step_s": seconds,
            "images_s": cfg.DATA.BATCH_SIZE / seconds, "peak_gib": peak,
            "tflop_step": flops / 1e12}  # fmt: skip


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def build_parser() -> argparse.ArgumentParser:
    """The command line, apart from ``main`` so that documented commands can be checked."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--archs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--heights", nargs="+", type=int, default=[448, 742, 1022])
    parser.add_argument("--compile", nargs="+", default=["off", "on"], choices=["off", "on"])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="dense bf16 peak")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--fp32", action="store_true", help="no bf16 autocast")
    return parser


def main(argv: list[str] | None = None) -> list[dict]:
    args = build_parser().parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: not run (pass --device cpu to run on the CPU anyway)")
        return []
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    precision = "fp32" if args.fp32 else "bf16 autocast"
    print(f"{name}, torch {torch.__version__}, {precision}, SDPA attention, channels-last; "
          f"MFU against {args.peak_tflops:.0f} TFLOP/s\n")  # fmt: skip
    print(
        "| encoder | input | batch | compile | images/s | step (ms) | peak memory (GiB) "
        "| TFLOP/step | MFU |\n|---|---|---:|---|---:|---:|---:|---:|---:|"
    )
    results = []
    for arch in args.archs:
        for height in args.heights:
            for mode in args.compile:
                r = measure(arch, height, mode == "on", args.steps, device, not args.fp32)
                mfu = r["tflop_step"] / r["step_s"] / args.peak_tflops
                peak = "—" if r["peak_gib"] is None else f"{r['peak_gib']:.1f}"
                print(f"| {arch} | {r['size'][0]}×{r['size'][1]} | {r['batch']} | {mode} "
                      f"| {r['images_s']:.1f} | {r['step_s'] * 1e3:.0f} | {peak} "
                      f"| {r['tflop_step']:.2f} | {mfu:.1%} |", flush=True)  # fmt: skip
                results.append({"arch": arch, "compile": mode, "mfu": mfu, **r})
    return results


if __name__ == "__main__":
    main()
