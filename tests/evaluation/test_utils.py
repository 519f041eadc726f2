import numpy as np
import pytest

from keras_tips.evaluation.utils import bilinear_resize
from keras_tips.evaluation.utils import bilinear_sample
from keras_tips.evaluation.utils import l2_normalize
from keras_tips.evaluation.utils import patches_to_grid
from keras_tips.evaluation.utils import ranks_of_targets


def test_l2_normalize_keeps_zero_vectors():
    out = l2_normalize([[3.0, 4.0], [0.0, 0.0]])
    np.testing.assert_allclose(out, [[0.6, 0.8], [0.0, 0.0]], atol=1e-7)
    assert out.dtype == np.float32


def test_bilinear_resize_hand_values():
    # Output pixel o sits at input coordinate (o + 0.5) * 2 / 4 - 0.5:
    # -0.25, 0.25, 0.75, 1.25, clamped to [0, 1].
    out = bilinear_resize(np.array([[0.0, 1.0]]), (1, 4))
    np.testing.assert_allclose(out, [[0.0, 0.25, 0.75, 1.0]], atol=1e-7)
    # Same size is the identity; shapes with batch and channels are kept.
    x = np.random.default_rng(0).normal(size=(2, 3, 5, 4))
    np.testing.assert_allclose(bilinear_resize(x, (3, 5)), x, atol=1e-6)
    assert bilinear_resize(x, (6, 10)).shape == (2, 6, 10, 4)
    assert bilinear_resize(x[0], (6, 10)).shape == (6, 10, 4)


@pytest.mark.multibackend
def test_bilinear_resize_matches_keras_upsampling():
    import keras

    x = np.random.default_rng(1).normal(size=(2, 3, 4, 5)).astype("float32")
    for size in [(6, 8), (7, 11), (14, 4)]:
        expected = keras.ops.convert_to_numpy(
            keras.ops.image.resize(x, size, interpolation="bilinear")
        )
        np.testing.assert_allclose(bilinear_resize(x, size), expected, atol=1e-5)


def test_bilinear_sample_matches_full_resize():
    rng = np.random.default_rng(2)
    grid = rng.normal(size=(3, 4, 6)).astype("float32")
    full = bilinear_resize(grid, (9, 10))
    rows = rng.integers(0, 9, 20)
    cols = rng.integers(0, 10, 20)
    np.testing.assert_allclose(
        bilinear_sample(grid, rows, cols, (9, 10)), full[rows, cols], atol=1e-6
    )


def test_patches_to_grid_is_row_major():
    patches = np.arange(2 * 6 * 1).reshape(2, 6, 1)
    grid = patches_to_grid(patches, grid_size=(2, 3))
    np.testing.assert_array_equal(grid[0, :, :, 0], [[0, 1, 2], [3, 4, 5]])
    assert patches_to_grid(patches, image_size=(28, 42)).shape == (2, 2, 3, 1)
    assert patches_to_grid(np.zeros((16, 8))).shape == (4, 4, 8)
    with pytest.raises(ValueError, match="square"):
        patches_to_grid(patches)
    with pytest.raises(ValueError, match="needs 4 patches"):
        patches_to_grid(patches, grid_size=(2, 2))


def test_ranks_count_ties_against_the_target():
    scores = np.array([[0.9, 0.1, 0.5], [0.5, 0.5, 0.5], [0.2, np.nan, 0.1]])
    # Row 0: target 0 is best. Row 1: all tied -> worst rank 2. Row 2: the
    # NaN counts against target 0 -> rank 1.
    np.testing.assert_array_equal(ranks_of_targets(scores, [0, 1, 0]), [0, 2, 1])


def test_patch_majority_labels():
    from keras_tips.evaluation.utils import patch_majority_labels

    labels = np.zeros((1, 4, 6), np.int64)
    labels[0, :2, :2] = 3  # the whole first patch
    labels[0, 2:, 2:3] = 1  # half of the middle-bottom patch: a tie, 0 wins
    labels[0, 2:, 4:] = 2
    labels[0, 3, 4] = 0  # three quarters of the last patch
    out = patch_majority_labels(labels, patch_size=2)
    np.testing.assert_array_equal(out, [[[3, 0, 0], [0, 0, 2]]])
    assert out.shape == (1, 2, 3) and out.dtype == np.int64
    with pytest.raises(ValueError, match="multiples"):
        patch_majority_labels(np.zeros((1, 5, 4), np.int64), patch_size=2)
