"""iBOT masked-image-modelling loss on patch tokens.

The student sees an image with some patches replaced by the mask token; the
teacher sees it whole. For image b with masked patch set M_b (mask m_bn),

    ce_bn = - sum_k p_t[b, n, k] * log softmax(s[b, n] / tau_s)[k]
    L_b   = 1/|M_b| sum_{n in M_b} ce_bn
    L     = mean over images with |M_b| >= 1 of L_b

so every masked patch of image b weighs 1/|M_b| (as in iBOT and DINOv2) and
images without masked patches do not count; L = 0 when nothing is masked.
DINOv2 divides the sum of the L_b by the number of all images instead; pass
`average_over="all_images"` for that normalisation.

The teacher patch probabilities come from the same centering as DINO
(`keras_tips.losses.dino.centered_teacher_probs`, which broadcasts over
(B, N, K)) or Sinkhorn-Knopp over the masked patches
(`keras_tips.losses.dino.sinkhorn_knopp_teacher_probs` with `sample_mask`).
`masked_updated_center` updates the patch centre from masked patches only,
as DINOv2 does.
"""

from keras import ops


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
    """
    if average_over not in ("masked_images", "all_images"):
        raise ValueError(
            "`average_over` must be 'masked_images' or 'all_images'. "
            f"Received: {average_over!r}"
        )
    logits = ops.cast(student_patch_logits, "float32") / ops.cast(
        student_temperature, "float32"
    )
    targets = ops.stop_gradient(ops.cast(teacher_patch_probs, "float32"))
    log_probs = ops.log_softmax(logits, axis=-1)
    cross_entropy = -ops.sum(targets * log_probs, axis=-1)
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


def masked_updated_center(center, teacher_patch_logits, patch_mask, momentum):
    """Patch centre update from the masked patches only.

    `center <- m * center + (1 - m) * mean_{masked (b, n)} t[b, n]`; when no
    patch is masked the centre is returned unchanged.

    Args:
        center: (1, K) or (K,) tensor or variable.
        teacher_patch_logits: (B, N, K) teacher head logits.
        patch_mask: (B, N) bool.
        momentum: scalar in [0, 1].

    Returns:
        float32 tensor with the shape of `center` (no gradient).
    """
    logits = ops.stop_gradient(ops.cast(teacher_patch_logits, "float32"))
    num_prototypes = logits.shape[-1]
    logits = ops.reshape(logits, (-1, num_prototypes))
    weights = ops.reshape(ops.cast(patch_mask, "float32"), (-1, 1))
    count = ops.sum(weights)
    masked_mean = ops.sum(logits * weights, axis=0) / ops.maximum(count, 1.0)
    masked_mean = ops.reshape(masked_mean, tuple(center.shape))
    center = ops.cast(center, "float32")
    momentum = ops.where(count > 0, ops.cast(momentum, "float32"), 1.0)
    return momentum * center + (1.0 - momentum) * masked_mean
