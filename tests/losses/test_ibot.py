"""iBOT masked patch loss against a NumPy transcription."""

import keras
import numpy as np
import pytest

from keras_tips.losses.ibot import ibot_patch_loss
from tests.losses.numpy_references import np_softmax

pytestmark = pytest.mark.multibackend


def reference(student, teacher, mask, tau, all_images=False):
    per_image = []
    for b in range(student.shape[0]):
        losses = []
        for n in range(student.shape[1]):
            if mask[b, n]:
                log_p = np.log(np_softmax(student[b, n].astype(np.float64) / tau))
                losses.append(-np.sum(teacher[b, n] * log_p))
        if losses:
            per_image.append(np.mean(losses))
    if all_images:
        return sum(per_image) / student.shape[0]
    return float(np.mean(per_image)) if per_image else 0.0


def data(seed, batch=4, patches=6, prototypes=5):
    rng = np.random.default_rng(seed)
    student = rng.normal(size=(batch, patches, prototypes)).astype("float32")
    teacher = np_softmax(rng.normal(size=(batch, patches, prototypes)) / 0.5)
    return student, teacher.astype("float32"), rng


def value(*args, **kwargs):
    return float(keras.ops.convert_to_numpy(ibot_patch_loss(*args, **kwargs)))


def test_matches_reference_per_image_normalisation():
    student, teacher, _ = data(0)
    mask = np.array(
        [
            [1, 0, 0, 0, 0, 0],  # one masked patch weighs as much as ...
            [1, 1, 1, 1, 1, 0],  # ... five in another image
            [0, 0, 0, 0, 0, 0],  # not counted
            [0, 1, 0, 1, 0, 0],
        ],
        bool,
    )
    got = value(student, teacher, mask, 0.1)
    np.testing.assert_allclose(got, reference(student, teacher, mask, 0.1), rtol=1e-5)
    # A plain mean over all masked patches is a different number.
    log_p = np.log(np_softmax(student.astype(np.float64) / 0.1))
    flat = -np.sum(teacher * log_p, -1)[mask].mean()
    assert abs(got - flat) > 1e-3


def test_all_images_normalisation():
    student, teacher, rng = data(1)
    mask = rng.random((4, 6)) < 0.4
    mask[2] = False
    got = value(student, teacher, mask, 0.1, average_over="all_images")
    np.testing.assert_allclose(
        got, reference(student, teacher, mask, 0.1, all_images=True), rtol=1e-5
    )


def test_nothing_masked_gives_zero():
    student, teacher, _ = data(2)
    assert value(student, teacher, np.zeros((4, 6), bool), 0.1) == 0.0


def test_unmasked_patches_are_ignored():
    student, teacher, rng = data(3)
    mask = rng.random((4, 6)) < 0.5
    mask[0, 0] = True
    before = value(student, teacher, mask, 0.1)
    student[~mask] = 1e3 * rng.normal(size=student[~mask].shape)
    np.testing.assert_allclose(value(student, teacher, mask, 0.1), before, rtol=1e-6)


def test_bad_average_over():
    student, teacher, _ = data(4)
    with pytest.raises(ValueError, match="average_over"):
        ibot_patch_loss(student, teacher, np.ones((4, 6), bool), 0.1, "patches")

