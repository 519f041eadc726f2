import numpy as np
import pytest

from keras_tips.evaluation.metrics import confusion_matrix
from keras_tips.evaluation.metrics import depth_abs_rel
from keras_tips.evaluation.metrics import depth_delta
from keras_tips.evaluation.metrics import depth_metrics
from keras_tips.evaluation.metrics import depth_rmse
from keras_tips.evaluation.metrics import mean_iou
from keras_tips.evaluation.metrics import pixel_accuracy
from keras_tips.evaluation.metrics import segmentation_scores

# A 2x3 example, 255 = ignore (the prediction there, 0, does not count):
TARGET = np.array([[0, 0, 1], [1, 2, 255]])
PRED = np.array([[0, 1, 1], [1, 2, 0]])
# class 0: pred {(0,0)}, target {(0,0),(0,1)}          -> I 1, U 2 -> 1/2
# class 1: pred {(0,1),(0,2),(1,0)}, target {(0,2),(1,0)} -> I 2, U 3 -> 2/3
# class 2: pred {(1,1)}, target {(1,1)}                -> I 1, U 1 -> 1
HAND_MIOU = (1 / 2 + 2 / 3 + 1) / 3


def test_mean_iou_by_hand():
    assert mean_iou(PRED, TARGET, num_classes=3) == pytest.approx(HAND_MIOU)
    miou, per_class = mean_iou(PRED, TARGET, num_classes=3, return_per_class=True)
    np.testing.assert_allclose(per_class, [1 / 2, 2 / 3, 1.0])


def test_absent_classes_are_excluded_but_false_positives_count():
    # Class 3 is in neither prediction nor target: excluded from the mean.
    miou, per_class = mean_iou(PRED, TARGET, num_classes=4, return_per_class=True)
    assert miou == pytest.approx(HAND_MIOU)
    assert np.isnan(per_class[3])
    # Predicting class 3 somewhere it is absent from the target: IoU 0
    # counts. Pixel (0,0) becomes 3: class 0 -> I 0, U 1 -> 0; class 3 -> 0.
    pred = PRED.copy()
    pred[0, 0] = 3
    assert mean_iou(pred, TARGET, num_classes=4) == pytest.approx((0 + 2 / 3 + 1 + 0) / 4)


def test_ignore_index_variants():
    # Without an ignore index, 255 is an invalid class id.
    with pytest.raises(ValueError, match="ignore_index"):
        mean_iou(PRED, TARGET, num_classes=3, ignore_index=None)
    # Ignoring id 0 of a target without 255: pixels (0,0), (0,1) are out.
    target = np.array([[0, 0, 1], [1, 2, 2]])
    # Class 1: pred {(0,2),(1,0)} (the (0,1) prediction is ignored), target
    # {(0,2),(1,0)} -> 1. Class 2: pred {(1,1)}, target {(1,1),(1,2)} ->
    # 1/2. Class 0 is predicted at (1,2) only -> I 0, U 1 -> 0.
    assert mean_iou(PRED, target, num_classes=3, ignore_index=0) == pytest.approx(
        (0 + 1 + 0.5) / 3
    )
    everything_ignored = np.full((2, 3), 255)
    assert np.isnan(mean_iou(PRED, everything_ignored, 3))
    assert np.isnan(pixel_accuracy(PRED, everything_ignored))


def test_out_of_range_predictions_are_misses():
    pred = PRED.copy()
    pred[1, 1] = -1  # e.g. "no class"
    matrix, misses = confusion_matrix(pred, TARGET, 3, 255)
    np.testing.assert_array_equal(misses, [0, 0, 1])
    # Class 2: I 0, U 1.
    assert mean_iou(pred, TARGET, 3) == pytest.approx((1 / 2 + 2 / 3 + 0) / 3)
    assert segmentation_scores(matrix, misses)["pixel_accuracy"] == pytest.approx(3 / 5)


def test_pixel_accuracy_by_hand():
    # 5 valid pixels, 4 right ((0,1) is wrong).
    assert pixel_accuracy(PRED, TARGET) == pytest.approx(4 / 5)
    assert pixel_accuracy(PRED, TARGET, ignore_index=None) == pytest.approx(4 / 6)
    scores = segmentation_scores(*confusion_matrix(PRED, TARGET, 3, 255))
    assert scores["miou"] == pytest.approx(HAND_MIOU)
    assert scores["pixel_accuracy"] == pytest.approx(4 / 5)
    with pytest.raises(ValueError, match="same shape"):
        pixel_accuracy(PRED, TARGET[:, :2])


def test_depth_metrics_by_hand():
    pred = np.array([1.0, 2.0, 3.0, 5.0])
    target = np.array([1.0, 4.0, 0.0, np.nan])  # 0 and NaN: missing depth
    # Valid: pixels 0, 1. RMSE sqrt((0 + 4) / 2); abs-rel (0 + 2/4) / 2;
    # delta: ratios 1 and 2 -> 1/2.
    assert depth_rmse(pred, target) == pytest.approx(np.sqrt(2.0))
    assert depth_abs_rel(pred, target) == pytest.approx(0.25)
    assert depth_delta(pred, target) == pytest.approx(0.5)
    assert depth_delta(pred, target, threshold=2.5) == pytest.approx(1.0)
    # An explicit mask: pixel 1 only.
    mask = np.array([False, True, True, True])
    assert depth_rmse(pred, target, mask) == pytest.approx(np.sqrt((2.0**2 + 3.0**2) / 2))
    assert depth_abs_rel(pred, target, mask) == pytest.approx(0.5)
    assert depth_metrics(pred, target) == {
        "rmse": pytest.approx(np.sqrt(2.0)),
        "abs_rel": pytest.approx(0.25),
        "delta1": pytest.approx(0.5),
    }
    # Non-positive predictions are wrong for delta, not a crash.
    assert depth_delta(np.array([0.0, -1.0]), np.array([1.0, 1.0])) == 0.0
    assert np.isnan(depth_rmse(pred, np.zeros(4)))
