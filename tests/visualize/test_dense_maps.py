"""Pictures of dense predictions: class maps, depth, normals."""

import numpy as np
import pytest

from keras_tips.visualize.dense_maps import DEPTH_COLORMAP
from keras_tips.visualize.dense_maps import depth_image
from keras_tips.visualize.dense_maps import label_map_image
from keras_tips.visualize.dense_maps import normals_image
from keras_tips.visualize.dense_maps import scale_bar_panel
from keras_tips.visualize.images import append_panel
from keras_tips.visualize.overlays import COLORMAPS
from keras_tips.visualize.overlays import color_palette
from keras_tips.visualize.overlays import heatmap
from keras_tips.visualize.overlays import legend_panel


def test_label_map_colours_ids_and_lists_the_classes_present_by_area():
    labels = np.zeros((60, 40), np.int64)
    labels[:, 30:] = 2  # Class 2 covers a quarter, class 0 the rest.
    names = ["wall", "floor", "sky"]
    palette = color_palette(3)
    plain = label_map_image(labels, class_names=names, legend=False)
    assert plain.shape == (60, 40, 3) and plain.dtype == np.uint8
    np.testing.assert_array_equal(plain[0, 0], palette[0])
    np.testing.assert_array_equal(plain[0, 35], palette[2])
    picture = label_map_image(labels, class_names=names)
    assert picture.shape[0] == 60 and picture.shape[1] > 40
    np.testing.assert_array_equal(picture[:, :40], plain)
    # The legend is the one of the classes present, the largest area first.
    expected = legend_panel(60, [(palette[0], "wall"), (palette[2], "sky")])
    np.testing.assert_array_equal(picture[:, 40:], expected)


def test_label_map_legend_is_capped_and_names_unnamed_ids():
    labels = np.arange(30).reshape(5, 6)
    picture = label_map_image(labels, max_legend_entries=4)
    palette = color_palette(30)
    entries = [(palette[i], f"class {i}") for i in range(4)] + [((255, 255, 255), "+ 26 more")]
    np.testing.assert_array_equal(picture[:, 6:], legend_panel(5, entries)[:, :])
    with pytest.raises(ValueError, match="integer array"):
        label_map_image(np.zeros((4, 4), np.float32))


def test_scale_bar_runs_from_high_at_the_top_to_low_at_the_bottom():
    panel = scale_bar_panel(100, (0.5, 4.0), unit="m")
    assert panel.shape[0] == 100 and panel.dtype == np.uint8
    column = panel[:, 12]  # Inside the bar.
    colours = [tuple(c) for c in column if tuple(c) != (255, 255, 255)]
    top, bottom = np.asarray(colours[1]), np.asarray(colours[-2])  # Inside the frame.
    low, high = COLORMAPS[DEPTH_COLORMAP][0], COLORMAPS[DEPTH_COLORMAP][-1]
    assert np.abs(top - high).max() <= 16 and np.abs(bottom - low).max() <= 16
    # Labels are drawn: the panel has dark pixels right of the bar.
    assert (panel[:, 26:] < 100).any()
    # A short picture gets a panel tall enough for two labels.
    assert scale_bar_panel(20, (0.0, 1.0)).shape[0] == 48
    # One value (a flat map) still gets a bar and a label.
    assert scale_bar_panel(60, (2.0, 2.0), unit="m").shape[0] == 60
    with pytest.raises(ValueError, match="value_range"):
        scale_bar_panel(60, (1.0, np.nan))


def test_depth_image_maps_the_range_to_the_colour_map_and_adds_the_bar():
    depth = np.linspace(1.0, 3.0, 50 * 40).reshape(50, 40, 1)
    plain = depth_image(depth, scale_bar=False)
    np.testing.assert_array_equal(plain, heatmap(depth[..., 0], DEPTH_COLORMAP, (1.0, 3.0)))
    picture = depth_image(depth)
    np.testing.assert_array_equal(picture[:, :40], plain)
    bar = scale_bar_panel(50, (1.0, 3.0), DEPTH_COLORMAP, "m")
    np.testing.assert_array_equal(picture, append_panel(plain, bar))
    fixed = depth_image(depth, value_range=(0.0, 10.0), scale_bar=False)
    assert not np.array_equal(fixed, plain)
    with pytest.raises(ValueError, match="depth"):
        depth_image(np.zeros((2, 3, 4)))


def test_normals_image_draws_unit_vectors_as_rgb():
    normals = np.array([[[0.0, 0.0, 2.0], [-3.0, 0.0, 0.0], [0.0, 0.0, 0.0]]])
    picture = normals_image(normals)
    assert picture.shape == (1, 3, 3) and picture.dtype == np.uint8
    np.testing.assert_array_equal(picture[0, 0], [128, 128, 255])  # +z
    np.testing.assert_array_equal(picture[0, 1], [0, 128, 128])  # -x
    np.testing.assert_array_equal(picture[0, 2], [128, 128, 128])  # no direction
    with pytest.raises(ValueError, match="normals"):
        normals_image(np.zeros((2, 2, 2)))
