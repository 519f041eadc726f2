"""Zero-shot semantic segmentation from patch features and class text embeddings.

Each patch is compared with every class text embedding by cosine
similarity; the (h, w, C) similarity maps are bilinearly upsampled to the
image size and the most similar class is taken per pixel (upsampling the
scores before the argmax gives smoother boundaries than upsampling the
patch-level labels).

Which patch features to pass: the output patch tokens (`"patches"` of
`model.encode_images`, reshaped with `patches_to_grid`), or, as in the
official TIPS notebooks, the value embeddings of the last block
(`model.encode_images(..., return_value_patches=True)["value_patches"]`),
which give sharper maps. Both are (B, N, D); this module takes them as a
(B, h, w, D) grid.
"""

import numpy as np

from keras_tips.evaluation.metrics import confusion_matrix
from keras_tips.evaluation.metrics import segmentation_scores
from keras_tips.evaluation.utils import bilinear_resize
from keras_tips.evaluation.utils import l2_normalize


def similarity_maps(patch_features, text_embeddings):
    """Cosine similarity of every patch to every text embedding.

    Args:
        patch_features: float array (B, h, w, D) or (h, w, D).
        text_embeddings: float array (C, D) or (D,) (raw or normalised).

    Returns:
        A float32 NumPy array (B, h, w, C) (or (h, w, C); the last axis is
        dropped for a single (D,) text embedding).

    Example:
    ```python
    maps = similarity_maps(grid, model.encode_texts(["a dog"]))  # (B, h, w, 1)
    ```
    """
    features = np.asarray(patch_features, dtype=np.float32)
    texts = np.asarray(text_embeddings, dtype=np.float32)
    single_text = texts.ndim == 1
    if single_text:
        texts = texts[None]
    if features.ndim not in (3, 4) or texts.ndim != 2:
        raise ValueError(
            "Expected patch features (B, h, w, D) or (h, w, D) and text "
            f"embeddings (C, D); received {features.shape} and {texts.shape}."
        )
    if features.shape[-1] != texts.shape[-1]:
        raise ValueError(
            f"Feature width {features.shape[-1]} differs from text embedding "
            f"width {texts.shape[-1]}."
        )
    maps = l2_normalize(features) @ l2_normalize(texts).T
    return maps[..., 0] if single_text else maps


def zero_shot_segment(
    patch_features,
    text_embeddings,
    image_size,
    background_threshold=None,
    temperature=None,
    batch_size=8,
):
    """Per-pixel zero-shot class ids.

    Args:
        patch_features: float array (B, h, w, D): output patch tokens or
            last-block value embeddings (see the module docstring).
        text_embeddings: float array (C, D) of class embeddings, e.g. from
            `build_zero_shot_classifier`.
        image_size: `(H, W)` of the output masks.
        background_threshold: optional float. When set, the output has
            C + 1 labels: 0 is background and text class c becomes c + 1
            (the Pascal VOC layout); pixels whose best score is below the
            threshold are background.
        temperature: optional float. Without it the threshold applies to
            the cosine similarity; with it, to the softmax probability
            `softmax(cosine / temperature)` of the best class.
        batch_size: int. Images upsampled at a time.

    Returns:
        An int64 NumPy array (B, H, W).

    Example:
    ```python
    masks = zero_shot_segment(grid, classifier, image_size=(448, 448))
    ```
    """
    features = np.asarray(patch_features, dtype=np.float32)
    if features.ndim != 4:
        raise ValueError(
            f"`patch_features` must be (B, h, w, D); received {features.shape}."
        )
    if temperature is not None and not float(temperature) > 0:
        raise ValueError(f"`temperature` must be > 0; received {temperature}.")
    outputs = []
    for start in range(0, features.shape[0], int(batch_size)):
        maps = similarity_maps(features[start : start + int(batch_size)], text_embeddings)
        scores = bilinear_resize(maps, image_size)
        labels = np.argmax(scores, axis=-1).astype(np.int64)
        if background_threshold is not None:
            if temperature is None:
                best = np.max(scores, axis=-1)
            else:
                logits = scores / np.float32(temperature)
                logits = logits - logits.max(axis=-1, keepdims=True)
                best = 1.0 / np.sum(np.exp(logits), axis=-1)
            labels = np.where(best < float(background_threshold), 0, labels + 1)
        outputs.append(labels)
    return np.concatenate(outputs)


def evaluate_zero_shot_segmentation(
    patch_features,
    text_embeddings,
    masks,
    ignore_index=255,
    background_threshold=None,
    temperature=None,
    batch_size=8,
):
    """Zero-shot segmentation mIoU against ground-truth masks.

    Args:
        patch_features: float array (B, h, w, D).
        text_embeddings: float array (C, D), one row per (foreground) class.
        masks: int array (B, H, W). Class ids in [0, C), or in [0, C] with 0
            as background when `background_threshold` is set.
        ignore_index: optional int.
        background_threshold: optional float, see `zero_shot_segment`.
        temperature: optional float, see `zero_shot_segment`.
        batch_size: int.

    Returns:
        A dict: `"miou"`, `"pixel_accuracy"` (Python floats) and
        `"per_class_iou"` (NumPy array, NaN for classes absent from both
        prediction and masks, which the mean excludes).

    Example:
    ```python
    metrics = evaluate_zero_shot_segmentation(grid, classifier, masks)
    ```
    """
    patch_features = np.asarray(patch_features, dtype=np.float32)
    masks = np.asarray(masks)
    if masks.ndim != 3 or masks.shape[0] != patch_features.shape[0]:
        raise ValueError(
            f"`masks` must be (B, H, W) with B = {patch_features.shape[0]}; "
            f"received {masks.shape}."
        )
    num_classes = np.shape(text_embeddings)[0] + (background_threshold is not None)
    matrix = np.zeros((num_classes, num_classes), np.int64)
    misses = np.zeros(num_classes, np.int64)
    for start in range(0, masks.shape[0], int(batch_size)):
        stop = start + int(batch_size)
        pred = zero_shot_segment(
            patch_features[start:stop], text_embeddings, masks.shape[1:],
            background_threshold, temperature, batch_size,
        )
        m, miss = confusion_matrix(pred, masks[start:stop], num_classes, ignore_index)
        matrix += m
        misses += miss
    return segmentation_scores(matrix, misses)
