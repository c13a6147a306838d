"""Shape-aware batches: one size per batch, equal and disjoint across DDP ranks, resumable."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

from code.data.sampler import ShapeAwareBatchSampler
from code.data.splits import kfold_by_image, select_subjects, split_by_image, split_by_subject

SIZES = [(32, 48)] * 11 + [(48, 32)] * 7 + [(64, 64)] * 5  # 23 samples, 3 shapes


def rank_batches(rank: int, world: int, epoch: int, drop_last: bool) -> list[list[int]]:
    sampler = ShapeAwareBatchSampler(SIZES, 4, world, rank, 7, True, drop_last)
    sampler.set_epoch(epoch)
    return list(sampler)


@pytest.mark.parametrize("drop_last", [True, False])
def test_two_ranks_disjoint_equal_shape_homogeneous(drop_last):
    """Batches of 4 from 11 + 7 + 5 samples of three shapes: 3 + 2 + 2 = 7 batches (the last
    of each shape partial); drop_last keeps the 2 + 1 + 1 = 4 full ones (7 samples dropped),
    two per rank; otherwise one batch is repeated so that each rank has 4."""
    ranks = [rank_batches(r, 2, 3, drop_last) for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == (2 if drop_last else 4)
    for batches in ranks:
        assert all(len({SIZES[i] for i in b}) == 1 for b in batches)
    sampler = ShapeAwareBatchSampler(SIZES, 4, 2, 0, 7, True, drop_last)
    sampler.set_epoch(3)
    list(sampler)
    counts = sampler.last_epoch_counts
    flat = [i for batches in ranks for b in batches for i in b]
    if drop_last:
        assert counts["dropped_samples"] == 3 + 3 + 1
        assert len(flat) == len(set(flat)) == len(SIZES) - counts["dropped_samples"]
        assert all(len(b) == 4 for batches in ranks for b in batches)
    else:  # every sample at least once; only whole repeated batches appear twice
        assert set(flat) == set(range(len(SIZES)))
        assert counts["dropped_samples"] == 0
        unique = {tuple(b) for batches in ranks for b in batches}
        assert counts["repeated_batches"] == 1 and len(unique) == 7
        # the samples drawn twice are exactly one of the batches
        times = Counter(flat)
        twice = sorted(i for i, n in times.items() if n == 2)
        assert max(times.values()) == 2 and twice in [sorted(b) for b in unique]


def test_deterministic_per_seed_and_epoch():
    assert rank_batches(0, 2, 1, True) == rank_batches(0, 2, 1, True)
    assert rank_batches(0, 2, 1, True) != rank_batches(0, 2, 2, True)


def test_resume_mid_epoch_continues_exactly():
    full = rank_batches(1, 2, 5, False)
    sampler = ShapeAwareBatchSampler(SIZES, 4, 2, 1, 7, True, False)
    sampler.set_epoch(5)
    it = iter(sampler)
    consumed = [next(it), next(it)]
    state = sampler.state_dict(batches_consumed=2)
    resumed = ShapeAwareBatchSampler(SIZES, 4, 2, 1, 7, True, False)
    resumed.load_state_dict(json.loads(json.dumps(state)))
    assert consumed + list(resumed) == full
    assert list(resumed) == full  # the following pass is a whole epoch again
    wrong = ShapeAwareBatchSampler(SIZES, 8, 2, 1, 7, True, False)
    with pytest.raises(ValueError, match="batch_size"):
        wrong.load_state_dict(state)


def test_splits_are_deterministic_and_partition(osie):
    split = split_by_image(osie, 0.1, 0.2, 0)
    assert (len(split.train), len(split.val), len(split.test)) == (490, 70, 140)
    assert np.array_equal(
        np.sort(np.concatenate([split.train, split.val, split.test])), np.arange(700)
    )
    assert np.array_equal(split_by_image(osie, 0.1, 0.2, 0).test, split.test)
    folds = kfold_by_image(700, 10, 3)
    assert np.array_equal(np.sort(np.concatenate([test for _, test in folds])), np.arange(700))
    assert all(len(np.intersect1d(train, test)) == 0 for train, test in folds)
    by_subject = split_by_subject(osie, 0.0, 0.2, 1)
    held_out = select_subjects(osie, by_subject.test)
    assert set(held_out.subjects) == set(by_subject.test) and len(by_subject.test) == 3
