"""Options of the TIPS objective: gathered loss tokens, float32 logits, state
that moves only in training, iBOT++ and the head-only EMA teacher."""

import keras
import numpy as np
import pytest

from tests.training.pretrain_fixtures import numpy_weights
from tests.training.pretrain_fixtures import random_batch
from tests.training.pretrain_fixtures import tiny_pretrainer

pytestmark = pytest.mark.multibackend

MASKED = 6  # of the 16 patches of the tiny pretrainer's 56 px crops


def exact_mask_batch(seed=0):
    """A batch whose masked images have exactly MASKED masked patches (as
    the pipeline's masks do) and one image with none."""
    batch = random_batch(seed=seed)
    rng = np.random.default_rng(seed)
    mask = np.zeros((4, 16), bool)
    for row in (0, 1, 3):
        mask[row, rng.permutation(16)[:MASKED]] = True
    batch["patch_mask"] = mask
    return batch


def terms(pretrainer, batch):
    return {
        k: float(keras.ops.convert_to_numpy(v))
        for k, v in pretrainer(batch).items()
    }


def state(pretrainer):
    values = [pretrainer.step_counter, pretrainer.dino_center, pretrainer.ibot_center]
    values = [keras.ops.convert_to_numpy(v).copy() for v in values]
    return values + numpy_weights(pretrainer.teacher_vision_encoder) + [
        w for head in pretrainer.teacher_heads for w in numpy_weights(head)
    ]


@pytest.mark.parametrize("centering", ["centering", "sinkhorn_knopp"])
def test_gathered_loss_tokens_give_the_dense_loss(centering):
    batch = exact_mask_batch()
    dense = tiny_pretrainer(centering=centering)
    gathered = tiny_pretrainer(centering=centering, max_masked_patches=MASKED)
    # The heads see MASKED tokens per image, not all 16.
    tokens = gathered._loss_tokens(batch)
    assert tuple(tokens["weights"].shape) == (4, MASKED)
    student = gathered._student_forward(batch, training=False)
    logits = gathered._teacher_forward(batch, student, tokens)
    assert tuple(logits["ibot"].shape) == (4, MASKED, 64)
    want, got = terms(dense, batch), terms(gathered, batch)
    assert got["mask"] > 0
    assert got["mask"] == pytest.approx(want["mask"], rel=1e-6, abs=1e-7)
    # One training step moves the iBOT centre (from the loss tokens only)
    # to the same place.
    for pretrainer in (dense, gathered):
        pretrainer.compile(optimizer=keras.optimizers.SGD(0.0))
        pretrainer.train_on_batch(batch)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(gathered.ibot_center),
        keras.ops.convert_to_numpy(dense.ibot_center),
        rtol=1e-5,
        atol=1e-7,
    )


def test_ibot_centre_follows_the_loss_tokens_only():
    batch = exact_mask_batch()
    pretrainer = tiny_pretrainer(max_masked_patches=MASKED)
    pretrainer.compile(optimizer=keras.optimizers.SGD(0.0))
    teacher_patches = pretrainer.teacher_vision_encoder(batch["global_images"])[
        "patches"
    ]
    logits = keras.ops.convert_to_numpy(pretrainer.teacher_heads[1](teacher_patches))
    pretrainer.train_on_batch(batch)
    expected = 0.1 * logits[batch["patch_mask"]].mean(axis=0)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(pretrainer.ibot_center)[0], expected,
        rtol=1e-4, atol=1e-6,
    )


def test_bounds_out_of_range_are_refused():
    with pytest.raises(ValueError, match="max_masked_patches"):
        tiny_pretrainer(max_masked_patches=0)
    with pytest.raises(ValueError, match="max_tokens"):
        tiny_pretrainer(max_masked_patches=17)(exact_mask_batch())


def test_prototype_logits_are_float32_under_mixed_precision():
    batch = exact_mask_batch()
    pretrainer = tiny_pretrainer(dtype="mixed_bfloat16", max_masked_patches=MASKED)
    student = pretrainer._student_forward(batch, training=False)
    tokens = pretrainer._loss_tokens(batch)
    teacher = pretrainer._teacher_forward(batch, student, tokens)
    student_patches = pretrainer.ibot_head(student["masked"]["patches"])
    student_local = pretrainer._local_crops_forward(batch["local_images"], False)
    for logits in (teacher["dino"], teacher["ibot"], student_patches, student_local):
        assert keras.backend.standardize_dtype(logits.dtype) == "float32"


def test_state_moves_only_in_training():
    batch = exact_mask_batch()
    pretrainer = tiny_pretrainer()
    pretrainer.compile(optimizer=keras.optimizers.SGD(0.1))
    pretrainer.train_on_batch(batch)  # teacher != student from here on
    pretrainer.train_on_batch(exact_mask_batch(seed=1))
    before = state(pretrainer)
    pretrainer(batch)
    pretrainer(batch, training=False)
    pretrainer.evaluate(batch, verbose=0)
    pretrainer.predict_on_batch(batch)
    for a, b in zip(before, state(pretrainer)):
        np.testing.assert_array_equal(a, b)
    pretrainer.fit(((b,) for b in [batch]), steps_per_epoch=1, verbose=0)
    after = state(pretrainer)
    assert int(after[0]) == int(before[0]) + 1
    for index in (1, 2, 3):  # both centres, a teacher weight
        assert np.abs(after[index] - before[index]).max() > 0


def test_ibot_plus_plus_takes_the_loss_on_every_patch():
    batch = exact_mask_batch()
    masked = terms(tiny_pretrainer(), batch)["mask"]
    # Visible patches weigh 0: the iBOT loss again.
    zero = terms(
        tiny_pretrainer(mask_loss_tokens="all", visible_token_weight=0.0), batch
    )["mask"]
    assert zero == pytest.approx(masked, rel=1e-6)
    every = terms(tiny_pretrainer(mask_loss_tokens="all"), batch)["mask"]
    assert abs(every - masked) > 1e-4
    # An image without masked patches counts with its visible patches.
    unmasked = dict(batch, patch_mask=np.zeros((4, 16), bool))
    assert terms(tiny_pretrainer(), unmasked)["mask"] == 0.0
    assert terms(tiny_pretrainer(mask_loss_tokens="all"), unmasked)["mask"] > 0


def test_ibot_averaging_over_all_images_scales_by_the_masked_fraction():
    batch = exact_mask_batch()  # 3 of 4 images masked
    masked = terms(tiny_pretrainer(), batch)["mask"]
    every = terms(tiny_pretrainer(ibot_averaging="all_images"), batch)["mask"]
    assert every == pytest.approx(0.75 * masked, rel=1e-6)


@pytest.mark.parametrize("teacher_pass", ["separate", "shared"])
def test_head_only_teacher(teacher_pass, tmp_path):
    batch = exact_mask_batch()
    ema = tiny_pretrainer()
    heads_only = tiny_pretrainer(teacher="heads_only", teacher_pass=teacher_pass)
    # No teacher tower is held: only the heads have EMA copies.
    assert heads_only.teacher_vision_encoder is None
    paths = [w.path for w in heads_only.weights]
    assert not any("teacher_vision_encoder" in p for p in paths)
    assert len(heads_only.weights) == len(ema.weights) - len(
        ema.teacher_vision_encoder.weights
    )
    # At the start the EMA teacher is the student: the same targets.
    want, got = terms(ema, batch), terms(heads_only, batch)
    for name in ("distill", "mask"):
        assert got[name] == pytest.approx(want[name], rel=1e-5), name
    # It trains, and its weights (EMA heads included) save and restore.
    heads_only.compile(optimizer=keras.optimizers.AdamW(1e-2))
    heads_only.train_on_batch(batch)
    heads_only.train_on_batch(exact_mask_batch(seed=1))
    path = str(tmp_path / "heads_only.weights.h5")
    heads_only.save_weights(path)
    restored = tiny_pretrainer(
        seed=1, teacher="heads_only", teacher_pass=teacher_pass
    )
    restored(batch)  # builds it (a call moves no state)
    restored.load_weights(path)
    for a, b in zip(numpy_weights(heads_only), numpy_weights(restored)):
        np.testing.assert_array_equal(a, b)


def test_head_only_teacher_targets_carry_no_gradient():
    batch = exact_mask_batch()
    pretrainer = tiny_pretrainer(
        teacher="heads_only", distill_weight=0.0, mask_loss_tokens="all"
    )
    student = pretrainer._student_forward(batch, training=False)
    tokens = pretrainer._loss_tokens(batch)

    def teacher_sum(images):
        outputs = pretrainer._teacher_forward(
            dict(batch, global_images=images), student, tokens
        )
        return keras.ops.sum(outputs["ibot"])

    images = keras.ops.convert_to_tensor(batch["global_images"])
    gradient = _gradient(teacher_sum, images)
    assert float(np.abs(keras.ops.convert_to_numpy(gradient)).max()) == 0.0


def _gradient(function, x):
    """d function / d x on the current backend."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return jax.grad(function)(x)
    if backend == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            tape.watch(x)
            value = function(x)
        return tape.gradient(value, x, unconnected_gradients="zero")
    import torch

    x = x.detach().clone().requires_grad_(True)
    value = function(x)
    if not value.requires_grad:
        return torch.zeros_like(x)
    (gradient,) = torch.autograd.grad(value, x, allow_unused=True)
    return torch.zeros_like(x) if gradient is None else gradient
