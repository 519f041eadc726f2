"""NumPy helpers shared by the evaluation modules.

Everything here works on NumPy arrays (anything `np.asarray` accepts, so
backend tensors converted with `keras.ops.convert_to_numpy` too) and does not
depend on the Keras backend, so metrics are identical on JAX, TensorFlow and
PyTorch.
"""

import numpy as np

_EPSILON = 1e-12


def l2_normalize(x, axis=-1, epsilon=_EPSILON):
    """L2-normalises `x` along `axis`; all-zero vectors stay zero.

    The NumPy counterpart of `keras_tips.layers.contrastive_head.l2_normalize`
    (which normalises backend tensors in training and inference): evaluation
    works on NumPy arrays, and normalising them with NumPy, summing squares in
    float64, keeps every metric identical on JAX, TensorFlow and PyTorch.

    Args:
        x: array-like of floats.
        axis: int. The axis to normalise.
        epsilon: float. Lower bound of the norm, so zero vectors do not
            divide by zero.

    Returns:
        A float32 NumPy array of the shape of `x`.

    Example:
    ```python
    l2_normalize([[3.0, 4.0]])  # [[0.6, 0.8]]
    ```
    """
    x = np.asarray(x, dtype=np.float32)
    norm = np.sqrt(np.sum(np.square(x, dtype=np.float64), axis=axis, keepdims=True))
    return (x / np.maximum(norm, epsilon)).astype(np.float32)


def patches_to_grid(patches, grid_size=None, image_size=None, patch_size=14):
    """Reshapes row-major patch tokens (B, N, D) into a grid (B, h, w, D).

    `model.encode_images(...)["patches"]` is (B, N, D) with the patches in
    row-major order; dense evaluations and visualisations take (B, h, w, D).

    Args:
        patches: array (B, N, D) or (N, D).
        grid_size: optional `(h, w)`, h * w == N.
        image_size: optional `(H, W)` of the encoded images; the grid is then
            `(H // patch_size, W // patch_size)`.
        patch_size: int. Used with `image_size`.

    Returns:
        A NumPy array (B, h, w, D) (or (h, w, D) for a (N, D) input). Without
        `grid_size` or `image_size` the grid must be square.

    Example:
    ```python
    features = model.encode_images(images)  # images (B, 224, 224, 3)
    grid = patches_to_grid(features["patches"])  # (B, 16, 16, D)
    ```
    """
    patches = np.asarray(patches)
    squeeze = patches.ndim == 2
    if squeeze:
        patches = patches[None]
    if patches.ndim != 3:
        raise ValueError(
            f"`patches` must have shape (B, N, D) or (N, D); received {patches.shape}."
        )
    num_patches = patches.shape[1]
    if grid_size is None and image_size is not None:
        grid_size = (int(image_size[0]) // patch_size, int(image_size[1]) // patch_size)
    if grid_size is None:
        side = int(round(np.sqrt(num_patches)))
        if side * side != num_patches:
            raise ValueError(
                f"{num_patches} patches do not form a square grid; pass "
                "`grid_size=(h, w)` or `image_size=(H, W)`."
            )
        grid_size = (side, side)
    h, w = int(grid_size[0]), int(grid_size[1])
    if h * w != num_patches:
        raise ValueError(
            f"A {h} x {w} grid needs {h * w} patches; received {num_patches}."
        )
    grid = patches.reshape(patches.shape[0], h, w, patches.shape[2])
    return grid[0] if squeeze else grid


def _linear_coefficients(in_size, out_size):
    """Bilinear sampling positions along one axis (half-pixel centres).

    Output index `o` sits at input coordinate `(o + 0.5) * in / out - 0.5`,
    clamped to `[0, in - 1]` (the convention of `jax.image.resize`,
    `tf.image.resize` and `torch.nn.functional.interpolate(...,
    align_corners=False)` when upsampling).

    Returns:
        `(low, high, weight_high)`: int arrays (out,) and a float32 array
        (out,); the value is `(1 - weight_high) * x[low] + weight_high * x[high]`.
    """
    position = (np.arange(out_size, dtype=np.float64) + 0.5) * (in_size / out_size) - 0.5
    position = np.clip(position, 0.0, in_size - 1)
    low = np.floor(position).astype(np.int64)
    high = np.minimum(low + 1, in_size - 1)
    weight_high = (position - low).astype(np.float32)
    return low, high, weight_high


def bilinear_resize(x, size):
    """Bilinearly resizes the two spatial axes of a (B, h, w, C) array.

    Uses half-pixel centres with edge clamping, the convention of
    `keras.ops.image.resize(..., interpolation="bilinear")` when upsampling
    (no antialiasing, so downsampling simply samples bilinearly). The
    computation is separable and costs O(B * H * W * C).

    Args:
        x: array (B, h, w, C), (h, w, C) or (h, w).
        size: `(H, W)` of the output.

    Returns:
        A float32 NumPy array (B, H, W, C) (or (H, W, C) / (H, W)).

    Example:
    ```python
    bilinear_resize(np.array([[0.0, 1.0]]), (1, 4))  # [[0, 0.25, 0.75, 1]]
    ```
    """
    x = np.asarray(x, dtype=np.float32)
    ndim = x.ndim
    if ndim == 2:
        x = x[None, :, :, None]
    elif ndim == 3:
        x = x[None]
    elif ndim != 4:
        raise ValueError(f"Expected 2 to 4 dimensions; received shape {x.shape}.")
    out_h, out_w = int(size[0]), int(size[1])
    if out_h < 1 or out_w < 1:
        raise ValueError(f"`size` must be positive; received {size}.")
    low, high, weight = _linear_coefficients(x.shape[1], out_h)
    weight = weight[None, :, None, None]
    x = x[:, low] * (1.0 - weight) + x[:, high] * weight
    low, high, weight = _linear_coefficients(x.shape[2], out_w)
    weight = weight[None, None, :, None]
    x = x[:, :, low] * (1.0 - weight) + x[:, :, high] * weight
    x = x.astype(np.float32, copy=False)
    if ndim == 2:
        return x[0, :, :, 0]
    if ndim == 3:
        return x[0]
    return x


def bilinear_sample(grid, rows, cols, output_size):
    """Bilinearly upsampled values of a grid at chosen output pixels only.

    Gives the same values as `bilinear_resize(grid, output_size)[rows, cols]`
    without materialising the full-resolution array.

    Args:
        grid: array (h, w, C).
        rows: int array (P,) of output rows.
        cols: int array (P,) of output columns.
        output_size: `(H, W)` of the (virtual) upsampled image.

    Returns:
        A float32 NumPy array (P, C).

    Example:
    ```python
    rows, cols = np.array([0, 5]), np.array([3, 3])
    values = bilinear_sample(grid, rows, cols, output_size=(56, 56))
    ```
    """
    grid = np.asarray(grid, dtype=np.float32)
    r_low, r_high, r_weight = _linear_coefficients(grid.shape[0], int(output_size[0]))
    c_low, c_high, c_weight = _linear_coefficients(grid.shape[1], int(output_size[1]))
    r0, r1, wr = r_low[rows], r_high[rows], r_weight[rows][:, None]
    c0, c1, wc = c_low[cols], c_high[cols], c_weight[cols][:, None]
    top = grid[r0, c0] * (1.0 - wc) + grid[r0, c1] * wc
    bottom = grid[r1, c0] * (1.0 - wc) + grid[r1, c1] * wc
    return (top * (1.0 - wr) + bottom * wr).astype(np.float32)


def ranks_of_targets(scores, targets):
    """Rank of the target entry in each row of a score matrix (0 = best).

    Ties count against the target: the rank is the number of *other* entries
    scoring at least as high, so a degenerate model whose scores are all
    equal gets the worst rank rather than a perfect one.

    Args:
        scores: float array (Q, K).
        targets: int array (Q,) of column indices.

    Returns:
        An int64 NumPy array (Q,).

    Example:
    ```python
    ranks_of_targets([[0.2, 0.9, 0.9]], [1])  # [1]: the tie counts against
    ```
    """
    scores = np.asarray(scores)
    targets = np.asarray(targets, dtype=np.int64)
    rows = np.arange(scores.shape[0])
    target_scores = scores[rows, targets][:, None]
    # `not (s < t)` rather than `s >= t`: NaN scores also count against.
    at_least = np.sum(~(scores < target_scores), axis=1)
    return (at_least - 1).astype(np.int64)
