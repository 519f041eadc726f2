"""Patch masks for the masked-image (iBOT) objective.

A mask is a bool vector over the patch grid in row-major order, True for a
masked patch. Both modes mask exactly `round(ratio * num_patches)` patches so
the masked fraction of every image is what the configuration says.
"""

import dataclasses
import math

import numpy as np

MASK_MODES = ("random", "block")


def num_masked_patches(num_patches, ratio):
    """The exact number of masked patches: `round(ratio * num_patches)`."""
    return int(round(ratio * num_patches))


def random_patch_mask(grid_size, ratio, rng):
    """Masks a uniformly random set of `round(ratio * N)` patches.

    Args:
        grid_size: int or (rows, cols). The patch grid.
        ratio: float in [0, 1].
        rng: `np.random.Generator`.

    Returns:
        bool array (rows * cols,).
    """
    rows, cols = _grid(grid_size)
    num_patches = rows * cols
    mask = np.zeros(num_patches, dtype=bool)
    count = num_masked_patches(num_patches, ratio)
    mask[rng.permutation(num_patches)[:count]] = True
    return mask


def block_patch_mask(
    grid_size,
    ratio,
    rng,
    min_block_patches=4,
    aspect_ratio_range=(0.3, 1 / 0.3),
    max_attempts=10,
):
    """Masks rectangular blocks of patches (BEiT / iBOT block-wise masking).

    Blocks of random area and aspect ratio are added until the target count is
    reached; since blocks rarely land exactly on it, the last patches are
    added (or the extra ones removed) at random so exactly
    `round(ratio * N)` patches are masked.

    Args:
        grid_size: int or (rows, cols).
        ratio: float in [0, 1].
        rng: `np.random.Generator`.
        min_block_patches: int. Smallest block area, in patches.
        aspect_ratio_range: (min, max) block height / width.
        max_attempts: int. Tries to place one block before giving up on
            blocks and filling the remainder at random.

    Returns:
        bool array (rows * cols,).
    """
    rows, cols = _grid(grid_size)
    target = num_masked_patches(rows * cols, ratio)
    mask = np.zeros((rows, cols), dtype=bool)
    log_aspect = (
        math.log(aspect_ratio_range[0]),
        math.log(aspect_ratio_range[1]),
    )
    count = 0
    while count < target:
        added = 0
        for _ in range(max_attempts):
            max_area = target - count
            if max_area < min_block_patches:
                break
            area = rng.uniform(min_block_patches, max_area)
            aspect = math.exp(rng.uniform(*log_aspect))
            height = int(round(math.sqrt(area * aspect)))
            width = int(round(math.sqrt(area / aspect)))
            if not (1 <= height <= rows and 1 <= width <= cols):
                continue
            top = int(rng.integers(0, rows - height + 1))
            left = int(rng.integers(0, cols - width + 1))
            block = mask[top : top + height, left : left + width]
            added = int((~block).sum())
            if 0 < added <= max_area:
                block[...] = True
                break
            added = 0
        if added == 0:
            break
        count += added
    flat = mask.reshape(-1)
    if count < target:
        free = np.flatnonzero(~flat)
        flat[rng.choice(free, size=target - count, replace=False)] = True
    elif count > target:
        taken = np.flatnonzero(flat)
        flat[rng.choice(taken, size=count - target, replace=False)] = False
    return flat


@dataclasses.dataclass(frozen=True)
class PatchMaskConfig:
    """How patch masks are drawn.

    Attributes:
        ratio: float in [0, 1]. Fraction of masked patches (0.75).
        mode: "random" (uniform patches) or "block" (rectangular blocks).
        probability: float in [0, 1]. Probability that an image is masked
            at all; unmasked images get an all-False mask (iBOT masks half of
            the images). 1.0 masks every image.
        min_block_patches: int. Smallest block, in patches, in "block"
            mode.

    Example:
    ```python
    config = PatchMaskConfig(ratio=0.5, mode="block", probability=0.5)
    ```
    """

    ratio: float = 0.75
    mode: str = "random"
    probability: float = 1.0
    min_block_patches: int = 4

    def __post_init__(self):
        if not 0.0 <= self.ratio <= 1.0:
            raise ValueError(
                f"Mask `ratio` must be in [0, 1]. Received: {self.ratio}"
            )
        if self.mode not in MASK_MODES:
            raise ValueError(
                f"Mask `mode` must be one of {MASK_MODES}. "
                f"Received: {self.mode!r}"
            )
        if not 0.0 <= self.probability <= 1.0:
            raise ValueError(
                "Mask `probability` must be in [0, 1]. "
                f"Received: {self.probability}"
            )
        if self.min_block_patches < 1:
            raise ValueError(
                "Mask `min_block_patches` must be >= 1. "
                f"Received: {self.min_block_patches}"
            )


class PatchMasker:
    """Draws patch masks for one patch grid.

    Args:
        grid_size: int or (rows, cols). Patches per side (`image_size // 14`).
        config: a `PatchMaskConfig`.

    Example:
    ```python
    masker = PatchMasker(16, PatchMaskConfig(ratio=0.5, mode="block"))
    mask = masker(np.random.default_rng(0))  # bool (256,), 128 True
    ```
    """

    def __init__(self, grid_size, config=None):
        self.rows, self.cols = _grid(grid_size)
        self.config = config or PatchMaskConfig()

    @property
    def num_patches(self):
        return self.rows * self.cols

    def __call__(self, rng):
        config = self.config
        if config.probability < 1.0 and rng.random() >= config.probability:
            return np.zeros(self.num_patches, dtype=bool)
        if config.mode == "block":
            return block_patch_mask(
                (self.rows, self.cols),
                config.ratio,
                rng,
                min_block_patches=config.min_block_patches,
            )
        return random_patch_mask((self.rows, self.cols), config.ratio, rng)


def _grid(grid_size):
    if isinstance(grid_size, int):
        rows = cols = grid_size
    else:
        rows, cols = (int(v) for v in grid_size)
    if rows < 1 or cols < 1:
        raise ValueError(
            f"Patch grid must be at least 1x1. Received: {grid_size}"
        )
    return rows, cols
