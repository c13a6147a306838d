"""bf16 autocast on the CPU: a training step of every model family at its full width, each in a
subprocess (a oneDNN kernel that corrupts the heap would abort pytest itself), the reproduction
of the AMX convolution bug with its workaround, and the workaround's arithmetic."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
import torch

from code.engine.precision import ConvolutionBiasApart
from tests.small_run import REPO_ROOT

# One config per model family, at the widths of its largest (GPU) config where it has one: the
# AMX fault depends on channel counts (DinoGaze's 2304 -> 8 readout convolution), not on image
# size, so small images keep each step to seconds.
FAMILIES = {
    "dinogaze_vit": ["configs/01_dinogaze_spade/vitb/mit1003_spade.yaml", "28", "42",
                     "MODEL.ENCODER.DINOV2.WEIGHTS", "null", "TRAIN.INIT.CHECKPOINT", "null"],
    "convnet_spade": ["configs/01_dinogaze_spade/cpu_osie/spade.yaml", "48", "64"],
    "masked_convnet": ["configs/04_focus_mim/stl10/foveate.yaml", "96", "96"],
    "hierarchical_transformer": ["configs/06_attention/full/shifted_window.yaml", "64", "96"],
    "multires_points": ["configs/03_mr_cnn/mit1003/faithful.yaml", "96", "128"],
    "multires_dense": ["configs/03_mr_cnn/mit1003/dense_readout.yaml", "96", "128"],
}  # fmt: skip


def _python(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.Popen(
        [sys.executable, *args], cwd=REPO_ROOT, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip


def _outcome(process: subprocess.Popen) -> tuple[int, str]:
    output, _ = process.communicate(timeout=600)
    return process.returncode, output


def _explain(code: int, output: str) -> str:
    died = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit status {code}"
    return f"{died}; last output:\n{output[-2000:]}"


@pytest.fixture(scope="module")
def family_steps() -> dict[str, tuple[int, str]]:
    """Every family's step, started together (they are mostly interpreter start-up)."""
    processes = {name: _python("-m", "tests.bf16_step", *args) for name, args in FAMILIES.items()}
    return {name: _outcome(process) for name, process in processes.items()}


@pytest.mark.parametrize("family", FAMILIES)
def test_a_bf16_training_step_of_each_family_survives_on_this_cpu(
    family: str, family_steps: dict[str, tuple[int, str]]
) -> None:
    code, output = family_steps[family]
    assert code == 0, _explain(code, output)
    assert output.count("step ") == 2 and "nan" not in output


def test_the_amx_reproduction_survives_with_the_bias_apart() -> None:
    code, output = _outcome(_python("-m", "scripts.onednn_amx_conv_bias_grad", "--apart"))
    assert code == 0 and "survived" in output, _explain(code, output)


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("bias_as", ["positional", "keyword", "none"])
def test_the_bias_added_apart_is_the_same_convolution(dims: int, bias_as: str) -> None:
    torch.manual_seed(0)
    convolve = (torch.conv1d, torch.conv2d, torch.conv3d)[dims - 1]
    x = torch.randn(2, 5, *[6] * dims, requires_grad=True)
    weight = torch.randn(4, 5, *[3] * dims, requires_grad=True)
    bias = torch.randn(4, requires_grad=True)

    def run() -> list[torch.Tensor]:
        if bias_as == "keyword":
            y = convolve(x, weight, bias=bias, padding=1)
        else:
            y = convolve(x, weight, bias if bias_as == "positional" else None, 1, 1)
        (y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum().backward()
        grads = [t.grad.clone() for t in (x, weight, bias) if t.grad is not None]
        for t in (x, weight, bias):
            t.grad = None
        return [y.detach(), *grads]

    fused = run()
    with ConvolutionBiasApart():
        apart = run()
    assert len(apart) == len(fused) == (3 if bias_as == "none" else 4)
    for a, b in zip(apart, fused, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


AUTOCAST_CHECK = """
import torch
from code.engine.precision import Precision
conv = torch.nn.Conv2d(3, 4, 3)
for precision in ("bf16", "fp32"):
    with Precision(precision, torch.device("cpu")).autocast():
        y = conv(torch.rand(1, 3, 8, 8))
    print(precision, y.dtype, type(y.grad_fn).__name__)
"""


def test_cpu_bf16_autocast_takes_the_bias_out_of_the_convolution_and_keeps_bf16() -> None:
    code, output = _outcome(_python("-c", AUTOCAST_CHECK))
    assert code == 0, _explain(code, output)
    # bf16: the bias added after the convolution, in bf16; fp32: the fused convolution
    assert output.splitlines() == [
        "bf16 torch.bfloat16 AddBackward0",
        "fp32 torch.float32 ConvolutionBackward0",
    ]
