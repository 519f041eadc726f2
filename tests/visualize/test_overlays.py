import numpy as np
import pytest

from keras_tips.visualize.overlays import COLORMAPS
from keras_tips.visualize.overlays import color_palette
from keras_tips.visualize.overlays import colorize_mask
from keras_tips.visualize.overlays import heatmap
from keras_tips.visualize.overlays import nearest_resize
from keras_tips.visualize.overlays import segmentation_overlay
from keras_tips.visualize.overlays import similarity_overlay

IMAGE = np.full((4, 6, 3), 100, np.uint8)
MASK = np.array([[0, 0, 1, 1, 2, 2]] * 2 + [[255] * 6] * 2)


def test_palette_is_distinct_and_deterministic():
    palette = color_palette(30)
    assert palette.shape == (30, 3) and palette.dtype == np.uint8
    assert len({tuple(c) for c in palette}) == 30
    np.testing.assert_array_equal(palette, color_palette(30))


def test_colorize_mask():
    palette = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255]], np.uint8)
    colored = colorize_mask(MASK, palette, ignore_index=255, ignore_color=(9, 9, 9))
    np.testing.assert_array_equal(colored[0, 0], [255, 0, 0])
    np.testing.assert_array_equal(colored[0, 5], [0, 0, 255])
    np.testing.assert_array_equal(colored[3, 3], [9, 9, 9])


def test_overlay_blends_with_alpha_and_keeps_ignored_pixels():
    palette = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255]], np.uint8)
    full = segmentation_overlay(IMAGE, MASK, palette, alpha=1.0)
    np.testing.assert_array_equal(full[:2], colorize_mask(MASK, palette, 255)[:2])
    np.testing.assert_array_equal(full[2:], IMAGE[2:])  # ignored: unchanged
    np.testing.assert_array_equal(segmentation_overlay(IMAGE, MASK, palette, alpha=0.0), IMAGE)
    half = segmentation_overlay(IMAGE, MASK, palette, alpha=0.5)
    np.testing.assert_array_equal(half[0, 0], [178, 50, 50])  # (100 + 255) / 2 = 177.5
    assert half.dtype == np.uint8


def test_overlay_resizes_the_mask_and_draws_a_legend():
    small = np.array([[0, 1], [2, 255]])
    overlay = segmentation_overlay(np.zeros((8, 8, 3)), small, alpha=1.0)
    palette = color_palette(3)
    np.testing.assert_array_equal(overlay[:4, :4], np.broadcast_to(palette[0], (4, 4, 3)))
    np.testing.assert_array_equal(overlay[4:, :4], np.broadcast_to(palette[2], (4, 4, 3)))
    assert (overlay[4:, 4:] == 0).all()
    with_legend = segmentation_overlay(
        np.zeros((60, 40, 3)), small, class_names=["sky", "tree", "road"], legend=True
    )
    assert with_legend.shape[1] > 40 and with_legend.shape[0] >= 60
    np.testing.assert_array_equal(
        with_legend[:60, :40], segmentation_overlay(np.zeros((60, 40, 3)), small)
    )


def test_nearest_resize_repeats_for_integer_factors():
    labels = np.array([[1, 2], [3, 4]])
    np.testing.assert_array_equal(nearest_resize(labels, (4, 6)), np.kron(labels, np.ones((2, 3))))


def test_heatmap_ends_and_range():
    values = np.array([[0.0, 0.5, 1.0]])
    colors = heatmap(values, "gray")
    np.testing.assert_array_equal(colors[0], [[0, 0, 0], [128, 128, 128], [255, 255, 255]])
    jet = heatmap(values, "jet")
    np.testing.assert_array_equal(jet[0, 0], COLORMAPS["jet"][0])
    np.testing.assert_array_equal(jet[0, -1], COLORMAPS["jet"][-1])
    # A fixed range clips; NaN gets the low colour.
    fixed = heatmap(np.array([[np.nan, 2.0]]), "gray", value_range=(0.0, 1.0))
    np.testing.assert_array_equal(fixed[0], [[0, 0, 0], [255, 255, 255]])
    with pytest.raises(ValueError, match="colormap"):
        heatmap(values, "rainbow")


def test_similarity_overlay():
    similarity = np.array([[0.0, 0.2], [0.1, 0.9]])
    image = np.zeros((28, 28, 3))
    assert (similarity_overlay(image, similarity, alpha=0.0) == 0).all()
    hot = similarity_overlay(image, similarity, alpha=1.0, colormap="gray")
    assert hot.shape == (28, 28, 3) and hot.dtype == np.uint8
    # Bilinear upsampling (14x): pixels beyond the outer patch centres
    # (the outer 7) keep the patch value, so the (1, 1) corner is at the
    # maximum and the (0, 0) corner at the minimum of the map.
    grey = hot[..., 0]
    assert (grey[21:, 21:] == 255).all() and (grey[:7, :7] == 0).all()
    assert 0 < grey[14, 14] < 255
    with pytest.raises(ValueError, match="similarity"):
        similarity_overlay(image, np.zeros((1, 2, 2)))
