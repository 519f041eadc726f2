"""Dense prediction metrics: segmentation (mIoU, pixel accuracy) and depth."""

import numpy as np


def confusion_matrix(pred, target, num_classes, ignore_index=None):
    """Pixel confusion matrix of a segmentation.

    Args:
        pred: int array of predicted class ids, any shape.
        target: int array of the same shape; pixels equal to `ignore_index`
            are left out.
        num_classes: int C. Target ids other than `ignore_index` must lie in
            [0, C); predictions outside [0, C) (e.g. -1 for "no class") count
            as wrong for the target's class but do not add a predicted class.
        ignore_index: optional int.

    Returns:
        `(matrix, misses)`: an int64 NumPy array (C, C) whose entry [t, p]
        counts pixels of target class t predicted as p, and an int64 array
        (C,) counting pixels of each target class predicted outside [0, C).

    Example:
    ```python
    matrix, misses = confusion_matrix(pred, target, num_classes=21)
    scores = segmentation_scores(matrix, misses)
    ```
    """
    pred = np.asarray(pred).astype(np.int64).ravel()
    target = np.asarray(target).astype(np.int64).ravel()
    if pred.shape != target.shape:
        raise ValueError(
            f"`pred` and `target` must have the same shape; received "
            f"{np.shape(pred)} and {np.shape(target)}."
        )
    num_classes = int(num_classes)
    valid = np.ones_like(target, dtype=bool)
    if ignore_index is not None:
        valid = target != int(ignore_index)
    pred, target = pred[valid], target[valid]
    if target.size and (target.min() < 0 or target.max() >= num_classes):
        raise ValueError(
            f"Target class ids must lie in [0, {num_classes}) or equal "
            f"`ignore_index` ({ignore_index}); received values in "
            f"[{target.min()}, {target.max()}]."
        )
    in_range = (pred >= 0) & (pred < num_classes)
    matrix = np.bincount(
        target[in_range] * num_classes + pred[in_range], minlength=num_classes**2
    ).reshape(num_classes, num_classes)
    # Out-of-range predictions: a miss for the target class (row) only.
    misses = np.bincount(target[~in_range], minlength=num_classes)
    return matrix.astype(np.int64), misses.astype(np.int64)


def iou_from_confusion(matrix, misses=None):
    """Per-class IoU of a confusion matrix; NaN for classes absent from both.

    Args:
        matrix: (C, C) confusion matrix (rows: target, columns: prediction).
        misses: optional (C,) target pixels predicted outside [0, C).

    Returns:
        A float64 NumPy array (C,).
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    intersection = np.diag(matrix)
    target_count = matrix.sum(axis=1)
    if misses is not None:
        target_count = target_count + np.asarray(misses, dtype=np.float64)
    union = target_count + matrix.sum(axis=0) - intersection
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, intersection / union, np.nan)


def segmentation_scores(matrix, misses=None):
    """mIoU, pixel accuracy and per-class IoU of an accumulated confusion matrix.

    Args:
        matrix: (C, C) confusion matrix from `confusion_matrix` (summed over
            batches).
        misses: optional (C,) out-of-range prediction counts.

    Returns:
        A dict: `"miou"`, `"pixel_accuracy"` (Python floats, NaN without
        pixels) and `"per_class_iou"` ((C,) NumPy array, NaN for classes
        absent from both prediction and target, which the mean excludes).

    Example:
    ```python
    matrix = np.zeros((21, 21), np.int64)
    misses = np.zeros(21, np.int64)
    for pred, target in batches:
        m, miss = confusion_matrix(pred, target, 21, ignore_index=255)
        matrix, misses = matrix + m, misses + miss
    segmentation_scores(matrix, misses)["miou"]
    ```
    """
    matrix = np.asarray(matrix)
    per_class = iou_from_confusion(matrix, misses)
    present = ~np.isnan(per_class)
    total = matrix.sum() + (0 if misses is None else np.sum(misses))
    return {
        "miou": float(per_class[present].mean()) if present.any() else float("nan"),
        "pixel_accuracy": float(np.trace(matrix) / total) if total else float("nan"),
        "per_class_iou": per_class,
    }


def mean_iou(pred, target, num_classes, ignore_index=255, return_per_class=False):
    """Mean intersection over union of a segmentation.

    IoU_c = |pred == c and target == c| / |pred == c or target == c| over
    the non-ignored pixels. Classes absent from both the prediction and the
    target (empty union) are excluded from the mean, so a dataset split
    without some class is not penalised for it.

    Args:
        pred: int array of predicted class ids (any shape, e.g. (B, H, W)).
        target: int array of the same shape.
        num_classes: int.
        ignore_index: optional int. Target pixels with this id are left out
            (predictions there do not count either).
        return_per_class: bool. Also return the (C,) per-class IoU (NaN for
            excluded classes).

    Returns:
        A Python float (NaN if every pixel is ignored), or `(miou,
        per_class)` with `return_per_class=True`.

    Example:
    ```python
    mean_iou([[0, 0, 1]], [[0, 1, 1]], num_classes=2)  # (1/2 + 1/2) / 2 = 0.5
    ```
    """
    matrix, misses = confusion_matrix(pred, target, num_classes, ignore_index)
    per_class = iou_from_confusion(matrix, misses)
    present = ~np.isnan(per_class)
    miou = float(np.mean(per_class[present])) if present.any() else float("nan")
    return (miou, per_class) if return_per_class else miou


def pixel_accuracy(pred, target, ignore_index=255):
    """Fraction of non-ignored pixels whose predicted class is the target's.

    Args:
        pred: int array of predicted class ids.
        target: int array of the same shape.
        ignore_index: optional int.

    Returns:
        A Python float (NaN if every pixel is ignored).

    Example:
    ```python
    pixel_accuracy([[0, 0, 1]], [[0, 1, 1]])  # 2/3
    ```
    """
    pred = np.asarray(pred)
    target = np.asarray(target)
    if pred.shape != target.shape:
        raise ValueError(
            f"`pred` and `target` must have the same shape; received "
            f"{pred.shape} and {target.shape}."
        )
    valid = np.ones(target.shape, bool) if ignore_index is None else target != ignore_index
    if not valid.any():
        return float("nan")
    return float(np.mean(pred[valid] == target[valid]))


def _depth_pairs(pred, target, valid_mask):
    pred = np.asarray(pred, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    if pred.shape != target.shape:
        raise ValueError(
            f"`pred` and `target` must have the same shape; received "
            f"{pred.shape} and {target.shape}."
        )
    valid = np.isfinite(target)
    if valid_mask is not None:
        valid_mask = np.asarray(valid_mask, dtype=bool)
        if valid_mask.shape != target.shape:
            raise ValueError(
                f"`valid_mask` must have shape {target.shape}; received "
                f"{valid_mask.shape}."
            )
        valid &= valid_mask
    return pred[valid], target[valid]


def default_depth_mask(target):
    """Valid depth pixels by convention: finite and > 0.

    Args:
        target: float array of ground-truth depth.

    Returns:
        A bool NumPy array of the same shape.
    """
    target = np.asarray(target, dtype=np.float64)
    return np.isfinite(target) & (target > 0)


def depth_rmse(pred, target, valid_mask=None):
    """Root mean squared error of depth over valid pixels.

    Args:
        pred: float array of predicted depth.
        target: float array of the same shape.
        valid_mask: optional bool array of the pixels to score (non-finite
            targets are always left out); by default the pixels with a
            finite target > 0 (0 marks missing depth in NYU and KITTI).

    Returns:
        A Python float (NaN without valid pixels).

    Example:
    ```python
    depth_rmse([1.0, 2.0], [1.0, 4.0])  # sqrt((0 + 4) / 2)
    ```
    """
    if valid_mask is None:
        valid_mask = default_depth_mask(target)
    pred, target = _depth_pairs(pred, target, valid_mask)
    if target.size == 0:
        return float("nan")
    return float(np.sqrt(np.mean(np.square(pred - target))))


def depth_abs_rel(pred, target, valid_mask=None):
    """Mean absolute relative error |pred - target| / target over valid pixels.

    Args:
        pred: float array of predicted depth.
        target: float array; pixels with target <= 0 are always left out.
        valid_mask: optional bool array.

    Returns:
        A Python float (NaN without valid pixels).

    Example:
    ```python
    depth_abs_rel([1.0, 2.0], [1.0, 4.0])  # (0 + 0.5) / 2
    ```
    """
    mask = default_depth_mask(target)
    if valid_mask is not None:
        mask &= np.asarray(valid_mask, dtype=bool)
    pred, target = _depth_pairs(pred, target, mask)
    if target.size == 0:
        return float("nan")
    return float(np.mean(np.abs(pred - target) / target))


def depth_delta(pred, target, valid_mask=None, threshold=1.25):
    """Fraction of valid pixels with max(pred/target, target/pred) < threshold.

    Args:
        pred: float array of predicted depth; non-positive predictions count
            as wrong.
        target: float array; pixels with target <= 0 are always left out.
        valid_mask: optional bool array.
        threshold: float (1.25 for the usual delta_1; 1.25**2, 1.25**3).

    Returns:
        A Python float (NaN without valid pixels).

    Example:
    ```python
    depth_delta([1.0, 2.0], [1.0, 4.0])  # ratios 1, 2 -> 0.5
    ```
    """
    mask = default_depth_mask(target)
    if valid_mask is not None:
        mask &= np.asarray(valid_mask, dtype=bool)
    pred, target = _depth_pairs(pred, target, mask)
    if target.size == 0:
        return float("nan")
    positive = pred > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.maximum(pred / target, target / pred)
    return float(np.mean(positive & (ratio < threshold)))


def depth_metrics(pred, target, valid_mask=None):
    """RMSE, abs-rel and delta<1.25 of a depth prediction.

    Args:
        pred: float array of predicted depth.
        target: float array of the same shape.
        valid_mask: optional bool array; by default finite targets > 0
            (abs-rel and delta always need target > 0).

    Returns:
        A dict of Python floats `{"rmse", "abs_rel", "delta1"}`.

    Example:
    ```python
    depth_metrics(pred_depth, gt_depth)  # {"rmse": ..., "abs_rel": ..., "delta1": ...}
    ```
    """
    return {
        "rmse": depth_rmse(pred, target, valid_mask),
        "abs_rel": depth_abs_rel(pred, target, valid_mask),
        "delta1": depth_delta(pred, target, valid_mask),
    }
