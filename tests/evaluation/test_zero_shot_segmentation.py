import numpy as np
import pytest

from keras_tips.evaluation.zero_shot_segmentation import evaluate_zero_shot_segmentation
from keras_tips.evaluation.zero_shot_segmentation import similarity_maps
from keras_tips.evaluation.zero_shot_segmentation import zero_shot_segment

TEXTS = np.array([[1.0, 0.0], [0.0, 2.0]])  # class 0 along x, class 1 along y
# One image, 2 x 2 patches.
PATCHES = np.array([[[[3.0, 0.0], [0.0, 1.0]], [[0.6, 0.8], [-1.0, 0.0]]]])


def test_similarity_maps_are_cosines():
    maps = similarity_maps(PATCHES, TEXTS)
    assert maps.shape == (1, 2, 2, 2)
    np.testing.assert_allclose(
        maps[0], [[[1.0, 0.0], [0.0, 1.0]], [[0.6, 0.8], [-1.0, 0.0]]], atol=1e-6
    )
    single = similarity_maps(PATCHES[0], TEXTS[1])
    np.testing.assert_allclose(single, [[0.0, 1.0], [0.8, 0.0]], atol=1e-6)
    with pytest.raises(ValueError, match="width"):
        similarity_maps(PATCHES, np.ones((2, 3)))


def test_segment_at_patch_and_image_resolution():
    labels = zero_shot_segment(PATCHES, TEXTS, (2, 2))
    np.testing.assert_array_equal(labels[0], [[0, 1], [1, 1]])
    # 2x upsampling of the scores with clear (one-hot) patches: each pixel
    # is nearer (bilinear weight 3/4) to its own patch, so the masks are the
    # patch labels repeated.
    one_hot = np.array([[[[1.0, 0.0], [0.0, 1.0]], [[0.0, 1.0], [0.0, 1.0]]]])
    labels = zero_shot_segment(one_hot, TEXTS, (4, 4))
    np.testing.assert_array_equal(labels[0], np.kron([[0, 1], [1, 1]], np.ones((2, 2))))
    # Scores, not labels, are upsampled: pixel (2, 0) sits at input row
    # 0.75 and column -0.25 (clamped to 0), so its scores are
    # 0.25 * [1, 0] + 0.75 * [0.6, 0.8] = [0.7, 0.6]: class 0, although its
    # nearest patch (1, 0) is class 1.
    labels = zero_shot_segment(PATCHES, TEXTS, (4, 4))
    expected = np.kron([[0, 1], [1, 1]], np.ones((2, 2)))
    expected[2, 0] = 0
    np.testing.assert_array_equal(labels[0], expected)


def test_background_threshold_on_cosine_and_probability():
    # Best cosines: 1 (class 0), 1 (class 1), 0.8 (class 1), 0 (class 1).
    labels = zero_shot_segment(PATCHES, TEXTS, (2, 2), background_threshold=0.9)
    # Background 0, class c -> c + 1.
    np.testing.assert_array_equal(labels[0], [[1, 2], [0, 0]])
    # Probabilities with T = 1: softmax of [0.6, 0.8] gives 0.55 for class
    # 1; [-1, 0] gives 0.73 for class 1; [1, 0] gives 0.73.
    labels = zero_shot_segment(
        PATCHES, TEXTS, (2, 2), background_threshold=0.6, temperature=1.0
    )
    np.testing.assert_array_equal(labels[0], [[1, 2], [0, 2]])


def test_evaluate_zero_shot_segmentation_miou_by_hand():
    # Prediction [[0, 1], [1, 1]] against [[0, 1], [0, 255]]: class 0: pred
    # {(0,0)}, target {(0,0),(1,0)} -> 1/2; class 1: pred {(0,1),(1,0)},
    # target {(0,1)} -> 1/2.
    masks = np.array([[[0, 1], [0, 255]]])
    metrics = evaluate_zero_shot_segmentation(PATCHES, TEXTS, masks)
    assert metrics["miou"] == pytest.approx(0.5)
    assert metrics["pixel_accuracy"] == pytest.approx(2 / 3)
    # With the background option masks use 0 = background, c + 1 = class c:
    # prediction [[1, 2], [0, 0]] against [[1, 2], [0, 0]] is perfect.
    metrics = evaluate_zero_shot_segmentation(
        PATCHES, TEXTS, np.array([[[1, 2], [0, 0]]]), background_threshold=0.9
    )
    assert metrics["miou"] == 1.0
    with pytest.raises(ValueError, match="masks"):
        evaluate_zero_shot_segmentation(PATCHES, TEXTS, masks[0])
