"""Linear probes on frozen patch features: semantic segmentation and depth.

A probe is a 1x1 linear head (`patch_logits = features @ kernel + bias`) on
frozen (B, h, w, D) patch features whose outputs are bilinearly upsampled
to the target resolution (B, H, W) before the loss and the metric, as in
the DINOv2 / TIPS linear evaluations.

Two ways to fit the head:

- `method="keras"`: a `keras.Sequential` of `Dense` (the 1x1 head) and a
  bilinear `Resizing` layer, trained with `fit` and AdamW on the
  full-resolution loss (masked cross-entropy for segmentation, masked mean
  squared error for depth). The default for segmentation: it optimises the
  cross-entropy that linear-probe results are reported with.
- `method="ridge"`: closed-form ridge regression, the default for depth and
  a fast option for segmentation (least squares on one-hot targets, a
  weaker classifier than cross-entropy). Because bilinear upsampling is
  linear and its weights sum to one, upsampling the head's output equals
  applying the head to bilinearly upsampled features; the ridge solution on
  the upsampled features of the valid target pixels is therefore the exact
  least-squares fit of the upsampled-logits model above. It needs one pass
  over the data and no learning-rate or epoch tuning, and is deterministic.

Both standardise the features with the training split's per-channel mean
and standard deviation and fold that into the returned kernel and bias, so
`LinearProbe` takes raw features.
"""

import numpy as np

from keras_tips.evaluation.metrics import confusion_matrix
from keras_tips.evaluation.metrics import default_depth_mask
from keras_tips.evaluation.metrics import depth_abs_rel
from keras_tips.evaluation.metrics import depth_delta
from keras_tips.evaluation.metrics import depth_metrics
from keras_tips.evaluation.metrics import depth_rmse
from keras_tips.evaluation.metrics import mean_iou
from keras_tips.evaluation.metrics import pixel_accuracy
from keras_tips.evaluation.metrics import segmentation_scores
from keras_tips.evaluation.utils import bilinear_resize
from keras_tips.evaluation.utils import bilinear_sample

__all__ = [
    "LinearProbe",
    "fit_segmentation_probe",
    "fit_depth_probe",
    "evaluate_segmentation_probe",
    "evaluate_depth_probe",
    "mean_iou",
    "pixel_accuracy",
    "depth_rmse",
    "depth_abs_rel",
    "depth_delta",
    "depth_metrics",
]

METHODS = ("keras", "ridge")


class LinearProbe:
    """A fitted 1x1 linear head on (B, h, w, D) patch features.

    Args:
        kernel: float array (D, K).
        bias: float array (K,).
        task: `"segmentation"` (K classes) or `"depth"` (K = 1).

    Example:
    ```python
    probe = fit_segmentation_probe(train_patches, train_masks, num_classes=21)
    labels = probe.predict(test_patches, output_size=(448, 448))  # (B, H, W)
    ```
    """

    def __init__(self, kernel, bias, task="segmentation"):
        if task not in ("segmentation", "depth"):
            raise ValueError(f"Unknown task {task!r}.")
        self.kernel = np.asarray(kernel, dtype=np.float32)
        self.bias = np.asarray(bias, dtype=np.float32)
        self.task = task

    def patch_logits(self, features):
        """Head outputs at patch resolution, (B, h, w, K)."""
        features = _check_features(features)
        if features.shape[-1] != self.kernel.shape[0]:
            raise ValueError(
                f"The probe expects {self.kernel.shape[0]} feature channels; "
                f"received {features.shape[-1]}."
            )
        return features @ self.kernel + self.bias

    def predict_logits(self, features, output_size):
        """Head outputs bilinearly upsampled to `output_size`, (B, H, W, K)."""
        return bilinear_resize(self.patch_logits(features), output_size)

    def predict(self, features, output_size, batch_size=8):
        """Class ids (segmentation) or depth (depth) at `output_size`.

        Args:
            features: float array (B, h, w, D).
            output_size: `(H, W)`.
            batch_size: int. Images upsampled at a time (bounds the memory
                of the (b, H, W, K) logits).

        Returns:
            (B, H, W) int64 class ids or float32 depth.
        """
        features = _check_features(features)
        outputs = []
        for start in range(0, features.shape[0], int(batch_size)):
            logits = self.predict_logits(features[start : start + int(batch_size)], output_size)
            if self.task == "segmentation":
                outputs.append(np.argmax(logits, axis=-1).astype(np.int64))
            else:
                outputs.append(logits[..., 0])
        return np.concatenate(outputs)


def _check_features(features):
    features = np.asarray(features, dtype=np.float32)
    if features.ndim != 4:
        raise ValueError(
            "Patch features must have shape (B, h, w, D); received "
            f"{features.shape}. Reshape (B, N, D) patch tokens with "
            "`keras_tips.evaluation.patches_to_grid`."
        )
    return features


def _check_pair(features, targets):
    features = _check_features(features)
    targets = np.asarray(targets)
    if targets.ndim != 3 or targets.shape[0] != features.shape[0]:
        raise ValueError(
            f"Targets must have shape (B, H, W) with B = {features.shape[0]}; "
            f"received {targets.shape}."
        )
    return features, targets


def _feature_statistics(features):
    """Per-channel mean and standard deviation, accumulated image by image."""
    total = np.zeros(features.shape[-1], np.float64)
    total_sq = np.zeros(features.shape[-1], np.float64)
    for image in features:
        flat = image.reshape(-1, features.shape[-1]).astype(np.float64)
        total += flat.sum(axis=0)
        total_sq += np.square(flat).sum(axis=0)
    count = features.shape[0] * features.shape[1] * features.shape[2]
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - np.square(mean), 0.0))
    std = np.where(std > 1e-6, std, 1.0)
    return mean, std


def _fold(kernel, bias, mean, std, out_scale=1.0, out_shift=0.0):
    """Kernel and bias on raw features from ones on standardised features."""
    kernel = np.asarray(kernel, np.float64) / std[:, None]
    bias = np.asarray(bias, np.float64) - mean @ kernel
    return (kernel * out_scale).astype(np.float32), (bias * out_scale + out_shift).astype(
        np.float32
    )


def _select_pixels(valid, max_pixels, rng):
    rows, cols = np.nonzero(valid)
    if max_pixels is not None and rows.size > int(max_pixels):
        keep = rng.choice(rows.size, int(max_pixels), replace=False)
        rows, cols = rows[keep], cols[keep]
    return rows, cols


def _ridge_fit(features, targets_fn, valid, out_dim, l2, max_pixels, seed, chunk=16384):
    """Ridge regression of per-pixel targets on upsampled standardised features.

    Returns the kernel (D, K) and bias (K,) on the standardised features
    `(features - mean) / std` together with `(mean, std)`.
    """
    mean, std = _feature_statistics(features)
    dim = features.shape[-1]
    rng = np.random.default_rng(seed)
    gram = np.zeros((dim + 1, dim + 1), np.float64)
    moment = np.zeros((dim + 1, out_dim), np.float64)
    count = 0
    size = valid.shape[1:]
    for i in range(features.shape[0]):
        grid = ((features[i] - mean) / std).astype(np.float32)
        rows, cols = _select_pixels(valid[i], max_pixels, rng)
        for start in range(0, rows.size, chunk):
            r, c = rows[start : start + chunk], cols[start : start + chunk]
            design = np.concatenate(
                [bilinear_sample(grid, r, c, size), np.ones((r.size, 1), np.float32)], axis=1
            ).astype(np.float64)
            gram += design.T @ design
            moment += design.T @ targets_fn(i, r, c)
            count += r.size
    if count == 0:
        raise ValueError("No valid target pixels to fit the probe on.")
    # The penalty scales with the pixel count, so `l2` does not depend on
    # the dataset size; the bias is not penalised.
    penalty = np.full(dim + 1, float(l2) * count)
    penalty[-1] = 0.0
    try:
        solution = np.linalg.solve(gram + np.diag(penalty), moment)
    except np.linalg.LinAlgError:
        solution = np.linalg.lstsq(gram + np.diag(penalty), moment, rcond=None)[0]
    return solution[:-1], solution[-1], mean, std


def _keras_fit(x, y, mean, std, out_dim, output_size, loss, epochs, batch_size,
               learning_rate, weight_decay, verbose):
    import keras

    model = keras.Sequential(
        [
            keras.Input(x.shape[1:]),
            # Fixed standardisation inside the model, so the (possibly
            # large) feature array is not copied.
            keras.layers.Normalization(mean=mean, variance=np.square(std)),
            # The 1x1 head; zero initialisation is fine for a convex problem
            # and makes the starting point deterministic.
            keras.layers.Dense(out_dim, kernel_initializer="zeros", name="head"),
            keras.layers.Resizing(*output_size, interpolation="bilinear"),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.AdamW(learning_rate, weight_decay=weight_decay),
        loss=loss,
    )
    history = model.fit(
        x, y, epochs=int(epochs), batch_size=int(batch_size), shuffle=True, verbose=verbose
    )
    kernel, bias = model.get_layer("head").get_weights()
    return kernel, bias, history.history


def _masked_cross_entropy(ignore_index):
    def masked_cross_entropy(y_true, y_pred):
        from keras import ops

        y_true = ops.convert_to_tensor(y_true)
        y_pred = ops.convert_to_tensor(y_pred)
        valid = ops.not_equal(y_true, float(ignore_index))
        labels = ops.cast(ops.where(valid, y_true, 0.0), "int32")
        losses = ops.sparse_categorical_crossentropy(labels, y_pred, from_logits=True)
        valid = ops.cast(valid, losses.dtype)
        return ops.sum(losses * valid) / ops.maximum(ops.sum(valid), 1.0)

    return masked_cross_entropy


def _masked_squared_error(y_true, y_pred):
    from keras import ops

    y_true = ops.convert_to_tensor(y_true)
    y_pred = ops.convert_to_tensor(y_pred)
    # y_true packs (target, valid) in its last axis.
    target, valid = y_true[..., 0], y_true[..., 1]
    error = ops.square(y_pred[..., 0] - target) * valid
    return ops.sum(error) / ops.maximum(ops.sum(valid), 1.0)


def _check_method(method):
    if method not in METHODS:
        raise ValueError(f"`method` must be one of {METHODS}; received {method!r}.")


def fit_segmentation_probe(
    features,
    targets,
    num_classes,
    ignore_index=255,
    method="keras",
    epochs=10,
    batch_size=8,
    learning_rate=1e-3,
    weight_decay=1e-4,
    l2=1e-4,
    max_pixels_per_image=None,
    seed=0,
    verbose=0,
):
    """Fits a linear segmentation head on frozen patch features.

    Args:
        features: float array (B, h, w, D) of training patch features.
        targets: int array (B, H, W) of class ids in [0, num_classes) or
            `ignore_index`.
        num_classes: int.
        ignore_index: optional int. Pixels left out of the loss.
        method: `"keras"` (cross-entropy with AdamW, default) or `"ridge"`
            (closed-form least squares on one-hot targets, fast); see the
            module docstring.
        epochs: int. `"keras"` only.
        batch_size: int. Images per step, `"keras"` only.
        learning_rate: float. `"keras"` only.
        weight_decay: float. AdamW weight decay, `"keras"` only.
        l2: float. Ridge penalty per pixel, `"ridge"` only.
        max_pixels_per_image: optional int. `"ridge"` only: fit on at most
            this many random valid pixels per image. The Gram matrix costs
            O(pixels * D^2); a few thousand pixels per image are plenty for
            full-size datasets (e.g. 4096 for ADE20K at 512 x 512).
        seed: int. Pixel sampling seed for `"ridge"`. (Keras shuffling is
            seeded with `keras.utils.set_random_seed`.)
        verbose: `fit` verbosity.

    Returns:
        A `LinearProbe` (task `"segmentation"`); with `method="keras"` the
        training history (dict of lists) is in `probe.history`.

    Example:
    ```python
    probe = fit_segmentation_probe(train_patches, train_masks, num_classes=150)
    pred = probe.predict(test_patches, output_size=test_masks.shape[1:])
    mean_iou(pred, test_masks, num_classes=150, ignore_index=255)
    ```
    """
    _check_method(method)
    features, targets = _check_pair(features, targets)
    targets = targets.astype(np.int64)
    num_classes = int(num_classes)
    valid = np.ones(targets.shape, bool) if ignore_index is None else targets != ignore_index
    if valid.any() and (targets[valid].min() < 0 or targets[valid].max() >= num_classes):
        raise ValueError(
            f"Target class ids must lie in [0, {num_classes}) or equal "
            f"`ignore_index` ({ignore_index})."
        )
    if method == "ridge":
        eye = np.eye(num_classes)
        kernel, bias, mean, std = _ridge_fit(
            features,
            lambda i, r, c: eye[targets[i, r, c]],
            valid,
            num_classes,
            l2,
            max_pixels_per_image,
            seed,
        )
        probe = LinearProbe(*_fold(kernel, bias, mean, std), task="segmentation")
        probe.history = None
        return probe
    mean, std = _feature_statistics(features)
    sentinel = -1 if ignore_index is None else int(ignore_index)
    y = np.where(valid, targets, sentinel).astype(np.float32)
    kernel, bias, history = _keras_fit(
        features, y, mean, std, num_classes, targets.shape[1:], _masked_cross_entropy(sentinel),
        epochs, batch_size, learning_rate, weight_decay, verbose,
    )
    probe = LinearProbe(*_fold(kernel, bias, mean, std), task="segmentation")
    probe.history = history
    return probe


def fit_depth_probe(
    features,
    depth,
    valid_mask=None,
    method="ridge",
    l2=1e-4,
    max_pixels_per_image=None,
    epochs=20,
    batch_size=8,
    learning_rate=1e-3,
    weight_decay=1e-4,
    seed=0,
    verbose=0,
):
    """Fits a linear depth head on frozen patch features.

    The depth targets are standardised with the training split's valid
    pixels for the fit, and the returned probe predicts depth in the
    original units.

    Args:
        features: float array (B, h, w, D).
        depth: float array (B, H, W).
        valid_mask: optional bool array (B, H, W); by default pixels with a
            finite depth > 0.
        method: `"ridge"` (closed form, default) or `"keras"` (masked mean
            squared error with AdamW); see the module docstring.
        l2: float. Ridge penalty per pixel, `"ridge"` only.
        max_pixels_per_image: optional int. `"ridge"` only, see
            `fit_segmentation_probe`.
        epochs: int. `"keras"` only.
        batch_size: int. `"keras"` only.
        learning_rate: float. `"keras"` only.
        weight_decay: float. `"keras"` only.
        seed: int. Pixel sampling seed for `"ridge"`.
        verbose: `fit` verbosity.

    Returns:
        A `LinearProbe` (task `"depth"`).

    Example:
    ```python
    probe = fit_depth_probe(train_patches, train_depth)
    depth_rmse(probe.predict(test_patches, test_depth.shape[1:]), test_depth)
    ```
    """
    _check_method(method)
    features, depth = _check_pair(features, depth)
    depth = depth.astype(np.float64)
    valid = default_depth_mask(depth) if valid_mask is None else np.asarray(valid_mask, bool)
    if valid.shape != depth.shape:
        raise ValueError(f"`valid_mask` must have shape {depth.shape}; received {valid.shape}.")
    valid = valid & np.isfinite(depth)
    if not valid.any():
        raise ValueError("No valid depth pixels to fit the probe on.")
    shift = float(depth[valid].mean())
    scale = float(depth[valid].std()) or 1.0
    normalized = np.where(valid, (depth - shift) / scale, 0.0)
    if method == "ridge":
        kernel, bias, mean, std = _ridge_fit(
            features,
            lambda i, r, c: normalized[i, r, c][:, None],
            valid,
            1,
            l2,
            max_pixels_per_image,
            seed,
        )
        history = None
    else:
        mean, std = _feature_statistics(features)
        y = np.stack([normalized, valid], axis=-1).astype(np.float32)
        kernel, bias, history = _keras_fit(
            features, y, mean, std, 1, depth.shape[1:], _masked_squared_error,
            epochs, batch_size, learning_rate, weight_decay, verbose,
        )
    probe = LinearProbe(*_fold(kernel, bias, mean, std, scale, shift), task="depth")
    probe.history = history
    return probe


def evaluate_segmentation_probe(
    train_features,
    train_targets,
    test_features,
    test_targets,
    num_classes,
    ignore_index=255,
    batch_size=8,
    **fit_kwargs,
):
    """Fits a segmentation probe on a train split and scores it on a test split.

    Args:
        train_features: (B, h, w, D) training patch features.
        train_targets: (B, H, W) training class ids.
        test_features: (B', h', w', D) test patch features.
        test_targets: (B', H', W') test class ids; logits are upsampled to
            this size.
        num_classes: int.
        ignore_index: optional int.
        batch_size: int. Training (keras) and prediction batch size.
        **fit_kwargs: forwarded to `fit_segmentation_probe` (`method`,
            `epochs`, `learning_rate`, `l2`, ...).

    Returns:
        A dict: `"miou"`, `"pixel_accuracy"` (Python floats) and
        `"per_class_iou"` (a (C,) NumPy array, NaN for absent classes).

    Example:
    ```python
    metrics = evaluate_segmentation_probe(
        train_patches, train_masks, test_patches, test_masks, num_classes=21
    )
    ```
    """
    probe = fit_segmentation_probe(
        train_features, train_targets, num_classes, ignore_index=ignore_index,
        batch_size=batch_size, **fit_kwargs,
    )
    test_features, test_targets = _check_pair(test_features, test_targets)
    matrix = np.zeros((num_classes, num_classes), np.int64)
    misses = np.zeros(num_classes, np.int64)
    for start in range(0, test_features.shape[0], int(batch_size)):
        stop = start + int(batch_size)
        pred = probe.predict(test_features[start:stop], test_targets.shape[1:], batch_size)
        m, miss = confusion_matrix(pred, test_targets[start:stop], num_classes, ignore_index)
        matrix += m
        misses += miss
    return segmentation_scores(matrix, misses)


def evaluate_depth_probe(
    train_features,
    train_depth,
    test_features,
    test_depth,
    train_valid_mask=None,
    test_valid_mask=None,
    batch_size=8,
    **fit_kwargs,
):
    """Fits a depth probe on a train split and scores it on a test split.

    Args:
        train_features: (B, h, w, D) training patch features.
        train_depth: (B, H, W) training depth.
        test_features: (B', h', w', D) test patch features.
        test_depth: (B', H', W') test depth.
        train_valid_mask: optional bool (B, H, W); default finite depth > 0.
        test_valid_mask: optional bool (B', H', W'); default finite depth > 0.
        batch_size: int. Training (keras) and prediction batch size.
        **fit_kwargs: forwarded to `fit_depth_probe` (`method`, `l2`, ...).

    Returns:
        A dict of Python floats `{"rmse", "abs_rel", "delta1"}`.

    Example:
    ```python
    metrics = evaluate_depth_probe(train_patches, train_depth, test_patches, test_depth)
    ```
    """
    probe = fit_depth_probe(
        train_features, train_depth, train_valid_mask, batch_size=batch_size, **fit_kwargs
    )
    test_features, test_depth = _check_pair(test_features, test_depth)
    pred = probe.predict(test_features, test_depth.shape[1:], batch_size)
    return depth_metrics(pred, test_depth, test_valid_mask)
