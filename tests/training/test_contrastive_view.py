"""The contrastive loss sees the batch's `contrastive_images` when it has
them, and the self-distillation and masking terms do not."""

import keras
import numpy as np
import pytest

from tests.training.pretrain_fixtures import random_batch
from tests.training.pretrain_fixtures import tiny_pretrainer

pytestmark = pytest.mark.multibackend

CONTRASTIVE = ("contrastive_web", "contrastive_synthetic", "accuracy_web")
SELF_SUPERVISED = ("distill", "mask")


def _terms(batch):
    # A fresh pretrainer each time: a call may move the teacher centres.
    outputs = tiny_pretrainer(seed=0)(batch, training=False)
    return {k: float(keras.ops.convert_to_numpy(v)) for k, v in outputs.items()}


def test_contrastive_terms_follow_the_contrastive_images():
    batch = random_batch(seed=0)
    plain = _terms(batch)
    same = _terms(dict(batch, contrastive_images=batch["global_images"]))
    for name in CONTRASTIVE + SELF_SUPERVISED:
        assert same[name] == pytest.approx(plain[name], rel=1e-6, abs=1e-6), name
    other = random_batch(seed=1)["global_images"]
    moved = _terms(dict(batch, contrastive_images=other))
    for name in ("contrastive_web", "contrastive_synthetic"):
        assert abs(moved[name] - plain[name]) > 1e-4, name
    for name in SELF_SUPERVISED:
        assert moved[name] == pytest.approx(plain[name], rel=1e-6, abs=1e-6), name


def test_masked_contrastive_view_refuses_a_separate_crop():
    pretrainer = tiny_pretrainer(contrastive_view="masked")
    batch = random_batch(seed=0)
    batch["contrastive_images"] = np.array(batch["global_images"])
    with pytest.raises(ValueError, match="contrastive_view='masked'"):
        pretrainer(batch, training=False)


def test_a_shared_teacher_pass_refuses_a_separate_contrastive_crop():
    import os

    from keras_tips.training.recipe import load_recipe

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    b14 = os.path.join(root, "recipes", "tips_b14_webli.py")
    files = ["data.path='shards/*.array_record'", "data.tokenizer='tokenizer.model'"]
    shared = ["objective.teacher=heads_only", "objective.teacher_pass=shared"]
    # The b14 recipe pairs the captions with a crop of their own.
    with pytest.raises(ValueError, match="teacher_pass='shared'"):
        load_recipe(b14, files + shared).validate()
    load_recipe(b14, files + shared[:1]).validate()  # A separate pass is fine.
