"""iBOT masked patch loss (and iBOT++ weights, gathered loss tokens) against
a NumPy transcription."""

import keras
import numpy as np
import pytest

from keras_tips.losses.ibot import ibot_patch_loss
from keras_tips.losses.ibot import loss_token_indices
from keras_tips.losses.ibot import patch_loss_weights
from keras_tips.losses.ibot import take_tokens
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



def test_token_weights_weigh_each_patch_within_its_image():
    student, teacher, rng = data(5)
    mask = rng.random((4, 6)) < 0.5
    mask[:, 0] = True
    weights = patch_loss_weights(mask, "all", visible_token_weight=0.25)
    weights = keras.ops.convert_to_numpy(weights)
    np.testing.assert_array_equal(weights, np.where(mask, 1.0, 0.25))
    log_p = np.log(np_softmax(student.astype(np.float64) / 0.1))
    ce = -np.sum(teacher * log_p, -1)
    want = np.mean((ce * weights).sum(-1) / weights.sum(-1))
    np.testing.assert_allclose(value(student, teacher, weights, 0.1), want, rtol=1e-5)
    # "masked" weighs the masked patches alone: the bool-mask loss.
    masked = patch_loss_weights(mask, "masked")
    np.testing.assert_allclose(
        value(student, teacher, masked, 0.1), value(student, teacher, mask, 0.1), rtol=1e-6
    )
    with pytest.raises(ValueError, match="mask_loss_tokens"):
        patch_loss_weights(mask, "visible")


def test_gathered_loss_tokens_give_the_dense_loss():
    student, teacher, rng = data(6, patches=9)
    mask = np.zeros((4, 9), bool)
    for row in (0, 2, 3):  # 3 masked patches per masked image, as the masker
        mask[row, rng.permutation(9)[:3]] = True
    indices, weights = loss_token_indices(keras.ops.cast(mask, "float32"), 3)
    indices = keras.ops.convert_to_numpy(indices)
    # The masked positions first, in order; the unmasked image's slots weigh 0.
    for row in (0, 2, 3):
        np.testing.assert_array_equal(indices[row], np.flatnonzero(mask[row]))
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(weights)[1], 0.0)
    gathered = value(
        take_tokens(student, indices), take_tokens(teacher, indices), weights, 0.1
    )
    assert gathered == pytest.approx(value(student, teacher, mask, 0.1), rel=1e-6)
    with pytest.raises(ValueError, match="max_tokens"):
        loss_token_indices(keras.ops.cast(mask, "float32"), 10)
