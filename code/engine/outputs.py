"""The folder a run writes to: no run is started over another one by accident.

A folder holds a run when it has a checkpoint or finished results (:data:`KEPT_FILES`). Training
starts there only to resume it (``--resume``, from its last checkpoint) or to replace it
(``--overwrite``); ``--eval-only`` writes its own files to ``OUTPUT_DIR/eval`` and leaves the
training run's untouched. A folder with only the log of a run that failed before its first
checkpoint holds nothing to protect: a new run starts over there.
"""

from __future__ import annotations

from pathlib import Path

from code.utils import distributed as dist

RESULT_FILES = ("metrics.jsonl", "metrics.json")
# Rewritten by every run: removed when a run starts over, so it starts a fresh log and wandb id.
RESTARTED_FILES = ("log.txt", "wandb_id.txt")
EVAL_DIR = "eval"


class RunExistsError(FileExistsError):
    """The output folder holds a run that this one would overwrite."""


def run_folder(output_dir: Path, eval_only: bool) -> Path:
    """Where this invocation writes its config, log, metrics and figures."""
    return output_dir / EVAL_DIR if eval_only else output_dir


def claim_run_folder(folder: Path, resume: bool, overwrite: bool) -> list[str]:
    """Check that a run may write to ``folder``; with ``overwrite`` remove the run held there.

    Returns the run files removed (a replaced run, or what a failed start left). Every rank
    checks the same folder before any of them writes; rank 0 removes, then all wait.
    """
    # Imported here: the checkpoint owner loads torch and the models, which code.report (it
    # reads only EVAL_DIR) does not need.
    from code.engine.checkpoint import Checkpointer

    kept = (*Checkpointer.FILES, "metrics.json")  # what a failed start cannot have left
    held = [name for name in (*Checkpointer.FILES, *RESULT_FILES) if (folder / name).exists()]
    checkpoints = Checkpointer(folder)
    if resume:
        if not checkpoints.can_resume():
            raise FileNotFoundError(
                f"nothing to resume: {checkpoints.last} does not exist (run without --resume)"
            )
        return []
    if any(name in kept for name in held) and not overwrite:
        ways = ["--resume to continue it"] if checkpoints.can_resume() else []
        ways.append("--overwrite to replace it")
        raise RunExistsError(
            f"{folder} holds a run ({', '.join(held)}): pass {', or '.join(ways)}, or choose "
            "another OUTPUT_DIR"
        )
    if dist.is_main():
        for name in (*held, *RESTARTED_FILES):
            (folder / name).unlink(missing_ok=True)
    dist.barrier()
    return held
