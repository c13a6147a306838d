"""``--help`` works for every command without other arguments, exits 0, and lists every option
(a predict task's own, a data set loader's own)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.small_run import REPO_ROOT

COMMANDS = {
    "code.main": ["--cfg", "--opts", "--resume", "--overwrite", "--eval-only", "--debug"],
    "code.predict": ["--checkpoint", "--overwrite", "options for checkpoints of task 'density'",
                     "--scanpaths K", "--no-overlays"],
    "code.evaluate saliency": ["--predictions", "--overwrite", "--dataset osie:", "--root STR",
                               "--cfg", "--opts"],
    "code.evaluate scanpaths": ["--cfg", "--opts", "--dataset salicon:", "--split STR"],
    "code.report": ["--names", "--overwrite", "--update FILE#NAME", "--debug"],
    "code.scanpath_report": ["--row LABEL RUN_DIR GENERATOR", "--out", "--update FILE#NAME"],
    "code.data": ["--dataset osie:", "--root STR", "--json"],
}  # fmt: skip


@pytest.fixture(scope="module")
def helps() -> dict[str, tuple[tuple[str, str], int]]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}

    def start(command: str) -> subprocess.Popen:
        argv = [sys.executable, "-m", *command.split(), "--help"]
        pipe = subprocess.PIPE
        return subprocess.Popen(argv, cwd=REPO_ROOT, env=env, text=True, stdout=pipe, stderr=pipe)

    processes = {command: start(command) for command in COMMANDS}
    return {command: (p.communicate(timeout=300), p.returncode) for command, p in processes.items()}


@pytest.mark.parametrize("command", COMMANDS)
def test_help_lists_every_option(command: str, helps: dict) -> None:
    (stdout, stderr), status = helps[command]
    assert status == 0, stderr
    missing = [option for option in COMMANDS[command] if option not in stdout]
    assert not missing, stdout
