"""Is self-distillation alive? Scalar diagnostics of the DINO / iBOT targets.

A DINO-style objective can fail silently in two opposite ways:

* **uniform collapse**: the centred, sharpened teacher distribution is flat,
  so its entropy approaches ln K and the cross-entropy `distill` sits near
  ln K however long the run is — nothing is taught;
* **one-prototype collapse**: every image gets the same prototype, so the
  per-sample entropy is low but the batch uses one prototype.

Healthy training has a per-sample teacher entropy well below ln K *and* many
prototypes in use across the batch, and the student's most likely prototype
increasingly matches the teacher's. With teacher probabilities `p` (M, K)
(M samples: images, crops or patches) and student logits `s`:

    teacher_entropy      = mean_m H(p_m),            H(q) = -sum_k q_k ln q_k
    batch_entropy        = H(mean_m p_m)             (ln of the effective
                                                     number of prototypes)
    prototypes_in_use    = |{argmax_k p_mk : m}|     (at most M)
    top1_agreement       = mean_m [argmax_k s_mk == argmax_k p_mk]
    center_norm          = ||c||_2

Every function takes tensors and returns a float32 scalar tensor (no
gradient), so it can run inside a compiled train step on any backend.
"""

from keras import ops

_LOG_FLOOR = 1e-30  # keeps 0 * log 0 at 0


def _flat(tensor):
    tensor = ops.stop_gradient(ops.cast(tensor, "float32"))
    return ops.reshape(tensor, (-1, tensor.shape[-1]))


def _weights(mask, num_rows):
    if mask is None:
        return ops.ones((num_rows,), "float32")
    return ops.reshape(ops.cast(mask, "float32"), (-1,))


def _weighted_mean(values, weights):
    return ops.sum(values * weights) / ops.maximum(ops.sum(weights), 1.0)


def entropy(probs, axis=-1):
    """Shannon entropy in nats along `axis`: `-sum p ln p`."""
    probs = ops.cast(probs, "float32")
    return -ops.sum(probs * ops.log(ops.maximum(probs, _LOG_FLOOR)), axis=axis)


def teacher_entropy(teacher_probs, mask=None):
    """Mean per-sample entropy of the teacher targets (ln K when uniform).

    Args:
        teacher_probs: (..., K) probabilities.
        mask: optional bool tensor of the leading shape; only True samples
            count (e.g. the masked patches of iBOT).
    """
    probs = _flat(teacher_probs)
    return _weighted_mean(entropy(probs), _weights(mask, probs.shape[0]))


def batch_entropy(teacher_probs, mask=None):
    """Entropy of the batch-mean teacher distribution.

    `exp(batch_entropy)` is the effective number of prototypes the batch
    uses: near 1 when every sample gets the same prototype, near K when the
    mass spreads evenly (which a uniform collapse also gives; read it with
    `teacher_entropy`).
    """
    probs = _flat(teacher_probs)
    weights = _weights(mask, probs.shape[0])
    mean = ops.sum(probs * weights[:, None], axis=0) / ops.maximum(
        ops.sum(weights), 1.0
    )
    return entropy(mean)


def prototypes_in_use(teacher_probs, mask=None):
    """Number of distinct prototypes that are some sample's teacher argmax."""
    probs = _flat(teacher_probs)
    weights = _weights(mask, probs.shape[0])
    winners = ops.one_hot(ops.argmax(probs, axis=-1), probs.shape[-1])
    hits = ops.sum(winners * weights[:, None], axis=0)
    return ops.sum(ops.cast(hits > 0, "float32"))


def top1_agreement(student_logits, teacher_probs, mask=None):
    """Fraction of samples whose student and teacher argmax prototype agree.

    Args:
        student_logits: (..., K) student logits.
        teacher_probs: (..., K) teacher probabilities, broadcastable to
            `student_logits` (e.g. (B, 1, K) against (B, L, K)).
        mask: optional bool tensor of the (broadcast) leading shape.
    """
    student = ops.stop_gradient(ops.cast(student_logits, "float32"))
    teacher = ops.broadcast_to(
        ops.stop_gradient(ops.cast(teacher_probs, "float32")), student.shape
    )
    same = ops.cast(
        ops.equal(ops.argmax(student, axis=-1), ops.argmax(teacher, axis=-1)),
        "float32",
    )
    same = ops.reshape(same, (-1,))
    return _weighted_mean(same, _weights(mask, same.shape[0]))


def center_norm(center):
    """L2 norm of a centre vector (grows with the mean teacher logit)."""
    center = ops.stop_gradient(ops.cast(center, "float32"))
    return ops.sqrt(ops.sum(ops.square(center)))


def target_diagnostics(
    prefix, student_logits, teacher_probs, center, mask=None, teacher_mask=None
):
    """All the diagnostics of one self-distillation term, as a dict.

    Args:
        prefix: name prefix of the keys, e.g. `"distill"` or `"mask"`.
        student_logits: (..., K) student logits.
        teacher_probs: (..., K) teacher probabilities (broadcastable).
        center: the term's centre variable (or tensor).
        mask: optional bool mask of the student samples that the loss uses
            (agreement is measured on them).
        teacher_mask: optional bool mask of the teacher samples to describe
            (entropies and prototype counts).

    Returns:
        `{prefix + "_teacher_entropy", prefix + "_batch_entropy",
        prefix + "_prototypes_in_use", prefix + "_agreement",
        prefix + "_center_norm"}`, float32 scalars.
    """
    return {
        f"{prefix}_teacher_entropy": teacher_entropy(teacher_probs, teacher_mask),
        f"{prefix}_batch_entropy": batch_entropy(teacher_probs, teacher_mask),
        f"{prefix}_prototypes_in_use": prototypes_in_use(
            teacher_probs, teacher_mask
        ),
        f"{prefix}_agreement": top1_agreement(student_logits, teacher_probs, mask),
        f"{prefix}_center_norm": center_norm(center),
    }


DIAGNOSTIC_SUFFIXES = (
    "teacher_entropy",
    "batch_entropy",
    "prototypes_in_use",
    "agreement",
    "center_norm",
)


def diagnostic_names(prefix):
    """The keys `target_diagnostics(prefix, ...)` returns, in order."""
    return tuple(f"{prefix}_{suffix}" for suffix in DIAGNOSTIC_SUFFIXES)
