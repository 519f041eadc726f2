"""Image files on disk, read for a model (`keras-tips embed`, `show`).

`load_image` is the one place such a file becomes the model's input, so a
change of preprocessing is made here once for every caller.
"""

import os

import numpy as np
from PIL import Image

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


def load_image(path, size):
    """Reads an image file as RGB floats in [0, 1] at `size` (bicubic).

    Args:
        path: str. An image file PIL reads (any mode; converted to RGB).
        size: (height, width) to resize to.

    Returns:
        A float32 array (height, width, 3) in [0, 1].

    Example:
    ```python
    image = load_image("cat.jpg", (448, 448))
    features = model.encode_images(image[None])
    ```
    """
    with Image.open(path) as image:
        image = image.convert("RGB").resize((size[1], size[0]), Image.BICUBIC)
        return np.asarray(image, dtype="float32") / 255.0
