"""A user's mistake ends every command with one message naming what to fix and exit status 1,
with no traceback (``--debug`` shows it); an internal error keeps its traceback; a folder that a
failed start left is no run to protect."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from code.engine.checkpoint import Checkpointer
from code.engine.outputs import RunExistsError, claim_run_folder
from code.main import main
from code.utils.cli import run_command
from tests.small_run import QUICKSTART, REPO_ROOT

HELD = "held_run"  # a folder holding a finished run's files
IMAGE = str(REPO_ROOT / "docs" / "neva_utility.png")  # any image: predict checks it first


def _cases(tmp: Path) -> dict[str, tuple[list[str], str]]:
    """Each bad invocation, with a regular expression its one-line message must match."""
    missing = str(tmp / "missing")
    return {
        "main: unknown key": (
            ["code.main", "--cfg", QUICKSTART, "--opts", "TRAIN.EPOCH", "2"],
            r"unknown key TRAIN\.EPOCH .*EPOCHS",
        ),
        "predict: a config as the checkpoint": (
            ["code.predict", "--checkpoint", QUICKSTART, "--input", IMAGE, "--output", missing],
            r"configs/quickstart\.yaml: not a checkpoint",
        ),
        "evaluate: data set root missing": (
            [
                "code.evaluate",
                "saliency",
                "--dataset",
                "osie",
                "--root",
                missing,
                "--predictions",
                missing,
                "--out",
                str(tmp / "out"),
                "--kind",
                "log-density",
                "--opts",
                "EVAL.FIXATION_MAP_SIGMA",
                "3",
            ],
            r"annotation file not found: .*missing",
        ),
        "report: not a run": (
            ["code.report", missing, "--out", str(tmp / "report")],
            r"missing: no metrics\.json .*not a finished run",
        ),
        "data: data set root missing": (
            ["code.data", "summary", "--dataset", "osie", "--root", missing],
            r"annotation file not found",
        ),
    }


def _start(args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.Popen(
        [sys.executable, "-m", *args], cwd=REPO_ROOT, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[int, str, str]]:
    """Every case's (status, stdout, stderr), and one with --debug; run side by side."""
    tmp = tmp_path_factory.mktemp("user_errors")
    cases = {name: args for name, (args, _) in _cases(tmp).items()}
    cases["main: unknown key, --debug"] = [*cases["main: unknown key"], "--debug"]
    processes = {name: _start(args) for name, args in cases.items()}
    outputs = {name: process.communicate(timeout=600) for name, process in processes.items()}
    return {name: (processes[name].returncode, *outputs[name]) for name in cases}


@pytest.mark.parametrize("case", list(_cases(Path("/tmp"))))
def test_a_user_error_is_one_message_and_status_1(
    case: str, outcomes: dict[str, tuple[int, str, str]]
) -> None:
    status, stdout, stderr = outcomes[case]
    pattern = _cases(Path("/tmp"))[case][1]
    assert status == 1, stderr
    assert "Traceback" not in stdout + stderr
    message = [line for line in (stdout + stderr).splitlines() if "error" in line.lower()]
    assert len(message) == 1 and re.search(pattern, message[0]), stdout + stderr


@pytest.mark.parametrize(
    ("args", "pattern"),
    [
        (["--cfg", "missing.yaml"], "config file not found: missing.yaml"),
        (["--cfg", QUICKSTART, "--opts", "OUTPUT_DIR", HELD],
         rf"held_run holds a run \({re.escape(Checkpointer.BEST)}, metrics\.json\): pass "
         "--overwrite"),
    ],
)  # fmt: skip
def test_code_main_refuses_in_one_message(
    args: list[str], pattern: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """In process (the subprocess cases above show the same path from the shell)."""
    (tmp_path / HELD).mkdir()
    for name in (Checkpointer.BEST, "metrics.json"):
        (tmp_path / HELD / name).write_text("")
    args = [str(tmp_path / a) if a == HELD else a for a in args]
    with pytest.raises(SystemExit) as exit_:
        run_command(main, args)
    assert exit_.value.code == 1
    assert re.match(f"error: .*{pattern}", capsys.readouterr().err)


def test_a_mistyped_config_key_answers_before_torch_loads() -> None:
    script = (
        "import sys\nfrom code.main import main\n"
        f"try:\n    main(['--cfg', {QUICKSTART!r}, '--opts', 'TRAIN.EPOCH', '2'])\n"
        "except Exception as error:\n    print(type(error).__name__)\n"
        "print('torch' in sys.modules)"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, env=env, text=True,
                          capture_output=True, timeout=120)  # fmt: skip
    assert done.stdout.split() == ["ConfigError", "False"], done.stderr


def test_debug_shows_the_traceback(outcomes: dict[str, tuple[int, str, str]]) -> None:
    status, _, stderr = outcomes["main: unknown key, --debug"]
    assert status == 1 and "Traceback" in stderr and "ConfigError" in stderr


def test_an_internal_error_keeps_its_traceback(capsys: pytest.CaptureFixture) -> None:
    def broken(argv: list[str]) -> None:
        return {}["a key the code forgot"]

    with pytest.raises(KeyError):
        run_command(broken, [])

    def mistaken(argv: list[str]) -> None:
        raise ValueError("DATA.IMAGE_SIZE must be [height, width]")

    with pytest.raises(SystemExit) as exit_:
        run_command(mistaken, [])
    assert exit_.value.code == 1
    assert capsys.readouterr().err.startswith("error: DATA.IMAGE_SIZE must be [height, width]\n")


def test_what_a_failed_start_left_is_cleared_and_a_checkpoint_is_protected(
    tmp_path: Path,
) -> None:
    # A crash in the first epoch leaves metrics.jsonl and log.txt, no checkpoint: start over.
    for name in ("metrics.jsonl", "log.txt", "config.yaml"):
        (tmp_path / name).write_text("")
    assert claim_run_folder(tmp_path, resume=False, overwrite=False) == ["metrics.jsonl"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml"]
    # a best checkpoint without a last one (e.g. copied): --resume cannot work, so it is not
    # suggested
    Checkpointer(tmp_path).best.write_text("")
    with pytest.raises(RunExistsError) as refused:
        claim_run_folder(tmp_path, resume=False, overwrite=False)
    assert "--resume" not in str(refused.value) and "--overwrite" in str(refused.value)
    Checkpointer(tmp_path).last.write_text("")
    with pytest.raises(RunExistsError, match="--resume to continue it, or --overwrite"):
        claim_run_folder(tmp_path, resume=False, overwrite=False)
