"""Image files read for a model: listed by suffix, RGB floats in [0, 1]."""

import numpy as np
from PIL import Image

from keras_tips.data.image_files import list_image_files
from keras_tips.data.image_files import load_image


def test_lists_images_by_suffix_sorted(tmp_path):
    for name in ("b.webp", "a.PNG", "c.jpeg", "d.txt", "e.npy"):
        (tmp_path / name).write_bytes(b"")
    assert list_image_files(str(tmp_path)) == ["a.PNG", "b.webp", "c.jpeg"]


def test_loads_rgb_floats_at_the_size_given(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, (14, 28), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "gray.png")
    same = load_image(str(tmp_path / "gray.png"), (14, 28))
    assert same.dtype == np.float32 and same.shape == (14, 28, 3)
    # Same size: no resampling, every channel the gray value / 255.
    np.testing.assert_allclose(
        same, np.repeat(pixels[..., None], 3, -1) / np.float32(255), rtol=0, atol=1e-6
    )
    resized = load_image(str(tmp_path / "gray.png"), (28, 14))
    assert resized.shape == (28, 14, 3)
    assert 0.0 <= resized.min() and resized.max() <= 1.0
