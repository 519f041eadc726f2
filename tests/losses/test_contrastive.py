"""Contrastive (InfoNCE) loss against a NumPy transcription of the formula."""

import keras
import numpy as np
import pytest
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from keras_tips.losses.contrastive import contrastive_loss
from keras_tips.losses.contrastive import mean_over_caption_types

pytestmark = pytest.mark.multibackend


def reference(images, texts, temperature, valid=None):
    """Loops over the valid pairs only (the invalid ones are dropped)."""
    images = np.asarray(images, np.float64)
    texts = np.asarray(texts, np.float64)
    if valid is None:
        valid = np.ones(len(images), bool)
    keep = np.flatnonzero(valid)
    if keep.size == 0:
        return 0.0, 0.0

    def unit(v):
        norm = np.linalg.norm(v)
        return v / norm if norm > 0 else v * 0.0

    x = [unit(images[i]) for i in keep]
    y = [unit(texts[i]) for i in keep]
    n = len(keep)
    s = np.array([[x[i] @ y[j] / temperature for j in range(n)] for i in range(n)])
    i2t = t2i = 0.0
    hits = 0
    for i in range(n):
        row = s[i]
        i2t += np.log(np.sum(np.exp(row - row.max()))) + row.max() - row[i]
        col = s[:, i]
        t2i += np.log(np.sum(np.exp(col - col.max()))) + col.max() - col[i]
        hits += int(np.argmax(row) == i)
    return 0.5 * (i2t + t2i) / n, hits / n


def run(images, texts, temperature, valid=None):
    loss, accuracy = contrastive_loss(
        keras.ops.convert_to_tensor(images),
        keras.ops.convert_to_tensor(texts),
        temperature,
        None if valid is None else keras.ops.convert_to_tensor(valid),
    )
    return float(keras.ops.convert_to_numpy(loss)), float(
        keras.ops.convert_to_numpy(accuracy)
    )


def random_pairs(rng, batch=6, dim=8, noise=0.5):
    images = rng.normal(size=(batch, dim)).astype("float32")
    texts = (images + noise * rng.normal(size=(batch, dim))).astype("float32")
    return images, texts


def test_matches_reference_all_valid():
    images, texts = random_pairs(np.random.default_rng(0))
    loss, accuracy = run(images, texts, 0.1)
    ref_loss, ref_accuracy = reference(images, texts, 0.1)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-5)
    np.testing.assert_allclose(accuracy, ref_accuracy)
    assert 0.0 < accuracy <= 1.0


def test_matches_reference_with_invalid_rows():
    rng = np.random.default_rng(1)
    images, texts = random_pairs(rng, batch=7, noise=2.0)
    valid = np.array([True, False, True, True, False, True, True])
    loss, accuracy = run(images, texts, 0.05, valid)
    ref_loss, ref_accuracy = reference(images, texts, 0.05, valid)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-5)
    np.testing.assert_allclose(accuracy, ref_accuracy)
    # Excluding the rows is not the same as keeping them.
    assert abs(loss - reference(images, texts, 0.05)[0]) > 1e-3


def test_invalid_rows_do_not_affect_the_loss():
    rng = np.random.default_rng(2)
    images, texts = random_pairs(rng, batch=5)
    valid = np.array([True, True, False, True, False])
    loss, accuracy = run(images, texts, 0.07, valid)
    # Arbitrary (even huge or zero) values in the invalid rows change nothing.
    images[2] = 1e4
    texts[4] = 0.0
    texts[2] = -3.0
    loss2, accuracy2 = run(images, texts, 0.07, valid)
    np.testing.assert_allclose(loss, loss2, rtol=1e-6)
    assert accuracy == accuracy2


def test_no_valid_caption_gives_zero():
    images, texts = random_pairs(np.random.default_rng(3), batch=4)
    loss, accuracy = run(images, texts, 0.1, np.zeros(4, bool))
    assert loss == 0.0 and accuracy == 0.0


def test_single_valid_pair_gives_zero_loss_and_full_accuracy():
    images, texts = random_pairs(np.random.default_rng(4), batch=4)
    loss, accuracy = run(images, texts, 0.1, np.array([False, True, False, False]))
    np.testing.assert_allclose(loss, 0.0, atol=1e-6)
    assert accuracy == 1.0


def test_zero_vectors_are_finite():
    images, texts = random_pairs(np.random.default_rng(5), batch=4)
    images[1] = 0.0
    texts[3] = 0.0
    loss, accuracy = run(images, texts, 0.1)
    assert np.isfinite(loss) and np.isfinite(accuracy)
    np.testing.assert_allclose(loss, reference(images, texts, 0.1)[0], rtol=1e-5)


def test_scale_invariance_and_tensor_temperature():
    images, texts = random_pairs(np.random.default_rng(6))
    temperature = keras.ops.convert_to_tensor(np.float32(0.2))
    a, _ = run(images, texts, temperature)
    b, _ = run(10.0 * images, 0.1 * texts, 0.2)
    np.testing.assert_allclose(a, b, rtol=1e-5)


def test_low_precision_inputs_give_float32():
    images, texts = random_pairs(np.random.default_rng(7))
    loss, accuracy = contrastive_loss(
        keras.ops.cast(images, "bfloat16"), keras.ops.cast(texts, "bfloat16"), 0.1
    )
    assert keras.backend.standardize_dtype(loss.dtype) == "float32"
    assert keras.backend.standardize_dtype(accuracy.dtype) == "float32"
    ref_loss, _ = reference(images, texts, 0.1)
    np.testing.assert_allclose(float(keras.ops.convert_to_numpy(loss)), ref_loss, rtol=5e-2)


@settings(max_examples=8, deadline=None)
@given(
    batch=st.integers(1, 6),
    seed=st.integers(0, 2**16),
    temperature=st.sampled_from([0.01, 0.1, 1.0]),
)
def test_property_matches_reference(batch, seed, temperature):
    rng = np.random.default_rng(seed)
    images, texts = random_pairs(rng, batch=batch, dim=4, noise=1.0)
    valid = rng.random(batch) < 0.7
    loss, accuracy = run(images, texts, temperature, valid)
    ref_loss, ref_accuracy = reference(images, texts, temperature, valid)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(accuracy, ref_accuracy)


def test_mean_over_caption_types():
    def mean(losses, present, weighting):
        tensors = [keras.ops.convert_to_tensor(np.float32(v)) for v in losses]
        flags = [keras.ops.convert_to_tensor(np.float32(v)) for v in present]
        value = mean_over_caption_types(tensors, flags, weighting)
        return float(keras.ops.convert_to_numpy(value))

    # Both caption types present: ½ each, whatever the weighting.
    assert mean([2.0, 4.0], [1.0, 1.0], "available") == pytest.approx(3.0)
    assert mean([2.0, 4.0], [1.0, 1.0], "fixed") == pytest.approx(3.0)
    # A batch without synthetic captions (their loss is 0): "available"
    # averages over what is there, "fixed" still halves.
    assert mean([2.0, 0.0], [1.0, 0.0], "available") == pytest.approx(2.0)
    assert mean([2.0, 0.0], [1.0, 0.0], "fixed") == pytest.approx(1.0)
    # Nothing present: 0, not 0 / 0.
    assert mean([0.0, 0.0], [0.0, 0.0], "available") == 0.0
    # One caption type in use (web only).
    assert mean([2.5], [1.0], "fixed") == pytest.approx(2.5)
    assert mean([2.5], [1.0], "available") == pytest.approx(2.5)
    with pytest.raises(ValueError, match="weighting"):
        mean([1.0], [1.0], "sometimes")
    with pytest.raises(ValueError, match="one presence flag per caption loss"):
        mean([1.0, 2.0], [1.0], "fixed")
