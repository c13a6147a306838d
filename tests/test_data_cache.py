"""The LMDB sample cache: round trip, stale key, damage, DDP build by one rank."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from code.data.cache import CacheError, LMDBCache, StaleCacheError, build_cache, fingerprint_dataset


def samples(n: int) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(n)
    return [
        {
            "image": rng.integers(0, 255, (6, 8, 3), dtype=np.uint8),
            "fixations": rng.random((i + 1, 2)).astype(np.float32),
            "centerbias": rng.random((6, 8)).astype(np.float32),
        }
        for i in range(n)
    ]


def test_round_trip_and_worker_processes(tmp_path):
    source = samples(40)
    cache = build_cache(tmp_path / "c", source, {"k": 1}, rebuild=False)
    assert len(cache) == 40
    for i in (0, 17, 39, -1):
        for name, array in source[i].items():
            np.testing.assert_array_equal(cache[i][name], array)
            assert cache[i][name].dtype == array.dtype and cache[i][name].flags.writeable
    # DataLoader workers (forked after the parent read) open their own handles.
    loader = torch.utils.data.DataLoader(cache, batch_size=None, num_workers=2)
    got = [s["fixations"].shape[0] for s in loader]
    assert got == list(range(1, 41))
    assert not any(p.name.startswith("c.tmp") for p in tmp_path.iterdir())  # renamed into place


def test_a_build_removes_what_killed_builds_left_and_keeps_a_live_ones(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    live = subprocess.Popen(["sleep", "30"])
    try:
        for pid in (dead.pid, live.pid):
            (tmp_path / f"c.tmp-{pid}").mkdir()
            (tmp_path / f"c.tmp-{pid}" / "data.mdb").write_bytes(b"half a cache")
        build_cache(tmp_path / "c", samples(3), {"k": 1}, rebuild=False)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["c", f"c.tmp-{live.pid}"]
    finally:
        live.kill()
        live.wait()


def test_stale_key_is_refused_then_rebuilt(tmp_path):
    build_cache(tmp_path / "c", samples(5), {"data": "a", "size": [64, 48]}, rebuild=False)
    with pytest.raises(StaleCacheError, match=r"differs in: size.*rebuild"):
        build_cache(tmp_path / "c", samples(5), {"data": "a", "size": [32, 24]}, rebuild=False)
    cache = build_cache(tmp_path / "c", samples(7), {"data": "a", "size": [32, 24]}, rebuild=True)
    assert len(cache) == 7


def test_truncated_cache_is_detected(tmp_path):
    build_cache(tmp_path / "c", samples(60), {"k": 1}, rebuild=False)
    shutil.copytree(tmp_path / "c", tmp_path / "cut")
    data = tmp_path / "cut" / "data.mdb"
    os.truncate(data, data.stat().st_size // 2)
    with pytest.raises(CacheError, match=rf"{tmp_path / 'cut'}.*truncated"):
        LMDBCache(tmp_path / "cut", {"k": 1})
    assert len(build_cache(tmp_path / "cut", samples(60), {"k": 1}, rebuild=True)) == 60


def test_corrupted_record_fails_its_checksum(tmp_path):
    source = samples(3)
    build_cache(tmp_path / "c", source, {"k": 1}, rebuild=False)
    shutil.copytree(tmp_path / "c", tmp_path / "bad")
    raw = bytearray((tmp_path / "bad" / "data.mdb").read_bytes())
    marker = source[1]["centerbias"].tobytes()[:16]
    at = raw.find(marker)
    while at >= 0:  # copy-on-write may have left older copies of the page: flip a bit in each
        raw[at] ^= 0xFF
        at = raw.find(marker, at + 1)
    (tmp_path / "bad" / "data.mdb").write_bytes(bytes(raw))
    cache = LMDBCache(tmp_path / "bad", {"k": 1})
    with pytest.raises(CacheError, match=r"bad, sample 1: .*checksum"):
        cache[1]


def test_fingerprint_changes_with_the_files(tmp_path, osie):
    first = fingerprint_dataset(osie)
    assert first == fingerprint_dataset(osie)
    subset = osie.subset(range(10))
    assert fingerprint_dataset(subset)["stimuli"] != first["stimuli"]


def test_fingerprint_changes_when_a_loader_reads_the_same_files_differently(osie):
    """The same files, the fixations moved by 0.1 % of x towards the left edge (a loader whose
    coordinate convention changed), or a stimulus reported one pixel taller: a stat-only
    fingerprint would serve the old cache."""
    first = fingerprint_dataset(osie)
    fixations = dataclasses.replace(osie.fixations, x=osie.fixations.x * 0.999)
    shifted = dataclasses.replace(osie, fixations=fixations)
    taller = dataclasses.replace(
        osie, stimuli=[dataclasses.replace(osie.stimuli[0], height=osie.stimuli[0].height + 1),
                       *osie.stimuli[1:]],
    )  # fmt: skip
    for changed in (shifted, taller):
        again = fingerprint_dataset(changed)
        assert again["annotations"] == first["annotations"] and again != first


def _ddp_build(rank: int, world: int, path: str, init: str) -> None:
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        cache = build_cache(path, samples(12), {"k": 1}, rebuild=False)
        lengths = [None, None]
        dist.all_gather_object(lengths, (len(cache), int(cache[11]["fixations"].shape[0])))
        assert lengths == [(12, 12), (12, 12)]
        # Rank 0 finds the cache stale: every rank gets the error, none waits forever.
        with pytest.raises(CacheError, match="other content"):
            build_cache(path, samples(12), {"k": 2}, rebuild=False)
    finally:
        dist.destroy_process_group()


def test_ddp_one_rank_builds_the_other_waits(tmp_path):
    init = f"file://{tmp_path / 'rendezvous'}"
    mp.spawn(_ddp_build, args=(2, str(tmp_path / "c"), init), nprocs=2, join=True)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("c")] == ["c"]
