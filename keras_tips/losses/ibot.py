"""iBOT masked-image-modelling loss on patch tokens (and iBOT++).

The student sees an image with some patches replaced by the mask token; the
teacher sees it whole. Each patch n of image b carries a loss weight w_bn;
with ce_bn = CE(s[b, n], p_t[b, n]),

    L_b = sum_n w_bn ce_bn / sum_n w_bn
    L   = sum_b L_b / |I|

where CE is `keras_tips.losses.cross_entropy.soft_cross_entropy` and the
images I that count are chosen by `average_over`:

* `"masked_images"`: the images with at least one loss token (sum_n w_bn >
  0), as iBOT does. Every image with loss tokens weighs the same whatever
  the fraction of masked images in the batch, so the iBOT weight beta is
  the weight of each such image's loss;
* `"all_images"`: all B images (DINOv2 divides by the batch size). Images
  without loss tokens add 0, so with mask probability p the loss is about
  p times the other's: the effective weight is p * beta, and it varies with
  the number of masked images drawn into each batch.

L = 0 when no image has a loss token. The weights (`patch_loss_weights`):

* iBOT (`mask_loss_tokens="masked"`): w = 1 on the patches the student saw
  masked, 0 on the visible ones: every masked patch of image b weighs
  1/|M_b|;
* iBOT++ (`"all"`, TIPSv2): every patch is a loss token, the student's
  masked view against the teacher's full view on every position; masked
  patches weigh 1 and visible ones `visible_token_weight` (1 gives TIPSv2's
  one uniform sum over all N tokens, normalised per image to a mean over
  them). An image that was not masked then also counts, with its visible
  patches only.

`loss_token_indices` and `take_tokens` gather the loss tokens to a static
number per image before the projection head, so that the head and its
(tokens, prototypes) logits are computed only where the loss is taken.
"""

from keras import ops

from keras_tips.losses.cross_entropy import soft_cross_entropy

MASK_LOSS_TOKENS = ("masked", "all")
AVERAGE_OVER = ("masked_images", "all_images")


def ibot_patch_loss(
    student_patch_logits,
    teacher_patch_probs,
    token_weights,
    student_temperature,
    average_over="masked_images",
):
    """Cross-entropy on the loss tokens, normalised per image.

    Args:
        student_patch_logits: (B, M, K) student head logits (M: all N
            patches, or the M gathered by `loss_token_indices`).
        teacher_patch_probs: (B, M, K) teacher probabilities (no gradient).
        token_weights: (B, M) bool or non-negative float, the weight w_bn of
            each token (a bool patch mask: 1 where the student saw the mask
            token).
        student_temperature: positive scalar tau_s.
        average_over: `"masked_images"` (mean over images with a loss token)
            or `"all_images"` (sum over images / B, DINOv2).

    Returns:
        float32 scalar; 0 when no image has a loss token.

    Example:
    ```python
    loss = ibot_patch_loss(student_logits, teacher_probs, patch_mask, 0.1)
    ```
    """
    if average_over not in AVERAGE_OVER:
        raise ValueError(
            f"`average_over` must be one of {AVERAGE_OVER}. "
            f"Received: {average_over!r}"
        )
    cross_entropy = soft_cross_entropy(
        student_patch_logits, teacher_patch_probs, student_temperature
    )
    weights = ops.cast(token_weights, "float32")
    weight_sum = ops.sum(weights, axis=-1)  # (B,)
    # `where`, not a product: a padding slot's logits may be anything.
    weighted = ops.where(weights > 0, cross_entropy * weights, 0.0)
    per_image = ops.sum(weighted, axis=-1) / ops.maximum(weight_sum, 1e-12)
    per_image = ops.where(weight_sum > 0, per_image, 0.0)
    if average_over == "all_images":
        num_images = ops.sum(ops.ones_like(weight_sum))
    else:
        num_images = ops.sum(ops.cast(weight_sum > 0, "float32"))
    return ops.sum(per_image) / ops.maximum(num_images, 1.0)


def patch_loss_weights(patch_mask, mask_loss_tokens="masked", visible_token_weight=1.0):
    """The loss weight of every patch (see the module docstring).

    Args:
        patch_mask: (B, N) bool, True where the student saw the mask token.
        mask_loss_tokens: `"masked"` (iBOT) or `"all"` (iBOT++).
        visible_token_weight: float >= 0, the weight of a visible patch
            under `"all"` (a masked one weighs 1).

    Returns:
        float32 (B, N).

    Example:
    ```python
    weights = patch_loss_weights(patch_mask, "all", visible_token_weight=1.0)
    ```
    """
    if mask_loss_tokens not in MASK_LOSS_TOKENS:
        raise ValueError(
            f"`mask_loss_tokens` must be one of {MASK_LOSS_TOKENS}. "
            f"Received: {mask_loss_tokens!r}"
        )
    mask = ops.cast(patch_mask, "bool")
    if mask_loss_tokens == "masked":
        return ops.cast(mask, "float32")
    return ops.where(mask, 1.0, float(visible_token_weight))


def loss_token_indices(token_weights, max_tokens):
    """The positions of each image's loss tokens, to a static count.

    The tokens with a positive weight come first, in position order; the
    remaining slots (an image with fewer than `max_tokens` loss tokens, e.g.
    one that was not masked) hold other positions with weight 0. When an
    image has more than `max_tokens` loss tokens, the ones after the first
    `max_tokens` are left out, so the bound must cover every loss token (the
    recipes derive it from the mask ratio, which fixes the count exactly).

    Args:
        token_weights: (B, N) float, zero where no loss is taken.
        max_tokens: int, 1 <= max_tokens <= N.

    Returns:
        `(indices, weights)`: int32 (B, max_tokens) positions and the float32
        (B, max_tokens) weights at them.

    Example:
    ```python
    indices, weights = loss_token_indices(ops.cast(patch_mask, "float32"), 192)
    student_tokens = take_tokens(patches, indices)  # (B, 192, D)
    ```
    """
    weights = ops.cast(token_weights, "float32")
    num_tokens = weights.shape[-1]
    if not 1 <= int(max_tokens) <= num_tokens:
        raise ValueError(
            f"`max_tokens` must be in [1, {num_tokens}] (the patch count). "
            f"Received: {max_tokens}"
        )
    # Loss tokens score N..2N-1, the others 0..N-1, earlier positions higher:
    # all distinct integers (exact in float32), so the order is the same on
    # every backend.
    reverse_position = ops.cast(
        ops.arange(num_tokens - 1, -1, -1), "float32"
    )[None, :]
    scores = ops.where(weights > 0, float(num_tokens), 0.0) + reverse_position
    _, indices = ops.top_k(scores, int(max_tokens), sorted=True)
    indices = ops.cast(indices, "int32")
    return indices, ops.take_along_axis(weights, indices, axis=1)


def take_tokens(tokens, indices):
    """`tokens[b, indices[b]]`: (B, N, D) tokens at (B, M) positions."""
    return ops.take_along_axis(tokens, ops.expand_dims(indices, -1), axis=1)
