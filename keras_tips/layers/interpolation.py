"""Bilinear and bicubic resizing of channels-last maps, computed as PyTorch's
`F.interpolate` computes them (no antialiasing).

`keras.ops.image.resize` has no `align_corners` and no PyTorch-style bicubic,
so each spatial axis is resized here by gathering the neighbouring rows (or
columns) of every output position and blending them with PyTorch's
interpolation weights. That is the same on every backend, works for traced
sizes too (under `tf.function` a relaxed trace has tensor sizes), and costs a
few multiplications per output value: far less than resizing by products
with dense (out, in) interpolation matrices at 448 px.
"""

import numpy as np
from keras import ops

# PyTorch's cubic convolution coefficient (`get_cubic_upsample_coefficients`).
CUBIC_A = -0.75


def spatial_size(x):
    """(height, width) of an NHWC tensor: Python ints where static."""
    shape = ops.shape(x)
    return shape[1], shape[2]


def _is_static(*sizes):
    return all(isinstance(size, (int, np.integer)) for size in sizes)


def _source_coordinates(in_size, out_size, align_corners, cubic=False):
    """Where each output position samples the input, in input pixels.

    PyTorch's `area_pixel_compute_source_index`: with `align_corners` the
    corner pixels of input and output coincide; without, pixel centres are
    mapped (`scale * (dst + 0.5) - 0.5`) and, for linear interpolation only,
    negative positions are clamped to 0. PyTorch's CPU kernels evaluate that
    expression with a fused multiply-add (one rounding to float32); for static
    sizes it is computed the same way here, in float64 and rounded once, so
    the sampling positions are bit-identical. Traced sizes fall back to
    float32 Keras ops (positions within a float32 rounding).
    """
    if _is_static(in_size, out_size):
        destination = np.arange(out_size, dtype="float64")
        if align_corners:
            if out_size > 1:
                scale = np.float32(in_size - 1) / np.float32(out_size - 1)
            else:
                scale = np.float32(0.0)
            return (np.float64(scale) * destination).astype("float32")
        scale = np.float32(in_size) / np.float32(out_size)
        source = (np.float64(scale) * (destination + 0.5) - 0.5).astype("float32")
        return source if cubic else np.maximum(source, np.float32(0.0))
    destination = ops.arange(out_size, dtype="float32")
    in_size_f = ops.cast(in_size, "float32")
    out_size_f = ops.cast(out_size, "float32")
    if align_corners:
        # PyTorch uses a scale of 0 for a single output pixel; the maximum
        # gives the same source position (0) without a division by zero.
        scale = (in_size_f - 1.0) / ops.maximum(out_size_f - 1.0, 1.0)
        return destination * scale
    scale = in_size_f / out_size_f
    source = scale * (destination + 0.5) - 0.5
    return source if cubic else ops.maximum(source, 0.0)


def _lower_neighbour(source, in_size):
    """PyTorch's `guard_index_and_lambda`: the lower neighbour (never past
    the last pixel) and the fraction towards the next one, in [0, 1]."""
    if isinstance(source, np.ndarray):
        lower = np.minimum(np.floor(source), in_size - 1)
        fraction = np.clip(source - lower.astype("float32"), 0.0, 1.0)
        return lower.astype("int32"), fraction.astype("float32")
    lower = ops.minimum(
        ops.cast(ops.floor(source), "int32"), ops.cast(in_size, "int32") - 1
    )
    fraction = ops.clip(source - ops.cast(lower, "float32"), 0.0, 1.0)
    return lower, fraction


def _blend(x, axis, indices, weights, in_size):
    """sum_k weights[k] * x[clip(indices[k])] along `axis` (1 or 2).

    The K neighbours of every output position are gathered at once and
    blended by one weighted sum (few ops: cheap to dispatch eagerly).
    """
    taps = len(indices)
    if isinstance(indices[0], np.ndarray):
        index = np.clip(np.concatenate(indices), 0, in_size - 1)
        weight = np.stack(weights).astype("float32")
    else:
        index = ops.clip(
            ops.concatenate(indices), 0, ops.cast(in_size, "int32") - 1
        )
        weight = ops.stack(weights)
    weight = ops.cast(weight, x.dtype)
    gathered = ops.take(x, index, axis=axis)  # K * out positions on `axis`
    shape = ops.shape(gathered)
    if axis == 1:
        gathered = ops.reshape(gathered, (shape[0], taps, -1, shape[2], shape[3]))
        weight = ops.reshape(weight, (1, taps, -1, 1, 1))
    else:
        gathered = ops.reshape(gathered, (shape[0], shape[1], taps, -1, shape[3]))
        weight = ops.reshape(weight, (1, 1, taps, -1, 1))
    return ops.sum(gathered * weight, axis=axis)


def _resize_axis_linear(x, axis, out_size, align_corners):
    in_size = ops.shape(x)[axis]
    source = _source_coordinates(in_size, out_size, align_corners)
    lower, fraction = _lower_neighbour(source, in_size)
    return _blend(
        x, axis, (lower, lower + 1), (1.0 - fraction, fraction), in_size
    )


def _fused_multiply_add(a, b, c):
    """float32 a * b + c rounded once, like a hardware fused multiply-add
    (the float64 product of two float32 values is exact)."""
    return (a.astype("float64") * b + c).astype("float32")


def _cubic_weights(t):
    """PyTorch's four cubic-convolution weights of neighbours -1, 0, +1, +2
    for a fraction `t` in [0, 1] (`get_cubic_upsample_coefficients`).

    For NumPy fractions (static sizes) the polynomials are evaluated as
    PyTorch's CPU kernels do, with fused multiply-adds in float32, which
    reproduces its weights within one float32 rounding.
    """
    a = CUBIC_A
    if isinstance(t, np.ndarray):
        a = np.float32(a)
        one = np.float32(1.0)

        def near(d):  # |d| <= 1
            inner = _fused_multiply_add(np.full_like(d, a + 2), d, -(a + 3))
            return _fused_multiply_add(inner * d, d, one)

        def far(d):  # 1 < |d| < 2
            inner = _fused_multiply_add(np.full_like(d, a), d, -5 * a)
            inner = _fused_multiply_add(inner, d, 8 * a)
            return _fused_multiply_add(inner, d, -4 * a)

    else:

        def near(d):
            return ((a + 2.0) * d - (a + 3.0)) * d * d + 1.0

        def far(d):
            return ((a * d - 5.0 * a) * d + 8.0 * a) * d - 4.0 * a

    opposite = 1.0 - t
    return far(t + 1.0), near(t), near(opposite), far(opposite + 1.0)


def _resize_axis_cubic(x, axis, out_size):
    in_size = ops.shape(x)[axis]
    source = _source_coordinates(in_size, out_size, False, cubic=True)
    lower, fraction = _lower_neighbour(source, in_size)
    # Neighbours beyond the border repeat the edge pixel.
    indices = [lower + offset for offset in (-1, 0, 1, 2)]
    return _blend(x, axis, indices, _cubic_weights(fraction), in_size)


def resize_bilinear(x, size, align_corners=False):
    """Bilinear resize of an NHWC tensor, as `F.interpolate(mode="bilinear")`.

    Args:
        x: (B, H, W, C) tensor.
        size: (height, width) of the output: ints or scalar tensors.
        align_corners: bool. PyTorch's `align_corners`.

    Returns:
        A (B, height, width, C) tensor of `x`'s dtype.

    Example:
    ```python
    y = resize_bilinear(keras.ops.ones((1, 5, 3, 8)), (10, 6), align_corners=True)
    ```
    """
    x = _resize_axis_linear(x, 2, size[1], align_corners)
    return _resize_axis_linear(x, 1, size[0], align_corners)


def resize_bicubic(x, size):
    """Bicubic resize of an NHWC tensor, as `F.interpolate(mode="bicubic",
    align_corners=False)` (cubic convolution with a = -0.75, edge pixels
    repeated beyond the border, no antialiasing).

    Args:
        x: (B, H, W, C) tensor.
        size: (height, width) of the output: ints or scalar tensors.

    Returns:
        A (B, height, width, C) tensor of `x`'s dtype.

    Example:
    ```python
    y = resize_bicubic(keras.ops.ones((1, 32, 32, 3)), (448, 448))
    ```
    """
    x = _resize_axis_cubic(x, 2, size[1])
    return _resize_axis_cubic(x, 1, size[0])
