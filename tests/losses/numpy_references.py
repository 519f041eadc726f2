"""NumPy transcriptions of the loss formulas, in float64, for the tests."""

import numpy as np


def np_softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def np_cross_entropy(student_logits, teacher_probs, tau):
    """Per sample: -sum p log softmax(s / tau), over the broadcast shape."""
    s = np.asarray(student_logits, np.float64)
    p = np.broadcast_to(np.asarray(teacher_probs, np.float64), s.shape)
    shape = s.shape[:-1]
    s = s.reshape(-1, s.shape[-1]) / tau
    p = p.reshape(-1, p.shape[-1])
    values = []
    for row, target in zip(s, p):
        log_z = row.max() + np.log(np.sum(np.exp(row - row.max())))
        values.append(-np.sum(target * (row - log_z)))
    return np.array(values).reshape(shape)


def np_sinkhorn(logits, tau, iterations):
    """DINOv2's loop, transcribed: Q is K x B."""
    q = np.exp(np.asarray(logits, np.float64) / tau).T
    num_prototypes, num_samples = q.shape
    q /= q.sum()
    for _ in range(iterations):
        q /= q.sum(axis=1, keepdims=True)
        q /= num_prototypes
        q /= q.sum(axis=0, keepdims=True)
        q /= num_samples
    q *= num_samples
    return q.T
