"""The TIPS train step on every backend: losses, teacher EMA, gradients."""

import math

import keras
import numpy as np
import pytest

from keras_tips.training.pretrainer import LOSS_TERMS
from tests.training import pretrainer_steps
from tests.training.pretrain_fixtures import numpy_weights
from tests.training.pretrain_fixtures import random_batch
from tests.training.pretrain_fixtures import tiny_pretrainer

pytestmark = pytest.mark.multibackend


def _generator(batches):
    return ((b,) for b in batches)


def test_fit_logs_every_finite_term():
    pretrainer = tiny_pretrainer(koleo_weight=0.1)
    pretrainer.compile(optimizer=keras.optimizers.AdamW(1e-3))
    batches = [random_batch(seed=i) for i in range(3)]
    history = pretrainer.fit(_generator(batches), steps_per_epoch=3, epochs=1, verbose=0)
    for name in LOSS_TERMS + ("loss", "accuracy_web", "accuracy_synthetic",
                              "temperature_web", "temperature_synthetic", "teacher_momentum"):
        assert name in history.history, name
        value = history.history[name][0]
        assert math.isfinite(value), (name, value)
    for name in ("contrastive_web", "contrastive_synthetic", "distill", "mask", "koleo"):
        assert history.history[name][0] != 0.0, name
    assert int(keras.ops.convert_to_numpy(pretrainer.step_counter)) == 3


def test_teacher_changes_only_by_ema_and_student_learns():
    pretrainer = tiny_pretrainer()
    pretrainer.compile(optimizer=keras.optimizers.AdamW(1e-2))
    student = pretrainer.backbone.vision_encoder
    teacher = pretrainer.teacher_vision_encoder
    # The teacher starts as an exact copy of the student.
    for s, t in zip(numpy_weights(student), numpy_weights(teacher)):
        np.testing.assert_array_equal(s, t)
    # First step: teacher == student, so the EMA leaves it unchanged.
    pretrainer.train_on_batch(random_batch(seed=0))
    for step in (1, 2):
        student_before = numpy_weights(student) + numpy_weights(pretrainer.dino_head)
        teacher_before = numpy_weights(teacher) + numpy_weights(pretrainer.teacher_heads[0])
        pretrainer.train_on_batch(random_batch(seed=step))
        momentum = 0.9 + 0.5 * (1.0 - 0.9) * (1 - math.cos(math.pi * step / 20))
        teacher_after = numpy_weights(teacher) + numpy_weights(pretrainer.teacher_heads[0])
        student_after = numpy_weights(student)
        changed = 0
        for t0, s0, t1 in zip(teacher_before, student_before, teacher_after):
            expected = momentum * t0 + (1 - momentum) * s0
            np.testing.assert_allclose(t1, expected, rtol=1e-5, atol=1e-6)
            changed += int(np.abs(t1 - t0).max() > 0)
        assert changed > 0
        assert any(
            np.abs(a - b).max() > 0 for a, b in zip(student_after, student_before)
        )
    # The teacher is never trained by the optimizer.
    trainable = {id(v) for v in pretrainer.trainable_variables}
    assert not any(id(v) in trainable for v in teacher.weights)


def test_gradients_reach_both_towers_and_both_cls_tokens():
    pretrainer = tiny_pretrainer()
    pretrainer.compile(optimizer=keras.optimizers.AdamW(1e-3, weight_decay=0.0))
    backbone = pretrainer.backbone
    watched = {
        "cls_token": backbone.vision_encoder.cls_token,
        "register_token (CLS2)": backbone.vision_encoder.register_token,
        "mask_token": backbone.vision_encoder.mask_token,
        "patch_embedding": backbone.vision_encoder.patch_embedding.kernel,
        "text token_embedding": backbone.text_encoder.token_embedding.embeddings,
        "text last block": backbone.text_encoder.blocks[-1].mlp.fc2.kernel,
        "log_temperature": backbone.contrastive_head.log_temperature,
        "log_synthetic_temperature": backbone.contrastive_head.log_synthetic_temperature,
        "dino head prototypes": pretrainer.dino_head.weights[-1],
    }
    before = {k: keras.ops.convert_to_numpy(v).copy() for k, v in watched.items()}
    pretrainer.train_on_batch(random_batch(seed=0))
    for name, variable in watched.items():
        delta = np.abs(keras.ops.convert_to_numpy(variable) - before[name]).max()
        assert delta > 0, f"{name} received no gradient"


def test_web_only_training_leaves_the_synthetic_alignment_alone():
    """The CLIP-style ablation: no synthetic captions, no CLS2 loss."""
    pretrainer = tiny_pretrainer(distill_weight=0.0, mask_weight=0.0, use_synthetic_captions=False)
    pretrainer.compile(optimizer=keras.optimizers.SGD(1.0))
    batch = random_batch(seed=0, local=0)
    del batch["synthetic_token_ids"], batch["synthetic_padding_mask"]
    logs = pretrainer.train_on_batch(batch, return_dict=True)
    head = pretrainer.backbone.contrastive_head
    assert float(keras.ops.convert_to_numpy(head.log_synthetic_temperature)) == pytest.approx(
        math.log(0.1), abs=1e-7
    )
    assert float(keras.ops.convert_to_numpy(head.log_temperature)) != pytest.approx(
        math.log(0.1), abs=1e-7
    )
    assert logs["contrastive_synthetic"] == 0.0


def test_missing_caption_types_use_what_is_there():
    pretrainer = tiny_pretrainer(distill_weight=0.0, mask_weight=0.0)
    batch = random_batch(seed=0, local=0)
    batch["has_synthetic"][:] = False
    terms = pretrainer(batch)
    web = float(keras.ops.convert_to_numpy(terms["contrastive_web"]))
    assert float(keras.ops.convert_to_numpy(terms["contrastive_synthetic"])) == 0.0
    assert float(keras.ops.convert_to_numpy(terms["loss"])) == pytest.approx(web, rel=1e-6)
    fixed = tiny_pretrainer(distill_weight=0.0, mask_weight=0.0, caption_weighting="fixed")
    terms = fixed(batch)
    assert float(keras.ops.convert_to_numpy(terms["loss"])) == pytest.approx(
        0.5 * float(keras.ops.convert_to_numpy(terms["contrastive_web"])), rel=1e-6
    )


def test_bad_batches_get_clear_errors():
    pretrainer = tiny_pretrainer()
    batch = random_batch()
    del batch["synthetic_token_ids"]
    with pytest.raises(ValueError, match="missing \\['synthetic_token_ids'\\]"):
        pretrainer(batch)
    with pytest.raises(ValueError, match="dict"):
        pretrainer(np.zeros((2, 56, 56, 3)))
    no_local = random_batch(local=0)
    with pytest.raises(ValueError, match="local_crop_count"):
        pretrainer(no_local)
    no_mask = random_batch()
    del no_mask["patch_mask"]
    with pytest.raises(ValueError, match="patch_mask"):
        pretrainer(no_mask)
    with pytest.raises(ValueError, match="caption_weighting"):
        tiny_pretrainer(caption_weighting="sometimes")


def test_sinkhorn_shared_head_and_mixed_precision():
    pretrainer = tiny_pretrainer(centering="sinkhorn_knopp", share_heads=True, dtype="mixed_bfloat16")
    pretrainer.compile(optimizer=keras.optimizers.AdamW(1e-3))
    logs = pretrainer.train_on_batch(random_batch(seed=0), return_dict=True)
    assert all(math.isfinite(float(v)) for v in logs.values())
    assert len(pretrainer.teacher_heads) == 1


def test_config_round_trip():
    pretrainer = tiny_pretrainer(koleo_weight=0.5)
    config = pretrainer.get_config()
    clone = pretrainer.__class__.from_config(config)
    assert clone.get_config() == config


def test_contrastive_view():
    batch = random_batch(seed=1)
    other = dict(batch, patch_mask=~batch["patch_mask"])
    unmasked = tiny_pretrainer()
    a, b = unmasked(batch), unmasked(other)
    assert float(keras.ops.convert_to_numpy(a["contrastive_web"])) == pytest.approx(
        float(keras.ops.convert_to_numpy(b["contrastive_web"])), rel=1e-6
    )
    assert float(keras.ops.convert_to_numpy(a["mask"])) != pytest.approx(
        float(keras.ops.convert_to_numpy(b["mask"])), rel=1e-6
    )
    masked = tiny_pretrainer(contrastive_view="masked")
    a, b = masked(batch), masked(other)
    assert float(keras.ops.convert_to_numpy(a["contrastive_web"])) != pytest.approx(
        float(keras.ops.convert_to_numpy(b["contrastive_web"])), rel=1e-6
    )


@pytest.mark.slow  # a compiled train step of its own: ~25 s of CPU on JAX
@pytest.mark.parametrize("name", sorted(pretrainer_steps.CONFIGS))
def test_train_steps_reproduce_the_record(name):
    """Every logged value and every variable's change over two steps equal
    the record of this backend (`tests/training/pretrainer_steps.py`)."""
    record = pretrainer_steps.load_record()
    result = pretrainer_steps.run_steps(name)
    logs = result[f"{name}/logs"]
    for step, (got, want) in enumerate(zip(logs, record[f"{name}/logs"])):
        for key, a, b in zip(pretrainer_steps.LOGGED_VALUES, got, want):
            assert a == pytest.approx(b, rel=1e-5, abs=1e-6), f"step {step}: {key}"
    changes, expected = result[f"{name}/changes"], record[f"{name}/changes"]
    assert changes.shape == expected.shape
    # Every variable moved in the recorded run: it is not of a run that
    # stood still.
    assert np.all(expected[:, 1] > 0)
    np.testing.assert_allclose(changes[:, 1], expected[:, 1], rtol=1e-4)
    # A sum of changes can be close to 0: compare it on the scale of the
    # absolute changes.
    np.testing.assert_array_less(
        np.abs(changes[:, 0] - expected[:, 0]), 1e-4 * expected[:, 1]
    )
