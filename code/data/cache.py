"""An LMDB cache of preprocessed samples (``dict[str, np.ndarray]``): built once, memory-mapped.

- Identity: a ``content_key`` (a JSON-able dict of everything that changes the content: the
  data set's file fingerprints from ``fingerprint_dataset``, preprocessing settings) is stored
  in the cache with its SHA-256. Opening with another key is refused with a message saying
  which parts differ and what to do, or the cache is rebuilt when ``rebuild`` is set.
- Building: into ``<path>.tmp-<pid>`` first, synced and renamed into place when complete, so a
  killed build never leaves a cache that looks valid (its temporary is removed by the next
  build). Under ``torch.distributed`` rank 0 builds while
  the other ranks wait in a broadcast that also carries rank 0's error, if any, so no rank
  waits forever (the path must be on a file system every rank sees).
- Storage: one LMDB record per sample: magic, CRC32, header length, a JSON header
  ``{name: [dtype, shape]}`` and the arrays' raw bytes — no pickle.
- Reading: read-only, ``lock=False``, ``readahead=False``: pages come from the OS page cache on
  demand, so memory does not grow with the data set. The environment is opened lazily in each
  process (DataLoader workers each open their own; an LMDB handle must not cross a fork).
- Damage: a truncated data file (checked before any page is touched, as reading past the end of
  a memory map kills the process), a missing record, a failed checksum or an LMDB error raise
  ``CacheError`` naming the cache path.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lmdb
import numpy as np
import torch.distributed as dist

from code.data.gaze import GazeDataset
from code.utils.cli import UserError
from code.utils.files import remove_orphaned_temporaries, sync_directory
from code.utils.logging import get_logger
from code.utils.progress import ProgressBar

FORMAT_VERSION = 1
MAGIC = b"SCC1"
PREFIX = struct.Struct("<4sII")  # magic, crc32 of the rest, header length
META_KEY = b"__meta__"
COMMIT_EVERY = 64

Sample = dict[str, np.ndarray]


class CacheError(UserError, RuntimeError):
    """A cache that cannot be used: stale, damaged or missing. The message names its path."""


def content_hash(content_key: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(content_key, sort_keys=True).encode()).hexdigest()


def fingerprint_dataset(dataset: GazeDataset) -> dict[str, Any]:
    """Paths, sizes and modification times of a data set's annotation files and stimuli, and a
    digest of what the loader made of them (each stimulus' id and size, every fixation field).

    Cheap (``stat`` only, no reading of images; the loaded arrays hash in milliseconds): any
    edit, replacement or renaming changes it, and so does a loader whose code now reads the
    same files differently (e.g. another coordinate convention). Folders in
    ``dataset.sources`` (e.g. MIT1003's per-subject files) are walked.
    """
    annotation_files = []
    for source in dataset.sources:
        paths = sorted(p for p in source.rglob("*") if p.is_file()) if source.is_dir() else [source]
        annotation_files += paths
    stimuli = [s.path for s in dataset.stimuli if s.path is not None]
    return {
        "name": dataset.name,
        "annotations": _stat_digest(annotation_files),
        "stimuli": _stat_digest(stimuli),
        "num_stimuli": len(dataset.stimuli),
        "num_fixations": len(dataset.fixations),
        "loaded": _loaded_digest(dataset),
    }


def _loaded_digest(dataset: GazeDataset) -> str:
    digest = hashlib.sha256()
    for stimulus in dataset.stimuli:
        digest.update(f"{stimulus.id}\0{stimulus.height}\0{stimulus.width}\n".encode())
    for name, values in sorted(vars(dataset.fixations).items()):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(values).tobytes())
    return digest.hexdigest()


def _stat_digest(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        stat = path.stat()
        digest.update(f"{path.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def encode_sample(sample: Sample) -> bytes:
    # asarray keeps 0-d arrays 0-d (ascontiguousarray would make them 1-d).
    arrays = {name: np.asarray(value, order="C") for name, value in sample.items()}
    header = json.dumps({n: [a.dtype.str, list(a.shape)] for n, a in arrays.items()}).encode()
    payload = header + b"".join(a.tobytes() for a in arrays.values())
    return PREFIX.pack(MAGIC, zlib.crc32(payload), len(header)) + payload


def decode_sample(buffer: memoryview, where: str) -> Sample:
    """Arrays from one record; copies once so the arrays are writable and outlive the txn."""
    if len(buffer) < PREFIX.size:
        raise CacheError(f"{where}: record is truncated")
    magic, crc, header_len = PREFIX.unpack_from(buffer)
    payload = buffer[PREFIX.size :]
    if magic != MAGIC or zlib.crc32(payload) != crc:
        raise CacheError(f"{where}: record fails its checksum (the cache is damaged)")
    header = json.loads(bytes(payload[:header_len]))
    sample, offset = {}, header_len
    for name, (dtype, shape) in header.items():
        dt = np.dtype(dtype)
        count = int(np.prod(shape))
        sample[name] = np.frombuffer(payload, dt, count, offset).reshape(shape).copy()
        offset += count * dt.itemsize
    return sample


# One read-only environment per cache and process. py-lmdb refuses to open the same files twice
# in a process, and a forked DataLoader worker inherits the parent's handle (and that refusal):
# the worker closes its inherited copy (its own mapping; the parent's stays) and opens its own.
_ENVS: dict[Path, tuple[int, lmdb.Environment]] = {}


def _open_env(path: Path) -> lmdb.Environment:
    key = path.resolve()
    if key in _ENVS:
        pid, env = _ENVS[key]
        if pid == os.getpid():
            return env
        _close_env(path)
    data_file = path / "data.mdb"
    if not data_file.is_file():
        raise CacheError(f"no LMDB cache at {path} (missing {data_file.name})")
    try:
        env = lmdb.open(str(path), readonly=True, lock=False, readahead=False, meminit=False)
    except lmdb.Error as err:
        raise CacheError(f"cannot open the LMDB cache at {path}: {err}") from err
    needed = (env.info()["last_pgno"] + 1) * env.stat()["psize"]
    if data_file.stat().st_size < needed:
        env.close()
        raise CacheError(
            f"the LMDB cache at {path} is truncated ({data_file.stat().st_size} of {needed} "
            "bytes); delete it or rebuild it"
        )
    _ENVS[key] = (os.getpid(), env)
    return env


def _close_env(path: Path) -> None:
    entry = _ENVS.pop(path.resolve(), None)
    if entry is not None:
        entry[1].close()


class LMDBCache(Sequence[Sample]):
    """Read access to a complete cache; validates it on construction (see the module docstring)."""

    def __init__(self, path: Path, content_key: dict[str, Any]) -> None:
        self.path = Path(path)
        self._length: int = self._check(content_key)["length"]

    def _open(self) -> lmdb.Environment:
        return _open_env(self.path)

    def _check(self, content_key: dict[str, Any]) -> dict[str, Any]:
        try:
            with self._open().begin(buffers=False) as txn:
                raw = txn.get(META_KEY)
                entries = txn.stat()["entries"]
        except lmdb.Error as err:
            raise CacheError(f"the LMDB cache at {self.path} is damaged: {err}") from err
        if raw is None:
            raise CacheError(f"the LMDB cache at {self.path} has no metadata (incomplete build)")
        meta = json.loads(raw)
        if meta["format_version"] != FORMAT_VERSION:
            raise CacheError(
                f"{self.path}: cache format {meta['format_version']}, expected {FORMAT_VERSION}"
            )
        if meta["key_hash"] != content_hash(content_key):
            raise StaleCacheError(self.path, meta["content_key"], content_key)
        if entries != meta["length"] + 1:
            raise CacheError(
                f"the LMDB cache at {self.path} holds {entries - 1} samples, its metadata "
                f"says {meta['length']}; it is damaged, delete it or rebuild it"
            )
        return meta

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, index: int) -> Sample:  # type: ignore[override]
        if not -self._length <= index < self._length:
            raise IndexError(f"sample {index} out of range for {self._length} cached samples")
        index %= self._length
        where = f"{self.path}, sample {index}"
        try:
            with self._open().begin(buffers=True) as txn:
                buffer = txn.get(_key(index))
                if buffer is None:
                    raise CacheError(f"{where}: record missing (the cache is damaged)")
                return decode_sample(buffer, where)
        except lmdb.Error as err:
            raise CacheError(f"{where}: LMDB error {err} (the cache is damaged)") from err


class StaleCacheError(CacheError):
    """The cache was built from other data or settings than the ones asked for."""

    def __init__(self, path: Path, stored: dict[str, Any], wanted: dict[str, Any]) -> None:
        differ = sorted(k for k in stored.keys() | wanted.keys() if stored.get(k) != wanted.get(k))
        super().__init__(
            f"the cache at {path} was built for other content (differs in: {', '.join(differ)}); "
            f"delete {path} or rebuild it (rebuild=True, e.g. DATA.CACHE.REBUILD: true)"
        )


def build_cache(
    path: Path, source: Sequence[Sample], content_key: dict[str, Any], rebuild: bool
) -> LMDBCache:
    """Open the cache at ``path`` for ``content_key``, building it first when needed.

    Builds when the cache is absent, or when it is stale or damaged and ``rebuild`` is set;
    a stale or damaged cache without ``rebuild`` is an error. Under DDP only rank 0 builds.
    """
    path = Path(path)
    distributed = dist.is_available() and dist.is_initialized()
    if not distributed:
        _prepare(path, source, content_key, rebuild, progress=True)
        return LMDBCache(path, content_key)
    message: list[str | None] = [None]
    error: Exception | None = None
    if dist.get_rank() == 0:
        try:
            _prepare(path, source, content_key, rebuild, progress=True)
        except Exception as err:  # reported to every rank below, then re-raised here
            error, message[0] = err, f"{type(err).__name__}: {err}"
    dist.broadcast_object_list(message, src=0)
    if error is not None:
        raise error
    if message[0] is not None:
        raise CacheError(f"rank 0 could not prepare the cache at {path}: {message[0]}")
    return LMDBCache(path, content_key)


def _prepare(
    path: Path, source: Sequence[Sample], content_key: dict[str, Any], rebuild: bool, progress: bool
) -> None:
    if path.exists():
        try:
            LMDBCache(path, content_key)
            return
        except CacheError:
            if not rebuild:
                raise
    _write(path, source, content_key, progress)


def _write(
    path: Path, source: Sequence[Sample], content_key: dict[str, Any], progress: bool
) -> None:
    for orphan in remove_orphaned_temporaries(path):
        get_logger().info("removed %s, left by a build that did not finish", orphan)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    first = encode_sample(source[0]) if len(source) else b""
    map_size = max(1 << 26, 2 * len(first) * len(source))
    env = lmdb.open(str(tmp), map_size=map_size, meminit=False, map_async=True, sync=False)
    try:
        pending: list[tuple[bytes, bytes]] = []
        for index in ProgressBar(
            range(len(source)), desc=f"caching {path.name}", disable=not progress
        ):
            pending.append((_key(index), first if index == 0 else encode_sample(source[index])))
            if len(pending) == COMMIT_EVERY or index == len(source) - 1:
                map_size = _put(env, pending, map_size)
                pending = []
        meta = {
            "format_version": FORMAT_VERSION,
            "key_hash": content_hash(content_key),
            "content_key": content_key,
            "length": len(source),
        }
        _put(env, [(META_KEY, json.dumps(meta).encode())], map_size)
        env.sync(True)
    finally:
        env.close()
    if path.exists():  # a stale or damaged cache being replaced
        _close_env(path)
        old = path.with_name(f"{path.name}.old-{os.getpid()}")
        path.rename(old)
        tmp.rename(path)
        shutil.rmtree(old)
    else:
        tmp.rename(path)
    sync_directory(path.parent)


def _put(env: lmdb.Environment, items: list[tuple[bytes, bytes]], map_size: int) -> int:
    """Write ``items`` in one transaction, growing the map when it is full; the new size."""
    while True:
        try:
            with env.begin(write=True) as txn:
                for key, value in items:
                    txn.put(key, value)
            return map_size
        except lmdb.MapFullError:
            map_size *= 2
            env.set_mapsize(map_size)


def _key(index: int) -> bytes:
    return b"%010d" % index
