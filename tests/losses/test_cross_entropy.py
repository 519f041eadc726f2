"""The teacher-student cross-entropy against a NumPy transcription."""

import keras
import numpy as np
import pytest

from keras_tips.losses.cross_entropy import soft_cross_entropy
from tests.losses.numpy_references import np_cross_entropy
from tests.losses.numpy_references import np_softmax

pytestmark = pytest.mark.multibackend


def numpy_of(x):
    return keras.ops.convert_to_numpy(x)


def test_matches_reference_per_sample():
    rng = np.random.default_rng(0)
    student = rng.normal(size=(4, 10)).astype("float32")
    teacher = np_softmax(rng.normal(size=(4, 10)) / 0.3).astype("float32")
    value = numpy_of(soft_cross_entropy(student, teacher, 0.1))
    assert value.shape == (4,)
    np.testing.assert_allclose(value, np_cross_entropy(student, teacher, 0.1), rtol=1e-5)


def test_broadcasts_one_target_over_several_students():
    rng = np.random.default_rng(1)
    student = rng.normal(size=(3, 4, 8)).astype("float32")
    teacher = np_softmax(rng.normal(size=(3, 1, 8))).astype("float32")
    value = numpy_of(soft_cross_entropy(student, teacher, 0.2))
    assert value.shape == (3, 4)
    np.testing.assert_allclose(value, np_cross_entropy(student, teacher, 0.2), rtol=1e-5)


def test_minimum_is_teacher_entropy():
    # With student softmax equal to the teacher, the loss is H(teacher).
    rng = np.random.default_rng(2)
    probs = np_softmax(rng.normal(size=(5, 6)))
    student = (np.log(probs) * 0.1).astype("float32")  # log p * tau_s
    entropy = -np.sum(probs * np.log(probs), axis=-1)
    value = numpy_of(soft_cross_entropy(student, probs.astype("float32"), 0.1))
    np.testing.assert_allclose(value, entropy, rtol=1e-4)


def test_low_precision_inputs_give_float32():
    rng = np.random.default_rng(3)
    student = keras.ops.cast(rng.normal(size=(2, 6)), "bfloat16")
    teacher = keras.ops.cast(np_softmax(rng.normal(size=(2, 6))), "bfloat16")
    value = soft_cross_entropy(student, teacher, 0.1)
    assert keras.backend.standardize_dtype(value.dtype) == "float32"
