"""The generated data set: deterministic, and its fixations really follow its known density."""

from __future__ import annotations

import numpy as np

from code.data.generated import generated_dataset, render_image, true_density


def test_deterministic_from_seed_and_image_index() -> None:
    a = generated_dataset(6, 40, 50, 3, 5, seed=7)
    b = generated_dataset(6, 40, 50, 3, 5, seed=7)
    c = generated_dataset(6, 40, 50, 3, 5, seed=8)
    assert np.array_equal(a.fixations.x, b.fixations.x)
    assert not np.array_equal(a.fixations.x, c.fixations.x)
    assert np.array_equal(a.stimuli[4].read(), render_image(7, 4, 40, 50))
    assert a.stimuli[4].read().shape == (40, 50, 3) and a.stimuli[4].read().dtype == np.uint8


def test_images_are_rendered_once_and_shared_read_only() -> None:
    """Reading an image twice renders it once (the loader reads every image each epoch); the
    shared array cannot be changed by one reader under another."""
    data = generated_dataset(3, 40, 50, 3, 5, seed=7)
    first = data.stimuli[1].read()
    assert data.stimuli[1].read() is first
    assert not first.flags.writeable
    assert np.array_equal(first, render_image(7, 1, 40, 50))


def test_layout_of_scanpaths() -> None:
    data = generated_dataset(4, 40, 50, 3, 5, seed=0)
    fix = data.fixations
    assert len(fix) == 4 * 3 * 5 and len(np.unique(fix.train)) == 12
    assert set(np.unique(fix.index)) == set(range(5))
    assert np.all(fix.duration_ms > 0) and np.all(np.diff(fix.onset_ms[fix.train == 0]) > 0)


def test_fixations_follow_the_true_density() -> None:
    """The mean log-density at the fixations estimates -entropy (in nats) of the true density."""
    data = generated_dataset(3, 30, 40, 400, 10, seed=1)
    for image in range(3):
        density = true_density(1, image, 30, 40)
        assert np.isclose(density.sum(), 1.0)
        fix = data.fixations_of(image)
        at_fixations = np.log(density[fix.y.astype(int), fix.x.astype(int)])
        neg_entropy = float((density * np.log(density)).sum())
        standard_error = at_fixations.std() / np.sqrt(len(at_fixations))
        assert abs(at_fixations.mean() - neg_entropy) < 4 * standard_error
        assert np.log(density).mean() < neg_entropy - 0.3  # the density is far from uniform


def test_scanpaths_prefer_short_saccades() -> None:
    data = generated_dataset(5, 60, 80, 10, 8, seed=2)
    fix = data.fixations
    same_path = fix.train[1:] == fix.train[:-1]
    steps = np.hypot(np.diff(fix.x), np.diff(fix.y))[same_path]
    rng = np.random.default_rng(0)
    shuffled = rng.permutation(len(fix))
    random_steps = np.hypot(fix.x - fix.x[shuffled], fix.y - fix.y[shuffled])
    assert steps.mean() < 0.7 * random_steps.mean()
