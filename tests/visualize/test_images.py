import numpy as np
import pytest

from keras_tips.visualize.images import image_grid
from keras_tips.visualize.images import load_png
from keras_tips.visualize.images import resize_image
from keras_tips.visualize.images import save_png
from keras_tips.visualize.images import to_rgb
from keras_tips.visualize.images import to_uint8


def test_to_uint8_conversions():
    np.testing.assert_array_equal(to_uint8(np.array([0.0, 0.5, 1.0, 2.0, -1.0, np.nan])),
                                  [0, 128, 255, 255, 0, 0])
    np.testing.assert_array_equal(to_uint8(np.array([True, False])), [255, 0])
    np.testing.assert_array_equal(to_uint8(np.array([-5, 7, 300])), [0, 7, 255])
    assert to_rgb(np.zeros((2, 3))).shape == (2, 3, 3)
    assert to_rgb(np.zeros((2, 3, 4), np.uint8)).shape == (2, 3, 3)


@pytest.mark.parametrize("shape", [(5, 7), (5, 7, 3), (5, 7, 4)])
def test_save_png_round_trip(tmp_path, shape):
    image = np.random.default_rng(0).integers(0, 256, shape).astype(np.uint8)
    path = tmp_path / "nested" / "image.png"
    written = save_png(image, path)
    np.testing.assert_array_equal(written, image)
    np.testing.assert_array_equal(load_png(path), image)


def test_save_png_float_and_errors(tmp_path):
    written = save_png(np.full((2, 2, 1), 0.5), tmp_path / "grey.png")
    np.testing.assert_array_equal(load_png(tmp_path / "grey.png"), np.full((2, 2), 128))
    assert written.shape == (2, 2)
    with pytest.raises(ValueError, match="Expected an image"):
        save_png(np.zeros((2, 2, 5)), tmp_path / "bad.png")


def test_resize_image():
    image = np.arange(4, dtype=np.uint8).reshape(2, 2)
    np.testing.assert_array_equal(
        resize_image(image, (4, 4), "nearest"), np.kron(image, np.ones((2, 2), np.uint8))
    )
    assert resize_image(np.zeros((2, 2, 3)), (3, 5)).shape == (3, 5, 3)
    with pytest.raises(ValueError, match="resample"):
        resize_image(image, (4, 4), "lanczos")


def test_image_grid_layout(tmp_path):
    red = np.zeros((10, 10, 3), np.uint8)
    red[..., 0] = 255
    grey = np.full((6, 8), 0.5)
    grid = image_grid([red, grey, red], columns=2, padding=2, background=0,
                      path=tmp_path / "grid.png")
    # 2 x 2 cells of 10 x 10 with 2-pixel padding: 3 * 2 + 2 * 10 = 26.
    assert grid.shape == (26, 26, 3) and grid.dtype == np.uint8
    np.testing.assert_array_equal(grid[2:12, 2:12], red)  # cell (0, 0)
    np.testing.assert_array_equal(grid[2:8, 14:22], 128)  # grey, top-left of its cell
    assert (grid[8:12, 14:24] == 0).all()  # rest of the grey cell: background
    np.testing.assert_array_equal(grid[14:24, 2:12], red)  # cell (1, 0)
    assert (grid[14:24, 14:24] == 0).all()  # empty cell
    np.testing.assert_array_equal(load_png(tmp_path / "grid.png"), grid)


def test_image_grid_titles_and_errors():
    images = [np.zeros((20, 30, 3))] * 2
    plain = image_grid(images)
    titled = image_grid(images, titles=["a", "b"])
    assert titled.shape[0] > plain.shape[0]
    assert (titled != 255).sum() > (plain != 255).sum()  # the text is drawn
    with pytest.raises(ValueError, match="titles"):
        image_grid(images, titles=["a"])
    with pytest.raises(ValueError, match="empty"):
        image_grid([])
