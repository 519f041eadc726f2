"""DINO self-distillation of CLS1 against a NumPy transcription."""

import keras
import numpy as np
import pytest

from keras_tips.losses.dino import dino_loss
from tests.losses.numpy_references import np_cross_entropy
from tests.losses.numpy_references import np_softmax

pytestmark = pytest.mark.multibackend


def test_every_local_crop_against_its_global_crop():
    rng = np.random.default_rng(1)
    student = rng.normal(size=(3, 4, 8)).astype("float32")  # B=3, L=4 crops
    teacher = np_softmax(rng.normal(size=(3, 8))).astype("float32")
    expected = np.mean(
        [
            np_cross_entropy(student[b, l], teacher[b], 0.1)
            for b in range(3)
            for l in range(4)
        ]
    )
    value = float(keras.ops.convert_to_numpy(dino_loss(student, teacher, 0.1)))
    np.testing.assert_allclose(value, expected, rtol=1e-5)
    # Pairing crops with the wrong image's target is a different number.
    shuffled = float(keras.ops.convert_to_numpy(dino_loss(student, teacher[::-1], 0.1)))
    assert abs(shuffled - value) > 1e-3
