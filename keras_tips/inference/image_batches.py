"""Batches of model inputs read from image files, skipping unreadable ones."""

import os

import numpy as np

from keras_tips.data.image_files import UnreadableImageError
from keras_tips.data.image_files import load_image


def model_image_size(model, image_size=None):
    """The (height, width) images are resized to for `model`.

    Args:
        model: a `TIPSModel`.
        image_size: optional int or (height, width); by default the preset's
            preprocessing size.

    Returns:
        A (height, width) tuple of ints, multiples of the patch size.
    """
    if image_size is None:
        converter = getattr(model.preprocessor, "image_converter", None)
        if converter is None or converter.image_size is None:
            raise ValueError(
                "The model has no image preprocessing size; pass image_size "
                "(--image-size)."
            )
        image_size = converter.image_size
    if isinstance(image_size, int):
        image_size = (image_size, image_size)
    height, width = (int(side) for side in image_size)
    patch = model.patch_size
    if min(height, width) < patch or height % patch or width % patch:
        raise ValueError(
            f"The image size must be a positive multiple of the patch size "
            f"{patch} on both sides; received {height} x {width}."
        )
    return height, width


class ImageFileBatches:
    """Iterates over image files as batches of model inputs.

    Every file is read with `keras_tips.data.image_files.load_image` (the
    package's one reading of an image file: EXIF orientation, RGB, resize,
    [0, 1]). A file that does not decode, or that has gone missing since it
    was listed, is skipped and recorded in `skipped`, so that one damaged
    photograph does not stop a run over a large folder; the batches hold the
    other files, in order. Only one batch of pixels is held at a time.

    Args:
        paths: list of image file paths.
        image_size: (height, width) the images are resized to.
        batch_size: int. Images per batch (the last one may be smaller).

    Yields:
        `(indices, images)`: an int array of the positions in `paths` of the
        images of the batch, and their float32 pixels (b, height, width, 3).

    Attributes:
        skipped: list of `(index, reason)` of the files skipped so far,
            `reason` naming the file and what was wrong.

    Example:
    ```python
    batches = ImageFileBatches(paths, (448, 448), batch_size=32)
    for indices, images in batches:
        features = model.encode_images(images)
    print(f"skipped {len(batches.skipped)} unreadable files")
    ```
    """

    def __init__(self, paths, image_size, batch_size=32):
        if int(batch_size) < 1:
            raise ValueError(f"`batch_size` must be >= 1; received {batch_size}.")
        self.paths = [os.fspath(path) for path in paths]
        self.image_size = tuple(int(side) for side in image_size)
        self.batch_size = int(batch_size)
        self.skipped = []

    def __len__(self):
        """The number of batches if every file is readable (an upper bound)."""
        return -(-len(self.paths) // self.batch_size)

    def __iter__(self):
        self.skipped = []
        indices, images = [], []
        for index, path in enumerate(self.paths):
            try:
                images.append(load_image(path, self.image_size))
            except (UnreadableImageError, FileNotFoundError) as error:
                self.skipped.append((index, str(error)))
                continue
            indices.append(index)
            if len(images) == self.batch_size:
                yield np.asarray(indices), np.stack(images)
                indices, images = [], []
        if images:
            yield np.asarray(indices), np.stack(images)
