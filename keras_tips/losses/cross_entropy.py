"""Cross-entropy of student logits against teacher probabilities.

With student logits `s`, teacher probabilities `p_t` over K prototypes and
the student temperature `tau_s`,

    CE(s, p_t) = - sum_k p_t[k] * log softmax(s / tau_s)[k]

per sample. The teacher side is a constant (no gradient). DINO
(`keras_tips.losses.dino`) averages it over local crops, iBOT
(`keras_tips.losses.ibot`) over masked patches.
"""

from keras import ops


def soft_cross_entropy(student_logits, teacher_probs, student_temperature):
    """Per-sample cross-entropy between teacher probabilities and student logits.

    Args:
        student_logits: (..., K) tensor.
        teacher_probs: (..., K) tensor broadcastable against `student_logits`
            (e.g. (B, 1, K) against (B, L, K) for L crops per teacher
            target). Treated as a constant (no gradient).
        student_temperature: positive scalar tau_s.

    Returns:
        float32 tensor of the broadcast leading shape (...,):
        `-sum_k teacher_probs * log_softmax(student_logits / tau_s)`.

    Example:
    ```python
    cross_entropy = soft_cross_entropy(student_logits, teacher_probs, 0.1)
    ```
    """
    logits = ops.cast(student_logits, "float32") / ops.cast(
        student_temperature, "float32"
    )
    targets = ops.stop_gradient(ops.cast(teacher_probs, "float32"))
    log_probs = ops.log_softmax(logits, axis=-1)
    return -ops.sum(targets * log_probs, axis=-1)
