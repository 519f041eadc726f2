"""Segmentation overlays and text-similarity heat maps blended on images."""

import colorsys

import numpy as np
from PIL import Image
from PIL import ImageDraw

from keras_tips.evaluation.utils import bilinear_resize
from keras_tips.visualize.images import append_panel
from keras_tips.visualize.images import load_font
from keras_tips.visualize.images import to_rgb

# Anchor colours of the heat-map colour maps, evenly spaced on [0, 1].
COLORMAPS = {
    "jet": [(0, 0, 128), (0, 0, 255), (0, 255, 255), (255, 255, 0), (255, 0, 0), (128, 0, 0)],
    "inferno": [(0, 0, 4), (87, 16, 110), (188, 55, 84), (249, 142, 9), (252, 255, 164)],
    "gray": [(0, 0, 0), (255, 255, 255)],
}


def color_palette(num_colors):
    """Distinct, deterministic RGB colours for class ids.

    Hues step by the golden ratio so that neighbouring ids get dissimilar
    colours; saturation and brightness alternate to separate ids whose hues
    come close.

    Args:
        num_colors: int.

    Returns:
        A uint8 NumPy array (num_colors, 3).

    Example:
    ```python
    palette = color_palette(21)
    ```
    """
    colors = []
    for index in range(int(num_colors)):
        hue = (0.07 + index * 0.6180339887) % 1.0
        saturation = (0.85, 0.55, 0.95)[index % 3]
        value = (0.95, 0.8, 0.6)[(index // 3) % 3]
        colors.append(colorsys.hsv_to_rgb(hue, saturation, value))
    return np.round(np.asarray(colors, np.float64).reshape(-1, 3) * 255).astype(np.uint8)


def colorize_mask(mask, palette=None, ignore_index=None, ignore_color=(0, 0, 0)):
    """Colours a (H, W) class-id mask.

    Args:
        mask: int array (H, W).
        palette: optional uint8 (C, 3) colours; by default
            `color_palette(max id + 1)`. Ids outside the palette (and
            `ignore_index`) get `ignore_color`.
        ignore_index: optional int.
        ignore_color: RGB tuple.

    Returns:
        A uint8 NumPy array (H, W, 3).

    Example:
    ```python
    rgb = colorize_mask(pred_mask, ignore_index=255)
    ```
    """
    mask = np.asarray(mask).astype(np.int64)
    if mask.ndim != 2:
        raise ValueError(f"`mask` must be (H, W); received {mask.shape}.")
    valid = (mask >= 0) if ignore_index is None else (mask >= 0) & (mask != ignore_index)
    if palette is None:
        palette = color_palette(int(mask[valid].max()) + 1 if valid.any() else 1)
    palette = np.asarray(palette, np.uint8)
    valid &= mask < len(palette)
    colored = np.empty(mask.shape + (3,), np.uint8)
    colored[...] = np.asarray(ignore_color, np.uint8)
    colored[valid] = palette[mask[valid]]
    return colored


def nearest_resize(labels, size):
    """Nearest-neighbour resize of a label array (labels are never blended).

    Output pixel o takes input pixel `floor((o + 0.5) * h / H)` (pixel
    centres), so integer upsampling factors repeat each label exactly.

    Args:
        labels: array (h, w) (or (h, w, ...)).
        size: `(H, W)`.

    Returns:
        A NumPy array (H, W) of the input's dtype.
    """
    labels = np.asarray(labels)
    rows = np.minimum(
        ((np.arange(int(size[0])) + 0.5) * labels.shape[0] / int(size[0])).astype(np.int64),
        labels.shape[0] - 1,
    )
    cols = np.minimum(
        ((np.arange(int(size[1])) + 0.5) * labels.shape[1] / int(size[1])).astype(np.int64),
        labels.shape[1] - 1,
    )
    return labels[rows[:, None], cols[None, :]]


def legend_panel(height, entries, font_size=12):
    """A white panel listing (colour, name) entries, at least `height` tall.

    Args:
        height: int. Least height of the panel (that of the picture it
            goes beside); it grows when the entries need more.
        entries: list of (RGB colour, name) pairs, drawn top to bottom.
        font_size: int.

    Returns:
        A uint8 NumPy array (H, W, 3).

    Example:
    ```python
    panel = legend_panel(224, [((255, 0, 0), "wall"), ((0, 0, 255), "sky")])
    picture = append_panel(label_colors, panel)
    ```
    """
    if not entries:
        raise ValueError("A legend needs at least one (colour, name) entry.")
    font = load_font(font_size)
    row = int(font_size) + 6
    width = 24 + max(int(font.getlength(name)) for _, name in entries) + 8
    panel = Image.new("RGB", (width, max(int(height), row * len(entries) + 4)), (255, 255, 255))
    draw = ImageDraw.Draw(panel)
    for index, (color, name) in enumerate(entries):
        top = 4 + index * row
        box = [4, top, 16, top + int(font_size)]
        draw.rectangle(box, fill=tuple(int(c) for c in color), outline=(0, 0, 0))
        draw.text((22, top), name, fill=(0, 0, 0), font=font)
    return np.asarray(panel)


def segmentation_overlay(
    image,
    mask,
    palette=None,
    alpha=0.5,
    ignore_index=255,
    class_names=None,
    legend=False,
):
    """Blends class colours of a segmentation onto an image.

    Args:
        image: array (H, W, 3) (float [0, 1] or uint8).
        mask: int array (h, w) of class ids; resized to the image with
            nearest-neighbour sampling if its size differs.
        palette: optional uint8 (C, 3) colours, see `colorize_mask`.
        alpha: float in [0, 1]. Weight of the class colours.
        ignore_index: optional int. These pixels keep the image unchanged.
        class_names: optional list of names, indexed by class id (used by
            the legend).
        legend: bool. Append a panel on the right listing the colours of the
            classes present in the mask (the image gets wider).

    Returns:
        A uint8 NumPy array (H, W, 3), or (H, W + legend width, 3).

    Example:
    ```python
    overlay = segmentation_overlay(image, pred, class_names=names, legend=True)
    ```
    """
    image = to_rgb(image)
    mask = np.asarray(mask).astype(np.int64)
    if mask.ndim != 2:
        raise ValueError(f"`mask` must be (h, w); received {mask.shape}.")
    if mask.shape != image.shape[:2]:
        mask = nearest_resize(mask, image.shape[:2])
    valid = (mask >= 0) if ignore_index is None else (mask >= 0) & (mask != ignore_index)
    if palette is None:
        count = int(mask[valid].max()) + 1 if valid.any() else 1
        if class_names is not None:
            count = max(count, len(class_names))
        palette = color_palette(count)
    palette = np.asarray(palette, np.uint8)
    valid &= mask < len(palette)
    colors = colorize_mask(mask, palette, ignore_index)
    alpha = float(alpha)
    blended = image.astype(np.float32)
    blended[valid] = (1.0 - alpha) * blended[valid] + alpha * colors[valid]
    result = np.round(blended).astype(np.uint8)
    if legend:
        ids = np.unique(mask[valid])
        if ids.size:
            names = [
                class_names[i] if class_names is not None and i < len(class_names) else str(i)
                for i in ids
            ]
            panel = legend_panel(result.shape[0], list(zip(palette[ids], names)))
            result = append_panel(result, panel)
    return result


def heatmap(values, colormap="jet", value_range=None):
    """Colours a 2-D array of scalars.

    Args:
        values: float array (H, W).
        colormap: one of `COLORMAPS` (`"jet"`, `"inferno"`, `"gray"`).
        value_range: optional `(low, high)` mapped to the colour map's ends;
            by default the finite minimum and maximum of `values`.
            Non-finite values get the low colour.

    Returns:
        A uint8 NumPy array (H, W, 3).

    Example:
    ```python
    rgb = heatmap(similarity, colormap="inferno", value_range=(-1.0, 1.0))
    ```
    """
    if colormap not in COLORMAPS:
        raise ValueError(f"`colormap` must be one of {sorted(COLORMAPS)}; received {colormap!r}.")
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2:
        raise ValueError(f"`values` must be (H, W); received {values.shape}.")
    finite = np.isfinite(values)
    if value_range is None:
        low = values[finite].min() if finite.any() else 0.0
        high = values[finite].max() if finite.any() else 1.0
    else:
        low, high = float(value_range[0]), float(value_range[1])
    scaled = (values - low) / (high - low) if high > low else np.zeros_like(values)
    scaled = np.clip(np.where(finite, scaled, 0.0), 0.0, 1.0)
    anchors = np.asarray(COLORMAPS[colormap], np.float64)
    positions = np.linspace(0.0, 1.0, len(anchors))
    rgb = np.stack([np.interp(scaled, positions, anchors[:, c]) for c in range(3)], -1)
    return np.round(rgb).astype(np.uint8)


def similarity_overlay(image, similarity, alpha=0.5, colormap="jet", value_range=None):
    """Blends a similarity map (e.g. patches vs. a text query) onto an image.

    Args:
        image: array (H, W, 3) (float [0, 1] or uint8).
        similarity: float array (h, w), e.g. one channel of
            `keras_tips.evaluation.similarity_maps`; bilinearly upsampled to
            the image size.
        alpha: float in [0, 1]. Weight of the heat map.
        colormap: see `heatmap`.
        value_range: optional `(low, high)`; by default the map's own
            minimum and maximum (so the map is always fully contrasted; pass
            a fixed range to compare maps).

    Returns:
        A uint8 NumPy array (H, W, 3).

    Example:
    ```python
    maps = similarity_maps(grid[0], model.encode_texts(["a dog"])[0])  # (h, w)
    overlay = similarity_overlay(image, maps)
    ```
    """
    image = to_rgb(image)
    similarity = np.asarray(similarity, dtype=np.float32)
    if similarity.ndim != 2:
        raise ValueError(f"`similarity` must be (h, w); received {similarity.shape}.")
    upsampled = bilinear_resize(similarity, image.shape[:2])
    colors = heatmap(upsampled, colormap, value_range).astype(np.float32)
    alpha = float(alpha)
    blended = (1.0 - alpha) * image.astype(np.float32) + alpha * colors
    return np.round(blended).astype(np.uint8)


__all__ = [
    "COLORMAPS",
    "color_palette",
    "colorize_mask",
    "heatmap",
    "legend_panel",
    "nearest_resize",
    "segmentation_overlay",
    "similarity_overlay",
]
