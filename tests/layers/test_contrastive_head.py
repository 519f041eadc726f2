"""ContrastiveHead, l2_normalize and cosine_logits against NumPy."""

import math

import keras
import numpy as np
import pytest

from keras_tips.layers.contrastive_head import ContrastiveHead
from keras_tips.layers.contrastive_head import cosine_logits
from keras_tips.layers.contrastive_head import l2_normalize

pytestmark = pytest.mark.multibackend


def numpy_of(x):
    return keras.ops.convert_to_numpy(x)


def test_l2_normalize_unit_rows_and_zero_vectors():
    x = np.array([[3.0, 4.0], [0.0, 0.0], [1e-3, 0.0]], "float32")
    out = numpy_of(l2_normalize(x))
    np.testing.assert_allclose(out, [[0.6, 0.8], [0.0, 0.0], [1.0, 0.0]], rtol=1e-6)
    columns = numpy_of(l2_normalize(np.array([[3.0, 0.0], [4.0, 2.0]], "float32"), axis=0))
    np.testing.assert_allclose(columns, [[0.6, 0.0], [0.8, 1.0]], rtol=1e-6)


def test_cosine_logits_match_reference():
    rng = np.random.default_rng(0)
    images = rng.normal(size=(3, 5)).astype("float32")
    texts = rng.normal(size=(4, 5)).astype("float32")
    unit = lambda v: v / np.linalg.norm(v, axis=-1, keepdims=True)  # noqa: E731
    expected = unit(images.astype(np.float64)) @ unit(texts.astype(np.float64)).T / 0.07
    got = numpy_of(cosine_logits(images, texts, 0.07))
    assert got.shape == (3, 4)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_head_uses_its_clipped_temperatures():
    rng = np.random.default_rng(1)
    images = rng.normal(size=(2, 5)).astype("float32")
    texts = rng.normal(size=(3, 5)).astype("float32")
    head = ContrastiveHead(temperature=0.05, min_temperature=0.01, max_temperature=0.2)
    head.build()
    np.testing.assert_allclose(
        numpy_of(head(images, texts)), numpy_of(cosine_logits(images, texts, 0.05)), rtol=1e-6
    )
    # Each alignment reads its own temperature, clipped to the range.
    head.log_temperature.assign(math.log(1e-5))
    head.log_synthetic_temperature.assign(math.log(3.0))
    assert float(numpy_of(head.temperature)) == pytest.approx(0.01, rel=1e-6)
    assert float(numpy_of(head.synthetic_temperature)) == pytest.approx(0.2, rel=1e-6)
    np.testing.assert_allclose(
        numpy_of(head(images, texts, synthetic=True)),
        numpy_of(cosine_logits(images, texts, 0.2)),
        rtol=1e-5,
    )
    head.set_temperature(0.1)
    assert float(numpy_of(head.temperature)) == pytest.approx(0.1, rel=1e-6)
    assert float(numpy_of(head.synthetic_temperature)) == pytest.approx(0.1, rel=1e-6)
