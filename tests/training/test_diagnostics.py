"""Self-distillation diagnostics: entropies, prototypes in use, agreement."""

import math

import keras
import numpy as np
import pytest

from keras_tips.training import diagnostics
from keras_tips.training.pretrainer import DIAGNOSTICS
from tests.training.pretrain_fixtures import random_batch
from tests.training.pretrain_fixtures import tiny_pretrainer

pytestmark = pytest.mark.multibackend


def _value(tensor):
    return float(keras.ops.convert_to_numpy(tensor))


def test_uniform_targets_have_entropy_log_k_and_one_winner():
    probs = np.full((6, 16), 1.0 / 16, "float32")
    assert _value(diagnostics.teacher_entropy(probs)) == pytest.approx(math.log(16), abs=1e-5)
    assert _value(diagnostics.batch_entropy(probs)) == pytest.approx(math.log(16), abs=1e-5)
    # Every argmax of a flat row is the first prototype.
    assert _value(diagnostics.prototypes_in_use(probs)) == 1.0


def test_distinct_one_hot_targets_use_as_many_prototypes_as_samples():
    probs = np.eye(8, dtype="float32")[[0, 3, 3, 5]]
    assert _value(diagnostics.teacher_entropy(probs)) == pytest.approx(0.0, abs=1e-6)
    assert _value(diagnostics.prototypes_in_use(probs)) == 3.0
    # The batch mean puts 1/4, 1/2, 1/4 on three prototypes.
    expected = -(0.25 * math.log(0.25) * 2 + 0.5 * math.log(0.5))
    assert _value(diagnostics.batch_entropy(probs)) == pytest.approx(expected, abs=1e-5)
    # A mask leaves samples out.
    mask = np.array([True, False, False, True])
    assert _value(diagnostics.prototypes_in_use(probs, mask)) == 2.0
    assert _value(diagnostics.batch_entropy(probs, mask)) == pytest.approx(math.log(2), abs=1e-5)


def test_agreement_broadcasts_crops_and_respects_the_mask():
    teacher = np.eye(4, dtype="float32")[[1, 2]][:, None]  # (B=2, 1, K)
    student = np.zeros((2, 3, 4), "float32")  # three crops per image
    student[0, :, 1] = 5.0  # all three crops of image 0 agree
    student[1, 0, 2] = 5.0  # one crop of image 1 agrees
    student[1, 1:, 0] = 5.0
    assert _value(diagnostics.top1_agreement(student, teacher)) == pytest.approx(4 / 6)
    mask = np.array([[False] * 3, [True, True, False]])
    assert _value(diagnostics.top1_agreement(student, teacher, mask)) == pytest.approx(0.5)


def test_center_norm_and_target_diagnostics_keys():
    assert _value(diagnostics.center_norm(np.array([[3.0, 4.0]], "float32"))) == pytest.approx(5.0)
    probs = np.full((2, 4), 0.25, "float32")
    values = diagnostics.target_diagnostics("distill", probs, probs, np.zeros((1, 4)))
    assert tuple(values) == diagnostics.diagnostic_names("distill")


def test_pretrainer_logs_the_diagnostics_within_their_ranges():
    num_prototypes, batch_size = 64, 4
    pretrainer = tiny_pretrainer(num_prototypes=num_prototypes)
    pretrainer.compile(optimizer=keras.optimizers.AdamW(1e-3))
    logs = pretrainer.train_on_batch(random_batch(batch_size=batch_size), return_dict=True)
    for name in DIAGNOSTICS:
        assert name in logs, name
        assert np.isfinite(float(logs[name])), name
    for prefix, samples in (("distill", batch_size), ("mask", batch_size * 16)):
        entropy = float(logs[f"{prefix}_teacher_entropy"])
        assert 0.0 <= entropy <= math.log(num_prototypes) + 1e-4
        assert 1.0 <= float(logs[f"{prefix}_prototypes_in_use"]) <= samples
        assert 0.0 <= float(logs[f"{prefix}_agreement"]) <= 1.0
    # Terms switched off report zeros rather than stale numbers.
    off = tiny_pretrainer(distill_weight=0.0, mask_weight=0.0)
    off.compile(optimizer=keras.optimizers.AdamW(1e-3))
    logs = off.train_on_batch(random_batch(), return_dict=True)
    assert all(float(logs[name]) == 0.0 for name in DIAGNOSTICS)
