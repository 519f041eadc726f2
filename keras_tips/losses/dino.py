"""DINO self-distillation of the CLS token against an EMA teacher.

With student logits `s` and teacher probabilities `p_t` over K prototypes,

    L = mean_samples( - sum_k p_t[k] * log softmax(s / tau_s)[k] )

The teacher probabilities come from the teacher logits `t` by one of:

* centering: `p_t = softmax((t - c) / tau_t)`, with the centre `c` an
  exponential moving average of the batch mean of `t`:
  `c <- m * c + (1 - m) * mean_batch(t)`;
* Sinkhorn-Knopp: `p_t` is the (approximately) doubly-normalised
  `exp(t / tau_t)`: every prototype gets the same total mass over the batch
  and every sample sums to 1 (as in SwAV and DINOv2).

In TIPS the teacher sees the global crop and the student each local crop;
both use the first CLS token (CLS1), and the loss is the mean over local
crops and images (`local_crops_dino_loss`).
"""

from keras import ops


def dino_cross_entropy(student_logits, teacher_probs, student_temperature):
    """Mean cross-entropy between teacher probabilities and student logits.

    Args:
        student_logits: (..., K) tensor.
        teacher_probs: (..., K) tensor broadcastable against `student_logits`
            (e.g. (B, 1, K) against (B, L, K) for L crops per teacher
            target). Treated as a constant (no gradient).
        student_temperature: positive scalar tau_s.

    Returns:
        float32 scalar: mean over all (broadcast) samples of
        `-sum_k teacher_probs * log_softmax(student_logits / tau_s)`.
    """
    logits = ops.cast(student_logits, "float32") / ops.cast(
        student_temperature, "float32"
    )
    targets = ops.stop_gradient(ops.cast(teacher_probs, "float32"))
    log_probs = ops.log_softmax(logits, axis=-1)
    cross_entropy = -ops.sum(targets * log_probs, axis=-1)
    return ops.mean(cross_entropy)


def local_crops_dino_loss(
    student_local_logits, teacher_global_probs, student_temperature
):
    """The TIPS distillation loss: every local crop against its global crop.

    Args:
        student_local_logits: (B, L, K) student head logits of L local crops.
        teacher_global_probs: (B, K) teacher probabilities of the global crop.
        student_temperature: positive scalar tau_s.

    Returns:
        float32 scalar, the mean over the B * L crops.
    """
    return dino_cross_entropy(
        student_local_logits,
        ops.expand_dims(teacher_global_probs, 1),
        student_temperature,
    )


def centered_teacher_probs(teacher_logits, center, teacher_temperature):
    """`softmax((teacher_logits - center) / tau_t)`, without gradient.

    Args:
        teacher_logits: (..., K) tensor.
        center: tensor broadcastable to `teacher_logits`, e.g. (1, K) or (K,).
        teacher_temperature: positive scalar tau_t.

    Returns:
        float32 (..., K) probabilities.
    """
    logits = ops.cast(teacher_logits, "float32") - ops.cast(center, "float32")
    temperature = ops.cast(teacher_temperature, "float32")
    probs = ops.softmax(logits / temperature, axis=-1)
    return ops.stop_gradient(probs)


def updated_center(center, teacher_logits, momentum):
    """The new centre `momentum * center + (1 - momentum) * batch_mean`.

    The batch mean is over every axis of `teacher_logits` except the last
    (samples, or images and patches). Under JAX SPMD with the batch axis
    sharded, that mean is already global; no explicit all-reduce is needed.

    Args:
        center: (1, K) or (K,) tensor or variable.
        teacher_logits: (..., K) tensor.
        momentum: scalar in [0, 1].

    Returns:
        float32 tensor with the shape of `center` (no gradient).
    """
    logits = ops.stop_gradient(ops.cast(teacher_logits, "float32"))
    num_prototypes = logits.shape[-1]
    batch_mean = ops.mean(ops.reshape(logits, (-1, num_prototypes)), axis=0)
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

    DINOv2 all-reduces the sums over samples across devices. Here the sums
    are plain `ops.sum` over the sample axis: on one device, and under JAX
    SPMD (a sharded batch axis is a global array, so the sum is global),
    that is the same computation.

    Args:
        teacher_logits: (M, K) tensor.
        teacher_temperature: positive scalar tau_t.
        num_iterations: int, number of normalisation rounds (3).
        sample_mask: optional (M,) bool; samples marked False take no part
            (e.g. unmasked patches in iBOT) and get all-zero rows.

    Returns:
        float32 (M, K) tensor, rows summing to 1 (no gradient).
    """
    logits = ops.stop_gradient(ops.cast(teacher_logits, "float32"))
    logits = logits / ops.cast(teacher_temperature, "float32")
    # Subtracting the global maximum leaves the result unchanged (every
    # entry is scaled by the same factor) and keeps exp from overflowing.
    q = ops.exp(logits - ops.max(logits))
    if sample_mask is None:
        num_samples = ops.cast(ops.shape(q)[0], "float32")
    else:
        weights = ops.cast(sample_mask, "float32")
        q = q * weights[:, None]
        num_samples = ops.sum(weights)
    num_prototypes = float(q.shape[-1])
    tiny = 1e-30  # only guards 0 / 0 (an all-zero row or column stays zero)
    q = q / ops.maximum(ops.sum(q), tiny)
    for _ in range(num_iterations):
        q = q / ops.maximum(ops.sum(q, axis=0, keepdims=True), tiny)
        q = q / num_prototypes
        q = q / ops.maximum(ops.sum(q, axis=1, keepdims=True), tiny)
        q = q / ops.maximum(num_samples, 1.0)
    return ops.stop_gradient(q * ops.maximum(num_samples, 1.0))
