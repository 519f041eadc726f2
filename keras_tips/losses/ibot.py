"""iBOT masked-image-modelling loss on patch tokens.

The student sees an image with some patches replaced by the mask token; the
teacher sees it whole. For image b with masked patch set M_b (mask m_bn),

    ce_bn = CE(s[b, n], p_t[b, n])
    L_b   = 1/|M_b| sum_{n in M_b} ce_bn
    L     = mean over images with |M_b| >= 1 of L_b

where CE is `keras_tips.losses.cross_entropy.soft_cross_entropy`, so every
masked patch of image b weighs 1/|M_b| (as in iBOT and DINOv2) and images
without masked patches do not count; L = 0 when nothing is masked. DINOv2
divides the sum of the L_b by the number of all images instead; pass
`average_over="all_images"` for that normalisation.

The teacher patch probabilities come from `keras_tips.losses.teacher_targets`
(centering, or Sinkhorn-Knopp, which can be restricted to the masked patches
with `sample_mask`, as DINOv2 does).
"""

from keras import ops

from keras_tips.losses.cross_entropy import soft_cross_entropy


def ibot_patch_loss(
    student_patch_logits,
    teacher_patch_probs,
    patch_mask,
    student_temperature,
    average_over="masked_images",
):
    """Cross-entropy on masked patches, normalised per image.

    Args:
        student_patch_logits: (B, N, K) student head logits.
        teacher_patch_probs: (B, N, K) teacher probabilities (no gradient).
        patch_mask: (B, N) bool, True where the student saw the mask token.
        student_temperature: positive scalar tau_s.
        average_over: `"masked_images"` (mean over images with at least one
            masked patch) or `"all_images"` (sum over images / B, DINOv2).

    Returns:
        float32 scalar; 0 when no patch is masked.

    Example:
    ```python
    loss = ibot_patch_loss(student_logits, teacher_probs, patch_mask, 0.1)
    ```
    """
    if average_over not in ("masked_images", "all_images"):
        raise ValueError(
            "`average_over` must be 'masked_images' or 'all_images'. "
            f"Received: {average_over!r}"
        )
    cross_entropy = soft_cross_entropy(
        student_patch_logits, teacher_patch_probs, student_temperature
    )
    mask = ops.cast(patch_mask, "bool")
    mask_float = ops.cast(mask, "float32")
    num_masked = ops.sum(mask_float, axis=-1)  # (B,)
    masked_sum = ops.sum(ops.where(mask, cross_entropy, 0.0), axis=-1)
    per_image = masked_sum / ops.maximum(num_masked, 1.0)
    if average_over == "all_images":
        num_images = ops.sum(ops.ones_like(num_masked))
    else:
        num_images = ops.sum(ops.cast(num_masked > 0, "float32"))
    return ops.sum(per_image) / ops.maximum(num_images, 1.0)
