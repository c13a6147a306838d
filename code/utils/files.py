"""Files that survive a crash: syncing a folder after a rename, and clearing the temporaries of
writers that died."""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def sync_directory(folder: Path) -> None:
    """Make a rename in ``folder`` durable (where the platform can open a folder)."""
    try:
        handle = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def remove_orphaned_temporaries(path: Path) -> list[Path]:
    """Delete ``<path>.tmp-<pid>`` left by writers whose process no longer runs (e.g. a killed
    build); a live writer's is kept. Returns what was deleted."""
    removed = []
    for tmp in path.parent.glob(f"{path.name}.tmp-*"):
        pid = tmp.name.rsplit("-", 1)[1]
        if pid.isdigit() and int(pid) != os.getpid() and not _running(int(pid)):
            shutil.rmtree(tmp) if tmp.is_dir() else tmp.unlink()
            removed.append(tmp)
    return removed


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True
