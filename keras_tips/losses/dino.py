"""DINO self-distillation of the CLS token against the EMA teacher.

In TIPS the teacher sees the global crop and the student each of its L local
crops; both use the first CLS token (CLS1) through their DINO head. With
student logits `s[b, l]` of local crop l of image b and teacher
probabilities `p_t[b]` of its global crop,

    L = 1/(B L) sum_b sum_l CE(s[b, l], p_t[b])

where CE is `keras_tips.losses.cross_entropy.soft_cross_entropy`. The
teacher probabilities come from `keras_tips.losses.teacher_targets`
(centering or Sinkhorn-Knopp).
"""

from keras import ops

from keras_tips.losses.cross_entropy import soft_cross_entropy


def dino_loss(student_local_logits, teacher_global_probs, student_temperature):
    """Every local crop's student logits against its global crop's teacher.

    Args:
        student_local_logits: (B, L, K) student head logits of L local crops.
        teacher_global_probs: (B, K) teacher probabilities of the global crop
            (no gradient).
        student_temperature: positive scalar tau_s.

    Returns:
        float32 scalar, the mean cross-entropy over the B * L crops.

    Example:
    ```python
    loss = dino_loss(student_logits, teacher_probs, student_temperature=0.1)
    ```
    """
    cross_entropy = soft_cross_entropy(
        student_local_logits,
        ops.expand_dims(teacher_global_probs, 1),
        student_temperature,
    )
    return ops.mean(cross_entropy)
