"""Teacher targets of DINO and iBOT: teacher logits to probabilities.

With teacher logits `t` over K prototypes and the teacher temperature
`tau_t`, the teacher probabilities `p_t` come from one of:

* centering: `p_t = softmax((t - c) / tau_t)`, with the centre `c` an
  exponential moving average of the batch mean of `t`:
  `c <- m * c + (1 - m) * mean_batch(t)` (`updated_center`);
* Sinkhorn-Knopp: `p_t` is the (approximately) doubly-normalised
  `exp(t / tau_t)`: every prototype gets the same total mass over the batch
  and every sample sums to 1 (as in SwAV and DINOv2).

Both objectives share these functions, so they live here rather than in
`dino.py` or `ibot.py`. Every function takes (..., K) logits: each position
of the leading axes is one sample (CLS tokens (B, K), patches (B, N, K)).
An optional `sample_mask` (...,) restricts Sinkhorn-Knopp and the centre's
batch mean to some samples, e.g. DINOv2's masked patches.

Under JAX SPMD with the batch axis sharded, every sum or mean over samples
here is over the global batch (a sharded axis is one global array), so no
explicit all-reduce is needed; DINOv2 all-reduces the same sums by hand.
"""

from keras import ops


def centered_teacher_probs(teacher_logits, center, teacher_temperature):
    """`softmax((teacher_logits - center) / tau_t)`, without gradient.

    Args:
        teacher_logits: (..., K) tensor.
        center: tensor broadcastable to `teacher_logits`, e.g. (1, K) or (K,).
        teacher_temperature: positive scalar tau_t.

    Returns:
        float32 (..., K) probabilities.

    Example:
    ```python
    probs = centered_teacher_probs(teacher_logits, center, 0.04)
    ```
    """
    logits = ops.cast(teacher_logits, "float32") - ops.cast(center, "float32")
    temperature = ops.cast(teacher_temperature, "float32")
    probs = ops.softmax(logits / temperature, axis=-1)
    return ops.stop_gradient(probs)


def updated_center(center, teacher_logits, momentum, sample_mask=None):
    """The new centre `momentum * center + (1 - momentum) * batch_mean`.

    The batch mean is over every axis of `teacher_logits` except the last
    (samples, or images and patches), or, with `sample_mask`, over the marked
    samples only (DINOv2 moves its iBOT centre with the masked patches); when
    no sample is marked the centre is returned unchanged.

    Args:
        center: (1, K) or (K,) tensor or variable.
        teacher_logits: (..., K) tensor.
        momentum: scalar in [0, 1].
        sample_mask: optional (...,) bool, the samples that count.

    Returns:
        float32 tensor with the shape of `center` (no gradient).

    Example:
    ```python
    center_variable.assign(updated_center(center_variable, teacher_logits, 0.9))
    ```
    """
    logits = ops.stop_gradient(ops.cast(teacher_logits, "float32"))
    num_prototypes = logits.shape[-1]
    logits = ops.reshape(logits, (-1, num_prototypes))
    if sample_mask is None:
        batch_mean = ops.mean(logits, axis=0)
    else:
        weights = ops.reshape(ops.cast(sample_mask, "float32"), (-1, 1))
        count = ops.sum(weights)
        batch_mean = ops.sum(logits * weights, axis=0) / ops.maximum(count, 1.0)
        momentum = ops.where(count > 0, ops.cast(momentum, "float32"), 1.0)
    batch_mean = ops.reshape(batch_mean, tuple(center.shape))
    momentum = ops.cast(momentum, "float32")
    center = ops.cast(center, "float32")
    return momentum * center + (1.0 - momentum) * batch_mean


def sinkhorn_knopp_teacher_probs(
    teacher_logits, teacher_temperature, num_iterations=3, sample_mask=None
):
    """Teacher probabilities by Sinkhorn-Knopp normalisation (as in DINOv2).

    Starting from `Q = exp(t / tau_t)` (M samples by K prototypes, scaled to
    total mass 1), each iteration rescales the prototypes (columns) to mass
    1/K each and then the samples (rows) to mass 1/M each; the result is
    multiplied by M so that each row is a probability vector.

    Args:
        teacher_logits: (..., K) tensor; the M samples are all positions of
            the leading axes.
        teacher_temperature: positive scalar tau_t.
        num_iterations: int, number of normalisation rounds (3).
        sample_mask: optional (...,) bool; samples marked False take no part
            (e.g. unmasked patches in iBOT) and get all-zero rows.

    Returns:
        float32 (..., K) tensor, rows summing to 1 (no gradient).

    Example:
    ```python
    probs = sinkhorn_knopp_teacher_probs(teacher_patch_logits, 0.04)
    ```
    """
    logits = ops.stop_gradient(ops.cast(teacher_logits, "float32"))
    shape = ops.shape(logits)
    num_prototypes = logits.shape[-1]
    logits = ops.reshape(logits, (-1, num_prototypes))
    logits = logits / ops.cast(teacher_temperature, "float32")
    # Subtracting the global maximum leaves the result unchanged (every
    # entry is scaled by the same factor) and keeps exp from overflowing.
    q = ops.exp(logits - ops.max(logits))
    if sample_mask is None:
        num_samples = ops.cast(ops.shape(q)[0], "float32")
    else:
        weights = ops.reshape(ops.cast(sample_mask, "float32"), (-1,))
        q = q * weights[:, None]
        num_samples = ops.sum(weights)
    tiny = 1e-30  # only guards 0 / 0 (an all-zero row or column stays zero)
    q = q / ops.maximum(ops.sum(q), tiny)
    for _ in range(num_iterations):
        q = q / ops.maximum(ops.sum(q, axis=0, keepdims=True), tiny)
        q = q / float(num_prototypes)
        q = q / ops.maximum(ops.sum(q, axis=1, keepdims=True), tiny)
        q = q / ops.maximum(num_samples, 1.0)
    probs = ops.reshape(q * ops.maximum(num_samples, 1.0), shape)
    return ops.stop_gradient(probs)
