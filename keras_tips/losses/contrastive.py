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
"""

from keras import ops

# Added to the logits of excluded pairs; exp(-1e9) is exactly 0 in float32.
_MASK_VALUE = -1e9


def l2_normalize(x, axis=-1, epsilon=1e-12):
    """Scales `x` to unit L2 norm along `axis`; zero vectors stay zero.

    The squared norm is floored at `epsilon`, so the result (and its
    gradient) stays finite for a zero vector.
    """
    squared = ops.sum(ops.square(x), axis=axis, keepdims=True)
    return x * ops.rsqrt(ops.maximum(squared, epsilon))


def arange_like(x):
    """float32 `[0, 1, ..., n - 1]` where n = `x.shape[0]`.

    Built with a cumulative sum so that it also works when the leading
    dimension is only known at run time (TensorFlow graphs).
    """
    return ops.cumsum(ops.ones_like(ops.cast(x, "float32"))) - 1.0


def clip_temperature(temperature, min_temperature=1e-3, max_temperature=0.5):
    """Clips a temperature to `[min_temperature, max_temperature]`."""
    return ops.clip(
        ops.cast(temperature, "float32"), min_temperature, max_temperature
    )


def temperature_from_log(
    log_temperature, min_temperature=1e-3, max_temperature=0.5
):
    """The temperature `exp(log_temperature)`, clipped.

    A learnable temperature is best stored as its logarithm (the update is
    then relative to its size); this reads it back and clips it to a sane
    range so that the logits can neither explode nor vanish.
    """
    return clip_temperature(
        ops.exp(ops.cast(log_temperature, "float32")),
        min_temperature,
        max_temperature,
    )


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
    """
    images = l2_normalize(ops.cast(image_embeddings, "float32"))
    texts = l2_normalize(ops.cast(text_embeddings, "float32"))
    logits = ops.matmul(images, ops.transpose(texts)) / ops.cast(
        temperature, "float32"
    )
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
