"""Image files read for a model: listed by suffix, RGB floats in [0, 1]."""

import numpy as np
import pytest
from PIL import Image

from keras_tips.data.image_files import UnreadableImageError
from keras_tips.data.image_files import list_image_files
from keras_tips.data.image_files import load_image
from keras_tips.data.image_files import load_label_map
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


def test_lists_images_recursively_as_relative_paths(tmp_path):
    (tmp_path / "b" / "deeper").mkdir(parents=True)
    (tmp_path / ".hidden").mkdir()
    for name in ("z.png", "b/a.JPG", "b/deeper/c.webp", "b/notes.txt", ".hidden/x.png"):
        (tmp_path / name).write_bytes(b"")
    assert list_image_files(str(tmp_path)) == ["z.png"]
    assert list_image_files(str(tmp_path), recursive=True) == [
        "b/a.JPG", "b/deeper/c.webp", "z.png"
    ]


def test_turns_a_photo_upright_by_its_exif_orientation(tmp_path):
    # A 28 x 42 picture stored sideways; orientation 6 asks viewers to
    # rotate it 90 degrees clockwise, giving 42 rows and 28 columns.
    stored = np.zeros((28, 42, 3), dtype=np.uint8)
    stored[:14, :14] = (255, 0, 0)  # red in the stored top-left corner
    image = Image.fromarray(stored)
    exif = image.getexif()
    exif[0x0112] = 6  # Orientation
    image.save(tmp_path / "sideways.png", exif=exif)
    # The size of the file as load_image decodes it is the upright one.
    assert read_image_size(str(tmp_path / "sideways.png")) == (42, 28)
    upright = load_image(str(tmp_path / "sideways.png"), (42, 28))
    # Rotated clockwise, the stored top-left corner is the top-right one.
    red = np.zeros((42, 28), dtype=np.float32)
    red[:14, 14:] = 1.0
    np.testing.assert_allclose(upright[..., 0], red, atol=1e-6)
    # Without the tag the same pixels are read as stored.
    Image.fromarray(stored).save(tmp_path / "plain.png")
    assert read_image_size(str(tmp_path / "plain.png")) == (28, 42)
    np.testing.assert_allclose(
        load_image(str(tmp_path / "plain.png"), (28, 42)), stored / 255.0, atol=1e-6
    )


def test_reads_label_maps_unresized_and_refuses_rgb(tmp_path):
    import pytest

    ids = np.random.default_rng(0).integers(0, 151, (5, 7), dtype=np.uint8)
    Image.fromarray(ids).save(tmp_path / "gray.png")
    palette = Image.fromarray(ids).convert("P")
    palette.putpalette(list(range(256)) * 3)
    palette.save(tmp_path / "palette.png")
    Image.fromarray(ids.astype(np.uint16) * 300).save(tmp_path / "wide.png")
    ids = ids.astype(np.int64)
    for name, expected in (("gray.png", ids), ("palette.png", ids), ("wide.png", ids * 300)):
        labels = load_label_map(str(tmp_path / name))
        assert labels.dtype == np.int64
        np.testing.assert_array_equal(labels, expected)
    Image.fromarray(np.stack([ids.astype(np.uint8)] * 3, -1)).save(tmp_path / "rgb.png")
    with pytest.raises(ValueError, match="rgb.png.*not a label map"):
        load_label_map(str(tmp_path / "rgb.png"))
    (tmp_path / "broken.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(UnreadableImageError, match="broken.png"):
        load_label_map(str(tmp_path / "broken.png"))


def test_reads_the_size_of_an_image_file(tmp_path):
    Image.fromarray(np.zeros((6, 10, 3), np.uint8)).save(tmp_path / "wide.png")
    assert read_image_size(str(tmp_path / "wide.png")) == (6, 10)
    (tmp_path / "text.png").write_text("not an image", encoding="utf-8")
    with pytest.raises(UnreadableImageError, match="text.png"):
        read_image_size(str(tmp_path / "text.png"))
    with pytest.raises(FileNotFoundError):
        read_image_size(str(tmp_path / "missing.png"))
