"""Image helpers: conversion to uint8, PNG input/output and image grids."""

import os

import numpy as np
from PIL import Image
from PIL import ImageDraw
from PIL import ImageFont


def to_uint8(image):
    """Converts an image array to uint8.

    Floats are read as [0, 1] (values outside are clipped, NaN becomes 0),
    booleans as {0, 255}, other integers as [0, 255] (clipped).

    Args:
        image: array (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), or a batch
            with a leading axis.

    Returns:
        A uint8 NumPy array of the same shape.

    Example:
    ```python
    to_uint8(np.array([[0.0, 0.5, 1.0]]))  # [[0, 128, 255]]
    ```
    """
    image = np.asarray(image)
    if image.dtype == np.uint8:
        return image
    if image.dtype == bool:
        return image.astype(np.uint8) * 255
    if image.dtype.kind == "f":
        image = np.nan_to_num(image.astype(np.float64), nan=0.0)
        return np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)
    if image.dtype.kind in "iu":
        return np.clip(image, 0, 255).astype(np.uint8)
    raise ValueError(f"Cannot convert an array of dtype {image.dtype} to an image.")


def _as_pil(image):
    image = to_uint8(image)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[-1] not in (3, 4)):
        raise ValueError(
            "Expected an image (H, W), (H, W, 1), (H, W, 3) or (H, W, 4); "
            f"received shape {image.shape}."
        )
    return Image.fromarray(image)


def to_rgb(image):
    """An image as a uint8 RGB array.

    Args:
        image: array (H, W), (H, W, 1), (H, W, 3) or (H, W, 4); see
            `to_uint8` for the value ranges.

    Returns:
        A uint8 NumPy array (H, W, 3): grey is repeated, alpha dropped.
    """
    image = to_uint8(image)
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[-1] not in (1, 3, 4):
        raise ValueError(f"Expected an (H, W[, C]) image; received shape {image.shape}.")
    if image.shape[-1] == 1:
        image = np.repeat(image, 3, axis=-1)
    return np.ascontiguousarray(image[..., :3])


def resize_image(image, size, resample="bilinear"):
    """Resizes a uint8 image to `size = (H, W)` with PIL.

    Args:
        image: array (H, W) or (H, W, C), converted with `to_uint8`.
        size: `(height, width)`.
        resample: `"nearest"`, `"bilinear"` or `"bicubic"`.

    Returns:
        A uint8 NumPy array (height, width[, C]).

    Example:
    ```python
    big = resize_image(pca_rgb, (448, 448), resample="nearest")
    ```
    """
    modes = {
        "nearest": Image.Resampling.NEAREST,
        "bilinear": Image.Resampling.BILINEAR,
        "bicubic": Image.Resampling.BICUBIC,
    }
    if resample not in modes:
        raise ValueError(f"`resample` must be one of {sorted(modes)}; received {resample!r}.")
    image = to_uint8(image)
    height, width = int(size[0]), int(size[1])
    if image.shape[:2] == (height, width):
        return image
    squeeze = image.ndim == 3 and image.shape[-1] == 1
    resized = np.asarray(_as_pil(image).resize((width, height), modes[resample]))
    return resized[..., None] if squeeze else resized


def save_png(image, path):
    """Writes an image array to a PNG file (parent folders are created).

    Args:
        image: array (H, W), (H, W, 1), (H, W, 3) or (H, W, 4); floats in
            [0, 1] or uint8.
        path: output file path.

    Returns:
        The uint8 array written.

    Example:
    ```python
    save_png(pca_image(grid[0]), "outputs/pca.png")
    ```
    """
    pil = _as_pil(image)
    directory = os.path.dirname(os.path.abspath(os.fspath(path)))
    os.makedirs(directory, exist_ok=True)
    pil.save(path, format="PNG")
    return np.asarray(pil)


def load_png(path):
    """Reads an image file into a NumPy array.

    Args:
        path: image file path (PNG or anything PIL reads).

    Returns:
        A NumPy array (H, W) or (H, W, C), as stored (uint8 for 8-bit PNGs).
    """
    with Image.open(path) as image:
        return np.asarray(image).copy()


def append_panel(image, panel, background=255):
    """Puts `panel` (a legend, a scale bar) to the right of `image`, both
    top-aligned; the shorter one is padded with `background`.

    Args:
        image: array (H, W[, C]) (see `to_rgb`).
        panel: array (h, w[, C]).
        background: int or RGB tuple. Fill colour of the padding.

    Returns:
        A uint8 NumPy array (max(H, h), W + w, 3).
    """
    image = to_rgb(image)
    panel = to_rgb(panel)
    height = max(image.shape[0], panel.shape[0])
    canvas = np.empty((height, image.shape[1] + panel.shape[1], 3), np.uint8)
    canvas[...] = np.asarray(background, np.uint8)
    canvas[: image.shape[0], : image.shape[1]] = image
    canvas[: panel.shape[0], image.shape[1] :] = panel
    return canvas


def load_font(size=12):
    """PIL's default font at `size` (a bitmap font on old Pillow)."""
    try:
        return ImageFont.load_default(size=size)
    except TypeError:
        return ImageFont.load_default()


def image_grid(images, columns=None, padding=2, background=255, titles=None, path=None):
    """Tiles images into one RGB grid image.

    Images may differ in size: each cell is as large as the largest image
    and images sit in their cell's top-left corner.

    Args:
        images: list of image arrays (grey or RGB, float [0, 1] or uint8),
            or one (B, H, W[, C]) array.
        columns: int; by default `ceil(sqrt(len(images)))`.
        padding: int. Pixels between and around cells.
        background: int or RGB tuple. Fill colour.
        titles: optional list of strings drawn above each cell.
        path: optional PNG path to write.

    Returns:
        A uint8 NumPy array (H, W, 3).

    Example:
    ```python
    grid = image_grid([image, pca_image(patches), overlay], columns=3)
    ```
    """
    images = [to_rgb(image) for image in images]
    if not images:
        raise ValueError("`images` is empty.")
    count = len(images)
    columns = int(columns) if columns else int(np.ceil(np.sqrt(count)))
    columns = max(1, min(columns, count))
    rows = int(np.ceil(count / columns))
    cell_h = max(image.shape[0] for image in images)
    cell_w = max(image.shape[1] for image in images)
    title_h = 0
    font = None
    if titles is not None:
        titles = list(titles)
        if len(titles) != count:
            raise ValueError(f"Received {len(titles)} titles for {count} images.")
        font = load_font(12)
        title_h = 16
    padding = int(padding)
    height = rows * (cell_h + title_h) + (rows + 1) * padding
    width = columns * cell_w + (columns + 1) * padding
    canvas = np.empty((height, width, 3), np.uint8)
    canvas[...] = np.asarray(background, np.uint8)
    for index, image in enumerate(images):
        row, column = divmod(index, columns)
        top = padding + row * (cell_h + title_h + padding) + title_h
        left = padding + column * (cell_w + padding)
        canvas[top : top + image.shape[0], left : left + image.shape[1]] = image
    if titles is not None:
        pil = Image.fromarray(canvas)
        draw = ImageDraw.Draw(pil)
        ink = (0, 0, 0) if float(np.mean(background)) > 127 else (255, 255, 255)
        for index, title in enumerate(titles):
            row, column = divmod(index, columns)
            top = padding + row * (cell_h + title_h + padding)
            left = padding + column * (cell_w + padding)
            draw.text((left, top + 1), str(title), fill=ink, font=font)
        canvas = np.asarray(pil).copy()
    if path is not None:
        save_png(canvas, path)
    return canvas
