"""KoLeo regulariser against a NumPy transcription."""

import keras
import numpy as np
import pytest

from keras_tips.losses.koleo import koleo_loss

pytestmark = pytest.mark.multibackend


def reference(features, eps=1e-8):
    x = np.asarray(features, np.float64)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    x = np.where(norms > 0, x / np.where(norms > 0, norms, 1.0), 0.0)
    total = 0.0
    for i in range(len(x)):
        nearest = min(np.linalg.norm(x[i] - x[j]) for j in range(len(x)) if j != i)
        total += np.log(nearest + eps)
    return -total / len(x)


def value(features, **kwargs):
    return float(keras.ops.convert_to_numpy(koleo_loss(features, **kwargs)))


def test_matches_reference():
    features = np.random.default_rng(0).normal(size=(7, 5)).astype("float32")
    np.testing.assert_allclose(value(features), reference(features), rtol=1e-5)


def test_scale_invariant_and_spread_is_lower():
    rng = np.random.default_rng(1)
    features = rng.normal(size=(6, 3)).astype("float32")
    np.testing.assert_allclose(value(3.0 * features), value(features), rtol=1e-5)
    clustered = (np.array([1.0, 0.0, 0.0]) + 0.01 * features).astype("float32")
    assert value(clustered) > value(features) + 1.0


def test_duplicates_and_zero_vectors_are_finite():
    rng = np.random.default_rng(2)
    features = rng.normal(size=(5, 4)).astype("float32")
    features[1] = features[0]
    features[3] = 0.0
    got = value(features)
    assert np.isfinite(got)
    np.testing.assert_allclose(got, reference(features), rtol=1e-5)


def test_single_feature_gives_zero():
    assert value(np.ones((1, 4), "float32")) == 0.0
