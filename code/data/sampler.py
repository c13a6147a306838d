"""Batches of one image size, sharded across DDP ranks, deterministic per (seed, epoch), resumable.

Each epoch:

1. samples are grouped by (height, width); with ``shuffle`` each group is permuted with a
   generator seeded by (seed, epoch), the same on every rank;
2. each group is cut into batches of ``batch_size``. A group's leftover (fewer than
   ``batch_size`` samples) is **dropped** with ``drop_last``, otherwise **kept as a smaller
   batch** — never padded with repeated samples, so a sample is seen at most once per epoch;
3. the batch list is shuffled (with ``shuffle``) and made a multiple of ``num_replicas``: with
   ``drop_last`` the surplus batches are **dropped**, otherwise the first batches are
   **repeated** to fill the last round (up to ``num_replicas - 1`` repeated batches);
4. rank r takes batches r, r + num_replicas, ... — disjoint, and every rank gets the same
   number, so no rank waits for a batch that never comes.

``last_epoch_counts`` reports how many samples and batches steps 2 and 3 dropped or repeated.
When evaluating under DDP, pass ``drop_last=False`` and de-duplicate repeated batches by image
index (they are whole batches listed in ``repeated_batches``), or evaluate on one rank.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from torch.utils.data import Sampler


class ShapeAwareBatchSampler(Sampler[list[int]]):
    """Shape-homogeneous batches of sample indices for one rank; see the module docstring."""

    def __init__(
        self,
        sizes: Sequence[tuple[int, int]],
        batch_size: int,
        num_replicas: int,
        rank: int,
        seed: int,
        shuffle: bool,
        drop_last: bool,
    ) -> None:
        if batch_size < 1 or num_replicas < 1 or not 0 <= rank < num_replicas:
            raise ValueError(
                f"need batch_size >= 1 and 0 <= rank < num_replicas, "
                f"got {batch_size}, rank {rank} of {num_replicas}"
            )
        self.sizes = [(int(h), int(w)) for h, w in sizes]
        self.batch_size, self.num_replicas, self.rank = batch_size, num_replicas, rank
        self.seed, self.shuffle, self.drop_last = seed, shuffle, drop_last
        self.epoch = 0
        self._resume_at = 0
        self.last_epoch_counts: dict[str, int] = {}
        if len(self._all_batches()) < num_replicas:
            raise ValueError(
                f"{len(self.sizes)} samples make fewer batches than the {num_replicas} ranks; "
                "lower BATCH_SIZE or the number of processes"
            )

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose order ``__iter__`` yields (call before each epoch)."""
        self.epoch = epoch

    def _all_batches(self) -> list[list[int]]:
        """All ranks' batches of the current epoch, in order; rank r's are [r::num_replicas]."""
        rng = np.random.default_rng([self.seed, self.epoch])
        groups: dict[tuple[int, int], list[int]] = defaultdict(list)
        for index, size in enumerate(self.sizes):
            groups[size].append(index)
        batches, dropped_samples = [], 0
        for size in sorted(groups):
            members = np.asarray(groups[size])
            if self.shuffle:
                members = rng.permutation(members)
            for start in range(0, len(members), self.batch_size):
                batch = members[start : start + self.batch_size].tolist()
                if len(batch) < self.batch_size and self.drop_last:
                    dropped_samples += len(batch)
                    continue
                batches.append(batch)
        if self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        surplus = len(batches) % self.num_replicas
        repeated = 0
        if surplus and self.drop_last:
            dropped_samples += sum(len(b) for b in batches[len(batches) - surplus :])
            batches = batches[: len(batches) - surplus]
        elif surplus:
            repeated = self.num_replicas - surplus
            batches = batches + batches[:repeated]
        self.last_epoch_counts = {
            "dropped_samples": dropped_samples,
            "repeated_batches": repeated,
            "batches_per_rank": len(batches) // self.num_replicas,
        }
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        mine = self._all_batches()[self.rank :: self.num_replicas]
        start, self._resume_at = self._resume_at, 0
        yield from mine[start:]

    def __len__(self) -> int:
        """Batches this rank yields in a full epoch (the same on every rank)."""
        return len(self._all_batches()) // self.num_replicas

    def state_dict(self, batches_consumed: int) -> dict[str, Any]:
        """Where to resume: the epoch and how many of its batches the training loop has used.

        ``batches_consumed`` comes from the training loop, not from this sampler: a DataLoader
        draws batches ahead of use (workers × prefetch), so the sampler's own position would
        skip batches that were drawn but never trained on.
        """
        return {
            "epoch": self.epoch,
            "batches_consumed": batches_consumed,
            "seed": self.seed,
            "num_replicas": self.num_replicas,
            "batch_size": self.batch_size,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume: the next ``__iter__`` starts after the consumed batches of that epoch."""
        for key in ("seed", "num_replicas", "batch_size"):
            if state[key] != getattr(self, key):
                raise ValueError(
                    f"cannot resume the batch order: saved {key}={state[key]}, now "
                    f"{getattr(self, key)}; the order would differ from the interrupted run"
                )
        self.epoch = state["epoch"]
        self._resume_at = state["batches_consumed"]
