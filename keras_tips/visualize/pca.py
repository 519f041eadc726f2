"""PCA visualisation of patch features as RGB images."""

import numpy as np

from keras_tips.visualize.images import resize_image


def principal_components(features, num_components=3):
    """Top principal directions of a set of feature vectors.

    The sign of each direction is fixed so that its largest-magnitude
    loading is positive, so the result is deterministic.

    Args:
        features: float array (M, D).
        num_components: int.

    Returns:
        `(mean, components)`: (D,) and (min(num_components, D), D) float64
        arrays, components ordered by decreasing variance.

    Example:
    ```python
    mean, components = principal_components(grid.reshape(-1, grid.shape[-1]))
    projected = (grid - mean) @ components.T  # (h, w, 3)
    ```
    """
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"Expected features (M, D) with M > 0; received {x.shape}.")
    mean = x.mean(axis=0)
    centered = x - mean
    # Eigenvectors of the (D, D) scatter matrix: memory independent of M.
    eigenvalues, eigenvectors = np.linalg.eigh(centered.T @ centered)
    order = np.argsort(eigenvalues)[::-1][: int(num_components)]
    components = eigenvectors[:, order].T
    largest = np.argmax(np.abs(components), axis=1)
    signs = np.sign(components[np.arange(len(components)), largest])
    components *= np.where(signs == 0, 1.0, signs)[:, None]
    return mean, components


def _robust_unit(values, reference, percentiles):
    """Maps values to [0, 1] with the percentiles of `reference` as 0 and 1."""
    low, high = np.percentile(reference, percentiles)
    if high - low <= 1e-12:
        return np.full_like(values, 0.5)
    return np.clip((values - low) / (high - low), 0.0, 1.0)


def pca_image(
    features,
    image_size=None,
    foreground_threshold=None,
    invert_foreground=False,
    percentiles=(1.0, 99.0),
    resample="nearest",
    return_foreground=False,
):
    """Colours patch features by their first three principal components.

    PCA is fitted over all patches of all images given, so colours are
    comparable across a batch. Each component is min-max scaled to [0, 1]
    robustly (between the given percentiles, values outside are clipped)
    and used as the red, green and blue channel.

    With `foreground_threshold`, the first component (robustly scaled to
    [0, 1]) separates foreground from background as in the DINOv2 figures:
    patches above the threshold (below with `invert_foreground`, since the
    component's sign is arbitrary) are foreground, PCA is refitted on them
    only, and background patches are black.

    Args:
        features: float array (h, w, D) or (B, h, w, D) of patch features.
        image_size: optional `(H, W)` to upsample to (e.g. the image size).
        foreground_threshold: optional float in [0, 1].
        invert_foreground: bool. Take patches below the threshold as
            foreground.
        percentiles: `(low, high)` percentiles mapped to 0 and 1.
        resample: `"nearest"` (shows the patch grid) or `"bilinear"`.
        return_foreground: bool. Also return the bool (B?, h, w) foreground
            mask (all True without a threshold).

    Returns:
        A uint8 NumPy array (H, W, 3), or (B, H, W, 3) for a batch (h, w
        without `image_size`); with `return_foreground`, `(image, mask)`.

    Example:
    ```python
    grid = patches_to_grid(model.encode_images(images)["patches"])
    rgb = pca_image(grid, image_size=images.shape[1:3])  # (B, H, W, 3)
    ```
    """
    x = np.asarray(features, dtype=np.float32)
    single = x.ndim == 3
    if single:
        x = x[None]
    if x.ndim != 4:
        raise ValueError(
            f"`features` must be (h, w, D) or (B, h, w, D); received {x.shape}. "
            "Reshape (B, N, D) tokens with `keras_tips.evaluation.patches_to_grid`."
        )
    batch, h, w, dim = x.shape
    flat = x.reshape(-1, dim)
    foreground = np.ones(flat.shape[0], bool)
    if foreground_threshold is not None:
        mean, components = principal_components(flat, 1)
        first = (flat - mean) @ components[0]
        first = _robust_unit(first, first, percentiles)
        foreground = first < foreground_threshold if invert_foreground else (
            first > foreground_threshold
        )
    rgb = np.zeros((flat.shape[0], 3), np.float64)
    if foreground.any():
        mean, components = principal_components(flat[foreground], 3)
        projected = (flat[foreground] - mean) @ components.T
        for channel in range(projected.shape[1]):
            values = projected[:, channel]
            rgb[foreground, channel] = _robust_unit(values, values, percentiles)
    image = np.round(rgb * 255).astype(np.uint8).reshape(batch, h, w, 3)
    foreground = foreground.reshape(batch, h, w)
    if image_size is not None:
        image = np.stack([resize_image(i, image_size, resample) for i in image])
    if single:
        image, foreground = image[0], foreground[0]
    return (image, foreground) if return_foreground else image
