"""Image files read for a model: listed by suffix, RGB floats in [0, 1]."""

import numpy as np
import pytest
from PIL import Image

from keras_tips.data.image_files import UnreadableImageError
from keras_tips.data.image_files import list_image_files
from keras_tips.data.image_files import load_image
from keras_tips.data.image_files import read_image_size


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


def test_an_undecodable_file_raises_unreadable_image_error(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "whole.png")
    data = (tmp_path / "whole.png").read_bytes()
    (tmp_path / "truncated.png").write_bytes(data[: len(data) // 2])
    (tmp_path / "text.jpg").write_text("not an image", encoding="utf-8")
    (tmp_path / "empty.png").write_bytes(b"")
    for name in ("truncated.png", "text.jpg", "empty.png"):
        with pytest.raises(UnreadableImageError, match=name) as error:
            load_image(str(tmp_path / name), (14, 14))
        assert isinstance(error.value, OSError)
        assert error.value.__cause__ is not None
    # A missing file is not an unreadable image: the caller's mistake.
    with pytest.raises(FileNotFoundError) as error:
        load_image(str(tmp_path / "missing.png"), (14, 14))
    assert not isinstance(error.value, UnreadableImageError)


def test_reads_the_size_of_an_image_file(tmp_path):
    Image.fromarray(np.zeros((6, 10, 3), np.uint8)).save(tmp_path / "wide.png")
    assert read_image_size(str(tmp_path / "wide.png")) == (6, 10)
    (tmp_path / "text.png").write_text("not an image", encoding="utf-8")
    with pytest.raises(UnreadableImageError, match="text.png"):
        read_image_size(str(tmp_path / "text.png"))
    with pytest.raises(FileNotFoundError):
        read_image_size(str(tmp_path / "missing.png"))
