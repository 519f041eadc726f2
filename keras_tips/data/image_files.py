"""Image files on disk, read for a model (`keras-tips embed`, `show`,
`classify`, `evaluate`, `predict`) or as segmentation label maps.

`load_image` is the one place such a file becomes the model's input: it
decodes the file with PIL and preprocesses it with `TIPSImageConverter`, the
official squash resize, so every caller sees what the model was trained on.
"""

import functools
import os

import numpy as np
from keras import ops
from PIL import Image
from PIL import ImageOps

from keras_tips.models.tips_image_converter import TIPSImageConverter

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
# EXIF orientations that turn the picture by a quarter (width and height
# swap when it is set upright).
_QUARTER_TURNS = (5, 6, 7, 8)
_EXIF_ORIENTATION = 0x0112


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


def list_image_files(folder, recursive=False):
    """Names of the image files of `folder` (by suffix, any case), sorted.

    Args:
        folder: str. A directory.
        recursive: bool. Also list the images of its subfolders (at any
            depth), as paths relative to `folder` with "/" separators.
            Hidden subfolders (names starting with ".", e.g. `.git`) are
            not entered.

    Returns:
        A sorted list of file names (not paths); empty when there are none.

    Example:
    ```python
    names = list_image_files("photos")  # ["cat.jpg", "dog.png"]
    names = list_image_files("photos", recursive=True)  # [..., "2024/x.jpg"]
    ```
    """
    if not recursive:
        return sorted(
            name
            for name in os.listdir(folder)
            if name.lower().endswith(IMAGE_SUFFIXES)
        )
    names = []
    for directory, subfolders, files in os.walk(folder):
        subfolders[:] = [d for d in subfolders if not d.startswith(".")]
        relative = os.path.relpath(directory, folder)
        for name in files:
            if name.lower().endswith(IMAGE_SUFFIXES):
                path = name if relative == "." else os.path.join(relative, name)
                names.append(path.replace(os.sep, "/"))
    return sorted(names)


def read_image_size(path):
    """The (height, width) of an image file, read from its header.

    This is the size of the image as `load_image` decodes it, before it
    resizes it: a caller that maps predictions back onto the file's pixels
    uses it. Like `load_image`, it follows the EXIF orientation tag: a
    picture stored sideways with a quarter-turn tag has its sides swapped.

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
            height, width = int(image.height), int(image.width)
            orientation = image.getexif().get(_EXIF_ORIENTATION)
    except FileNotFoundError:
        raise
    except Exception as error:  # As in `load_image`.
        raise _unreadable(path, error) from error
    if orientation in _QUARTER_TURNS:
        return width, height
    return height, width


@functools.lru_cache(maxsize=8)
def _image_converter(size):
    return TIPSImageConverter(image_size=size)


def load_image(path, size):
    """Reads an image file as the model's input: RGB floats in [0, 1],
    squash-resized to `size` as the official preprocessing does.

    The file is decoded with PIL (any mode, converted to RGB), turned
    upright as its EXIF orientation tag says (phone photographs are often
    stored sideways with such a tag, so the model sees what an image viewer
    shows), and run through `TIPSImageConverter`: bilinear with
    antialiasing, no crop, no mean/std (see
    `keras_tips.models.tips_image_converter`).

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
            # Decodes every pixel.
            pixels = np.asarray(ImageOps.exif_transpose(image).convert("RGB"))
    except FileNotFoundError:
        raise
    except Exception as error:
        # Damaged files raise many types (UnidentifiedImageError, OSError for
        # a truncated file, SyntaxError, struct.error, EOFError, PIL's
        # DecompressionBombError, ...).
        raise _unreadable(path, error) from error
    converter = _image_converter(tuple(int(side) for side in size))
    return ops.convert_to_numpy(converter(pixels)).astype("float32")


def load_label_map(path):
    """Reads a segmentation label map (one class id per pixel), unresized.

    Label maps are single-channel images: 8- or 16-bit grayscale (`L`,
    `I;16`, `I`) or palette (`P`, whose palette indices are the ids), as
    ADE20K, Pascal VOC and Cityscapes store them. The ids are returned as
    stored; what they mean (e.g. 0 = unlabelled) is the dataset's convention.

    Args:
        path: str. A PNG (or other lossless) label map.

    Returns:
        An int64 array (height, width).

    Raises:
        UnreadableImageError: the file does not decode as an image.
        ValueError: the image has colour channels (an RGB picture is not a
            label map).
        FileNotFoundError: there is no such file.

    Example:
    ```python
    labels = load_label_map("annotations/validation/ADE_val_00000001.png")
    ```
    """
    try:
        with Image.open(path) as image:
            mode = image.mode
            labels = np.asarray(image)  # Decodes every pixel.
    except FileNotFoundError:
        raise
    except Exception as error:
        raise UnreadableImageError(
            f"Cannot read {os.fspath(path)!r} as a label map "
            f"({type(error).__name__}: {error})."
        ) from error
    if labels.ndim != 2:
        raise ValueError(
            f"{os.fspath(path)!r} is not a label map: it has mode {mode!r} "
            f"(shape {labels.shape}). Label maps hold one class id per "
            "pixel (grayscale or palette PNG)."
        )
    return labels.astype(np.int64)
