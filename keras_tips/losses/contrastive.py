"""Symmetric softmax (InfoNCE) image-text contrastive loss.

For a batch of B image embeddings `x_i` and text embeddings `y_j`, both
L2-normalised, the logits are

    s_ij = <x_i, y_j> / tau

and the loss is the mean of the two cross-entropies with the matching pair
as the target:

    L_i2t = -1/|V| sum_{i in V} log( exp(s_ii) / sum_{j in V} exp(s_ij) )
    L_t2i = -1/|V| sum_{j in V} log( exp(s_jj) / sum_{i in V} exp(s_ij) )
    L     = (L_i2t + L_t2i) / 2

where `V` is the set of valid pairs (rows whose caption exists). Invalid
pairs are neither anchors nor negatives, so the loss equals the loss of the
batch with the invalid rows removed; it is 0 when `V` is empty.

TIPS has one such loss per caption type T (CLS1 with web captions, CLS2 with
synthetic ones, each with its own temperature) and averages them:

    fixed:      L = 1/|T| sum_t L_t                     (½ (L_web + L_syn))
    available:  L = sum_t a_t L_t / max(sum_t a_t, 1)

where a_t is 1 when the batch holds at least one caption of type t, so a
batch without synthetic captions is not halved (`mean_over_caption_types`).
"""

from keras import ops

from keras_tips.layers.contrastive_head import cosine_logits

# Added to the logits of excluded pairs; exp(-1e9) is exactly 0 in float32.
_MASK_VALUE = -1e9


def arange_like(x):
    """float32 `[0, 1, ..., n - 1]` where n = `x.shape[0]`.

    Built with a cumulative sum so that it also works when the leading
    dimension is only known at run time (TensorFlow graphs).
    """
    return ops.cumsum(ops.ones_like(ops.cast(x, "float32"))) - 1.0


def contrastive_loss(
    image_embeddings, text_embeddings, temperature, valid_mask=None
):
    """Symmetric InfoNCE loss between paired image and text embeddings.

    Args:
        image_embeddings: (B, D) tensor; row i is paired with text row i.
        text_embeddings: (B, D) tensor.
        temperature: positive scalar (float or tensor) dividing the cosines.
        valid_mask: optional (B,) bool tensor; False marks pairs whose caption
            is missing. Those rows are excluded as anchors in both directions
            and their texts (and images) as negatives.

    Returns:
        `(loss, accuracy)`, two float32 scalars: the loss averaged over valid
        anchors (0 when none is valid), and the fraction of valid image
        anchors whose highest-scoring valid text is their own (0 when none).

    Example:
    ```python
    loss, accuracy = contrastive_loss(cls_1, web_text, 0.01, has_web)
    ```
    """
    logits = cosine_logits(image_embeddings, text_embeddings, temperature)
    if valid_mask is None:
        valid = ops.ones_like(logits[:, 0], dtype="bool")
    else:
        valid = ops.cast(valid_mask, "bool")
    valid_float = ops.cast(valid, "float32")
    num_valid = ops.sum(valid_float)
    denominator = ops.maximum(num_valid, 1.0)

    # Rows: image anchors; columns: candidate texts (and the transpose).
    pair_valid = ops.logical_and(valid[:, None], valid[None, :])
    masked = ops.where(pair_valid, logits, _MASK_VALUE)

    def direction_loss(scores):
        log_probs = ops.log_softmax(scores, axis=-1)
        nll = -ops.diagonal(log_probs)
        return ops.sum(ops.where(valid, nll, 0.0)) / denominator

    loss = 0.5 * (
        direction_loss(masked) + direction_loss(ops.transpose(masked))
    )

    predicted = ops.cast(ops.argmax(masked, axis=-1), "float32")
    own = ops.equal(predicted, arange_like(valid_float))
    correct = ops.logical_and(own, valid)
    accuracy = ops.sum(ops.cast(correct, "float32")) / denominator
    return loss, accuracy


def mean_over_caption_types(losses, present, weighting="available"):
    """The contrastive term of TIPS from the loss of each caption type.

    Args:
        losses: list of float32 scalars, one `contrastive_loss` per caption
            type in use (web, and synthetic unless trained without).
        present: list of float32 scalars in {0, 1}, the same length: 1 when
            the batch holds at least one caption of that type.
        weighting: `"available"` (average over the types the batch has) or
            `"fixed"` (every type in use weighs 1/len(losses)).

    Returns:
        float32 scalar.

    Example:
    ```python
    contrastive = mean_over_caption_types([web, synthetic], [1.0, 0.0])  # web
    ```
    """
    if weighting not in ("available", "fixed"):
        raise ValueError(
            "`weighting` must be 'available' or 'fixed'; received "
            f"{weighting!r}."
        )
    if len(losses) != len(present) or not losses:
        raise ValueError(
            "Expected one presence flag per caption loss (at least one); "
            f"received {len(losses)} losses and {len(present)} flags."
        )
    if weighting == "fixed":
        present = [1.0] * len(losses)
    total, count = losses[0] * present[0], present[0]
    for loss, flag in zip(losses[1:], present[1:]):
        total, count = total + loss * flag, count + flag
    return total / ops.maximum(count, 1.0)
