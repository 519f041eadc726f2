"""Blocks rematerialised with `keras.RematScope` train exactly as without."""

import keras
import numpy as np
import pytest

from tests.training.pretrain_fixtures import random_batch
from tests.training.pretrain_fixtures import tiny_pretrainer

pytestmark = pytest.mark.multibackend

BLOCK_NAMES = ["blocks_0", "blocks_1", "resblocks_0"]


def one_step(remat):
    if remat:
        with keras.RematScope(mode="list_of_layers", layer_names=BLOCK_NAMES):
            pretrainer = tiny_pretrainer(seed=0)
    else:
        pretrainer = tiny_pretrainer(seed=0)
    pretrainer.compile(optimizer=keras.optimizers.SGD(0.1))
    logs = pretrainer.train_on_batch(random_batch(seed=1), return_dict=True)
    student = pretrainer.backbone
    return logs, [keras.ops.convert_to_numpy(w) for w in student.trainable_weights]


def test_remat_scope_gives_the_same_step():
    # The scope really selects the blocks (names as the towers build them).
    with keras.RematScope(mode="list_of_layers", layer_names=BLOCK_NAMES):
        pretrainer = tiny_pretrainer(seed=0)
    vision = pretrainer.backbone.vision_encoder
    names = {layer.name for layer in vision._flatten_layers() if layer._remat_mode}
    assert {"blocks_0", "blocks_1"} <= names, names
    logs, weights = one_step(remat=True)
    expected_logs, expected = one_step(remat=False)
    assert np.isclose(logs["loss"], expected_logs["loss"], atol=1e-5)
    for got, want in zip(weights, expected):
        np.testing.assert_allclose(got, want, atol=1e-5)
