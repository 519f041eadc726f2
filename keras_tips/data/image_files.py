"""Image files on disk, read for a model (`keras-tips embed`, `show`).

`load_image` is the one place such a file becomes the model's input: it
decodes the file with PIL and preprocesses it with `TIPSImageConverter`, the
official squash resize, so every caller sees what the model was trained on.
"""

import functools
import os

import numpy as np
from keras import ops
from PIL import Image

from keras_tips.models.tips_image_converter import TIPSImageConverter

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


class UnreadableImageError(OSError):
    """An image file that cannot be decoded (damaged, truncated, not an
    image, or a format PIL does not read).

    Raised by `load_image` so that a caller reading a folder can skip the
    file and count it, while other errors (a missing file, a bad `size`)
    still stop it. The message names the file; the decoder's own error is
    the `__cause__`.

    Example:
    ```python
    try:
        image = load_image("photos/broken.jpg", (448, 448))
    except UnreadableImageError as error:
        print(f"skipped: {error}")
    ```
    """


def _unreadable(path, error):
    return UnreadableImageError(
        f"Cannot read {os.fspath(path)!r} as an image "
        f"({type(error).__name__}: {error})."
    )


def list_image_files(folder):
    """Names of the image files of `folder` (by suffix, any case), sorted.

    Args:
        folder: str. A directory.

    Returns:
        A sorted list of file names (not paths); empty when there are none.

    Example:
    ```python
    names = list_image_files("photos")  # ["cat.jpg", "dog.png"]
    ```
    """
    return sorted(
        name for name in os.listdir(folder) if name.lower().endswith(IMAGE_SUFFIXES)
    )


def read_image_size(path):
    """The (height, width) of an image file, read from its header.

    This is the size of the image as `load_image` decodes it, before it
    resizes it: a caller that maps predictions back onto the file's pixels
    uses it (so a change of how `load_image` orients images belongs here
    too).

    Args:
        path: str. An image file PIL reads.

    Returns:
        A (height, width) tuple of ints.

    Raises:
        UnreadableImageError: the file exists but is not an image PIL reads.
        FileNotFoundError: there is no such file.

    Example:
    ```python
    height, width = read_image_size("cat.jpg")
    ```
    """
    try:
        with Image.open(path) as image:
            return int(image.height), int(image.width)
    except FileNotFoundError:
        raise
    except Exception as error:  # As in `load_image`.
        raise _unreadable(path, error) from error


@functools.lru_cache(maxsize=8)
def _image_converter(size):
    return TIPSImageConverter(image_size=size)


def load_image(path, size):
    """Reads an image file as the model's input: RGB floats in [0, 1],
    squash-resized to `size` as the official preprocessing does.

    The file is decoded with PIL (any mode, converted to RGB) and run
    through `TIPSImageConverter`: bilinear with antialiasing, no crop, no
    mean/std (see `keras_tips.models.tips_image_converter`).

    Args:
        path: str. An image file PIL reads.
        size: (height, width) to resize to, multiples of 14.

    Returns:
        A float32 array (height, width, 3) in [0, 1].

    Raises:
        UnreadableImageError: the file exists but does not decode as an
            image.
        FileNotFoundError: there is no such file.

    Example:
    ```python
    image = load_image("cat.jpg", (448, 448))
    features = model.encode_images(image[None])
    ```
    """
    try:
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("RGB"))  # Decodes every pixel.
    except FileNotFoundError:
        raise
    except Exception as error:
        # Damaged files raise many types (UnidentifiedImageError, OSError for
        # a truncated file, SyntaxError, struct.error, EOFError, PIL's
        # DecompressionBombError, ...).
        raise _unreadable(path, error) from error
    converter = _image_converter(tuple(int(side) for side in size))
    return ops.convert_to_numpy(converter(pixels)).astype("float32")
