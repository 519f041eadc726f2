"""Pictures of dense predictions: class maps with a legend, depth with a
scale bar, surface normals as RGB.

Used by `keras-tips predict` and the dense-heads guide; each function takes
NumPy arrays and returns a uint8 RGB picture, ready for `save_png`.
"""

import math

import numpy as np
from PIL import Image
from PIL import ImageDraw

from keras_tips.visualize.images import append_panel
from keras_tips.visualize.images import load_font
from keras_tips.visualize.overlays import color_palette
from keras_tips.visualize.overlays import colorize_mask
from keras_tips.visualize.overlays import heatmap
from keras_tips.visualize.overlays import legend_panel

# Depth as the official decoder notebook shows it: a rainbow map, near blue,
# far red ("turbo" there; "jet" is its closest relative here).
DEPTH_COLORMAP = "jet"


def label_map_image(labels, palette=None, class_names=None, legend=True, max_legend_entries=20):
    """Colours a map of class ids, with a legend of the classes it shows.

    Args:
        labels: int array (H, W) of class ids (negative ids are drawn black
            and left out of the legend).
        palette: optional uint8 (C, 3) colours indexed by class id; by
            default `color_palette(C)` for C = `len(class_names)` (or the
            largest id + 1).
        class_names: optional list of names indexed by class id; ids without
            a name are listed as "class i".
        legend: bool. Append a panel listing the classes present, the
            largest area first.
        max_legend_entries: int. The legend names at most this many classes
            and counts the rest in a last line.

    Returns:
        A uint8 NumPy array (H, W, 3), or (max(H, legend height),
        W + legend width, 3) with the legend.

    Example:
    ```python
    logits = model.predict_dense(images, head)  # (B, H, W, 150)
    picture = label_map_image(logits[0].argmax(-1), class_names=ADE20K_CLASS_NAMES)
    save_png(picture, "segmentation.png")
    ```
    """
    labels = np.asarray(labels)
    if labels.ndim != 2 or labels.dtype.kind not in "iub":
        raise ValueError(
            f"`labels` must be an integer array (H, W); received {labels.dtype} "
            f"{labels.shape}."
        )
    labels = labels.astype(np.int64)
    if palette is None:
        count = int(labels.max()) + 1 if labels.size and labels.max() >= 0 else 1
        if class_names is not None:
            count = max(count, len(class_names))
        palette = color_palette(count)
    palette = np.asarray(palette, np.uint8)
    picture = colorize_mask(labels, palette)
    if not legend:
        return picture
    ids, counts = np.unique(labels[labels >= 0], return_counts=True)
    if ids.size == 0:
        return picture
    order = ids[np.argsort(-counts, kind="stable")]
    shown = order[: int(max_legend_entries)]
    entries = [
        (
            palette[i] if i < len(palette) else (0, 0, 0),
            class_names[i] if class_names is not None and i < len(class_names) else f"class {i}",
        )
        for i in shown
    ]
    if len(order) > len(shown):
        entries.append(((255, 255, 255), f"+ {len(order) - len(shown)} more"))
    return append_panel(picture, legend_panel(picture.shape[0], entries))


def _tick_decimals(step):
    """Decimals that tell ticks `step` apart (at least one significant digit)."""
    if not step > 0:
        return 2
    return int(min(6, max(0, 1 - math.floor(math.log10(step)))))


def scale_bar_panel(height, value_range, colormap=DEPTH_COLORMAP, unit="", num_ticks=5, font_size=12):
    """A vertical colour bar with labelled ticks: low values at the bottom.

    Args:
        height: int. Least height of the panel (that of the picture it
            goes beside).
        value_range: (low, high), the values of the colour map's ends.
        colormap: a name of `keras_tips.visualize.overlays.COLORMAPS`.
        unit: str appended to the tick labels (e.g. "m").
        num_ticks: int. Most ticks; fewer when the bar is too short for
            their labels.
        font_size: int.

    Returns:
        A uint8 NumPy array (max(height, 48), W, 3).

    Example:
    ```python
    picture = append_panel(heatmap(depth, "jet", (0.5, 4.0)),
                           scale_bar_panel(depth.shape[0], (0.5, 4.0), unit="m"))
    ```
    """
    low, high = float(value_range[0]), float(value_range[1])
    if not (math.isfinite(low) and math.isfinite(high)) or high < low:
        raise ValueError(f"`value_range` must be finite (low, high); received {value_range}.")
    height = max(int(height), 48)
    margin = font_size // 2 + 2
    top, bottom = margin, height - margin - 1
    count = min(int(num_ticks), max(2, (bottom - top) // (font_size + 4) + 1))
    values = np.linspace(low, high, count) if high > low else np.asarray([low])
    decimals = _tick_decimals((high - low) / max(count - 1, 1))
    suffix = f" {unit}" if unit else ""
    labels = [f"{v:.{decimals}f}{suffix}" for v in values]
    font = load_font(font_size)
    bar_left, bar_width = 6, 14
    text_left = bar_left + bar_width + 6
    width = text_left + max(int(font.getlength(label)) for label in labels) + 6
    panel = Image.new("RGB", (width, height), (255, 255, 255))
    # High values at the top, as the ends of the colour map read.
    gradient = np.linspace(1.0, 0.0, bottom - top + 1)[:, None].repeat(bar_width, axis=1)
    panel.paste(Image.fromarray(heatmap(gradient, colormap, (0.0, 1.0))), (bar_left, top))
    draw = ImageDraw.Draw(panel)
    draw.rectangle([bar_left - 1, top - 1, bar_left + bar_width, bottom + 1], outline=(0, 0, 0))
    for value, label in zip(values, labels):
        fraction = (value - low) / (high - low) if high > low else 0.0
        y = int(round(bottom - fraction * (bottom - top)))
        draw.line([bar_left + bar_width, y, bar_left + bar_width + 3, y], fill=(0, 0, 0))
        draw.text((text_left, y - font_size // 2 - 1), label, fill=(0, 0, 0), font=font)
    return np.asarray(panel)


def depth_image(depth, value_range=None, colormap=DEPTH_COLORMAP, scale_bar=True, unit="m"):
    """Colour-maps a depth map, with a scale bar naming the depths.

    Args:
        depth: float array (H, W) or (H, W, 1).
        value_range: optional (low, high) mapped to the colour map's ends
            (pass one range to compare pictures); by default the map's
            finite minimum and maximum. Non-finite values get the low colour.
        colormap: a name of `keras_tips.visualize.overlays.COLORMAPS`.
        scale_bar: bool. Append the colour bar with labelled ticks.
        unit: str. Unit of the tick labels.

    Returns:
        A uint8 NumPy array (H, W, 3), or wider (and at least 48 tall) with
        the scale bar.

    Example:
    ```python
    depth = model.predict_dense(images, depth_head)  # (B, H, W, 1), metres
    save_png(depth_image(depth[0]), "depth.png")
    ```
    """
    depth = np.asarray(depth, np.float64)
    if depth.ndim == 3 and depth.shape[-1] == 1:
        depth = depth[..., 0]
    if depth.ndim != 2:
        raise ValueError(f"`depth` must be (H, W) or (H, W, 1); received {depth.shape}.")
    if value_range is None:
        finite = depth[np.isfinite(depth)]
        value_range = (finite.min(), finite.max()) if finite.size else (0.0, 1.0)
    picture = heatmap(depth, colormap, value_range)
    if not scale_bar:
        return picture
    return append_panel(picture, scale_bar_panel(picture.shape[0], value_range, colormap, unit))


def normals_image(normals):
    """Surface normals as RGB: each unit vector n is drawn as (n + 1) / 2.

    Vectors are normalised first (raw head outputs may be given); a zero or
    non-finite vector is drawn mid-grey.

    Args:
        normals: float array (H, W, 3), (x, y, z) per pixel.

    Returns:
        A uint8 NumPy array (H, W, 3).

    Example:
    ```python
    unit = keras_tips.normalize_normals(raw, image_size=(448, 448))
    save_png(normals_image(unit[0]), "normals.png")
    ```
    """
    normals = np.asarray(normals, np.float64)
    if normals.ndim != 3 or normals.shape[-1] != 3:
        raise ValueError(f"`normals` must be (H, W, 3); received {normals.shape}.")
    normals = np.nan_to_num(normals, nan=0.0, posinf=0.0, neginf=0.0)
    norm = np.linalg.norm(normals, axis=-1, keepdims=True)
    unit = normals / np.maximum(norm, 1e-12)
    return np.round(np.clip((unit + 1.0) * 0.5, 0.0, 1.0) * 255.0).astype(np.uint8)


__all__ = [
    "DEPTH_COLORMAP",
    "depth_image",
    "label_map_image",
    "normals_image",
    "scale_bar_panel",
]
