"""Fixations from raw 240 Hz gaze samples, as MIT1003's own ``checkFixations.m`` finds them.

A line-by-line port of the acceleration algorithm ('A') of ``checkFixations.m`` (Hidalgo-Sotelo,
2006, shipped in Judd et al.'s DatabaseCode), which pysaliency runs in MATLAB/Octave to build
MIT1003. Parameters are the original ones: 34 px/deg, acceleration criterion 6 deg/s between two
4-sample windows one sample apart, fixations shorter than 50 ms merged into their saccades.
MATLAB positions are kept 1-based inside this module (variables named ``pos``) and turned into
array indices with ``- 1`` where arrays are read, so the port can be compared with the original.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SAMPLING_RATE = 240.0
ACCEL_CRIT = 34 * 6
WIN_SIZE = 4
STEP_SIZE = 1
FIX_DUR_CUT_PTS = round(50 * SAMPLING_RATE / 1000)


@dataclass
class JuddFixations:
    """Per fixation: median gaze x, y (MATLAB 1-based pixels), first sample (1-based), ms."""

    x: np.ndarray
    y: np.ndarray
    start: np.ndarray
    duration_ms: np.ndarray


def check_fixations(samples: np.ndarray) -> JuddFixations:
    """Fixations in an (N, 2) array of gaze samples (x, y); NaN samples are allowed."""
    x, y = samples[:, 0].astype(np.float64), samples[:, 1].astype(np.float64)
    n = len(x)
    accel = _acceleration(x, y)
    labels = _label_saccades(accel, n)
    if labels is None or np.count_nonzero(labels) < 3:
        return _single_fixation(x, y)
    return _fixations_between_saccades(x, y, labels)


def _acceleration(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    n = len(x)
    pos_change = np.concatenate([[0.0], np.hypot(np.diff(x), np.diff(y))])
    # MATLAB filter(ones(1,w)/w, 1, .): causal moving average with zero initial state.
    smooth = np.convolve(pos_change, np.ones(WIN_SIZE) / WIN_SIZE)[:n]
    vel = np.zeros((n, 2))
    for k in range(2, n - WIN_SIZE - STEP_SIZE + 1):  # MATLAB k = 2 : n-win-step
        vel[k - 1, 0] = smooth[k - 1 : k + WIN_SIZE].sum() / (WIN_SIZE / SAMPLING_RATE)
        vel[k - 1, 1] = smooth[k - 1 + STEP_SIZE : k + WIN_SIZE + STEP_SIZE].sum() / (
            WIN_SIZE / SAMPLING_RATE
        )
    return vel[:, 1] - vel[:, 0]


def _label_saccades(accel: np.ndarray, n: int) -> np.ndarray | None:
    """Per sample 0 (fixation), 3 (saccade start), 1 (inside), 2 (end); None: no saccades."""
    with np.errstate(invalid="ignore"):
        check = np.flatnonzero(accel > ACCEL_CRIT) + 1
    if len(check) < 3:
        return None
    marks = _mark_runs(check)
    if marks is None:
        return None
    return _confirm_by_deceleration(accel, marks, n)


def _mark_runs(check: np.ndarray) -> np.ndarray | None:
    """Rows (pos, mark) of the runs of supra-threshold samples (the 3-1-2 marking)."""
    d = np.diff(check)
    each1 = list(np.flatnonzero(d == 1) + 1)
    each2 = list(np.flatnonzero(d > 1) + 1)
    each3 = [each2[i + 1] for i in np.flatnonzero(np.diff(each2) == 1)] if len(each2) > 1 else []
    last_continues = check[-1] - check[-2] == 1
    if last_continues:
        each1.append(len(check))
    else:
        each3.append(len(check))
    rows = np.zeros((len(check), 2), dtype=np.int64)
    rows[:, 0] = check
    for marks, value in ((each1, 1), (each2, 2), (each3, 3)):
        rows[np.asarray(marks, dtype=np.int64) - 1, 1] = value
    if last_continues:
        rows[-1, 1] = 2
    else:
        rows, each2 = rows[:-1], each2[:-1]
    rows[np.asarray(each2, dtype=np.int64), 1] = 3  # each2 + 1, as positions
    if rows[0, 1] == 1:
        rows[0, 1] = 3
    # Keep contiguous saccades, drop isolated supra-threshold samples.
    kept = [rows[0]] if rows[0, 1] == 3 and rows[1, 1] == 1 else []
    for i in range(1, len(rows) - 1):
        mark = rows[i, 1]
        if (
            (mark == 3 and rows[i + 1, 1] == 1)
            or mark == 1
            or (mark == 2 and rows[i - 1, 1] == 1 and rows[i + 1, 1] == 3)
        ):
            kept.append(rows[i])
        if i == len(rows) - 2:
            previous = kept[-1][0] if kept else 0
            if rows[-1, 0] - previous == 1:
                kept.append(rows[-1])
    if len(kept) < 3:  # MATLAB: length(nn) < 3, nn starting as one zero row
        return None
    return np.asarray(kept)


def _confirm_by_deceleration(accel: np.ndarray, marks: np.ndarray, n: int) -> np.ndarray:
    """A saccade is real if a deceleration below -criterion follows within 25 samples."""
    ends, starts = np.flatnonzero(marks[:, 1] == 2), np.flatnonzero(marks[:, 1] == 3)
    nonzero = np.flatnonzero(accel != 0)
    last_nonzero = nonzero[-1] + 1 if len(nonzero) else None
    good, decel_end = [], []
    for sac, row in enumerate(ends):
        pos = np.array([marks[row, 0] + 1, marks[row, 0] + 2])
        below = accel[pos - 1] < -ACCEL_CRIT
        stop_after, time_ok = 25, True
        while not (below[0] and not below[1]) and time_ok:
            pos += 1
            below = accel[pos - 1] < -ACCEL_CRIT
            stop_after -= 1
            time_ok = pos.max() < n and stop_after > 0
        if time_ok:
            good.append(sac)
            decel_end.append(pos[0])
        elif last_nonzero is not None and np.all(marks[ends, 0] == last_nonzero):
            good.append(sac)  # the trial ends in a saccade
            decel_end.append(n)
    labels = np.zeros(n, dtype=np.int64)
    if not good:
        return labels
    if max(good) >= len(starts):
        raise ValueError("saccade start/end marks do not pair up (checkFixations would fail)")
    start_pos = marks[starts[good], 0]
    end_pos = np.asarray(decel_end)
    if len(good) > 1:
        # Fixations of FIX_DUR_CUT_PTS samples or fewer between saccades merge them.
        too_short = np.flatnonzero(start_pos[1:] - end_pos[:-1] <= FIX_DUR_CUT_PTS)
        start_pos = np.delete(start_pos, too_short + 1)
        end_pos = np.delete(end_pos, too_short)
    if n - decel_end[-1] <= FIX_DUR_CUT_PTS:
        end_pos[-1] = n
    inside = [np.arange(s + 1, e) for s, e in zip(start_pos, end_pos, strict=True)]
    labels[start_pos - 1] = 3
    labels[end_pos - 1] = 2
    if inside:
        labels[np.concatenate(inside).astype(np.int64) - 1] = 1
    return labels


def _fixations_between_saccades(x: np.ndarray, y: np.ndarray, labels: np.ndarray) -> JuddFixations:
    n = len(labels)
    starts3, ends2 = np.flatnonzero(labels == 3) + 1, np.flatnonzero(labels == 2) + 1
    fixation_pos = np.flatnonzero(labels == 0) + 1
    if len(starts3) == 0 or len(ends2) == 0 or len(fixation_pos) == 0:
        raise ValueError(
            "saccade labels without start, end or fixation (checkFixations would fail)"
        )
    if len(starts3) == 1:
        fix_start = [fixation_pos[0], *(ends2 + 1 if ends2[-1] != n else [])]
    else:
        fix_start = [fixation_pos[0], *(ends2[:-1] + 1)]
        if ends2[-1] != n:
            fix_start.append(ends2[-1] + 1)
    begins_in_saccade, ends_in_saccade = starts3[0] == 1, ends2[-1] == n
    fix_end = list(starts3[1:] - 1 if begins_in_saccade else starts3 - 1)
    if not ends_in_saccade:
        fix_end.append(n)
    if len(fix_end) < len(fix_start):
        raise ValueError("fixation starts and ends do not pair up (checkFixations would fail)")
    fix_start_arr = np.asarray(fix_start, dtype=np.int64)
    fix_end_arr = np.asarray(fix_end[: len(fix_start)], dtype=np.int64)
    return JuddFixations(
        x=np.array(
            [_median(x[s - 1 : e]) for s, e in zip(fix_start_arr, fix_end_arr, strict=True)]
        ),
        y=np.array(
            [_median(y[s - 1 : e]) for s, e in zip(fix_start_arr, fix_end_arr, strict=True)]
        ),
        start=fix_start_arr,
        duration_ms=1000 * (fix_end_arr - fix_start_arr + 1) / SAMPLING_RATE,
    )


def _single_fixation(x: np.ndarray, y: np.ndarray) -> JuddFixations:
    """No saccade found: the whole trial is one fixation."""
    return JuddFixations(
        x=np.array([_median(x)]),
        y=np.array([_median(y)]),
        start=np.array([1]),
        duration_ms=np.array([1000 * len(x) / SAMPLING_RATE]),
    )


def _median(values: np.ndarray) -> float:
    finite = values[~np.isnan(values)]
    return float(np.median(finite)) if len(finite) else float("nan")
