"""Teacher targets (centering, Sinkhorn-Knopp, centre update) against NumPy."""

import keras
import numpy as np
import pytest

from keras_tips.losses.teacher_targets import centered_teacher_probs
from keras_tips.losses.teacher_targets import sinkhorn_knopp_teacher_probs
from keras_tips.losses.teacher_targets import updated_center
from tests.losses.numpy_references import np_sinkhorn
from tests.losses.numpy_references import np_softmax

pytestmark = pytest.mark.multibackend


def numpy_of(x):
    return keras.ops.convert_to_numpy(x)


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


def test_updated_center_from_marked_samples_only():
    rng = np.random.default_rng(5)
    center = rng.normal(size=(1, 5)).astype("float32")
    logits = rng.normal(size=(3, 4, 5)).astype("float32")
    mask = rng.random((3, 4)) < 0.5
    mask[0, 0] = True
    new = numpy_of(updated_center(center, logits, 0.9, sample_mask=mask))
    expected = 0.9 * center + 0.1 * logits[mask].mean(axis=0)
    np.testing.assert_allclose(new, expected, rtol=1e-5)
    assert np.abs(new - numpy_of(updated_center(center, logits, 0.9))).max() > 1e-4
    unchanged = numpy_of(updated_center(center, logits, 0.9, np.zeros((3, 4), bool)))
    np.testing.assert_allclose(unchanged, center, rtol=1e-6)


def test_sinkhorn_matches_dinov2_loop():
    rng = np.random.default_rng(5)
    logits = rng.uniform(-1, 1, size=(6, 5)).astype("float32")
    for iterations in (1, 3):
        probs = numpy_of(sinkhorn_knopp_teacher_probs(logits, 0.1, iterations))
        np.testing.assert_allclose(
            probs, np_sinkhorn(logits, 0.1, iterations), rtol=1e-4, atol=1e-7
        )
        np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)


def test_sinkhorn_treats_every_leading_position_as_a_sample():
    rng = np.random.default_rng(8)
    logits = rng.uniform(-1, 1, size=(3, 4, 5)).astype("float32")  # (B, N, K)
    probs = numpy_of(sinkhorn_knopp_teacher_probs(logits, 0.1))
    assert probs.shape == (3, 4, 5)
    expected = np_sinkhorn(logits.reshape(12, 5), 0.1, 3).reshape(3, 4, 5)
    np.testing.assert_allclose(probs, expected, rtol=1e-4, atol=1e-7)


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
    # A (B, N) mask over (B, N, K) patch logits selects the same samples.
    patches = logits[:6].reshape(2, 3, 5)
    patch_mask = mask[:6].reshape(2, 3)
    by_patch = numpy_of(sinkhorn_knopp_teacher_probs(patches, 0.1, 3, patch_mask))
    np.testing.assert_allclose(
        by_patch[patch_mask], np_sinkhorn(logits[:6][mask[:6]], 0.1, 3), rtol=1e-4, atol=1e-7
    )
