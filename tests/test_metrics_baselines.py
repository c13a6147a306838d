import numpy as np
import pytest
from scipy.special import logsumexp

from benchmarks.osie import osie_dataset
from code.data.centerbias import CenterBias
from code.metrics.baselines import CrossValidatedCenterBias


@pytest.fixture(scope="module")
def dataset(osie_csv):
    return osie_dataset(osie_csv)


def test_center_bias_is_a_density_at_every_size_asked_for(dataset):
    model = CenterBias(0.05, 0.01).fit(dataset)
    first = model.log_density(600, 800).copy()
    for size in [(600, 800), (30, 50), (600, 800), (41, 41)]:
        log_p = model.log_density(*size)
        assert log_p.shape == size
        assert logsumexp(log_p) == pytest.approx(0, abs=1e-12)
    np.testing.assert_array_equal(model.log_density(600, 800), first)
    # most mass in the middle, as on OSIE's 800×600 photographs
    assert first[300, 400] > first[10, 10] + 1


def test_refitting_replaces_the_kept_map(dataset):
    model = CenterBias(0.05, 0.01).fit(dataset)
    before = model.log_density(60, 80).copy()
    model.fit(dataset.subset(range(3)))
    assert not np.array_equal(model.log_density(60, 80), before)


def test_cross_validated_center_bias_never_sees_the_image_itself(dataset):
    folds = 5
    cv = CrossValidatedCenterBias(0.05, 0.01, folds).fit(dataset)
    for image in [0, 7]:
        others = [i for i in range(len(dataset.stimuli)) if i % folds != image % folds]
        alone = CenterBias(0.05, 0.01).fit(dataset.subset(others))
        np.testing.assert_array_equal(cv.log_density(image, 60, 80), alone.log_density(60, 80))
