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

    Example:
    ```python
    image = load_image("cat.jpg", (448, 448))
    features = model.encode_images(image[None])
    ```
    """
    converter = _image_converter(tuple(int(side) for side in size))
    with Image.open(path) as image:
        pixels = np.asarray(image.convert("RGB"))
    return ops.convert_to_numpy(converter(pixels)).astype("float32")
