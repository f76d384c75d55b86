"""Multi-label metrics against scikit-learn's, thresholds, and the digit canvases."""

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, f1_score

from keras_resnet import multilabel
from keras_resnet.data.sources import digits_arrays
from keras_resnet.errors import InvalidArgument


def _scored(seed, examples=300, classes=7, ties=False):
    rng = np.random.default_rng(seed)
    truth = (rng.uniform(size=(examples, classes)) < rng.uniform(0.05, 0.5, classes)).astype(int)
    scores = np.clip(truth * rng.uniform(0.1, 0.6, classes) + rng.normal(0.3, 0.2, truth.shape), 0, 1)
    if ties:
        scores = np.round(scores, 1)  # many equal scores: ties are where AP implementations differ
    return truth, scores


@pytest.mark.parametrize("seed,ties", [(0, False), (1, False), (2, True), (3, True)])
def test_average_precision_and_f1_equal_scikit_learns(seed, ties):
    truth, scores = _scored(seed, ties=ties)
    expected_ap = average_precision_score(truth, scores, average=None)
    np.testing.assert_allclose(multilabel.average_precision(truth, scores), expected_ap, rtol=1e-12)
    thresholds = np.linspace(0.3, 0.6, truth.shape[1])
    report = multilabel.multilabel_report(truth, scores, thresholds)
    assert report["mAP"] == pytest.approx(average_precision_score(truth, scores, average="macro"), rel=1e-12)
    predicted = (scores >= thresholds).astype(int)
    for average in ("macro", "micro"):
        assert report[f"f1_{average}"] == pytest.approx(
            f1_score(truth, predicted, average=average, zero_division=0), rel=1e-12)
    per_class = f1_score(truth, predicted, average=None, zero_division=0)
    np.testing.assert_allclose([row["f1"] for row in report["per_class"].values()], per_class, rtol=1e-12)


def test_thresholds_maximise_each_classes_f1():
    truth, scores = _scored(4, ties=True)
    chosen = multilabel.choose_thresholds(truth, scores)
    best = multilabel.multilabel_report(truth, scores, chosen)["per_class"]
    for k, name in enumerate(best):
        # No threshold on a fine grid does better for that class (scikit-learn's F1).
        grid = [f1_score(truth[:, k], scores[:, k] >= t, zero_division=0) for t in np.linspace(-0.01, 1.01, 205)]
        assert best[name]["f1"] == pytest.approx(max(grid), abs=1e-12)
        assert not np.any(np.isclose(scores[:, k], chosen[k]))  # midway, never on a score
    # A class with no positives keeps the default.
    truth[:, 0] = 0
    assert multilabel.choose_thresholds(truth, scores, default=0.7)[0] == 0.7
    assert np.isnan(multilabel.average_precision(truth, scores)[0])


def test_refusals_name_the_argument():
    with pytest.raises(InvalidArgument, match="must both be"):
        multilabel.multilabel_report(np.zeros((3, 2)), np.zeros((3, 3)))
    with pytest.raises(InvalidArgument, match="multi-hot"):
        multilabel.average_precision(np.full((3, 2), 2), np.zeros((3, 2)))
    with pytest.raises(InvalidArgument, match="`class_names` must name 2 classes"):
        multilabel.multilabel_report(np.zeros((3, 2)), np.zeros((3, 2)), class_names=["a"])
    with pytest.raises(InvalidArgument, match="`split` must be one of train, validation, test"):
        multilabel.digit_canvases("val")
    with pytest.raises(InvalidArgument, match="`count` must be a positive integer"):
        multilabel.digit_canvases("test", count=0)


def test_canvases_hold_the_digits_their_labels_name():
    images, labels, cells = multilabel.digit_canvases("validation", count=200)
    digits, digit_labels, splits = digits_arrays()
    assert images.shape == (200, 32, 32, 3) and labels.shape == (200, 10) and images.dtype == np.uint8
    filled = (cells >= 0).sum(1)
    assert set(filled) == {2, 3}
    for n in range(200):
        expected = np.zeros(10, np.uint8)
        for cell, index in enumerate(cells[n]):
            row, col = divmod(cell, 2)
            patch = images[n, row * 16:(row + 1) * 16, col * 16:(col + 1) * 16, 0]
            if index < 0:
                assert not patch.any()
                continue
            assert index in splits["validation"]  # a split's canvases use its own digits only
            np.testing.assert_array_equal(patch[::2, ::2], digits[index, :, :, 0])
            expected[digit_labels[index]] = 1
        np.testing.assert_array_equal(labels[n], expected)
    again = multilabel.digit_canvases("validation", count=200)
    np.testing.assert_array_equal(again[0], images)  # seeded: the same canvases every time
