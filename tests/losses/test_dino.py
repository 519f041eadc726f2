"""DINO self-distillation helpers against NumPy transcriptions."""

import keras
import numpy as np
import pytest

from keras_tips.losses.dino import centered_teacher_probs
from keras_tips.losses.dino import dino_cross_entropy
from keras_tips.losses.dino import local_crops_dino_loss
from keras_tips.losses.dino import sinkhorn_knopp_teacher_probs
from keras_tips.losses.dino import updated_center

pytestmark = pytest.mark.multibackend


def np_softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def np_cross_entropy(student_logits, teacher_probs, tau):
    """Mean over the leading axes of -sum p log softmax(s / tau), per sample."""
    s = np.asarray(student_logits, np.float64)
    p = np.broadcast_to(np.asarray(teacher_probs, np.float64), s.shape)
    s = s.reshape(-1, s.shape[-1]) / tau
    p = p.reshape(-1, p.shape[-1])
    total = 0.0
    for row, target in zip(s, p):
        log_z = row.max() + np.log(np.sum(np.exp(row - row.max())))
        total += -np.sum(target * (row - log_z))
    return total / len(s)


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


def numpy_of(x):
    return keras.ops.convert_to_numpy(x)


def test_cross_entropy_matches_reference():
    rng = np.random.default_rng(0)
    student = rng.normal(size=(4, 10)).astype("float32")
    teacher = np_softmax(rng.normal(size=(4, 10)) / 0.3).astype("float32")
    value = float(numpy_of(dino_cross_entropy(student, teacher, 0.1)))
    np.testing.assert_allclose(value, np_cross_entropy(student, teacher, 0.1), rtol=1e-5)


def test_local_crops_broadcast_the_global_target():
    rng = np.random.default_rng(1)
    student = rng.normal(size=(3, 4, 8)).astype("float32")  # B=3, L=4 crops
    teacher = np_softmax(rng.normal(size=(3, 8))).astype("float32")
    expected = np.mean(
        [
            np_cross_entropy(student[b, l][None], teacher[b][None], 0.1)
            for b in range(3)
            for l in range(4)
        ]
    )
    value = float(numpy_of(local_crops_dino_loss(student, teacher, 0.1)))
    np.testing.assert_allclose(value, expected, rtol=1e-5)
    same = float(numpy_of(dino_cross_entropy(student, teacher[:, None], 0.1)))
    np.testing.assert_allclose(same, expected, rtol=1e-5)


def test_cross_entropy_minimum_is_teacher_entropy():
    # With student softmax equal to the teacher, the loss is H(teacher).
    rng = np.random.default_rng(2)
    probs = np_softmax(rng.normal(size=(5, 6)))
    student = (np.log(probs) * 0.1).astype("float32")  # log p * tau_s
    entropy = float(np.mean(-np.sum(probs * np.log(probs), axis=-1)))
    value = float(numpy_of(dino_cross_entropy(student, probs.astype("float32"), 0.1)))
    np.testing.assert_allclose(value, entropy, rtol=1e-4)


def test_centered_teacher_probs():
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(2, 5, 7)).astype("float32")
    center = rng.normal(size=(1, 7)).astype("float32")
    probs = numpy_of(centered_teacher_probs(logits, center, 0.04))
    expected = np_softmax((logits.astype(np.float64) - center) / 0.04)
    np.testing.assert_allclose(probs, expected, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)


def test_updated_center():
    rng = np.random.default_rng(4)
    center = rng.normal(size=(1, 6)).astype("float32")
    logits = rng.normal(size=(3, 4, 6)).astype("float32")
    new = numpy_of(updated_center(center, logits, 0.9))
    expected = 0.9 * center + 0.1 * logits.reshape(-1, 6).mean(axis=0)
    assert new.shape == (1, 6)
    np.testing.assert_allclose(new, expected, rtol=1e-5)
    # A flat centre and a Keras variable work too.
    variable = keras.Variable(center[0])
    new_flat = numpy_of(updated_center(variable, logits[0], 0.5))
    assert new_flat.shape == (6,)
    np.testing.assert_allclose(new_flat, 0.5 * center[0] + 0.5 * logits[0].mean(0), rtol=1e-5)


def test_sinkhorn_matches_dinov2_loop():
    rng = np.random.default_rng(5)
    logits = rng.uniform(-1, 1, size=(6, 5)).astype("float32")
    for iterations in (1, 3):
        probs = numpy_of(sinkhorn_knopp_teacher_probs(logits, 0.1, iterations))
        np.testing.assert_allclose(
            probs, np_sinkhorn(logits, 0.1, iterations), rtol=1e-4, atol=1e-7
        )
        np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)


def test_sinkhorn_balances_prototypes():
    rng = np.random.default_rng(6)
    # Every sample prefers prototype 0; Sinkhorn spreads the mass.
    logits = rng.uniform(-0.2, 0.2, size=(8, 4)).astype("float32")
    logits[:, 0] += 0.5
    probs = numpy_of(sinkhorn_knopp_teacher_probs(logits, 0.1, 30))
    np.testing.assert_allclose(probs.sum(0), 8 / 4, rtol=1e-3)
    plain = np_softmax(logits / 0.1)
    assert plain.sum(0)[0] > 4.0  # softmax alone is far from balanced


def test_sinkhorn_large_logits_are_finite():
    logits = np.array([[50.0, -50.0, 0.0], [49.0, 48.0, -60.0]], "float32")
    probs = numpy_of(sinkhorn_knopp_teacher_probs(logits, 0.04))
    assert np.all(np.isfinite(probs))
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)


def test_sinkhorn_sample_mask_equals_subset():
    rng = np.random.default_rng(7)
    logits = rng.uniform(-1, 1, size=(7, 5)).astype("float32")
    mask = np.array([True, False, True, True, False, True, False])
    probs = numpy_of(sinkhorn_knopp_teacher_probs(logits, 0.1, 3, mask))
    np.testing.assert_allclose(
        probs[mask], np_sinkhorn(logits[mask], 0.1, 3), rtol=1e-4, atol=1e-7
    )
    np.testing.assert_array_equal(probs[~mask], 0.0)
    none = numpy_of(sinkhorn_knopp_teacher_probs(logits, 0.1, 3, np.zeros(7, bool)))
    np.testing.assert_array_equal(none, 0.0)
