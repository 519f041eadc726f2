"""Positional encodings: fixed sinusoids (text) and resizing learned grids
(image)."""

import math

from keras import ops

from keras_tips import backend


def sinusoidal_positions(length, dim, min_timescale=1.0, max_timescale=1e4):
    """Transformer sinusoids laid out as `[sin | cos]` halves.

    The timescales run geometrically from `min_timescale` to `max_timescale`
    over `dim // 2` channels; an odd `dim` gets one zero channel at the end.

    Args:
        length: int. Number of positions.
        dim: int. Embedding width.
        min_timescale: float. Shortest period.
        max_timescale: float. Longest period.

    Returns:
        A float32 tensor of shape (length, dim).

    Example:
    ```python
    table = sinusoidal_positions(64, 512)  # (64, 512)
    ```
    """
    num_timescales = dim // 2
    log_increment = math.log(max_timescale / min_timescale) / max(
        num_timescales - 1, 1
    )
    inverse_timescales = min_timescale * ops.exp(
        ops.arange(num_timescales, dtype="float32") * -log_increment
    )
    scaled_time = (
        ops.arange(length, dtype="float32")[:, None]
        * inverse_timescales[None, :]
    )
    signal = ops.concatenate([ops.sin(scaled_time), ops.cos(scaled_time)], 1)
    if dim % 2:
        signal = ops.pad(signal, [[0, 0], [0, 1]])
    return signal


def resize_position_grid(grid, target_height, target_width):
    """Resizes a learned (1, h, w, D) position grid to a new patch grid.

    Bilinear with antialiasing (a triangle filter widened when shrinking), as
    the official TIPS image tower does; `keras.ops.image.resize` gives the
    same numbers on JAX, TensorFlow and PyTorch. The resize runs in float32.

    Args:
        grid: (1, h, w, D) tensor.
        target_height: int or scalar tensor. Patch rows of the input.
        target_width: int or scalar tensor. Patch columns of the input.

    Returns:
        A (1, target_height, target_width, D) tensor of `grid`'s dtype.
    """
    static_h, static_w = grid.shape[1], grid.shape[2]
    if (
        isinstance(target_height, int)
        and isinstance(target_width, int)
        and (target_height, target_width) == (static_h, static_w)
    ):
        return grid
    if not (isinstance(target_height, int) and isinstance(target_width, int)):
        # Only TensorFlow traces with unknown image sizes (e.g. under
        # `tf.function(reduce_retracing=True)`); `keras.ops.image.resize`
        # wants Python ints, the backend's resize takes the traced size and
        # computes the same antialiased bilinear resize.
        resized = backend.resize_bilinear_antialiased(
            ops.cast(grid, "float32"), target_height, target_width
        )
        return ops.cast(resized, grid.dtype)
    resized = ops.image.resize(
        ops.cast(grid, "float32"),
        (target_height, target_width),
        interpolation="bilinear",
        antialias=True,
        data_format="channels_last",
    )
    return ops.cast(resized, grid.dtype)
