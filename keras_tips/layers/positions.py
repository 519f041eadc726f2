"""Positional encodings: fixed sinusoids (text), resizing learned grids
(image) and a sinusoidal start for a learned grid."""

import math

import keras
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


def position_grid_size_from_table(num_positions):
    """Side of the square grid behind a (1 + side**2)-entry position table."""
    side = math.isqrt(num_positions - 1)
    if side * side != num_positions - 1:
        raise ValueError(
            f"A position table of {num_positions} entries is not one CLS "
            "entry plus a square grid."
        )
    return side


def sinusoidal_position_grid(grid_size, dim):
    """Fixed 2-D sinusoids on a square patch grid, flattened row-major.

    The first `dim // 2` channels encode the patch row and the others the
    column, each as `sinusoidal_positions` of that axis (the MAE layout).

    Args:
        grid_size: int. Side of the patch grid.
        dim: int. Embedding width.

    Returns:
        A float32 tensor of shape (grid_size**2, dim).

    Example:
    ```python
    table = sinusoidal_position_grid(4, 96)  # (16, 96)
    ```
    """
    rows = sinusoidal_positions(grid_size, dim // 2)
    cols = sinusoidal_positions(grid_size, dim - dim // 2)
    rows = ops.broadcast_to(rows[:, None, :], (grid_size, grid_size, dim // 2))
    cols = ops.broadcast_to(
        cols[None, :, :], (grid_size, grid_size, dim - dim // 2)
    )
    grid = ops.concatenate([rows, cols], axis=-1)
    return ops.reshape(grid, (grid_size * grid_size, dim))


@keras.saving.register_keras_serializable(package="keras_tips")
class SinusoidalPositionTableInitializer(keras.initializers.Initializer):
    """Starts a `(1, 1 + side**2, D)` image position table as 2-D sinusoids.

    The CLS entry starts at zero and the patch grid as
    `sinusoidal_position_grid`: entries of order 1, so that a tower trained
    from scratch tells patch positions apart from the first step (a
    truncated normal of 0.02 is swamped by the patch embeddings, and the
    tower then sees a bag of patches). The table stays a learned weight.

    Example:
    ```python
    initializer = SinusoidalPositionTableInitializer()
    table = initializer((1, 17, 96))  # a 4 x 4 grid and the CLS entry
    ```
    """

    def __call__(self, shape, dtype=None):
        if len(shape) != 3 or shape[0] != 1:
            raise ValueError(
                "Expected a position table shape (1, 1 + side**2, dim). "
                f"Received: {tuple(shape)}"
            )
        side = position_grid_size_from_table(shape[1])
        grid = sinusoidal_position_grid(side, shape[2])
        table = ops.concatenate([ops.zeros((1, shape[2])), grid], axis=0)
        return ops.cast(table[None], dtype or "float32")
