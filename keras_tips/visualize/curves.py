"""Training curves drawn with PIL (no plotting library needed)."""

import math

import numpy as np
from PIL import Image
from PIL import ImageDraw

from keras_tips.visualize.images import load_font
from keras_tips.visualize.images import save_png
from keras_tips.visualize.overlays import color_palette

_MARGIN_LEFT, _MARGIN_RIGHT, _MARGIN_TOP, _MARGIN_BOTTOM = 58, 12, 24, 30


def _nice_ticks(low, high, count=5):
    """Round tick values covering [low, high]."""
    span = high - low
    if not span > 0:
        return [low]
    raw = span / max(count - 1, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = min((m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw), default=raw)
    first = math.ceil(low / step - 1e-9) * step
    ticks = []
    value = first
    while value <= high + 1e-9 * span:
        ticks.append(0.0 if abs(value) < 1e-12 * span else value)
        value += step
    return ticks


def _y_ticks(low, high, log_scale):
    """Tick positions on the (possibly log10) y axis."""
    if not log_scale:
        return _nice_ticks(low, high)
    if high - low > 1.5:  # Wide: whole decades.
        return [float(t) for t in range(math.ceil(low), math.floor(high) + 1)]
    linear = [t for t in _nice_ticks(10**low, 10**high) if t > 0]
    return [math.log10(t) for t in linear] if len(linear) >= 2 else [low, high]


def _format(value):
    return f"{value:.3g}"


def _collect_panels(history, pair_validation):
    if hasattr(history, "history") and isinstance(history.history, dict):
        history = history.history  # a keras.callbacks.History
    if not isinstance(history, dict) or not history:
        raise ValueError("`history` must be a non-empty dict of metric name -> values.")
    panels = {}
    for key, values in history.items():
        if isinstance(values, dict):
            panels.setdefault(key, []).extend(
                (str(name), np.asarray(v, np.float64).ravel()) for name, v in values.items()
            )
            continue
        values = np.asarray(values, np.float64).ravel()
        if pair_validation and key.startswith("val_") and key[4:] in history:
            panels.setdefault(key[4:], []).append(("val", values))
        elif pair_validation and f"val_{key}" in history:
            panels.setdefault(key, []).insert(0, ("train", values))
        else:
            panels.setdefault(key, []).append((key, values))
    return panels


def _draw_panel(draw, box, name, series, log_scale, x_label, font, small_font):
    left, top, right, bottom = box
    plot = (left + _MARGIN_LEFT, top + _MARGIN_TOP, right - _MARGIN_RIGHT, bottom - _MARGIN_BOTTOM)
    draw.text((left + _MARGIN_LEFT, top + 4), name + (" (log)" if log_scale else ""),
              fill=(0, 0, 0), font=font)
    draw.rectangle(plot, outline=(0, 0, 0))

    def transform(y):
        return np.log10(y) if log_scale else y

    finite = [transform(v[np.isfinite(v) & ((v > 0) if log_scale else True)]) for _, v in series]
    finite = np.concatenate(finite) if finite else np.zeros(0)
    length = max((len(v) for _, v in series), default=0)
    if finite.size == 0:
        draw.text((plot[0] + 8, plot[1] + 8), "no finite values", fill=(120, 120, 120), font=font)
        return
    y_low, y_high = float(finite.min()), float(finite.max())
    if y_high - y_low <= 1e-12 * max(1.0, abs(y_high)):
        # A constant: centre it with a tenth of its magnitude either side.
        pad = 0.1 if log_scale else (abs(y_high) * 0.1 or 1.0)
    else:
        pad = 0.05 * (y_high - y_low)
    y_low, y_high = y_low - pad, y_high + pad
    x_low, x_high = 1.0, float(max(length, 2))

    def to_pixel(x, y):
        px = plot[0] + (x - x_low) / (x_high - x_low) * (plot[2] - plot[0])
        py = plot[3] - (y - y_low) / (y_high - y_low) * (plot[3] - plot[1])
        return px, py

    for tick in _y_ticks(y_low, y_high, log_scale):
        _, py = to_pixel(x_low, tick)
        draw.line([(plot[0], py), (plot[2], py)], fill=(225, 225, 225))
        label = _format(10**tick) if log_scale else _format(tick)
        width = draw.textlength(label, font=small_font)
        draw.text((plot[0] - 4 - width, py - 6), label, fill=(0, 0, 0), font=small_font)
    for tick in _nice_ticks(x_low, x_high):
        if abs(tick - round(tick)) > 1e-9:
            continue
        px, _ = to_pixel(tick, y_low)
        draw.line([(px, plot[3]), (px, plot[3] + 3)], fill=(0, 0, 0))
        label = str(int(round(tick)))
        width = draw.textlength(label, font=small_font)
        draw.text((px - width / 2, plot[3] + 4), label, fill=(0, 0, 0), font=small_font)
    draw.text(((plot[0] + plot[2]) / 2 - draw.textlength(x_label, font=small_font) / 2,
               plot[3] + 16), x_label, fill=(80, 80, 80), font=small_font)
    draw.rectangle(plot, outline=(0, 0, 0))

    colors = color_palette(max(len(series), 1))
    for index, (series_name, values) in enumerate(series):
        color = tuple(int(c) for c in colors[index])
        segment = []
        for step, value in enumerate(values, start=1):
            if np.isfinite(value) and (value > 0 or not log_scale):
                segment.append(to_pixel(step, transform(value)))
            else:
                _flush(draw, segment, color)
                segment = []
        _flush(draw, segment, color)
        if len(series) > 1:
            y = plot[1] + 4 + 14 * index
            width = draw.textlength(series_name, font=small_font)
            draw.line([(plot[2] - width - 26, y + 6), (plot[2] - width - 10, y + 6)],
                      fill=color, width=2)
            draw.text((plot[2] - width - 6, y), series_name, fill=(0, 0, 0), font=small_font)


def _flush(draw, points, color):
    if len(points) == 1:
        x, y = points[0]
        draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=color)
    elif len(points) > 1:
        draw.line(points, fill=color, width=2)


def plot_curves(
    history,
    path=None,
    panel_size=(360, 240),
    columns=None,
    log_scale=False,
    x_label="epoch",
    pair_validation=True,
):
    """Draws training curves, one panel per metric, as an RGB image.

    Each panel has its own y range, so a loss and an accuracy can be shown
    side by side. Values are plotted against their 1-based position.
    Non-finite values (NaN, inf) leave a gap in the line.

    Args:
        history: dict of metric name -> list of values, a dict of metric
            name -> {series name -> values} (several lines in one panel), or a
            `keras.callbacks.History`.
        path: optional PNG path to write.
        panel_size: `(width, height)` of each panel in pixels.
        columns: int; by default `min(number of panels, 3)`.
        log_scale: bool, or a collection of panel names drawn with a
            logarithmic y axis (non-positive values then leave gaps).
        x_label: str. Label of the x axis.
        pair_validation: bool. Draw `"val_<name>"` in the panel of
            `"<name>"` (series `"train"` and `"val"`) as Keras names them.

    Returns:
        A uint8 NumPy array (H, W, 3).

    Example:
    ```python
    plot_curves({"loss": [2.3, 1.1, 0.7], "val_loss": [2.4, 1.3, 0.9]}, "curves.png")
    ```
    """
    panels = _collect_panels(history, pair_validation)
    count = len(panels)
    columns = int(columns) if columns else min(count, 3)
    columns = max(1, min(columns, count))
    rows = math.ceil(count / columns)
    panel_w, panel_h = int(panel_size[0]), int(panel_size[1])
    if panel_w < _MARGIN_LEFT + _MARGIN_RIGHT + 20 or panel_h < _MARGIN_TOP + _MARGIN_BOTTOM + 20:
        raise ValueError(f"`panel_size` {panel_size} is too small.")
    canvas = Image.new("RGB", (columns * panel_w, rows * panel_h), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    font, small_font = load_font(13), load_font(10)
    for index, (name, series) in enumerate(panels.items()):
        row, column = divmod(index, columns)
        box = (column * panel_w, row * panel_h, (column + 1) * panel_w, (row + 1) * panel_h)
        use_log = log_scale if isinstance(log_scale, bool) else name in set(log_scale)
        _draw_panel(draw, box, name, series, use_log, x_label, font, small_font)
    image = np.asarray(canvas).copy()
    if path is not None:
        save_png(image, path)
    return image
